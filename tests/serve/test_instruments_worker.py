"""A finished run's instruments are made by a worker, not in the server: the worker that trained it, right after
its final views, or (a run restored from the disk cache or imported) the ``instruments`` task.

The objects a worker returns equal those computed here; a finished run shown by a page has them without any
computation in the server; a run restored or imported gets them when first shown; the instruments of a run
nobody holds any more stop, and so does the final ``analyse`` task."""

import dataclasses
import threading
import time

import numpy as np
import pytest
from tiny import SMALL, TINY, wait_for

import flowviz
from flowviz.serve.runs.registry import Registry, RunStatus
from flowviz.serve.settings import Settings
from flowviz.serve.work.executor import make_executor
from flowviz.training import prepared
from flowviz.training.analysis import analyse

CFG = SMALL.replace(seed=23, time_mode="continuous", n_steps=4)  # continuous: the volume and adjoint refine L


def assert_same(a, b, path="obj"):
    """Two instruments' data objects equal field by field: arrays to float32 precision, the rest exactly."""
    if dataclasses.is_dataclass(a):
        assert type(a) is type(b), path
        for f in dataclasses.fields(a):
            assert_same(getattr(a, f.name), getattr(b, f.name), f"{path}.{f.name}")
    elif isinstance(a, (tuple, list)):
        assert isinstance(b, (tuple, list)) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.shape == b.shape, path
        np.testing.assert_allclose(b, a, rtol=2e-5, atol=1e-6, err_msg=path)
    else:
        assert a == pytest.approx(b, rel=1e-6) if isinstance(a, float) else a == b, path


@pytest.fixture(scope="module")
def trained():
    r = flowviz.train(CFG)
    return r, analyse(r.model, r.data, history=r.history)


def test_the_instruments_a_worker_makes_are_the_ones_made_here(trained, each_executor):
    r, v = trained
    here, errors = prepared.prepare(r.model, r.data, v.extent)
    assert set(here) == set(prepared.PREPARED) and not errors
    there, errs = each_executor.instruments(r.model, r.data, extent=v.extent)
    part, _ = each_executor.instruments(r.model, r.data, extent=v.extent, names=["grid"])
    assert not errs and set(there) == set(here) and set(part) == {"grid"}
    for k in here:
        assert_same(here[k], there[k], k)


def test_an_instrument_that_does_not_fit_the_run_comes_back_as_its_message():
    r = flowviz.train(TINY.replace(scheme="plain", lift=1, seed=5))
    ex = make_executor(Settings(), size=1, name="thread")
    try:
        got, errors = ex.instruments(r.model, r.data, extent=r.data.extent())
    finally:
        ex.shutdown()
    assert set(got) == {"volume", "adjoint"}  # no grid solver in R^3; the plain net has no stability region
    assert "plain" in errors["stability"] and "stability" in errors["stability"]


def test_restored_and_imported_runs_get_their_instruments_when_first_shown(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWVIZ_CACHE_DIR", str(tmp_path))
    cfg = TINY.replace(seed=31)
    first = Registry(max_workers=1, mode="thread")
    run = first.start(cfg)
    run.join(60)
    assert run.instruments_made() and run._prep is None  # made by the worker that trained it: no task of their own
    first.shutdown()
    reg = Registry(max_workers=1, mode="thread")
    try:
        again = reg.start(cfg)
        assert again.from_cache and not again.instruments_made()
        assert reg.get(again.key) is again
        assert wait_for(again.instruments_made, 60)
        r = flowviz.train(cfg)
        imported = reg.adopt(r.model, r.data, key_suffix="i15")
        assert reg.get(imported.key) is imported and wait_for(imported.instruments_made, 60)
        for run_ in (again, imported):
            v = run_.views()
            assert_same(prepared.PREPARED["stability"](r.model, r.data, v.extent), run_.instrument("stability"))
    finally:
        reg.shutdown()


def test_the_instruments_of_a_run_nobody_holds_stop_and_are_made_when_it_is_shown_again(monkeypatch):
    """In thread mode the worker runs in this process: the run's first instrument (made by the worker that
    trained it) waits here until the session that held the run has moved on; the worker then stops without
    making the others, and is free; shown again, an instruments task makes the rest."""
    entered, release = threading.Event(), threading.Event()
    real = prepared.PREPARED["stability"]

    def slow(m, d, e):
        entered.set()
        release.wait(30)
        return real(m, d, e)

    monkeypatch.setitem(prepared.PREPARED, "stability", slow)
    reg = Registry(max_workers=1, mode="thread")
    try:
        run = reg.start(TINY.replace(seed=51))
        reg.claim("a", {run.key})
        assert entered.wait(60) and run.preparing() and run.status == RunStatus.DONE
        reg.claim("a", set())  # the session moved on and nobody else holds it
        assert run.unwatched.is_set()
        time.sleep(0.3)  # the executor passes the cancel on to the task within 0.05 s
        release.set()
        assert wait_for(lambda: not run._thread.is_alive(), 30) and reg.executor.busy() == 0
        assert run.instrument("stability") is not None and run.instrument("volume") is None  # ended after one
        assert run.status == RunStatus.DONE and not run.instruments_made()
        reg.get(run.key)  # shown again: the rest is made
        assert wait_for(run.instruments_made, 60) and run.instrument("volume") is not None
    finally:
        release.set()
        reg.shutdown()


def test_each_instrument_reaches_the_run_as_soon_as_the_worker_has_made_it(monkeypatch):
    """The adjoint (made last) waits here: the others are on the run meanwhile, while the task is still on."""
    release = threading.Event()
    real = prepared.PREPARED["adjoint"]
    monkeypatch.setitem(prepared.PREPARED, "adjoint", lambda m, d, e: release.wait(30) and real(m, d, e))
    reg = Registry(max_workers=1, mode="thread")
    try:
        run = reg.start(TINY.replace(seed=71))
        assert wait_for(lambda: run.instrument("grid") is not None, 60)
        assert run.preparing() and run.instrument("stability") is not None and run.instrument("volume") is not None
        assert run.instrument("adjoint") is None and not run.instruments_made()
        release.set()
        assert wait_for(run.instruments_made, 30) and run.instrument("adjoint") is not None
    finally:
        release.set()
        reg.shutdown()


def test_a_failed_instruments_task_keeps_what_it_made_and_is_not_started_again(monkeypatch):
    def broken(m, d, e):
        raise RuntimeError("a bug in the volume")

    monkeypatch.setitem(prepared.PREPARED, "volume", broken)
    reg = Registry(max_workers=1, mode="thread")
    try:
        run = reg.start(TINY.replace(seed=81))
        run.join(60)
        assert run.status == RunStatus.DONE and run.error is None  # the run stays trained
        assert run.instrument("stability") is not None and run.instrument("volume") is None
        reg.get(run.key)  # shown: no task tries again (the page computes what is missing itself)
        assert run._prep is None and not run.preparing()
    finally:
        reg.shutdown()


def test_instruments_never_make_a_training_wait_they_take_a_free_worker_only(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWVIZ_CACHE_DIR", str(tmp_path))
    cfg = TINY.replace(seed=91)
    first = Registry(max_workers=1, mode="thread")
    first.start(cfg).join(60)
    first.shutdown()
    reg = Registry(max_workers=1, mode="thread")
    release = threading.Event()
    try:
        run = reg.start(cfg)  # restored from the disk cache: its instruments need a task of their own
        assert run.from_cache and not run.views(final=True).live
        job = reg.job("holds-the-worker", lambda progress, cancel: release.wait(30) and "ok")
        assert wait_for(lambda: job.status == RunStatus.TRAINING, 10)
        reg.get(run.key)  # shown while the one worker is busy: no task waits in the queue for it
        assert wait_for(lambda: not run._prep.is_alive(), 10) and not run.preparing()
        assert not run.instruments_made() and reg.executor.busy() == 1
        release.set()
        job.join(30)
        reg.get(run.key)  # shown again with the worker free
        assert wait_for(run.instruments_made, 60)
    finally:
        release.set()
        reg.shutdown()


def test_the_final_pictures_of_a_run_nobody_watches_are_not_made_until_it_is_shown():
    reg = Registry(max_workers=1, mode="thread", unwatched_s=0.5)
    try:
        run = reg.start(TINY.replace(seed=61, train_steps=20000, n_samples=1000))
        assert wait_for(lambda: run.finished, 30) and run.status == RunStatus.CANCELLED
        run.join(30)
        assert run.unwatched.is_set() and run.notice is None  # the final analyse task was not run for nobody
        assert run._views is None or run._views.live
        reg.unwatched_s = 3600.0  # from now on the test watches it
        assert reg.get(run.key) is run and not run.unwatched.is_set()  # shown: watched again
        v = run.views()
        assert v is not None and not v.live
    finally:
        reg.shutdown()


def test_a_trained_run_gets_its_final_views_and_instruments_from_the_worker_that_trained_it(monkeypatch):
    """One trip: the weights never go back to a worker for the final views or the instruments, and they are
    the numbers made here from the run's weights."""
    from flowviz.serve.work.executor import Executor

    def refuse(*args, **kw):
        raise AssertionError("the run's weights went back to a worker")

    monkeypatch.setattr(Executor, "analyse", refuse)
    monkeypatch.setattr(Executor, "instruments", refuse)
    reg = Registry(max_workers=1, mode="thread")
    try:
        run = reg.start(TINY.replace(seed=33))
        run.join(60)
        v = run.views()
        assert run.status == RunStatus.DONE and run.notice is None and run._prep is None
        assert v is not None and not v.live and run.instruments_made()
        model = run.model()
        assert model is run.model()  # rebuilt once per state
        here = analyse(model, run.data, history=run.history)
        np.testing.assert_array_equal(v.output_points, here.output_points)
        np.testing.assert_array_equal(v.predicted, here.predicted)
        assert_same(prepared.PREPARED["stability"](model, run.data, v.extent), run.instrument("stability"))
    finally:
        reg.shutdown()


@pytest.mark.parametrize("how", ["between stages", "by a limit"])
def test_final_views_stopped_at_the_end_of_training_are_made_again_not_reported_failed(monkeypatch, caplog, how):
    """A cancel that reaches the worker while it makes a run's final views (a Stop at the last step, a page
    left) is not a failure: no error logged, no "could not be made" notice; the views are made again."""
    import flowviz.training.analysis as analysis
    from flowviz.core.solvers import Cancelled

    real, calls = analysis.analyse, []

    def once_cancelled(*args, **kw):
        if not kw.get("live"):
            calls.append(1)
            if len(calls) == 1:
                if how == "by a limit":
                    raise Cancelled("cancelled")
                return None  # analyse's own answer when its cancel is seen between two stages
        return real(*args, **kw)

    monkeypatch.setattr(analysis, "analyse", once_cancelled)
    reg = Registry(max_workers=1, mode="thread")
    try:
        run = reg.start(TINY.replace(seed=34 if how == "between stages" else 35))
        run.join(60)
        v = run.views()
        assert run.status == RunStatus.DONE and v is not None and not v.live
        assert len(calls) == 2 and run.notice is None
        assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text
    finally:
        reg.shutdown()
