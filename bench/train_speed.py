"""Training speed: flowviz against the obvious nn.ModuleList ResNet, measured side by side.

Reference config: moons, 1,000 points, two-layer field of width 16, L = 32, Euler,
Adam, full batch, 300 steps. Both trainers run the same number of optimiser steps
on the same data, interleaved, for several repetitions; the last line prints the
median steps per second of each and their ratio.

    python bench/train_speed.py [--reps 5] [--steps 300] [--device cpu] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import flowviz  # noqa: E402
from flowviz.core.data import make_dataset  # noqa: E402
from flowviz.core.model import build_model  # noqa: E402


class Block(nn.Module):
    def __init__(self, d, width, h):
        super().__init__()
        self.l1, self.l2, self.h = nn.Linear(d, width), nn.Linear(width, d), h

    def forward(self, x):
        return x + self.h * self.l2(torch.tanh(self.l1(x)))


class Baseline(nn.Module):
    """The obvious ResNet: an nn.ModuleList of residual blocks and a linear head."""

    def __init__(self, d, width, L, T, classes):
        super().__init__()
        self.blocks = nn.ModuleList(Block(d, width, T / L) for _ in range(L))
        self.head = nn.Linear(d, classes)

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return self.head(x)


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def time_steps(model, x, y, steps, dev) -> float:
    """Steps per second of plain full-batch Adam training (the loop flowviz.train runs, minus snapshots)."""
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.01)
    for _ in range(5):  # warm-up
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    sync(dev)
    t = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    sync(dev)
    return steps / (time.perf_counter() - t)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--L", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    # 1 thread by default: what flowviz.train picks at this size (train.cpu_threads), and the faster setting
    # for the baseline too; with two the figures swung by 1.7x between runs on this shared 2-core machine
    ap.add_argument("--threads", type=int, default=1, help="torch threads for both (0: torch's default)")
    a = ap.parse_args(argv)
    torch.set_flush_denormal(True)
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    cfg = flowviz.preset("reference").replace(n_samples=a.n, n_steps=a.L, test_fraction=0.0)
    ds = make_dataset(cfg)
    x, y = torch.as_tensor(ds.x_train, device=dev), torch.as_tensor(ds.y_train, device=dev)
    fv = build_model(cfg, ds.n_classes).to(dev)
    base = Baseline(2, cfg.width, cfg.n_steps, cfg.horizon, ds.n_classes).to(dev)
    print(f"device={dev} threads={torch.get_num_threads()} n={len(x)} L={cfg.n_steps} width={cfg.width} "
          f"steps={a.steps} reps={a.reps} fast_path={fv.fast_path_applies(training=True)}")
    r_fv, r_base = [], []
    for rep in range(a.reps):
        r_base.append(time_steps(base, x, y, a.steps, dev))
        r_fv.append(time_steps(fv, x, y, a.steps, dev))
        print(f"rep {rep}: baseline {r_base[-1]:8.1f} steps/s   flowviz {r_fv[-1]:8.1f} steps/s")
    mb, mf = statistics.median(r_base), statistics.median(r_fv)
    print(f"median steps/s: baseline {mb:.1f}, flowviz {mf:.1f}; ratio flowviz/baseline = {mf / mb:.2f}")


if __name__ == "__main__":
    main()
