import json
import re
import subprocess
import sys

import numpy as np
import pytest


def run(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "flowviz", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_train_writes_a_run_and_eval_rediscretises(tmp_path, root):
    out = tmp_path / "run"
    p = run(
        "train",
        "--preset",
        "moons",
        "--set",
        "time_mode=continuous",
        "--set",
        "n_steps=8",
        "--set",
        "train_steps=60",
        "--set",
        "lift=1",
        "--out",
        str(out),
        cwd=root,
    )
    assert p.returncode == 0, p.stderr
    assert {f.name for f in out.iterdir()} >= {
        "config.json",
        "metrics.json",
        "history.csv",
        "model.safetensors",
        "trajectories.npz",
    }
    assert "loss=" in p.stderr  # the progress bar
    metrics = json.loads(p.stdout)
    assert metrics["train_accuracy"] > 0.8
    z = np.load(out / "trajectories.npz")
    assert z["t"].shape == (9,) and z["x"].shape == (9, 1000, 3) and z["y"].shape == (1000,)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["n_steps"] == 8 and cfg["lift"] == 1
    e = run("eval", "--run", str(out), cwd=root)
    assert e.returncode == 0, e.stderr
    same = json.loads(e.stdout)
    assert same["train_accuracy"] == pytest.approx(metrics["train_accuracy"], abs=1e-6)
    e64 = json.loads(run("eval", "--run", str(out), "--set", "n_steps=64", cwd=root).stdout)
    assert e64["n_steps"] == 64 and e64["disc_error"] < same["disc_error"]


def test_presets_lists_names(root):
    p = run("presets", cwd=root)
    assert p.returncode == 0 and "rings_lift" in p.stdout


@pytest.mark.parametrize(
    "args, msg",
    [
        (["train", "--set", "foo=1", "--out", "x"], "unknown config key 'foo'"),
        (["train", "--set", "n_steps=0", "--out", "x"], "n_steps=0"),  # (beyond 256 is allowed: a warning)
        (["train", "--preset", "nope", "--out", "x"], "unknown preset 'nope'"),
        (["train", "--config", "/no/such.json", "--out", "x"], "no config file"),
        (["train", "--set", "dataset=csv", "--out", "x"], "needs --csv"),
        (["train"], "--out"),
        (["eval", "--run", "/no/such/dir"], "no run directory"),
        (["bogus"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2_with_one_line_and_no_torch(args, msg, root):
    """Answered before torch is imported (about 2.5 s): the message comes at once."""
    code = (
        "import runpy, sys\ntry:\n    runpy.run_module('flowviz', run_name='__main__')\nfinally:\n"
        "    print('torch imported' if 'torch' in sys.modules else 'no torch')"
    )
    p = subprocess.run([sys.executable, "-c", code, *args], cwd=root, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2
    assert msg in p.stderr and "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert p.stdout.strip() == "no torch"


def test_a_lower_bound_names_the_upper_one_only_where_it_holds():
    from flowviz import Config, ConfigError

    with pytest.raises(ConfigError, match=r"n_steps=0 is out of range: must be >= 1$"):  # 300 is allowed here
        Config(n_steps=0)
    with pytest.raises(ConfigError, match=r"n_steps=0 is out of range: must be >= 1 and <= 256$"):
        Config.from_query({"n_steps": "0"})  # a link: the server's limit is hard
    with pytest.raises(ConfigError, match=r"lr=0.0 is out of range: must be > 0.0 and <= 10.0$"):
        Config(lr=0.0)  # not a server-limited key: its upper limit is hard everywhere


@pytest.mark.slow
def test_eval_refuses_to_rediscretise_per_step_weights(tmp_path, root):
    out = tmp_path / "r"
    assert run("train", "--set", "train_steps=5", "--set", "n_steps=4", "--out", str(out), cwd=root).returncode == 0
    p = run("eval", "--run", str(out), "--set", "n_steps=8", cwd=root)
    assert p.returncode == 2 and "tied or continuous" in p.stderr


@pytest.mark.slow
def test_cli_sweep_writes_json_and_html(tmp_path, root):
    out = tmp_path / "sw"
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "flowviz",
            "sweep",
            "--preset",
            "moons",
            "--set",
            "n_samples=200",
            "--set",
            "train_steps=20",
            "--set",
            "time_mode=continuous",
            "--vary",
            "n_steps=1,2,4",
            "--transfer-to",
            "16",
            "--coarse-to-fine",
            "2:4",
            "--out",
            str(out),
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["key"] == "n_steps" and [m["n_steps"] for m in doc["members"]] == [1, 2, 4]
    for m in doc["members"]:
        assert set(m) >= {
            "n_steps",
            "train_accuracy",
            "test_accuracy",
            "train_loss",
            "wall_s",
            "disc_error",
            "residual_ratio",
            "weight_drift",
        }
        assert 0 <= m["train_accuracy"] <= 1 and m["disc_error"] > 0
    assert doc["transfer"]["evaluated"] == [1, 2, 4, 16] and len(doc["transfer"]["accuracy"]) == 3
    assert doc["coarse_to_fine"]["levels"] == [2, 4]
    html = (out / "sweep.html").read_text()
    assert html.count("Plotly.newPlot") >= 6
    assert not re.search(r"<script[^>]+src=", html)  # self-contained: plotly.js inlined, works offline
    bad = subprocess.run(
        [sys.executable, "-m", "flowviz", "sweep", "--vary", "width=1,2", "--out", str(out)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "cannot sweep" in bad.stderr and "Traceback" not in bad.stderr


def test_the_command_line_goes_beyond_a_limit_with_a_one_line_warning(tmp_path, root):
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "flowviz",
            "train",
            "--set",
            "n_steps=300",
            "--set",
            "n_samples=60",
            "--set",
            "width=4",
            "--set",
            "train_steps=2",
            "--out",
            str(tmp_path / "run"),
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    lines = p.stderr.splitlines()
    assert (
        "flowviz: warning: n_steps=300 is beyond the server's limit n_steps <= 256 (flowviz.LIMITS): "
        "allowed in Python and on the command line, refused by links and the page"
    ) in lines
    assert json.loads((tmp_path / "run" / "config.json").read_text())["n_steps"] == 300
