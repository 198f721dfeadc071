"""A page's computations on a run's weights (a click's probe, a snapshot's instruments) are made by the view
worker, a process beside the training ones: the numbers are the library's, and a worker that dies is a plain
error for that call only."""

import os
import signal
import threading
import time

import numpy as np
import pytest
from tiny import SMALL, wait_for

from flowviz.core.errors import FlowvizError
from flowviz.serve.runs.registry import Registry
from flowviz.serve.settings import Settings
from flowviz.training import instruments as ins

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served():
    reg = Registry(max_workers=1, mode="process", settings=Settings(cache_dir="off", warm=False))
    try:
        run = reg.start(SMALL.replace(seed=41))
        assert wait_for(lambda: run.finished, 120) and run.status == "done", run.error
        yield reg, run
    finally:
        reg.shutdown()


def test_a_probe_click_is_computed_by_the_view_worker_with_the_library_s_numbers(served):
    reg, run = served
    model = run.model()
    got = reg.compute(run, "probe_data", probe=[0.5, 0.25])
    here = ins.probe_data(model, (0.5, 0.25))
    for name in ("xs", "u", "f", "ratio", "det"):
        np.testing.assert_array_equal(getattr(got, name), getattr(here, name))
    path = reg.compute(run, "probe_path", probe=[0.5, 0.25])
    np.testing.assert_array_equal(path, ins.flow_paths(model, np.asarray([[0.5, 0.25]], np.float32))[:, 0].numpy())
    side = reg._side.pids()
    assert len(side) == 1 and side[0] != os.getpid() and side[0] not in reg.executor.pids()


def test_a_view_worker_that_dies_mid_call_is_a_plain_error_and_the_next_call_is_answered(served):
    reg, run = served
    reg.compute(run, "probe_path", probe=[0.0, 0.0])  # the view worker is up
    box = {}

    def slow():
        try:
            box["got"] = reg.compute(run, "adjoint", extent=[-3.0, 3.0, -3.0, 3.0])  # with its continuous solve
        except FlowvizError as e:
            box["error"] = str(e)

    for _ in range(20):  # kill it while it computes (the adjoint of every training point takes a moment)
        t = threading.Thread(target=slow)
        t.start()
        if wait_for(lambda: reg._side.busy_pids() or not t.is_alive(), 10) and reg._side.busy_pids():
            os.kill(reg._side.busy_pids()[0], signal.SIGKILL)  # (a call that ended first is tried again)
        t.join(30)
        if "error" in box:
            break
        box.clear()
    assert "stopped unexpectedly" in box["error"] and "Traceback" not in box["error"]
    t0 = time.monotonic()
    path = reg.compute(run, "probe_path", probe=[0.5, 0.25])  # a fresh view worker answers
    assert path.shape == (run.config.n_steps + 1, 2) and time.monotonic() - t0 < 30


def test_a_probe_far_outside_the_plane_never_ends_the_server(served):
    """probe_data at 1e300 crashed the process that made it inside MKL: whatever the library says of such a
    point, the server (this process) lives and answers the next click."""
    reg, run = served
    try:
        reg.compute(run, "probe_data", probe=[1e300, 1e300])
    except FlowvizError as e:
        assert "Traceback" not in str(e)
    assert reg.compute(run, "probe_path", probe=[0.5, 0.25]).shape == (run.config.n_steps + 1, 2)


def test_an_instrument_at_a_kept_training_step_is_computed_by_the_view_worker(served):
    """The page's training-step slider shows the run as it was (Run.at): its instruments are the view worker's
    too, on the kept weights of that step, with the library's numbers."""
    reg, run = served
    step = [s for s in run.checkpoints if 0 < s < run.latest.step][0]
    at = run.at(step)
    assert at is not None and at.latest.step == step
    got = reg.compute(at, "stability", extent=[-3.0, 3.0, -3.0, 3.0])
    model = at.model()
    here = ins.stability_data(model, run.data.x, run.data.y)
    np.testing.assert_array_equal(got.max_abs, here.max_abs)
    assert not np.array_equal(here.max_abs, ins.stability_data(run.model(), run.data.x).max_abs)
