"""CUDA graphs against eager steps on a GPU: training steps per second at L = 64 (target: at least 3x).

Trains the reference config at L = 64 (moons, 1,000 points, width 16, Euler, Adam, full batch) with
``flowviz.train``, eager (``cuda_graphs=False``) and with each step replayed from a CUDA graph
(``cuda_graphs=True``, what FLOWVIZ_CUDA_GRAPHS=1 makes a server pass), interleaved, several repetitions; steps
per second from the run's own clock (one evaluation at the end only). On a machine without CUDA it says so and
exits 0 without a ratio.

    python bench/cuda_graphs.py [--reps 5] [--steps 1000] [--L 64]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import flowviz  # noqa: E402
from flowviz.core.data import make_dataset  # noqa: E402


def rate(cfg, ds, graphs: bool) -> float:
    r = flowviz.train(cfg, data=ds, log_every=cfg.train_steps, cuda_graphs=graphs)
    return r.metrics["steps_per_second"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--L", type=int, default=64)
    a = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device here: nothing to measure (run this on a GPU, e.g. through bench/gpu_check.sh)")
        return 0
    cfg = flowviz.preset("reference").replace(n_steps=a.L, train_steps=a.steps, device="cuda")
    ds = make_dataset(cfg)
    print(f"device={torch.cuda.get_device_name()} L={a.L} steps={a.steps} reps={a.reps} torch={torch.__version__}")
    rate(cfg.replace(train_steps=20), ds, False), rate(cfg.replace(train_steps=20), ds, True)  # warm-up
    eager, graphed = [], []
    for rep in range(a.reps):
        eager.append(rate(cfg, ds, False))
        graphed.append(rate(cfg, ds, True))
        print(f"rep {rep}: eager {eager[-1]:8.1f} steps/s   graphs {graphed[-1]:8.1f} steps/s")
    me, mg = statistics.median(eager), statistics.median(graphed)
    print(f"median steps/s: eager {me:.1f}, graphs {mg:.1f}; ratio graphs/eager = {mg / me:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
