"""Sweep speed: a depth sweep trained as one batch against the same runs one after another.

The sweep: L in 1, 2, 4, 8, 16, 32, 64 at T = 1 on the reference config (moons,
1,000 points, two-layer field of width 16, Euler, Adam, full batch). Each
repetition times, interleaved: the batched sweep as the app runs it (its lanes
spread over a warm pool of training processes, one per core, as the server has;
``ProcessPool.train_batched``), the same batch in this one process
(flowviz.training.batch.train_batched), the seven runs one after another (flowviz.train)
and the deepest run alone, all with one torch thread per process. The last line
prints the medians and the two ratios the targets are about, for the app's way:
batched / deepest (target <= 1.5) and sequential / batched (target >= 3).

    python bench/sweep_speed.py [--reps 5] [--steps 300] [--depths 1,2,4,8,16,32,64] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import flowviz  # noqa: E402
from flowviz.core.data import make_dataset  # noqa: E402
from flowviz.serve.work.pool import ProcessPool  # noqa: E402
from flowviz.training.batch import train_batched  # noqa: E402


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--depths", default="1,2,4,8,16,32,64")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="training processes (1: none)")
    a = ap.parse_args(argv)
    depths = [int(v) for v in a.depths.split(",")]
    base = flowviz.preset("reference").replace(n_samples=a.n, train_steps=a.steps, device=a.device)
    cfgs = [base.replace(n_steps=L) for L in depths]
    deepest = cfgs[depths.index(max(depths))]
    ds = make_dataset(base)
    print(f"device={a.device} n={a.n} depths={depths} steps={a.steps} reps={a.reps} torch={torch.__version__}")
    torch.set_num_threads(1)  # as in the server's training processes
    pool = ProcessPool(a.workers) if a.workers > 1 and a.device == "cpu" else None
    if pool is not None:
        pool.prestart(a.workers).join()
        pool.train_batched(cfgs, ds, log_every=a.steps)  # warm-up (the server's workers are warm too)
    train_batched(cfgs, data=ds, log_every=a.steps)
    tp, tb, ts, td = [], [], [], []
    for rep in range(a.reps):
        if pool is not None:
            tp.append(timed(lambda: pool.train_batched(cfgs, ds, log_every=a.steps)))
        tb.append(timed(lambda: train_batched(cfgs, data=ds, log_every=a.steps)))
        ts.append(timed(lambda: [flowviz.train(c, data=ds, log_every=a.steps) for c in cfgs]))
        td.append(timed(lambda: flowviz.train(deepest, data=ds, log_every=a.steps)))
        lanes = f"batched over {a.workers} processes {tp[-1]:6.2f} s   " if pool is not None else ""
        print(
            f"rep {rep}: {lanes}batched in one process {tb[-1]:6.2f} s   sequential {ts[-1]:6.2f} s   "
            f"deepest alone {td[-1]:6.2f} s"
        )
    if pool is not None:
        pool.shutdown()
    mb, ms, md = statistics.median(tb), statistics.median(ts), statistics.median(td)
    print(f"one process: batched {mb:.2f} s; batched/deepest = {mb / md:.2f}, sequential/batched = {ms / mb:.2f}")
    print(f"bound: with batched = deepest, sequential/batched would be {ms / md:.2f}")
    mp_ = statistics.median(tp) if tp else mb
    print(
        f"median: batched {mp_:.2f} s, sequential {ms:.2f} s, deepest {md:.2f} s; ratios "
        f"batched/deepest = {mp_ / md:.2f}, sequential/batched = {ms / mp_:.2f}"
    )


if __name__ == "__main__":
    main()
