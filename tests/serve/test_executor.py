"""The executor interface: the wire protocol, the two local executors, the one concurrency limit, run states."""

import os
import signal
import threading
import time

import numpy as np
import pytest
import torch
from tiny import TINY, wait_for

import flowviz
from flowviz.core.data import load_csv, make_dataset
from flowviz.serve.runs.registry import RunStatus
from flowviz.serve.settings import Settings
from flowviz.serve.work import protocol
from flowviz.serve.work.executor import make_executor
from flowviz.serve.work.inprocess import ThreadExecutor
from flowviz.serve.work.worker import handle
from flowviz.training.train import train_iter


def test_a_request_and_a_snapshot_cross_the_wire_exactly():
    ds = make_dataset(TINY)
    head, arrays = protocol.decode(protocol.request("run", ds, config=TINY, log_every=5))
    assert head["task"] == "run" and flowviz.Config.from_dict(head["config"]) == TINY
    back = protocol.dataset_from(head, arrays)
    for a, b in ((ds.x_train, back.x_train), (ds.y_train, back.y_train), (ds.x_test, back.x_test)):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    snap = list(train_iter(TINY, data=ds, log_every=10, keep_state=True))[-1]
    got = protocol.snapshot_from(*protocol.decode(protocol.snapshot_message(snap)))
    assert {k: getattr(got, k) for k in protocol.SNAPSHOT_FIELDS} == {
        k: getattr(snap, k) for k in protocol.SNAPSHOT_FIELDS
    }
    assert all(torch.equal(got.state[k], v) for k, v in snap.state.items())


def test_an_unknown_task_is_one_fatal_reply_naming_the_valid_ones():
    (reply,) = list(handle(protocol.encode({"task": "rm -rf"}), threading.Event()))
    head, _ = protocol.decode(reply)
    assert head["kind"] == "fatal" and "'rm -rf'" in head["fatal"] and "run" in head["fatal"]


def test_a_worker_whose_pool_closed_its_end_ends_quietly():
    """A reply the pool no longer reads (it shut down, or cut the task short) ends the worker with status 0,
    not a BrokenPipeError traceback in the server's log."""
    import multiprocessing as mp

    from flowviz.serve.work.worker import main

    def worker(here, there):  # the forked child holds a copy of both ends: it keeps only its own
        here.close()
        main(there, 1)

    here, there = mp.Pipe()
    here.send_bytes(protocol.encode({"task": "nope"}))  # one fatal reply will come back ...
    child = mp.get_context("fork").Process(target=worker, args=(here, there))
    child.start()
    there.close()
    here.close()  # ... to nobody
    child.join(30)
    if child.is_alive():  # (a regression: never left waiting at the test process's exit)
        child.kill()
    assert child.exitcode == 0


def test_a_worker_process_ignores_ctrl_c_from_its_start_and_a_pool_shut_down_starts_none():
    """Ctrl-C reaches the workers with the server (one process group); the server ends them itself. A worker
    ignores SIGINT from its first instruction on (the forkserver starts it so), and is still there after one.
    After shutdown, asking for a worker is a WorkerDied naming the reason, not a new process."""
    from flowviz.serve.work.pool import ProcessPool
    from flowviz.serve.work.protocol import WorkerDied

    pool = ProcessPool(1)
    try:
        w = pool.lend()
        with open(f"/proc/{w.pid()}/status") as fh:  # read at once: the worker may not have run a line yet
            ignored = int(next(line for line in fh if line.startswith("SigIgn:")).split()[1], 16)
        assert ignored & (1 << (signal.SIGINT - 1)), hex(ignored)
        os.kill(w.pid(), signal.SIGINT)
        time.sleep(0.3)
        assert w.alive()
        pool.reclaim(w, healthy=True)
    finally:
        pool.shutdown()
    with pytest.raises(WorkerDied, match="shut down"):
        pool.lend()
    assert pool.pids() == [] and pool.busy() == 0


def test_every_executor_trains_the_same_weights_as_train_iter(each_executor):
    ds = make_dataset(TINY)
    alone = list(train_iter(TINY, data=ds, log_every=10, keep_state=True))
    began = []
    snaps = list(each_executor.train(TINY, ds, log_every=10, started=lambda: began.append(1)))
    assert began == [1] and [s.step for s in snaps] == [s.step for s in alone] and snaps[-1].done
    for k, v in alone[-1].state.items():
        torch.testing.assert_close(snaps[-1].state[k], v, rtol=1e-6, atol=1e-7, msg=k)  # same seed, same numbers


def test_the_table_chooses_the_executor_and_falls_back_to_the_pool():
    assert isinstance(make_executor(Settings(worker_mode="thread"), size=1), ThreadExecutor)
    assert isinstance(make_executor(Settings(worker_mode="process", executor="thread"), size=1), ThreadExecutor)
    pool = make_executor(Settings(executor="no-such-thing"), size=1)
    assert type(pool).__name__ == "ProcessPool"
    pool.shutdown()


def test_a_cancelled_run_on_a_thread_executor_stops_between_steps():
    ex = ThreadExecutor(1)
    stop = threading.Event()
    seen = []
    for s in ex.train(TINY.replace(train_steps=20000, n_samples=400), make_dataset(TINY), log_every=5, cancel=stop):
        seen.append(s)
        stop.set()
    assert seen[-1].cancelled and seen[-1].done and seen[-1].step < 20000 and ex.busy() == 0


def test_the_executor_is_the_one_limit_for_runs_and_jobs(registry):
    """A job computing in the server holds a worker: with one worker, a run waits for it (and no gate elsewhere)."""
    reg = registry("thread", 1)
    release = threading.Event()
    try:
        job = reg.job("blocking", lambda progress, cancel: release.wait(30) and "ok")
        assert wait_for(lambda: job.status == RunStatus.TRAINING, 10)
        run = reg.start(TINY.replace(seed=901))
        time.sleep(0.5)
        assert run.status == RunStatus.QUEUED and reg.executor.busy() == 1 and reg.queued_before(run) == 0
        release.set()
        run.join(60)
        assert job.result == "ok" and run.status == RunStatus.DONE and reg.executor.busy() == 0
    finally:
        release.set()
        reg.shutdown()


def test_run_states_answer_the_questions_asked_of_them():
    finished = {s for s in RunStatus if s.finished}
    assert finished == {RunStatus.DONE, RunStatus.CANCELLED, RunStatus.ERROR, RunStatus.PAUSED}
    assert {s for s in RunStatus if s.reusable} == {
        RunStatus.QUEUED,
        RunStatus.TRAINING,
        RunStatus.DONE,
        RunStatus.PAUSED,
    }
    assert RunStatus("done") == "done" and f"{RunStatus.TRAINING}" == "training"  # the page shows the text


def _csv(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(60, 2))
    return "x1,x2,label\n" + "\n".join(f"{a:.6f},{b:.6f},{int(a > 0)}" for a, b in x)


def test_two_sessions_with_same_length_csvs_never_share_a_sweep_or_coarse_to_fine_job(registry):
    from flowviz.ui.views.sweep import job_key

    cfg = flowviz.Config(dataset="csv", n_steps=4, width=8, train_steps=20)
    a, b = (make_dataset(cfg, load_csv(_csv(s))) for s in (1, 2))
    assert len(a.x) == len(b.x) and not np.array_equal(a.x, b.x)
    for kind, parts in (("sweep", ("n_steps", [1, 2])), ("c2f", (4, 8))):
        assert job_key(kind, cfg, a, *parts) != job_key(kind, cfg, b, *parts)
        again = make_dataset(cfg, load_csv(_csv(1)))
        assert job_key(kind, cfg, a, *parts) == job_key(kind, cfg, again, *parts)  # one upload, shared
    reg = registry("thread", 1)
    jobs = [reg.job(job_key("sweep", cfg, d, "n_steps", [1]), lambda p, c, d=d: float(d.x.sum())) for d in (a, b)]
    for j in jobs:
        j.join(30)
    assert jobs[0] is not jobs[1] and jobs[0].result == pytest.approx(float(a.x.sum()))
    assert jobs[1].result == pytest.approx(float(b.x.sum()))  # each session sees its own points' result


def test_the_final_pictures_made_by_a_worker_are_the_ones_made_here(each_executor):
    from flowviz.training.analysis import analyse
    from flowviz.training.train import train

    r = train(TINY.replace(seed=31))
    here = analyse(r.model, r.data, history=r.history)
    there, metrics = each_executor.analyse(r.model, r.data, history=r.history, metrics=True)
    assert type(there) is type(here) and there.config == here.config and not there.live
    assert np.array_equal(there.predicted, here.predicted) and there.history == here.history
    np.testing.assert_allclose(there.surfaces.u, here.surfaces.u, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(there.diagnostics.residual_ratio, here.diagnostics.residual_ratio, rtol=1e-5)
    assert metrics["train_accuracy"] == pytest.approx(r.metrics["train_accuracy"])


def test_a_message_rebuilds_only_the_result_types_it_knows():
    for name in ("Popen", "subprocess:Popen", "flowviz.training.train:evaluate", "flowviz.training.x:__class__"):
        with pytest.raises(KeyError):
            protocol.unpack({"@dc": name, "f": {"args": "sh"}}, {})


def test_a_ray_lease_given_back_after_its_process_left_the_cluster_calls_no_ray():
    """After ray.shutdown() any Ray call would start a new local cluster (Ray's auto-init): a job thread that
    gave its lease back late once did, in the test process, which exited a minute later with that cluster."""
    from types import SimpleNamespace

    from flowviz.serve.work.ray_executor import _RayLease

    called = []

    class LeftRay:  # the ray module of a process that called ray.shutdown()
        def is_initialized(self):
            return False

        def __getattr__(self, name):
            called.append(name)
            raise AssertionError(f"ray.{name} called after ray.shutdown()")

    remote = SimpleNamespace(remote=lambda *a: called.append("actor"))
    lease = _RayLease(SimpleNamespace(ray=LeftRay(), flags=SimpleNamespace(cancel=remote, forget=remote, pid=remote)))
    lease._gen = object()  # a task was sent
    lease.cancel()
    assert lease.pid() is None
    lease.close(unfinished=True)
    assert called == []


@pytest.mark.parametrize("cut_in", ["wait", "get"])  # seen in get (the reply ready, then read)
def test_a_ray_lease_waiting_when_its_process_leaves_the_cluster_reports_a_lost_worker(cut_in):
    """Ray ends a wait cut short by ray.shutdown() in another thread with SystemExit(0) (seen in the suite: a
    run's final pictures were still coming when the test's cluster was shut down); the run thread gets the lost
    worker the executor reports for any ended connection, not an exception that kills the thread."""
    from types import SimpleNamespace

    from flowviz.serve.work.protocol import WorkerDied
    from flowviz.serve.work.ray_executor import _RayLease

    def cut(*args, **kw):
        raise SystemExit(0)  # what ray._raylet raises in the waiting thread

    ready = lambda refs, timeout: (refs, [])  # noqa: E731
    ray = SimpleNamespace(
        is_initialized=lambda: True, wait=cut if cut_in == "wait" else ready, get=cut if cut_in == "get" else None
    )
    lease = _RayLease(SimpleNamespace(ray=ray))
    lease._gen = iter([object()])
    with pytest.raises(WorkerDied, match="connection to the Ray cluster was closed"):
        lease.receive(0.1)


class _SetAfter:
    """A cancel flag that reads set from its (n+1)-th look on."""

    def __init__(self, n: int):
        self.n = n

    def is_set(self) -> bool:
        self.n -= 1
        return self.n < 0


def test_an_analysis_stops_between_its_stages_once_cancelled():
    from flowviz.training.analysis import analyse
    from flowviz.training.train import train

    r = train(TINY.replace(seed=32))
    assert analyse(r.model, r.data, cancel=_SetAfter(2)) is None  # stopped after its second stage
    never, plain = analyse(r.model, r.data, cancel=_SetAfter(10**6)), analyse(r.model, r.data)
    assert np.array_equal(never.predicted, plain.predicted) and np.array_equal(never.surfaces.u, plain.surfaces.u)


@pytest.mark.parametrize("name", ["process", "thread"])
def test_final_pictures_nobody_waits_for_end_within_a_stage_or_are_cut_short(executor, name):
    """A worker's final pictures of a run left unwatched: the analysis stops at its next stage (threads) or its
    process is ended and replaced after CANCEL_GRACE_S; the executor then serves the next task."""
    from flowviz.serve.work.executor import CANCEL_GRACE_S
    from flowviz.serve.work.protocol import TaskFailed
    from flowviz.training.train import train

    # its full analysis takes 4-6 s on this 2-core machine, quiet (L = 64 with rk4: the reference, 33 frames)
    heavy = train(flowviz.Config(n_samples=1000, n_steps=64, scheme="rk4", train_steps=5, seed=3))
    tiny = train(TINY.replace(seed=33))
    ex = executor(name)
    ex.analyse(tiny.model, tiny.data)  # the worker is started (a process takes seconds to start)
    cancel = threading.Event()
    timer = threading.Timer(0.3, cancel.set)
    timer.start()
    t0 = time.perf_counter()
    with pytest.raises(TaskFailed, match="cancelled"):
        ex.analyse(heavy.model, heavy.data, history=heavy.history, cancel=cancel)
    assert time.perf_counter() - t0 < 0.3 + CANCEL_GRACE_S + 1.5
    views, _ = ex.analyse(tiny.model, tiny.data)  # served next, by a new process or the same thread
    assert views.config == tiny.model.config and not views.live
