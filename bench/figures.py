"""Bytes sent and milliseconds to build each view's figure, for the reference config.

Trains the reference config (moons, 1,000 points, L = 32, 100 x 100 surfaces), analyses it once, then
builds every figure of flowviz.plots.FIGURES several times (median milliseconds) and measures the JSON the
browser receives (plotly encodes the float32 / uint8 arrays as base64). Targets: at most 3 MB in all and
200 ms per figure; the last line gives the totals and the ratios to those targets.

    python bench/figures.py [--reps 5] [--preset reference]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import flowviz  # noqa: E402
from flowviz.plots import FIGURES  # noqa: E402
from flowviz.training.analysis import analyse  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--preset", default="reference")
    ap.add_argument("--set", action="append", default=[], help="config overrides KEY=VALUE")
    a = ap.parse_args(argv)
    cfg = flowviz.preset(a.preset).with_sets(a.set)
    r = flowviz.train(cfg)
    t = time.perf_counter()
    v = analyse(r.model, r.data, history=r.history)
    ms = 1e3 * (time.perf_counter() - t)
    print(f"config {a.preset} (L = {cfg.n_steps}, n = {cfg.n_samples}); analysis {ms:.0f} ms")
    total, worst = 0, 0.0
    print(f"{'figure':18s} {'ms (median)':>12s} {'bytes':>12s}")
    for name, fn in FIGURES.items():
        times = []
        for _ in range(a.reps):
            t = time.perf_counter()
            fig = fn(v)
            times.append(1e3 * (time.perf_counter() - t))
        size = len(fig.to_json().encode())
        ms = statistics.median(times)
        total, worst = total + size, max(worst, ms)
        print(f"{name:18s} {ms:12.1f} {size:12,d}")
    print(f"total {total / 1e6:.2f} MB, slowest figure {worst:.0f} ms; ratio to the targets: "
          f"{total / 3e6:.2f} of 3 MB, {worst / 200:.2f} of 200 ms")


if __name__ == "__main__":
    main()
