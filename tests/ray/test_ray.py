"""The Ray executor on a local cluster started by the tests: the same numbers as the local pool."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch
from tiny import SWEEP as SMALL

import flowviz
from flowviz.core.data import make_dataset

ray = pytest.importorskip("ray", reason="the ray extra (requirements-ray.txt) is not installed")
pytestmark = pytest.mark.ray  # one Ray cluster at a time: `make test` runs these after the parallel part


@pytest.fixture(scope="module")
def executor():
    from flowviz.serve.work.ray_executor import RayExecutor, ray_started

    if ray.is_initialized() and ray.cluster_resources().get("CPU") != 2:  # ours has two CPUs
        ray.shutdown()
    ray_started(num_cpus=2)  # the test process's local cluster (tiny.executor), or a new one of two CPUs
    ex = RayExecutor()
    assert ex.size == 2  # the cluster's CPUs bound what trains at once
    yield ex
    ex.shutdown()
    ray.shutdown()


def test_a_run_on_ray_gives_the_same_weights_as_the_local_pool(executor):
    ds = make_dataset(SMALL)
    snaps = list(executor.train(SMALL, ds, log_every=10))
    local = list(flowviz.train_iter(SMALL, data=ds, log_every=10))
    assert [s.step for s in snaps] == [s.step for s in local] and len(snaps) >= 4  # they stream, as here
    assert snaps[-1].done and not snaps[-1].cancelled
    here = flowviz.train(SMALL, data=ds, log_every=10).model.state_dict()
    for k, v in here.items():
        assert torch.equal(snaps[-1].state[k], v), k  # bit for bit: same seed, same CPU arithmetic


def test_cancel_ends_a_run_within_a_second_and_keeps_its_last_state(executor):
    cfg = SMALL.replace(train_steps=20_000, seed=5)
    ds = make_dataset(cfg)
    cancel = threading.Event()
    seen = []
    t_cancel = None
    for s in executor.train(cfg, ds, log_every=10, cancel=cancel):
        seen.append(s)
        if len(seen) == 3 and t_cancel is None:
            cancel.set()
            t_cancel = time.perf_counter()
    assert time.perf_counter() - t_cancel < 1.0
    last = seen[-1]
    assert last.done and last.cancelled and last.state is not None
    assert last.step >= 20 and last.step < cfg.train_steps


def test_a_killed_ray_worker_becomes_an_error_with_the_last_state_kept(executor):
    from flowviz.serve.work.protocol import WorkerDied

    cfg = SMALL.replace(train_steps=20_000, seed=7)
    ds = make_dataset(cfg)
    seen = []
    with pytest.raises(WorkerDied):
        for s in executor.train(cfg, ds, log_every=10):
            seen.append(s)
            if len(seen) == 2:
                (pid,) = executor.busy_pids()
                os.kill(pid, signal.SIGKILL)
    assert seen and seen[-1].state is not None and not seen[-1].done


def test_a_batched_sweep_on_ray_gives_the_same_numbers_as_one_batch(executor):
    from flowviz.training.batch import train_batched

    configs = [SMALL.replace(n_steps=L) for L in (1, 2, 4, 8)]
    ds = make_dataset(SMALL)
    steps = []
    remote = executor.train_batched(configs, ds, log_every=10, progress=steps.append)
    local = train_batched(configs, data=ds, log_every=10)
    assert steps and steps[-1] == SMALL.train_steps
    timeless = lambda h: [{k: v for k, v in row.items() if k != "elapsed"} for row in h]
    for a, b in zip(remote, local):
        assert timeless(a.history) == timeless(b.history)
        for k, v in b.model.state_dict().items():
            assert torch.equal(a.model.state_dict()[k], v), k


def test_members_that_cannot_be_batched_spread_over_the_cluster(executor):
    from flowviz.training.sweep import run_sweep

    ds = make_dataset(SMALL)
    done = []
    schemes = ["euler", "midpoint", "rk4"]
    s = run_sweep(SMALL, "scheme", schemes, data=ds, pool=executor, progress=lambda f, t: done.append(t))
    here = run_sweep(SMALL, "scheme", schemes, data=ds)
    assert not s.batched and not here.batched
    for a, b in zip(s.members, here.members):
        for k, v in b.result.model.state_dict().items():
            assert torch.equal(a.result.model.state_dict()[k], v), k
        assert a.result.metrics["train_accuracy"] == b.result.metrics["train_accuracy"]
        assert a.disc_error == b.disc_error
    assert "member 3 of 3 finished" in done


def test_import_flowviz_and_the_app_start_up_import_no_ray(root):
    code = (
        "import sys, flowviz, flowviz.cli, flowviz.serve.runs.registry, flowviz.ui.server; print('ray' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
    )
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_a_sweep_of_200_members_completes_on_two_cpus_with_the_local_structure(executor):
    from flowviz.training.sweep import run_sweep

    tiny = SMALL.replace(n_samples=60, train_steps=4, n_steps=2, width=4)
    values = [round(0.001 * i, 3) for i in range(200)]
    ds = make_dataset(tiny)
    finished = []
    s = run_sweep(
        tiny, "smoothness", values, data=ds, batched=False, pool=executor, progress=lambda f, t: finished.append(t)
    )
    assert [m.value for m in s.members] == values and len(s.members) == 200
    assert "member 200 of 200 finished" in finished  # progress as members finish
    local = run_sweep(tiny, "smoothness", values[:2], data=ds, batched=False)

    def shape(d):  # the structure of sweep.json: keys all the way down, not the numbers
        if isinstance(d, dict):
            return {k: shape(v) for k, v in d.items()}
        if isinstance(d, list):
            return [shape(d[0])] if d else []
        return type(d).__name__

    assert shape(json.loads(s.to_json())) == shape(json.loads(local.to_json()))
    for k, v in local.members[1].result.model.state_dict().items():  # the same numbers as here
        assert torch.equal(s.members[1].result.model.state_dict()[k], v), k


def test_the_server_trains_on_the_cluster_with_flowviz_executor_ray(registry, executor, monkeypatch):
    from flowviz.serve.settings import Settings

    monkeypatch.setenv("FLOWVIZ_EXECUTOR", "ray")
    monkeypatch.setenv("FLOWVIZ_CACHE_DIR", "off")
    reg = registry(settings=Settings.from_env(), prestart=False)
    assert type(reg.executor).__name__ == "RayExecutor" and reg.max_workers == 2  # the cluster's CPUs
    runs = [reg.start(SMALL.replace(seed=40 + i)) for i in range(3)]
    peak = 0
    while not all(r.finished for r in runs):
        peak = max(peak, reg.executor.busy())  # workers lent: trainings and final pictures
        time.sleep(0.02)
    assert all(r.status == "done" for r in runs) and 1 <= peak <= 2  # never more than the cluster's CPUs
    here = flowviz.train(SMALL.replace(seed=40), log_every=10).model.state_dict()
    for k, v in here.items():
        assert torch.equal(runs[0].latest.state[k], v), k
