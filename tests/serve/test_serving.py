"""Serving a lecture hall safely: the budget, the worker memory cap, one job per session, two lanes, the queue.

The cost model (flowviz.core.cost.estimate) is stood in for by a table here: these tests are about what the
server does with an estimate, not about the estimate.
"""

import threading
import time
from dataclasses import dataclass

import pytest
from tiny import TINY, wait_for

import flowviz
from flowviz.core.data import make_dataset
from flowviz.serve import budget
from flowviz.serve.budget import OverBudget
from flowviz.serve.runs.registry import RunStatus
from flowviz.serve.settings import Settings
from flowviz.serve.work.inprocess import ThreadExecutor

HEAVY = flowviz.Config(n_samples=20000, n_steps=256, width=256, train_steps=20000)  # case 7's hard-limit link


@dataclass(frozen=True)
class _Cost:
    seconds: float
    peak_mb: float
    drivers: tuple

    def describe(self):
        return f"about {self.seconds:.0f} s and {self.peak_mb:.0f} MB, driven by {', '.join(self.drivers)}"


def _estimate(config, n_train=None, live=False):
    """Stand-in: hard-limit keys cost hours and gigabytes; train_steps scale the rest."""
    heavy = config.n_steps >= 256 and config.width >= 256
    return _Cost(
        7200.0 if heavy else config.train_steps / 100,
        14000.0 if heavy else 300.0,
        ("n_steps", "width", "n_samples") if heavy else ("train_steps",),
    )


@pytest.fixture
def costed(monkeypatch):
    monkeypatch.setattr(budget, "estimate", _estimate)


def test_a_run_over_the_budget_is_refused_before_it_starts_naming_its_keys(registry, costed):
    reg = registry("thread", 1, settings=Settings(max_run_seconds=600, max_run_mb=4096))
    with pytest.raises(OverBudget) as e:
        reg.start(HEAVY.replace(n_samples=400), make_dataset(TINY))
    msg = str(e.value)
    assert "not started" in msg and "7200 s" in msg and "n_steps, width or n_samples" in msg
    assert "10 min of training" in msg and "4.0 GB of memory" in msg and reg.started == 0
    # a light run goes on, with its estimate (a seed of its own: a run of the disk cache has no estimate)
    assert reg.start(TINY.replace(seed=4242)).cost.seconds == pytest.approx(0.3)
    with pytest.raises(OverBudget, match="This sweep was not started"):  # members add up
        reg.check_budget(
            [TINY.replace(train_steps=20000, n_steps=L) for L in range(1, 5)], make_dataset(TINY), what="This sweep"
        )


def test_a_worker_over_its_memory_cap_ends_the_run_as_an_error_and_the_pool_goes_on(registry):
    reg = registry("process", 1, settings=Settings(worker_mb=150, max_run_seconds=3600))  # (its cost is not the point)
    big = flowviz.Config(
        n_samples=4000, n_steps=64, width=256, train_steps=5, batch_size=0, field="mlp", mlp_depth=4, seed=5
    )
    run = reg.start(big)
    run.join(120)
    assert run.status == RunStatus.ERROR and "memory" in run.error and "150 MB" in run.error
    assert "last state is kept" in run.error and reg.executor.replaced == 0  # the worker itself lived
    small = reg.start(TINY.replace(seed=6))
    small.join(120)
    assert small.status == RunStatus.DONE


def test_a_session_holds_one_training_job_and_starting_another_replaces_its_own(registry):
    reg = registry("thread", 2)
    first = reg.start(TINY.replace(seed=11, train_steps=20000, n_samples=400))
    shared = reg.start(TINY.replace(seed=12, train_steps=20000, n_samples=400))
    reg.claim("a", {first.key})
    reg.claim("b", {shared.key})
    reg.claim("a", {shared.key})  # session a moves on: its first run goes, the one b watches stays
    assert wait_for(lambda: first.finished, 30) and first.status == RunStatus.CANCELLED
    reg.claim("a", set())
    time.sleep(0.3)
    assert not shared.finished and reg.replaced == 1  # b still holds it
    shared.stop()


def test_long_runs_never_take_the_last_worker():
    ex = ThreadExecutor(2)
    a = ex.take(long=True)
    assert a is not None and ex.take(long=True, wait=False) is None  # a second long one waits...
    b = ex.take(wait=False)
    assert b is not None  # ...while a short one gets the worker kept for it
    ex.give(a, True)
    c = ex.take(long=True, wait=False)
    assert c is not None
    ex.give(b, True)
    ex.give(c, True)
    assert ex.busy() == 0


def test_the_queue_gives_each_waiting_run_its_place_and_an_estimated_wait(registry, costed):
    reg = registry("thread", 1)
    hold = threading.Event()
    try:
        blocker = reg.job("hold", lambda p, c: hold.wait(30))  # the one worker is busy
        assert wait_for(lambda: blocker.status == RunStatus.TRAINING)
        runs = [reg.start(TINY.replace(seed=20 + i, train_steps=1000 * (i + 1))) for i in range(3)]
        places = [reg.queue_place(r) for r in runs]
        assert [p for p, _ in places] == [1, 2, 3]
        # the job's time left is unknown, so no wait is promised; without it, waits are the estimates ahead
        assert all(w is None for _, w in places)
        hold.set()
        assert wait_for(lambda: runs[0].status != RunStatus.QUEUED)
        place, wait = reg.queue_place(runs[2])
        assert place <= 2 and (wait is None or wait >= 0)
    finally:
        hold.set()
        reg.shutdown()


CASE_8 = flowviz.Config(
    dataset="blobs",
    n_samples=20000,
    n_classes=8,
    noise=2,
    test_fraction=0.9,
    field="mlp",
    mlp_depth=6,
    width=256,
    lift=8,
    knots=64,
    time_mode="continuous",
    horizon=100,
    n_steps=256,
    scheme="rk4",
    viscosity=1,
    mc_samples=256,
    train_steps=20000,
    batch_size=2000,
    lr=10,
    smoothness=100,
    kinetic=100,
    gamma=10,
    weight_decay=1,
    seed=999999,
)


def test_case_8_the_14_gb_link_is_refused_before_any_worker_starts(registry):  # the real cost model
    reg = registry("process", 1, prestart=False, settings=Settings())
    with pytest.raises(OverBudget, match="n_steps"):
        reg.start(CASE_8, make_dataset(TINY))
    assert reg.executor.busy() + reg.executor.idle() == 0 and reg.started == 0


def test_case_7_two_long_runs_leave_a_worker_for_a_third_visitors_light_run(registry, costed):
    reg = registry("thread", 2)
    long_runs = [reg.start(TINY.replace(seed=s, train_steps=20000, n_samples=400)) for s in (11, 12)]
    assert all(r.long for r in long_runs)  # 200 s by estimate, over long_run_s
    assert wait_for(lambda: any(r.status == RunStatus.TRAINING for r in long_runs))
    light = reg.start(TINY.replace(seed=13))
    assert not light.long
    light.join(60)
    assert light.status == RunStatus.DONE
    assert sum(r.status == RunStatus.TRAINING for r in long_runs) == 1  # the other long one still waits
    assert [reg.queue_place(r)[0] for r in long_runs if r.status == RunStatus.QUEUED] == [1]


def test_case_6_imports_and_final_pictures_are_analysed_in_a_worker_process(registry, monkeypatch):
    """The server process computes no full pictures: here its analyse refuses, and the views still come."""
    import flowviz.serve.runs.run as run_mod
    from flowviz.training.train import train

    def not_here(*a, **kw):
        if not kw.get("live"):
            raise AssertionError("full views computed in the server process")
        return real(*a, **kw)

    real = run_mod.analyse
    monkeypatch.setattr(run_mod, "analyse", not_here)
    reg = registry("process", 1)
    r = train(TINY.replace(seed=41))
    imported = reg.adopt(r.model, r.data, key_suffix="case6")
    v = imported.views()
    assert v is not None and not v.live and imported.latest.train_accuracy == pytest.approx(r.metrics["train_accuracy"])
    run = reg.start(TINY.replace(seed=42))
    run.join(120)
    assert run.status == RunStatus.DONE and not run.views().live
