"""Bytes sent and milliseconds to build each view's figure, for the reference config.

Trains the reference config (moons, 1,000 points, L = 32, 100 x 100 surfaces), analyses it once, then
builds every figure of flowviz.plots.FIGURES several times (median milliseconds) and measures the JSON the
browser receives: ``plotly.io.to_json``, what st.plotly_chart sends (float32 / uint8 arrays as base64, each
"/" escaped as six bytes; the escapes are counted apart). Targets: at most 1.5 MB in all (issue 14) and
200 ms per figure; the last line gives the total and its ratio to 1.5 MB.

    python bench/figures.py [--reps 5] [--preset reference]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import plotly.io as pio  # noqa: E402

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
    print(f"{'figure':18s} {'ms (median)':>12s} {'bytes':>12s} {'of which escapes':>17s}")
    for name, fn in FIGURES.items():
        times = []
        for _ in range(a.reps):
            t = time.perf_counter()
            fig = fn(v)
            times.append(1e3 * (time.perf_counter() - t))
        sent = pio.to_json(fig, validate=False)
        size = len(sent.encode())
        ms = statistics.median(times)
        total, worst = total + size, max(worst, ms)
        print(f"{name:18s} {ms:12.1f} {size:12,d} {5 * sent.count(chr(92) + 'u002f'):17,d}")
    print(f"slowest figure {worst:.0f} ms ({worst / 200:.2f} of 200 ms)")
    print(f"total {total / 1e6:.2f} MB; ratio to the 1.5 MB target = {total / 1.5e6:.2f}")


if __name__ == "__main__":
    main()
