"""The run registry: sharing, the worker bound, eviction, the disk cache, unwatched runs, faults."""

import os
import signal
import time

import pytest
import torch
from tiny import TINY, wait_for

from flowviz.core.errors import FlowvizError


@pytest.fixture
def reg(registry):
    return registry("thread", 2)


def test_two_sessions_with_one_config_share_one_run(reg):
    a = reg.start(TINY.replace(seed=11))
    b = reg.start(TINY.replace(seed=11))
    assert a is b and reg.started == 1
    a.join(60)
    assert reg.start(TINY.replace(seed=11)) is a and reg.started == 1  # finished results are shared too


@pytest.mark.slow
def test_the_worker_bound_holds_under_a_burst(reg):
    runs = [reg.start(TINY.replace(seed=100 + i, train_steps=300)) for i in range(8)]
    peak, queued_seen = 0, False
    while not all(r.finished for r in runs):
        peak = max(peak, reg.active())
        queued_seen |= any(reg.queued_before(r) > 0 for r in runs)  # later runs see their place in the queue
        time.sleep(0.01)
    assert queued_seen
    assert 1 <= peak <= reg.max_workers
    assert all(r.status == "done" for r in runs) and reg.started == 8


def test_finished_runs_are_evicted_least_recently_used_first(registry):
    reg = registry("thread", 1, keep=3)
    runs = [reg.start(TINY.replace(seed=200 + i, train_steps=5)) for i in range(3)]
    for r in runs:
        r.join(30)
    reg.get(runs[0].key)  # recently used
    extra = reg.start(TINY.replace(seed=299, train_steps=5))
    extra.join(30)
    assert reg.get(runs[0].key) is not None and reg.get(runs[1].key) is None


def test_disk_cache_survives_a_restart(registry, tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWVIZ_CACHE_DIR", str(tmp_path))
    cfg = TINY.replace(seed=300)
    first = registry("thread", 1)
    run = first.start(cfg)
    run.join(60)
    first.shutdown()
    second = registry("thread", 1)  # a restarted server
    again = second.start(cfg)
    assert again.from_cache and again.finished and second.started == 0
    x = run.data.x
    assert abs(again.latest.train_accuracy - run.latest.train_accuracy) < 1e-9
    va, vb = run.views(), again.views()
    assert (va.predicted == vb.predicted).all() and va.output_points.shape == vb.output_points.shape == (len(x), 2)
    second.shutdown()


def test_a_registry_shut_down_starts_no_run_and_warms_nothing(registry, tmp_path, monkeypatch):
    """A server stopping while its warming thread walks the prebuilt runs: the thread stops, and a page's late
    start is refused with a message (a run started then had no worker, and reported one lost)."""
    monkeypatch.setenv("FLOWVIZ_CACHE_DIR", str(tmp_path))
    cfgs = [TINY.replace(seed=310), TINY.replace(seed=311)]
    first = registry("thread", 1)
    for run in [first.start(c) for c in cfgs]:
        run.join(60)
    first.shutdown()
    second = registry("thread", 1)  # a restarted server, stopping at once
    second.shutdown()
    second.warm(cfgs).join(10)
    with pytest.raises(FlowvizError, match="stopping"):
        second.start(cfgs[0])
    assert all(second.get(c.key()) is None for c in cfgs) and second.started == 0
    third = registry("thread", 1)  # the same cache, not stopping: both warmed
    third.warm(cfgs).join(60)
    assert all(third.get(c.key()) is not None and third.get(c.key()).from_cache for c in cfgs)


def test_a_run_nobody_watches_is_cancelled(registry):
    reg = registry("thread", 1, unwatched_s=0.5)
    run = reg.start(TINY.replace(seed=400, train_steps=20000, n_samples=1000))
    assert wait_for(lambda: run.finished, timeout=30)
    assert run.status == "cancelled" and reg.cancelled_unwatched == 1 and run.latest.step < 20000
    watched = reg.start(TINY.replace(seed=401, train_steps=400))
    while not watched.finished:  # a page polling it keeps it alive
        reg.get(watched.key)
        time.sleep(0.1)
    assert watched.status == "done"


def test_a_gpu_out_of_memory_error_retries_on_the_cpu(registry, monkeypatch):
    import flowviz.serve.work.train as worker_mod

    real = worker_mod.train_iter
    calls = []

    def flaky(config, **kw):
        calls.append(config.device)
        if config.device != "cpu":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (simulated)")
        return real(config, **kw)

    monkeypatch.setattr(worker_mod, "train_iter", flaky)  # thread mode: the worker's task runs in this process
    reg = registry("thread", 1)
    run = reg.start(TINY.replace(seed=500, device="auto"))
    run.join(60)
    assert calls == ["auto", "cpu"] and run.status == "done"
    assert "ran out of memory" in run.notice and run.error is None


def test_a_killed_worker_process_is_an_error_and_the_pool_recovers(registry):
    reg = registry("process", 1)
    run = reg.start(TINY.replace(seed=600, train_steps=20000, n_samples=1000))
    assert wait_for(lambda: run.latest is not None and reg.executor.busy_pids(), timeout=60)
    os.kill(reg.executor.busy_pids()[0], signal.SIGKILL)
    assert wait_for(lambda: run.finished, timeout=30)
    assert run.status == "error" and "stopped unexpectedly" in run.error and "Train" in run.error
    assert run.latest is not None  # the last state stays on screen
    retry = reg.start(TINY.replace(seed=600, train_steps=60, n_samples=1000))
    retry.join(120)
    assert retry.status == "done" and reg.executor.replaced == 1


def test_a_process_mode_server_keeps_one_torch_thread_for_itself(registry):
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        r = registry("process", 1, prestart=False)
        assert torch.get_num_threads() == 1  # the cores belong to the workers (and the browsers)
        r.shutdown()
        torch.set_num_threads(2)
        registry("thread", 1).shutdown()
        assert torch.get_num_threads() == 2  # training in the server's own threads keeps its setting
    finally:
        torch.set_num_threads(saved)


def test_a_training_run_shows_the_live_views_it_was_given_and_computes_none_itself(registry, monkeypatch):
    """While training a run's views are those its training worker made last (None before the first); the server
    makes none (tests/serve/test_live_views.py: the worker's side)."""
    from flowviz.core.data import make_dataset
    from flowviz.training.train import Snapshot, train

    r = train(TINY)
    reg = registry("thread", 1)
    run = reg.adopt(r.model, make_dataset(TINY), key_suffix="live-test")
    full = run.views()
    state = {k: v.clone() for k, v in r.model.state_dict().items()}
    run.status, run._final, run._views = "training", False, None  # as if still training
    monkeypatch.setattr("flowviz.serve.runs.run.analyse", lambda *a, **k: pytest.fail("analysed in the server"))
    run.latest = Snapshot(30, 300, 0.5, 0.5, 0.5, 0.5, 0.3, 100.0, state)
    assert run.views() is None  # no live view came yet, none is made here
    run._live_views(30, full)
    assert run.views() is full
