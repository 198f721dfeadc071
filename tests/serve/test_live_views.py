"""The live views of a training run are made by its training worker from the weights it holds, never in the
server: at most every LIVE_EVERY_S and never more than LIVE_SHARE of the worker's time, none for a run about
to end; their cost is in the run's estimate."""

from dataclasses import replace

import numpy as np
import pytest
from tiny import SMALL, TINY, wait_for

from flowviz.core import cost
from flowviz.core.data import make_dataset
from flowviz.serve.work import train as task
from flowviz.serve.work.protocol import decode, unpack
from flowviz.serve.work.weights import state_model
from flowviz.training.analysis import analyse
from flowviz.training.train import train_iter


class _Never:
    def is_set(self):
        return False


@pytest.fixture(scope="module")
def snaps():
    """Every snapshot (with its weights) of a small run."""
    return list(train_iter(SMALL, log_every=10, keep_state=True)), make_dataset(SMALL)


def _clock(monkeypatch, t):
    monkeypatch.setattr(task.time, "monotonic", lambda: t[0])


def test_a_live_view_is_the_library_s_light_view_of_the_snapshot_s_weights(snaps, monkeypatch):
    s, ds = snaps
    t = [100.0]
    _clock(monkeypatch, t)
    live = task._Live(SMALL, ds, 1.0, _Never())
    slow = replace(s[1], steps_per_second=1.0)  # 50 steps left at 1 step/s
    (raw,) = list(live.after(slow, [r.record() for r in s[:2]]))
    head, arrays = decode(raw)
    assert head["kind"] == "live" and head["step"] == s[1].step
    got = unpack(head["views"], arrays)
    here = analyse(state_model(SMALL, ds.n_classes, s[1].state), ds, live=True)
    assert got.live and here.live
    np.testing.assert_array_equal(got.surfaces.u, here.surfaces.u)
    np.testing.assert_array_equal(got.characteristics.x, here.characteristics.x)


def test_live_views_come_at_most_every_period_and_none_for_the_last_snapshot(snaps, monkeypatch):
    s, ds = snaps
    t = [100.0]
    _clock(monkeypatch, t)
    monkeypatch.setattr("flowviz.training.analysis.analyse", lambda *a, **k: t.__setitem__(0, t[0] + 0.5) or "v")
    monkeypatch.setattr(task, "pack", lambda v, out: "v")
    slow = [replace(x, steps_per_second=1.0) for x in s]
    live = task._Live(SMALL, ds, 1.0, _Never())
    assert len(list(live.after(slow[1], []))) == 1  # a view of 0.5 s: the next no sooner than 0.5 / LIVE_SHARE
    assert live.next == pytest.approx(100.0 + cost.live_period(0.5)) and cost.live_period(0.5) == 2.5
    t[0] = live.next - 0.01
    assert list(live.after(slow[2], [])) == []
    t[0] = live.next
    assert len(list(live.after(slow[2], []))) == 1
    t[0] += 100
    assert slow[-1].done and list(live.after(slow[-1], [])) == []  # its full views come next
    assert list(task._Live(SMALL, ds, None, _Never()).after(slow[1], [])) == []  # not asked: none


def test_no_first_live_view_for_a_run_about_to_end(snaps, monkeypatch):
    s, ds = snaps
    _clock(monkeypatch, [100.0])
    monkeypatch.setattr(task, "pack", lambda v, out: "v")
    near = replace(s[-2], steps_per_second=1000.0)  # 10 steps left at 1000 steps/s
    assert (near.total_steps - near.step) / near.steps_per_second < cost.FIRST_LIVE_ETA_S
    assert list(task._Live(SMALL, ds, 1.0, _Never()).after(near, [])) == []


@pytest.mark.slow
def test_a_training_run_s_live_views_and_kept_steps_come_from_workers_never_the_server(registry, monkeypatch):
    """A process registry: the server's own analyse fails the test if called; the run's live views arrive, its
    kept steps' views are made by the view worker while it trains, its final views are full."""
    import flowviz.serve.runs.run as run_module

    monkeypatch.setattr(run_module, "analyse", lambda *a, **k: pytest.fail("analysed in the server"))
    reg = registry("process", 1)
    run = reg.start(TINY.replace(n_samples=400, train_steps=2500, seed=77))
    live = []
    assert wait_for(lambda: run.finished or (run.views() is not None and live.append(run.views()) is None), 120)
    assert live and live[0].live, run.status
    assert wait_for(lambda: len(run.checkpoints) > 2 or run.finished, 60)
    if not run.finished:
        at = run.at(run.checkpoints[1])
        v = at.views() if at is not None else None
        assert at is None or (v is not None and v.live and at.notice is None)
    assert wait_for(lambda: run.finished, 120) and run.status == "done", run.error
    assert wait_for(lambda: run.views() is not None and not run.views().live, 60)


def test_the_estimate_of_a_watched_run_counts_its_live_views():
    for c in (SMALL.replace(train_steps=3000), SMALL.replace(train_steps=3000, n_steps=32, width=64), TINY):
        plain, watched = cost.estimate(c), cost.estimate(c, live=True)
        training = watched.part("training") + watched.part("snapshots")
        assert plain.part("live") == 0.0
        assert watched.seconds == pytest.approx(plain.seconds + watched.part("live"))
        share = watched.part("live view") / cost.live_period(watched.part("live view"))
        if training > cost.FIRST_LIVE_ETA_S:
            assert watched.part("live") == pytest.approx(training * share / (1 - share))
            assert watched.part("live") <= training * cost.LIVE_SHARE / (1 - cost.LIVE_SHARE) + 1e-12
        else:
            assert watched.part("live") == 0.0
