"""The smaller hostile cases: a -0 in a link, an import whose head does not fit its data, and the command line
(train too large, eval of a crafted trajectories.npz or at a huge depth, malformed sweep flags): one plain
line and exit 2, refused before anything is generated, loaded or trained."""

import io
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from tiny import ROOT, TINY

from flowviz import Config
from flowviz.cli import main


# ------------------------------------------------------------------------------------------------ -0 in a link
def test_minus_zero_is_zero_in_every_float_key_and_in_the_run_key():
    import dataclasses

    floats = [
        f.name
        for f in dataclasses.fields(Config)
        if f.type == "float" and f.metadata["lo"] == 0 and not f.metadata["lo_open"]
    ]
    assert {"noise", "viscosity", "smoothness", "kinetic", "weight_decay"} <= set(floats)
    for k in floats:
        neg, pos = Config.from_query({k: "-0"}), Config.from_query({k: "0"})
        assert neg == pos and neg.key() == pos.key() and neg.to_query()[k] == "0.0"
        assert Config(**{k: -0.0}).key() == Config(**{k: 0.0}).key()
        assert np.copysign(1.0, getattr(neg, k)) == 1.0


# ------------------------------------------------------------------------------------ an import of another head
def test_an_import_whose_head_does_not_fit_its_data_says_how_many_classes():
    from flowviz.core.data import split
    from flowviz.core.errors import CheckpointError
    from flowviz.core.model import FlowModel
    from flowviz.runfiles.files import model_from_bytes, weights_bytes
    from flowviz.ui.state import PageState

    two = FlowModel(Config(dataset="blobs", n_classes=5, n_steps=4, width=8), 2)  # a 2-class head, 5-class data
    with pytest.raises(CheckpointError, match=r"expected 5 classes \(its data: dataset=blobs\), found 2 in the run"):
        model_from_bytes(weights_bytes(two))
    state = PageState.from_link({})
    msg = state.import_file("model.safetensors", weights_bytes(two), registry=None, data_for=None)
    assert "expected 5 classes" in msg and "found 2" in msg and msg.endswith("Nothing was changed.")

    csv = FlowModel(Config(dataset="csv", n_steps=4, width=8), 2)  # uploaded points decide their own classes
    rng = np.random.default_rng(0)
    five = split(rng.normal(size=(50, 2)).astype(np.float32), np.arange(50) % 5, 0.2, rng)
    before = state.config
    msg = state.import_file("model.safetensors", weights_bytes(csv), registry=None, data_for=lambda c, s: five)
    assert msg.startswith("'model.safetensors': expected 5 classes (its data: the uploaded points), found 2")
    assert state.config == before


# ------------------------------------------------------------------------------------------------ the CLI
def _line(capsys, rc_expected=2):
    err = capsys.readouterr().err.strip().splitlines()
    errors = [ln for ln in err if ln.startswith("flowviz: error: ")]
    assert len(errors) == 1 and "Traceback" not in "\n".join(err), err
    return errors[0]


def test_train_refuses_a_dataset_too_large_before_generating_it(tmp_path, capsys, monkeypatch):
    import flowviz.core.cost as cost
    import flowviz.training.train as train

    monkeypatch.setattr(cost, "machine_mb", lambda: 24 * 1024.0)
    monkeypatch.setattr(train, "make_dataset", lambda *a, **k: pytest.fail("the data were generated"))
    assert main(["train", "--set", "n_samples=300000000", "--out", str(tmp_path / "r")]) == 2
    assert "more than this machine's 24 GB of memory" in _line(capsys) and not (tmp_path / "r").exists()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from flowviz.runfiles.files import save_run
    from flowviz.training.train import train

    return save_run(train(TINY), tmp_path_factory.mktemp("run") / "run")


def _npy(arr=None, *, header=None) -> bytes:
    """An .npy member: ``arr``, or only a header claiming (shape, dtype) with no data behind it."""
    buf = io.BytesIO()
    if header is None:
        np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=False)
    else:
        np.lib.format.write_array_header_1_0(
            buf, {"descr": np.dtype(header[1]).str, "fortran_order": False, "shape": header[0]}
        )
    return buf.getvalue()


def _crafted(run_dir, tmp_path, name, members=None, raw=None):
    d = tmp_path / name
    d.mkdir()
    shutil.copy(run_dir / "model.safetensors", d / "model.safetensors")
    if raw is not None:
        (d / "trajectories.npz").write_bytes(raw)
        return d
    with np.load(run_dir / "trajectories.npz") as z:
        arrays = {k: _npy(z[k]) for k in z.files}
    arrays.update({k: (v if isinstance(v, bytes) or v is None else _npy(v)) for k, v in (members or {}).items()})
    with zipfile.ZipFile(d / "trajectories.npz", "w", zipfile.ZIP_DEFLATED) as zf:
        for k, v in arrays.items():
            if v is not None:
                zf.writestr(f"{k}.npy", v)
    return d


N = TINY.n_samples
X = np.zeros((TINY.n_steps + 1, N, 2), np.float32)  # (L+1, n, d) of TINY's points (each case changes one thing)
CRAFTED = {
    "x_2d": ({"x": X[0]}, "3-d array"),
    "x_1_coordinate": ({"x": X[:, :, :1]}, "d >= 2"),
    "more_points_than_labels": ({"x": np.zeros((5, N + 6, 2), np.float32)}, f"for {N} labels"),
    "label_too_large": ({"y": np.full(N, 7)}, "head has 2 classes"),
    "negative_label": ({"y": -np.ones(N, np.int64)}, "labels from -1"),
    "n_train_negative": ({"n_train": np.int64(-5)}, "n_train=-5"),
    "n_train_beyond": ({"n_train": np.int64(N + 1)}, f"n_train={N + 1}"),
    "nan_points": ({"x": X + np.nan}, "finite"),
    "huge_points": ({"x": X + 1e30}, "finite and within"),
    "float_labels": ({"y": np.zeros(N)}, "of kind 'iu'"),
    "object_labels": ({"y": _npy(header=((N,), object))}, "of kind 'iu'"),
    "no_labels": ({"y": None}, "no array 'y'"),
    "header_claims_8_gb": ({"x": _npy(header=((1, 10**9, 2), np.float32))}, "would take 7,629 MB"),
}


@pytest.mark.parametrize("name", CRAFTED)
def test_eval_of_a_crafted_npz_is_one_line_and_exit_2(run_dir, tmp_path, capsys, name):
    members, msg = CRAFTED[name]
    d = _crafted(run_dir, tmp_path, name, members)
    assert main(["eval", "--run", str(d)]) == 2
    assert msg in _line(capsys)


@pytest.mark.parametrize("raw, msg", [(b"\x80\x04not a zip", "not an npz"), (b"PK\x03\x04broken", "not ours")])
def test_eval_of_an_npz_that_is_no_zip(run_dir, tmp_path, capsys, raw, msg):
    assert main(["eval", "--run", str(_crafted(run_dir, tmp_path, "raw", raw=raw))]) == 2
    assert msg in _line(capsys)


@pytest.mark.slow
def test_eval_in_a_process_of_its_own_ends_with_one_line(run_dir, tmp_path):
    d = _crafted(run_dir, tmp_path, "bomb", {"x": _npy(header=((1, 10**9, 2), np.float32))})
    r = subprocess.run(
        [sys.executable, "-m", "flowviz", "eval", "--run", str(d)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 2 and r.stderr.strip().startswith("flowviz: error: trajectories.npz: 'x' would take")
    assert len(r.stderr.strip().splitlines()) == 1 and not r.stdout


def test_eval_refuses_a_huge_depth_before_rediscretising(run_dir, capsys, monkeypatch):
    from flowviz.core.model import FlowModel

    monkeypatch.setattr(FlowModel, "rediscretised", lambda *a, **k: pytest.fail("re-discretised"))
    assert main(["eval", "--run", str(run_dir), "--set", "n_steps=1000000"]) == 2
    assert "evaluating this run at n_steps=1000000" in _line(capsys)


@pytest.mark.parametrize(
    "flags, msg",
    [
        (["--transfer-to", "x"], "--transfer-to takes L1,L2"),
        (["--transfer-to", "4,-2"], "--transfer-to takes L1,L2"),
        (["--transfer-to", "4," + "9" * 50], "--transfer-to takes L1,L2"),
        (["--coarse-to-fine", "4-8"], "--coarse-to-fine takes L0:L1"),
        (["--coarse-to-fine", "4:8:16"], "--coarse-to-fine takes L0:L1"),
        (["--coarse-to-fine", "a:b"], "--coarse-to-fine takes L0:L1"),
        (["--coarse-to-fine", "8:4"], "coarse to fine needs 1 <= L_start <= L_end <= 256"),
        (["--coarse-to-fine", "0:4"], "n_steps=0 is out of range"),
        (["--coarse-to-fine", "4:512"], "coarse to fine needs 1 <= L_start <= L_end <= 256"),
    ],
)
def test_sweep_refuses_malformed_depth_flags_before_anything_trains(tmp_path, capsys, monkeypatch, flags, msg):
    import flowviz.training.sweep as sweep

    monkeypatch.setattr(sweep, "run_sweep", lambda *a, **k: pytest.fail("the sweep trained"))
    out = tmp_path / "sw"
    assert main(["sweep", "--vary", "n_steps=2,4", "--out", str(out)] + flags) == 2
    assert msg in _line(capsys) and not out.exists()
