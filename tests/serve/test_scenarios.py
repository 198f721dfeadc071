"""The lecture scenarios: each loads, trains, and shows what its text says; prebuild and the disk cache. (The rings
and viscosity scenarios are in tests/unit/test_topology.py and test_viscosity.py, beside the tests that train the
same runs.)"""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

import flowviz
from flowviz.core.data import load_csv
from flowviz.core.presets import PRESET_DIR, preset_configs, preset_info, preset_names
from flowviz.plots import FIGURES
from flowviz.runfiles import cache
from flowviz.runfiles.export import data_csv, history_csv, metrics_json, trajectories_npz
from flowviz.serve.settings import Settings
from flowviz.training.analysis import min_jacobian_det, plane_grid
from flowviz.training.sweep import member_diagnostics

SCENARIOS = ["moons", "deep_vs_shallow", "rings", "slow_weights", "viscosity", "folding", "spirals", "blobs"]
VIEWS = {
    "Characteristics",
    "Lifted space",
    "Decision surface",
    "Transport",
    "Velocity field",
    "Diagnostics",
    "Side by side",
    "Instruments",
}


def _train_all(name):
    return [flowviz.train(c) for c in preset_configs(name)]


def test_every_preset_file_loads_with_a_title_a_text_and_a_view():
    assert set(SCENARIOS) <= set(preset_names())
    assert preset_names()[:8] == SCENARIOS  # the curated order
    for p in PRESET_DIR.glob("*.json"):
        raw = json.loads(p.read_text())
        assert set(raw) <= {
            "lead_figure",
            "title",
            "description",
            "config",
            "view",
            "compare",
            "order",
            "side_figures",
            "instrument",
        }, p.name
        info = preset_info(p.stem)
        assert info["title"] and info["view"] in VIEWS
        if p.stem in SCENARIOS:  # "two or three plain sentences on what to look at"
            assert 2 <= len(re.findall(r"[.!?](\s|$)", info["description"])) <= 4, p.stem
        assert flowviz.Config.from_query(info["config"].to_query()) == info["config"]
        if raw.get("view") == "Side by side":
            assert info["compare"] is not None, p.name
        for name in info["side_figures"]:
            assert name in FIGURES


def test_a_resnet_is_eulers_method():
    (r,) = _train_all("moons")
    assert r.config.n_steps == 10 and r.config.scheme == "euler" and r.config.field == "two_layer"
    text = preset_info("moons")["description"]
    assert "a straight line (the linear read-out f) separates over 99% of the points" in text
    assert r.config.head == "learned"  # f = softmax(W x + b): two classes, its boundary is a straight line
    assert r.metrics["train_accuracy"] > 0.99 and r.metrics["test_accuracy"] > 0.99  # measured 0.999, 1.0


def test_deep_means_small_steps():
    shallow, deep = _train_all("deep_vs_shallow")
    assert (shallow.config.n_steps, deep.config.n_steps) == (2, 64)
    e2, r2, _ = member_diagnostics(shallow.model, shallow.data.x_train)
    e64, r64, _ = member_diagnostics(deep.model, deep.data.x_train)
    text = preset_info("deep_vs_shallow")["description"]
    assert "averaged over the blocks, is about 40 times smaller" in text and "over 10 times smaller" in text
    assert 28 <= r2.mean() / r64.mean() <= 56, (r2, r64.mean())  # "about 40" (measured 42), within a factor sqrt 2
    assert r64.max() < r2.min() / 10, (r2, r64.max())  # block against block: measured 15x
    assert e64 < e2 / 5  # and the blocks follow the continuous flow far more closely


@pytest.mark.slow
def test_weights_that_change_slowly():
    per_step, smooth = _train_all("slow_weights")
    _, _, d_ps = member_diagnostics(per_step.model, per_step.data.x_train)
    _, _, d_sm = member_diagnostics(smooth.model, smooth.data.x_train)
    text = preset_info("slow_weights")["description"]
    assert "drifts over 100 times less" in text and "on over 99% of the test points" in text
    assert d_sm.mean() < d_ps.mean() / 100, (d_ps.mean(), d_sm.mean())  # measured 144 times
    for r in (per_step, smooth):  # the same picture: both separate the moons (measured 1.0 and 1.0)
        assert r.config.horizon == 2.0 and r.metrics["test_accuracy"] > 0.99, r.metrics


def test_large_euler_steps_fold_the_plane():
    (r,) = _train_all("folding")
    _, _, g = plane_grid(r.data.extent(), 25)
    det = min_jacobian_det(r.model, torch.as_tensor(r.model.trajectory(g))[:-1])
    assert det.min() < 0


@pytest.mark.slow
def test_spirals_and_many_classes():
    (sp,) = _train_all("spirals")
    assert (
        "a straight line (the linear read-out f) separates about 99% of the points"
        in preset_info("spirals")["description"]
    )
    assert sp.data.n_classes == 2 and sp.config.head == "learned"  # two classes: the read-out's boundary is a line
    for acc in (sp.metrics["train_accuracy"], sp.metrics["test_accuracy"]):
        assert 0.985 <= acc, acc  # "about 99%": measured 0.9925 (train), 0.995 (test)
    (bl,) = _train_all("blobs")
    assert bl.data.n_classes >= 4 and bl.metrics["test_accuracy"] >= 0.9


@pytest.mark.slow
def test_prebuild_fills_the_disk_cache_and_a_fresh_registry_serves_it(registry, tmp_path, root):
    env = dict(os.environ, FLOWVIZ_CACHE_DIR=str(tmp_path))
    cmd = [sys.executable, "-m", "flowviz", "prebuild", "--only", "folding,moons"]
    p = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "trained" in p.stderr and len(list(tmp_path.glob("*.safetensors"))) == 2
    again = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert again.stderr.count("cached already") == 2
    old = os.environ.get("FLOWVIZ_CACHE_DIR")
    os.environ["FLOWVIZ_CACHE_DIR"] = str(tmp_path)
    try:
        reg = registry(size=1)  # a restarted server
        run = reg.start(flowviz.preset("folding"))
        assert run.finished and run.from_cache and reg.started == 0
        v = run.views()
        assert v is not None and not v.live
        fresh = flowviz.train(flowviz.preset("folding"))
        np.testing.assert_allclose(v.output_points, fresh.model.trajectory(fresh.data.x)[-1], rtol=1e-5, atol=1e-5)
        (tmp_path / f"{flowviz.preset('moons').key()}.safetensors").write_bytes(b"\x80\x04garbage")
        assert (
            cache.load(flowviz.preset("moons"), settings=Settings.from_env()) is None
        )  # an unreadable entry is a miss, and is dropped
        assert not (tmp_path / f"{flowviz.preset('moons').key()}.safetensors").exists()
    finally:
        if old is None:
            del os.environ["FLOWVIZ_CACHE_DIR"]
        else:
            os.environ["FLOWVIZ_CACHE_DIR"] = old


def test_exports_load_back():
    r = flowviz.train(flowviz.Config(n_samples=120, n_steps=4, train_steps=10, lift=1))
    x, y = load_csv(data_csv(r.data).decode().replace(",train", "").replace(",test", "").replace(",split", "").encode())
    assert len(x) == 120 and set(np.unique(y)) == {0, 1}
    import io

    with np.load(io.BytesIO(trajectories_npz(r.model, r.data)), allow_pickle=False) as z:
        assert z["x"].shape == (5, 120, 3) and z["t"].shape == (5,) and int(z["n_train"]) == len(r.data.x_train)
    doc = json.loads(metrics_json(r.config, r.metrics, r.history))
    assert flowviz.Config.from_dict(doc["config"]) == r.config and len(doc["history"]) == len(r.history)
    assert history_csv(r.history).decode().splitlines()[0] == "step,loss,train_accuracy,test_accuracy,test_loss,elapsed"
