"""Depth transfer: train at L, evaluate at L' (moons and rings; tied/continuous weights; with and without penalties).

Prints one accuracy matrix per (dataset, time mode, penalty): rows trained at L, columns evaluated at L'.
A model that learned a flow keeps its accuracy along its row; one that learned a ResNet exploiting its large
steps does not. The last line gives the mean off-diagonal accuracy drop of each setting.

    python bench/depth_transfer.py [--steps 400] [--depths 2,4,8,16,32] [--to 64,256]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import flowviz  # noqa: E402
from flowviz.training.sweep import run_sweep  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--depths", default="2,4,8,16,32")
    ap.add_argument("--to", default="64,256")
    ap.add_argument("--datasets", default="moons,rings")
    ap.add_argument("--n", type=int, default=1000)
    a = ap.parse_args(argv)
    depths = [int(v) for v in a.depths.split(",")]
    extra = [int(v) for v in a.to.split(",") if v]
    settings = [
        ("continuous", {}),
        ("continuous", {"smoothness": 0.01}),
        ("continuous", {"kinetic": 0.1}),
        ("tied", {}),
    ]
    drops, ratios = [], []
    for name in a.datasets.split(","):
        for mode, pen in settings:
            cfg = flowviz.Config(
                dataset=name,
                n_samples=a.n,
                time_mode=mode,
                train_steps=a.steps,
                lr=0.02,
                horizon=3.0 if name == "rings" else 1.0,
                noise=0.0 if name == "rings" else 0.1,
                **pen,
            )
            s = run_sweep(cfg, "n_steps", depths, transfer_to=extra)
            t = s.transfer
            label = f"{name} {mode} " + (", ".join(f"{k}={v}" for k, v in pen.items()) or "no penalty")
            print(f"\n{label}  (wall {s.wall_s:.1f} s)")
            print("L \\ L'  " + " ".join(f"{v:>6d}" for v in t.evaluated))
            for L, row in zip(t.trained, t.accuracy):
                print(f"{L:6d}  " + " ".join(f"{v:6.3f}" for v in row))
            diag = np.array([row[t.evaluated.index(L)] for L, row in zip(t.trained, t.accuracy)])
            finer = [
                row[j] - diag[i]
                for i, row in enumerate(t.accuracy)
                for j, Lp in enumerate(t.evaluated)
                if Lp > t.trained[i]
            ]
            drops.append((label, float(np.mean(finer))))
            ratios.append(
                float(
                    np.mean(
                        [
                            row[j] / diag[i]
                            for i, row in enumerate(t.accuracy)
                            for j, Lp in enumerate(t.evaluated)
                            if Lp > t.trained[i]
                        ]
                    )
                )
            )
    print()
    print("mean accuracy change when refined (L' > L): " + "; ".join(f"{lab}: {d:+.3f}" for lab, d in drops))
    print(f"ratio of accuracy after refinement to accuracy at the trained depth, mean over all: {np.mean(ratios):.3f}")


if __name__ == "__main__":
    main()
