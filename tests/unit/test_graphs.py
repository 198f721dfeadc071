"""The CUDA-graph training loop (flowviz.training.graphs). Its bookkeeping (warm-up, the buffers a divergence restores,
mini-batches copied into fixed inputs, cancelling, snapshots) runs here on the CPU with the capture replaced by
an eager call; the capture itself is checked against eager training on a GPU (tests/unit/test_gpu.py)."""

import contextlib
import importlib
import threading

import pytest
import torch
from tiny import SMALL, TINY

import flowviz.training.graphs as graphs
from flowviz.core.data import make_dataset
from flowviz.core.model import build_model

train_mod = importlib.import_module("flowviz.training.train")  # the module (flowviz.train is the function)
BASE = SMALL.replace(train_steps=25, optimizer="sgd", lr=0.2, seed=4)


@pytest.fixture
def eager_graphs(monkeypatch):
    """GraphEngine with a 'graph' that runs its step eagerly at each replay (no CUDA here)."""
    captured = []

    def capture(fn):
        captured.append(fn)
        out = torch.empty(())
        return (lambda: out.copy_(fn().detach())), out

    monkeypatch.setattr(graphs, "_capture", capture)
    monkeypatch.setattr(graphs, "_side_stream", contextlib.nullcontext)
    monkeypatch.setattr(train_mod, "graphs_apply", lambda model, dev, enabled=False: True)
    return captured


def _run(cfg, **kw):
    ds = make_dataset(cfg)
    model = build_model(cfg, ds.n_classes)
    snaps = list(train_mod.train_iter(cfg, data=ds, log_every=5, model=model, **kw))
    return snaps, model


@pytest.mark.parametrize("extra", [{}, {"batch_size": 64}, {"smoothness": 0.5}, {"train_steps": 2}])
def test_the_graph_loop_takes_the_same_steps_as_the_eager_loop(eager_graphs, monkeypatch, extra):
    cfg = BASE.replace(**extra)
    g_snaps, g_model = _run(cfg)
    assert len(eager_graphs) == (1 if cfg.train_steps > graphs.WARMUP_STEPS else 0)  # captured once, or never
    monkeypatch.setattr(train_mod, "graphs_apply", graphs.graphs_apply)  # the real test: off on a CPU
    e_snaps, e_model = _run(cfg)
    assert [s.step for s in g_snaps] == [s.step for s in e_snaps] and g_snaps[-1].done
    for a, b in zip(g_snaps, e_snaps):
        assert a.loss == pytest.approx(b.loss, rel=1e-5, abs=1e-7)
    for (n, pa), pb in zip(g_model.state_dict().items(), e_model.state_dict().values()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6, msg=n)


def test_a_diverging_run_keeps_the_same_last_finite_state_as_the_eager_loop(eager_graphs, monkeypatch):
    cfg = BASE.replace(lr=10.0, horizon=50.0, train_steps=60)
    g_snaps, g_model = _run(cfg)
    monkeypatch.setattr(train_mod, "graphs_apply", graphs.graphs_apply)
    e_snaps, e_model = _run(cfg)
    assert e_snaps[-1].error and "diverged" in e_snaps[-1].error  # the eager loop diverges here ...
    assert e_snaps[-1].step > graphs.WARMUP_STEPS  # ... after the capture, so a replay's restore is tested
    assert g_snaps[-1].error == e_snaps[-1].error and g_snaps[-1].step == e_snaps[-1].step  # ... at the same step
    for (n, pa), pb in zip(g_model.state_dict().items(), e_model.state_dict().values()):
        assert torch.isfinite(pa).all(), n
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6, msg=n)


def test_cancelling_between_replays_ends_with_a_cancelled_snapshot(eager_graphs):
    stop = threading.Event()
    seen = []
    ds = make_dataset(BASE)
    for s in train_mod.train_iter(BASE.replace(train_steps=400), data=ds, log_every=10, cancel=stop):
        seen.append(s)
        if s.step >= 20:
            stop.set()
    assert seen[-1].cancelled and seen[-1].done and 20 <= seen[-1].step < 400


def test_graphs_are_off_unless_asked_for_and_on_a_gpu(monkeypatch):
    m = build_model(BASE, 2)
    monkeypatch.setenv("FLOWVIZ_CUDA_GRAPHS", "1")  # the server's variable: training does not read it
    assert not graphs.graphs_apply(m, torch.device("cuda"))
    assert graphs.graphs_apply(m, torch.device("cuda"), True)
    assert not graphs.graphs_apply(m, torch.device("cpu"), True)
    assert not graphs.graphs_apply(build_model(BASE.replace(viscosity=0.01), 2), torch.device("cuda"), True)
    assert not graphs.graphs_apply(build_model(BASE.replace(scheme="rk4"), 2), torch.device("cuda"), True)


def test_no_module_of_training_or_core_reads_the_environment(root):
    """Every FLOWVIZ_* setting is read once, by flowviz.serve.settings; the library is told."""
    for sub in ("training", "core"):
        for path in (root / "flowviz" / sub).glob("*.py"):
            text = path.read_text()
            assert "os.environ" not in text and "getenv" not in text, path


@pytest.fixture
def graph_flags(monkeypatch):
    """The ``enabled`` each training asks graphs_apply with (on a CPU: still eager steps)."""
    seen = []
    monkeypatch.setattr(train_mod, "graphs_apply", lambda model, dev, enabled=False: seen.append(enabled) and False)
    return seen


def test_the_server_setting_reaches_each_runs_training(graph_flags, monkeypatch):
    from flowviz.serve.settings import Settings
    from flowviz.serve.work.executor import make_executor

    monkeypatch.setenv("FLOWVIZ_CUDA_GRAPHS", "1")
    train_mod.train(TINY)  # the library: off unless asked for, whatever the environment says
    assert graph_flags == [False]
    for flag in (True, False):  # a server's runs: the setting travels with each run to its worker
        ex = make_executor(Settings(cuda_graphs=flag), size=1, name="thread")
        try:
            snaps = list(ex.train(TINY, make_dataset(TINY), log_every=10))
        finally:
            ex.shutdown()
        assert snaps[-1].done and graph_flags[-1] is flag
    assert Settings.from_env({"FLOWVIZ_CUDA_GRAPHS": "1"}).cuda_graphs
    assert not Settings.from_env({}).cuda_graphs


@pytest.mark.parametrize("value, expected", [("1", True), ("0", False)])
def test_the_command_line_passes_the_setting_down(graph_flags, monkeypatch, tmp_path, value, expected):
    from flowviz import cli

    monkeypatch.setenv("FLOWVIZ_CUDA_GRAPHS", value)
    assert (
        cli.main(
            [
                "train",
                "--set",
                "n_samples=120",
                "--set",
                "n_steps=4",
                "--set",
                "width=8",
                "--set",
                "train_steps=5",
                "--out",
                str(tmp_path / "r"),
            ]
        )
        == 0
    )
    assert graph_flags == [expected]
