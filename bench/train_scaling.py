"""Training cost against the number of points n and the number of steps L.

Steps per second of flowviz's training step (the loop flowviz.train runs) over n in {1,000, 10,000,
100,000} and L in {8, 32, 128} on the reference config otherwise (two-layer field of width 16, Euler, Adam,
full batch). Each cell is the median of several timed blocks, run in a shuffled order. Prints the table,
the cost per point-step, and the measured exponents a, b of time ~ n^a L^b fitted on the cells where the
per-step overhead is amortised (n >= 10,000); linear cost means a ~ b ~ 1.

    python bench/train_scaling.py [--ns 1000,10000,100000] [--Ls 8,32,128] [--reps 3] [--device cpu]

``--keys``: instead, the keys that multiply a run's cost, one at a time from a small base config (2,000
points, L = 16, width 32): n_samples, n_steps, scheme, width, lift, mlp_depth, field, time_mode, knots,
batch_size, and mc_samples with viscosity (which multiplies every evaluation: the snapshots). Each value is
measured in CPU seconds by bench/memory.py's forked children (a median of a few steps) and set against the
cost model (flowviz.core.cost); the last line gives the largest ratio either way.

    python bench/train_scaling.py --keys [--steps 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/memory.py's measuring children
import flowviz  # noqa: E402
from flowviz.core.data import make_dataset  # noqa: E402
from flowviz.core.model import build_model  # noqa: E402
from flowviz.training.train import cpu_threads  # noqa: E402


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def seconds_per_step(model, opt, x, y, dev, budget: float) -> float:
    """Median seconds per optimiser step over blocks of about ``budget`` seconds in all."""

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    step()
    sync(dev)
    t = time.perf_counter()
    step()
    sync(dev)
    one = max(time.perf_counter() - t, 1e-5)
    k = max(1, int(budget / 3 / one))
    times = []
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(k):
            step()
        sync(dev)
        times.append((time.perf_counter() - t) / k)
    return statistics.median(times)


KEY_BASE = {"n_samples": 2000, "n_steps": 16, "width": 32, "test_fraction": 0.2}
KEY_SWEEPS = {  # key: (values, other keys set for the sweep, what is compared)
    "n_samples": ([1000, 4000, 16000], {}, "step"),
    "n_steps": ([8, 32, 128], {}, "step"),
    "scheme": (["euler", "midpoint", "rk4"], {"field": "mlp"}, "step"),
    "width": ([16, 64, 256], {}, "step"),
    "lift": ([0, 4, 8], {"scheme": "midpoint"}, "step"),
    "mlp_depth": ([2, 4, 6], {"field": "mlp", "width": 64}, "step"),
    "field": (["two_layer", "mlp", "antisymmetric"], {"scheme": "midpoint"}, "step"),
    "time_mode": (["per_step", "tied", "continuous"], {"scheme": "rk4", "width": 64}, "step"),
    "knots": ([8, 32, 64], {"time_mode": "continuous", "scheme": "rk4", "width": 128, "n_steps": 32}, "step"),
    "batch_size": ([0, 1000, 250], {"n_samples": 4000}, "step"),
    "mc_samples": ([4, 16, 64], {"viscosity": 0.5}, "snapshot"),
}


def key_sweeps(steps: int) -> None:
    """Time per step (or per snapshot) along each multiplying key, measured and estimated."""
    from memory import measure_many, measured_vs_estimated

    cfgs, labels = [], []
    for key, (values, extra, what) in KEY_SWEEPS.items():
        for v in values:
            cfgs.append(dict(KEY_BASE, **extra, **{key: v}, train_steps=steps + 1))
            labels.append((key, v, what))
    rows = measured_vs_estimated(cfgs, measure_many(cfgs, steps=steps, analysis=False, log=sys.stderr))
    worst = 1.0
    print(f"{'key':12s} {'value':>10s} {'what':>9s} {'measured s':>11s} {'estimate s':>11s} {'ratio':>6s}")
    for (key, v, what), r in zip(labels, rows):
        if "error" in r:
            print(f"{key:12s} {v!s:>10s} {r['error']}")
            continue
        m, e = r[what + "_s"], r["est_" + what + "_s"]
        worst = max(worst, m / e, e / m)
        print(f"{key:12s} {v!s:>10s} {what:>9s} {m:11.4f} {e:11.4f} {m / e:6.2f}")
    print(f"largest ratio of measurement to estimate, either way: {worst:.2f}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", action="store_true", help="the multiplying keys against the cost model")
    ap.add_argument("--steps", type=int, default=3, help="steps per config with --keys")
    ap.add_argument("--ns", default="1000,10000,100000")
    ap.add_argument("--Ls", default="8,32,128")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--budget", type=float, default=1.0, help="seconds of timing per cell and repetition")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args(argv)
    if a.keys:
        return key_sweeps(a.steps)
    torch.set_flush_denormal(True)
    dev = torch.device(a.device)
    ns = [int(v) for v in a.ns.split(",")]
    Ls = [int(v) for v in a.Ls.split(",")]
    base = flowviz.preset("reference").replace(test_fraction=0.0)
    data = {n: make_dataset(base.replace(n_samples=min(n, 20_000))) for n in ns}
    cells = [(n, L) for n in ns for L in Ls]
    res: dict[tuple[int, int], list[float]] = {c: [] for c in cells}
    print(f"device={dev} torch={torch.__version__} width={base.width} reps={a.reps}")
    for rep in range(a.reps):
        order = cells[:]
        random.Random(rep).shuffle(order)
        for n, L in order:
            ds = data[n]
            reps_needed = -(-n // len(ds.x_train))  # beyond the 20,000-point limit, tile the data
            x = torch.as_tensor(np.tile(ds.x_train, (reps_needed, 1))[:n], device=dev)
            y = torch.as_tensor(np.tile(ds.y_train, reps_needed)[:n], device=dev)
            if dev.type == "cpu":
                torch.set_num_threads(cpu_threads(n, base.width))
            model = build_model(base.replace(n_steps=L), 2).to(dev)
            opt = torch.optim.Adam(model.parameters(), lr=0.01)
            res[(n, L)].append(seconds_per_step(model, opt, x, y, dev, a.budget))
    med = {c: statistics.median(v) for c, v in res.items()}
    print("\nsteps per second (median)")
    print("n \\ L     " + "".join(f"{L:>10d}" for L in Ls))
    for n in ns:
        print(f"{n:<10d}" + "".join(f"{1 / med[(n, L)]:10.1f}" for L in Ls))
    print("\nnanoseconds per point and block (time per step / (n L))")
    for n in ns:
        print(f"{n:<10d}" + "".join(f"{1e9 * med[(n, L)] / (n * L):10.2f}" for L in Ls))
    fit = [(n, L) for (n, L) in cells if n >= 10_000] or cells
    X = np.c_[np.log([n for n, _ in fit]), np.log([L for _, L in fit]), np.ones(len(fit))]
    coef = np.linalg.lstsq(X, np.log([med[c] for c in fit]), rcond=None)[0]
    small, big = min(ns), max(ns)
    per = [med[(small, L)] / small / (med[(big, L)] / big) for L in Ls]
    print(
        f"\nexponents (time ~ n^a L^b, fitted on n >= 10,000): a = {coef[0]:.2f}, b = {coef[1]:.2f}; "
        f"ratio of cost per point at n = {small:,} to n = {big:,}: {statistics.median(per):.1f}"
    )


if __name__ == "__main__":
    main()
