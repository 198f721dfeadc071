"""A sweep entirely in the workers (issue 17): its training, its measurements (member diagnostics, depth transfer,
the order on one field, decision grids), coarse to fine and the side-by-side pictures run in worker tasks and give
the same numbers, bit for bit, as in one process; the server's thread measures nothing; a sweep nobody watches is
cancelled with its tasks."""

import json
import math
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch
from tiny import SWEEP, wait_for

import flowviz.training.refine as refine_mod
import flowviz.training.sweep as sweep_mod
from flowviz.core.data import make_dataset
from flowviz.serve.runs.registry import RunStatus
from flowviz.serve.work.inprocess import ThreadExecutor
from flowviz.training.batch import train_batched
from flowviz.training.sweep import Measures, measure_members, run_sweep, stepwise

BASE = SWEEP.replace(time_mode="continuous", knots=4, train_steps=30)  # a field between the blocks: an order too
LS = [2, 4, 8]


@pytest.fixture(scope="module")
def threads():
    t = ThreadExecutor(2)
    yield t
    t.shutdown()


def _same(a, b, path="") -> None:
    """a and b hold the same numbers bit for bit (NaN where the other has NaN), recursively."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        assert np.asarray(a).dtype == np.asarray(b).dtype and np.array_equal(a, b, equal_nan=True), path
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{path}[{i}]")
    elif hasattr(a, "__dataclass_fields__"):
        assert type(a) is type(b), path
        for k in a.__dataclass_fields__:
            _same(getattr(a, k), getattr(b, k), f"{path}.{k}")
    else:
        assert a == b, (path, a, b)


def _local(results, ds, **kw) -> Measures:
    out = {}
    list(stepwise(measure_members(results, ds, "n_steps", **kw), None, out))
    return out["value"]


@pytest.mark.slow
def test_a_sweeps_measurements_are_the_same_in_a_worker_thread_or_process(pool, threads):
    ds = make_dataset(BASE)
    results = train_batched([BASE.replace(n_steps=L) for L in LS], data=ds, log_every=10)
    here = _local(results, ds, seed=BASE.seed, transfer_to=[16])
    assert here.transfer.evaluated == [2, 4, 8, 16] and here.convergence is not None
    assert all(e > 0 for e in here.disc_error) and here.grids[2].shape == (3, 60, 60, 2)
    for ex in (threads, pool):
        seen = []
        got = ex.measure(
            "sweep",
            ds,
            models=[r.model for r in results],
            key="n_steps",
            seed=BASE.seed,
            transfer_to=[16],
            progress=lambda f, t: seen.append((f, t)),
        )
        _same(here, got)
        assert [t for _, t in seen][:1] == ["measuring member 1 of 3"] and seen == sorted(seen)


@pytest.mark.parametrize("key, values", [("n_steps", LS), ("scheme", ["euler", "midpoint"])])
def test_sweep_json_and_arrays_are_the_same_in_one_process_and_through_both_executors(pool, threads, key, values):
    """Batched (n_steps) and one member per worker (scheme): the whole sweep.json but the clocks, and the arrays."""

    def doc(s):  # (the notes say how the members trained: one after another here, side by side there)
        d = json.loads(s.to_json())
        d.pop("wall_s"), d.pop("notes")
        for m in d["members"]:
            m.pop("wall_s")
        return d

    base = BASE.replace(time_mode="per_step")  # (the order on one field is compared above)
    ref = run_sweep(base, key, values, transfer_to=[16])
    for ex in (threads, pool):
        s = run_sweep(base, key, values, transfer_to=[16], pool=ex)
        assert doc(s) == doc(ref)
        _same(s.decision_grids(), ref.decision_grids())
        for a, b in zip(s.members, ref.members):
            _same((a.residual_ratio, a.weight_drift, a.disc_error), (b.residual_ratio, b.weight_drift, b.disc_error))


@pytest.fixture
def not_in_the_server(monkeypatch):
    """Every measuring function of this process raises: whatever comes back was made by a worker process."""

    def refuse(*a, **kw):
        raise AssertionError("measured in the server process")

    for name in ("member_diagnostics", "depth_transfer", "one_field_order", "decision_grids"):
        monkeypatch.setattr(sweep_mod, name, refuse)
    monkeypatch.setattr(refine_mod, "coarse_to_fine", refuse)
    monkeypatch.setattr("flowviz.training.analysis.analyse", refuse)


def test_the_server_thread_measures_nothing_of_a_sweep(registry, not_in_the_server):
    ref_key, values = "n_steps", LS
    reg = registry("process", 1)
    ds = make_dataset(BASE)
    job = reg.job(
        "sweep-test",
        lambda progress, cancel: run_sweep(
            BASE, ref_key, values, data=ds, progress=progress, cancel=cancel, pool=reg.executor
        ),
        holds_worker=False,
    )
    assert wait_for(lambda: reg.get_job("sweep-test").finished, 300)
    assert job.status == RunStatus.DONE, job.error
    s = job.result
    assert all(m.disc_error > 0 for m in s.members) and s.transfer is not None and s.grids is not None
    c2f = reg.executor.measure("coarse_to_fine", ds, config=BASE, L_start=2, L_end=4)
    assert c2f.levels == [2, 4] and c2f.result.model.L == 4 and c2f.scratch.model.L == 4
    assert c2f.result.data is ds and c2f.result.metrics["steps"] == 2 * BASE.train_steps
    views = reg.executor.measure("views", ds, models=[s.members[0].model])
    assert views.config == s.members[0].config and views.surfaces.u.shape[-1] == ds.n_classes


def test_coarse_to_fine_in_a_worker_gives_the_same_numbers(pool):
    ds = make_dataset(BASE)
    here = refine_mod.coarse_to_fine(BASE, L_start=2, L_end=8, data=ds)
    there = pool.measure("coarse_to_fine", ds, config=BASE, L_start=2, L_end=8)
    assert (there.levels, there.cost, there.scratch_cost) == (here.levels, here.cost, here.scratch_cost)
    _same(
        [{k: v for k, v in r.items() if k != "elapsed"} for r in there.history],
        [{k: v for k, v in r.items() if k != "elapsed"} for r in here.history],
    )
    _same(there.jumps, here.jumps)
    for a, b in ((there.result, here.result), (there.scratch, here.scratch)):
        assert a.config == b.config and a.error == b.error
        _same(
            {k: v.numpy() for k, v in a.model.state_dict().items()},
            {k: v.numpy() for k, v in b.model.state_dict().items()},
        )


def test_a_cancelled_measurement_ends_its_task_and_frees_the_worker(threads):
    ds = make_dataset(BASE)
    results = train_batched([BASE.replace(n_steps=L) for L in LS], data=ds, log_every=10)
    stop = threading.Event()
    got = threads.measure(
        "sweep",
        ds,
        models=[r.model for r in results],
        key="n_steps",
        seed=0,
        cancel=stop,
        progress=lambda f, t: stop.set(),
    )
    assert got is None and wait_for(lambda: threads.busy() == 0, 10)
    early = threading.Event()
    early.set()  # cancelled before a worker took it
    assert threads.measure("views", ds, models=[results[0].model], cancel=early) is None


def test_a_sweep_cancelled_before_its_measurements_keeps_its_members_unmeasured(threads):
    stop = threading.Event()

    def progress(frac, text):
        if text.startswith("measuring"):  # training is over: stop the measurements in the worker
            stop.set()

    s = run_sweep(BASE, "n_steps", LS, pool=threads, cancel=stop, progress=progress)
    assert [m.config.n_steps for m in s.members] == LS and all(math.isnan(m.disc_error) for m in s.members)
    assert s.transfer is None and s.grids is None and "stopped before its members were measured" in s.notes


@pytest.mark.slow
def test_a_sweep_nobody_watches_is_cancelled_with_its_tasks_and_a_watched_one_goes_on(registry):
    reg = registry("thread", 2, unwatched_s=1.0)
    long = BASE.replace(train_steps=20000)
    ds = make_dataset(BASE)

    def sweep(progress, cancel):
        return run_sweep(long, "n_steps", LS, data=ds, progress=progress, cancel=cancel, pool=reg.executor)

    watched = reg.job("watched", sweep, holds_worker=False)
    assert wait_for(lambda: reg.get_job("watched") is not None and reg.executor.busy() > 0, 30)
    for _ in range(20):  # 3 s of a page asking about it: it goes on
        reg.get_job("watched")
        threading.Event().wait(0.15)
    assert not watched.finished and reg.cancelled_unwatched == 0
    # the page closes: nobody asks any more; the job and its training tasks on the workers end
    assert wait_for(lambda: watched.finished, 30) and watched.status == RunStatus.CANCELLED
    assert reg.cancelled_unwatched == 1 and wait_for(lambda: reg.executor.busy() == 0, 10)


@pytest.mark.slow
def test_cli_sweep_json_is_the_same_with_one_or_two_worker_processes(tmp_path, root):
    """--workers 2 trains, measures, draws and trains coarse to fine in the pool; --workers 1 in its own process."""
    docs = []
    for workers in ("1", "2"):
        out = tmp_path / f"w{workers}"
        p = subprocess.run(
            [
                sys.executable,
                "-m",
                "flowviz",
                "sweep",
                "--preset",
                "moons",
                "--set",
                "n_samples=150",
                "--set",
                "train_steps=15",
                "--vary",
                "n_steps=1,2,4",
                "--transfer-to",
                "8",
                "--coarse-to-fine",
                "2:4",
                "--workers",
                workers,
                "--out",
                str(out),
            ],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert p.returncode == 0, p.stderr
        d = json.loads((out / "sweep.json").read_text())
        d.pop("wall_s")
        for m in d["members"]:
            m.pop("wall_s")
        for k in ("wall_s", "scratch_wall_s"):
            d["coarse_to_fine"].pop(k)
        for k in ("final", "scratch_final"):
            d["coarse_to_fine"][k].pop("elapsed_s", None)
            d["coarse_to_fine"][k].pop("steps_per_second", None)
        docs.append(d)
    assert docs[0]["transfer"]["evaluated"] == [1, 2, 4, 8] and docs[0]["coarse_to_fine"]["levels"] == [2, 4]
    assert all(m["batched"] == 3 for m in docs[0]["members"])  # one batch, its lanes spread over the pool
    assert docs[0] == docs[1]
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "flowviz",
            "sweep",
            "--vary",
            "n_steps=1,2",
            "--workers",
            "0",
            "--out",
            str(tmp_path / "bad"),
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "--workers" in bad.stderr and "Traceback" not in bad.stderr


# ------------------------------------------------------------------ a batched sweep spread over the pool
def test_a_batch_spread_over_worker_processes_gives_the_same_numbers(pool):
    """Members are independent: each group of lanes trained as its own batch in its own process."""
    configs = [SWEEP.replace(n_steps=L, batch_size=64) for L in (1, 2, 4, 8)]
    ds = make_dataset(SWEEP)
    one = train_batched(configs, data=ds, log_every=10)
    steps = []
    spread = pool.train_batched(configs, ds, log_every=10, progress=steps.append)
    assert steps and steps == sorted(steps) and steps[-1] <= SWEEP.train_steps
    for a, b in zip(one, spread):
        assert b.config == a.config and b.error is None

        def no_clock(h):
            return [{k: v for k, v in r.items() if k != "elapsed"} for r in h]

        assert no_clock(b.history) == no_clock(a.history)
        for (n, pa), pb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
            torch.testing.assert_close(pb, pa, rtol=1e-5, atol=1e-6, msg=n)


def test_two_sweeps_sharing_a_pool_of_two_both_finish(pool):
    """Each takes the workers free at once and never waits while holding one: no deadlock."""
    import threading

    ds = make_dataset(SWEEP)
    out = {}

    def sweep(name, Ls):
        out[name] = pool.train_batched([SWEEP.replace(n_steps=L, train_steps=20) for L in Ls], ds, log_every=10)

    ts = [threading.Thread(target=sweep, args=(n, Ls)) for n, Ls in (("a", (1, 2, 4)), ("b", (3, 6, 9)))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert not any(t.is_alive() for t in ts)
    assert [r.metrics["steps"] for r in out["a"] + out["b"]] == [20] * 6


def test_a_sweep_cancelled_while_waiting_for_workers_ends_cancelled(pool):
    import threading

    stop = threading.Event()
    stop.set()
    res = pool.train_batched([SWEEP.replace(n_steps=L) for L in (1, 2)], make_dataset(SWEEP), cancel=stop)
    assert [r.metrics["steps"] for r in res] == [0, 0] and all(r.history[-1]["step"] == 0 for r in res)


def test_run_sweep_spreads_its_lanes_over_the_pool(pool, monkeypatch):
    calls = []
    real = pool.train_batched
    monkeypatch.setattr(pool, "train_batched", lambda cfgs, *a, **kw: calls.append(len(cfgs)) or real(cfgs, *a, **kw))
    s = run_sweep(SWEEP, "n_steps", [1, 2, 4], pool=pool)
    alone = run_sweep(SWEEP, "n_steps", [1, 2, 4])
    assert calls == [3] and s.batched and all(m.batched == 3 for m in s.members)
    for a, b in zip(s.members, alone.members):
        assert a.result.metrics["train_loss"] == pytest.approx(b.result.metrics["train_loss"], rel=1e-5)
