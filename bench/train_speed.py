"""Training speed: flowviz against the obvious nn.ModuleList ResNet, bare loop and end to end.

Reference config: moons, 1,000 points (800 to train), two-layer field of width 16, L = 32, Euler, Adam,
full batch. Three measurements, interleaved over several repetitions, one torch thread each:

- bare loop: the optimiser loop alone (zero_grad, loss, backward, step) on both models, denormals flushed
  for both (as flowviz.train does);
- end to end: the whole ``flowviz.train(config)`` with its defaults (a snapshot with train and test
  accuracy every 10 steps) against the obvious loop as a person writes it: build the ResNet, Adam, and log
  ``loss.item()`` every 10 steps, with no denormal flushing. Steps per second of wall time, model and
  optimiser construction included on both sides;
- the page: the same config trained as the server trains it (a worker process, snapshots with weights
  every few steps); its "steps / s" is what the page shows, compared with the end-to-end figure.

The last line prints the end-to-end ratio flowviz / obvious loop (medians of wall-time steps/s). The line
before it gives the same ratio per CPU second of this process: on a shared machine, whatever else runs (or a
virtual machine's stolen time) is in the wall time of one side or the other, not in this figure; each rep's
line gives both ratios.

    python bench/train_speed.py [--reps 3] [--steps 300] [--e2e-steps 1500] [--device cpu] [--threads N]
"""

from __future__ import annotations

import argparse
import os
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


def obvious_loop(cfg, x, y, n_classes, dev) -> tuple[float, float]:
    """Steps per second of the loop a person writes (model, Adam, loss printed every 10 steps): of wall time,
    and of this process's CPU time."""
    torch.set_flush_denormal(False)
    sync(dev)
    t, c = time.perf_counter(), time.process_time()
    torch.manual_seed(cfg.seed)
    model = Baseline(2, cfg.width, cfg.n_steps, cfg.horizon, n_classes).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    log = []
    for step in range(1, cfg.train_steps + 1):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        if step % 10 == 0:
            log.append((step, loss.item()))
    sync(dev)
    return cfg.train_steps / (time.perf_counter() - t), cfg.train_steps / (time.process_time() - c)


def flowviz_train(cfg, data) -> tuple[float, float, float]:
    """Steps per second of flowviz.train with its defaults: of wall time, as its result reports them, and of
    this process's CPU time."""
    t, c = time.perf_counter(), time.process_time()
    r = flowviz.train(cfg, data=data)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    return cfg.train_steps / wall, r.metrics["steps_per_second"], cfg.train_steps / cpu


def page_rate(registry, cfg) -> float:
    """The "steps / s" the page shows for cfg: the last snapshot of a run trained as the server trains it."""
    run = registry.start(cfg, restart=True)
    run.join(600)
    return run.latest.steps_per_second


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--steps", type=int, default=300, help="steps of the bare-loop measurement")
    ap.add_argument("--e2e-steps", type=int, default=1500, help="train_steps of the end-to-end runs")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--L", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-page", action="store_true", help="skip the server-side (page) measurement")
    # 1 thread by default: what flowviz.train picks at this size (train.cpu_threads), and the faster setting
    # for the baseline too; with two the figures swung by 1.7x between runs on this shared 2-core machine
    ap.add_argument("--threads", type=int, default=1, help="torch threads for both (0: torch's default)")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    cfg = flowviz.preset("reference").replace(n_samples=a.n, n_steps=a.L, device=a.device)
    ds = make_dataset(cfg)
    x, y = torch.as_tensor(ds.x_train, device=dev), torch.as_tensor(ds.y_train, device=dev)
    fv = build_model(cfg, ds.n_classes).to(dev)
    base = Baseline(2, cfg.width, cfg.n_steps, cfg.horizon, ds.n_classes).to(dev)
    e2e = cfg.replace(train_steps=a.e2e_steps)
    registry = None
    if not a.no_page and dev.type == "cpu":
        os.environ["FLOWVIZ_CACHE_DIR"] = "off"  # train every time, never restore from disk
        from flowviz.serve.runs.registry import Registry

        registry = Registry(max_workers=1, mode="process")
        registry.ready(120)
    print(
        f"device={dev} threads={torch.get_num_threads()} n_train={len(x)} L={cfg.n_steps} width={cfg.width} "
        f"bare steps={a.steps} end-to-end steps={e2e.train_steps} reps={a.reps} "
        f"fast_path={fv.fast_path_applies(training=True)}"
    )
    bare_b, bare_f, e2e_b, e2e_f, e2e_rep, page, cpu_b, cpu_f = [], [], [], [], [], [], [], []
    for rep in range(a.reps):
        torch.set_flush_denormal(True)
        bare_b.append(time_steps(base, x, y, a.steps, dev))
        bare_f.append(time_steps(fv, x, y, a.steps, dev))
        torch.set_flush_denormal(False)
        wall, cpu = obvious_loop(e2e, x, y, ds.n_classes, dev)
        e2e_b.append(wall)
        cpu_b.append(cpu)
        wall, reported, cpu = flowviz_train(e2e, ds)
        e2e_f.append(wall)
        e2e_rep.append(reported)
        cpu_f.append(cpu)
        line = (
            f"rep {rep}: bare loop  baseline {bare_b[-1]:7.1f}  flowviz {bare_f[-1]:7.1f} steps/s | end to end  "
            f"obvious {e2e_b[-1]:7.1f}  flowviz.train {e2e_f[-1]:7.1f} (reports {e2e_rep[-1]:.1f}) steps/s, "
            f"ratio {e2e_f[-1] / e2e_b[-1]:.2f}; per CPU second {cpu_b[-1]:.1f} and {cpu_f[-1]:.1f}, "
            f"ratio {cpu_f[-1] / cpu_b[-1]:.2f}"
        )
        if registry is not None:
            page.append(page_rate(registry, e2e))
            line += f" | page {page[-1]:7.1f} steps/s"
        print(line)
    med = statistics.median
    print(
        f"bare loop (median steps/s): baseline {med(bare_b):.1f}, flowviz {med(bare_f):.1f}; "
        f"ratio {med(bare_f) / med(bare_b):.2f}"
    )
    if page:
        print(
            f"page 'steps / s' {med(page):.1f} against flowviz.train end to end {med(e2e_f):.1f}: "
            f"page / benchmark = {med(page) / med(e2e_f):.2f} (target within 10 %)"
        )
        registry.shutdown()
    if dev.type == "cpu":  # what other processes on a shared machine take is in the wall time, not in these
        print(
            f"end to end per CPU second of this process (median steps/s): obvious loop {med(cpu_b):.1f}, "
            f"flowviz.train {med(cpu_f):.1f}; ratio {med(cpu_f) / med(cpu_b):.2f} (median of the reps' ratios "
            f"{med(f / b for f, b in zip(cpu_f, cpu_b)):.2f})"
        )
    print(
        f"end to end (median steps/s): obvious loop {med(e2e_b):.1f}, flowviz.train {med(e2e_f):.1f}; "
        f"ratio flowviz/obvious = {med(e2e_f) / med(e2e_b):.2f}"
    )


if __name__ == "__main__":
    main()
