"""The page's "steps / s" and bench/train_speed.py's end-to-end figure are one quantity (issue 14): optimiser
steps per second of wall time of the whole run, snapshots (evaluation, weights, publishing) included.

The page shows ``Snapshot.steps_per_second`` of the run's latest snapshot; the benchmark times
``flowviz.train(config)`` from outside and prints the steps/s its result reports beside it.
"""

import time

import flowviz
from flowviz.training import train as train_mod

CFG = flowviz.preset("reference").replace(n_samples=200, n_steps=4, train_steps=40)


def test_steps_per_second_is_steps_over_the_runs_wall_time_snapshots_included(monkeypatch):
    pause, calls = 0.02, []
    real = train_mod.evaluate_both

    def slow_evaluate(*a, **k):  # a snapshot that takes a known minimum time
        calls.append(1)
        time.sleep(pause)
        return real(*a, **k)

    monkeypatch.setattr(train_mod, "evaluate_both", slow_evaluate)
    t = time.perf_counter()
    r = flowviz.train(CFG, log_every=10)
    wall = time.perf_counter() - t
    m = r.metrics
    assert m["steps"] == CFG.train_steps and len(calls) == len(r.history)  # one pass per snapshot
    assert abs(m["steps_per_second"] * m["elapsed_s"] - CFG.train_steps) < 1e-6 * CFG.train_steps
    assert m["elapsed_s"] >= pause * len(calls)  # the snapshots' time is in the figure, as in the benchmark's
    assert m["elapsed_s"] <= wall  # and nothing outside the run is


def test_each_snapshot_reports_its_steps_over_the_time_since_the_run_began():
    snaps = list(flowviz.train_iter(CFG, log_every=10))
    assert [s.step for s in snaps] == [10, 20, 30, 40]
    els = [s.elapsed for s in snaps]
    assert els == sorted(els)
    for s in snaps:
        assert abs(s.steps_per_second - s.step / s.elapsed) < 1e-9 * s.steps_per_second
