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
from flowviz.plots import FIGURES, INSTRUMENTS, PROBE_VIEWS  # noqa: E402
from flowviz.training.analysis import analyse  # noqa: E402
from flowviz.training.instruments import flow_paths  # noqa: E402


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
    shown = {n: f for n, f in FIGURES.items() if n != "lifted" or cfg.lift}  # the 3-D view is for lifted runs
    for name, fn in shown.items():
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
    path = flow_paths(r.model, [[0.5, 0.25]])[:, 0].numpy()  # a probe (link probe=0.5,0.25): every view marks it
    extra = {
        name: len(pio.to_json(fn(v, probe_path=path), validate=False).encode())
        - len(pio.to_json(fn(v), validate=False).encode())
        for name, fn in shown.items()
        if fn in PROBE_VIEWS
    }
    print("bytes a probe adds: " + ", ".join(f"{n} {b:,d}" for n, b in extra.items()))
    instruments(r, v, a.reps, base=statistics.median(_times(lambda: FIGURES["characteristics"](v), a.reps)))
    print(f"total {total / 1e6:.2f} MB; ratio to the 1.5 MB target = {total / 1.5e6:.2f}")  # the page's views


def _times(fn, reps):
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append(1e3 * (time.perf_counter() - t))
    return out


def instruments(r, v, reps: int, base: float):
    """Issue 15's instruments on the finished run: the computation behind each in this process (what the page
    did on the first click before), the same made by a worker process (what a finished run shown by a page
    now has before any click: ``Executor.instruments``), and the time from the click to the figure: for the
    probe its computation, for the others the figure's build from the worker's object, each with the JSON the
    browser receives (medians, ms). Target: the figure within 300 ms of the click."""
    import torch

    from flowviz.serve.settings import Settings
    from flowviz.serve.work.executor import make_executor
    from flowviz.training import instruments as ins
    from flowviz.training.prepared import PREPARED

    m, d = r.model, r.data
    torch.set_num_threads(1)  # as the server's own work (FLOWVIZ_SERVER_THREADS) and each worker
    compute = {
        "probe": lambda: ins.probe_data(m, (0.5, 0.25)),
        **{name: (lambda f=PREPARED[key]: f(m, d, v.extent)) for name, key in PREPARED_OF.items()},
    }
    ex = make_executor(Settings(), size=1, name="process")
    try:
        ex.instruments(m, d, extent=v.extent, names=["stability"])  # a started worker, as a server keeps them
        t = time.perf_counter()
        made, _ = ex.instruments(m, d, extent=v.extent)
        worker_s = time.perf_counter() - t
    finally:
        ex.shutdown()
    print(
        f"{'instrument':18s} {'compute ms':>11s} {'build ms':>9s} {'click ms':>9s} {'bytes':>10s}   "
        f"(characteristics builds in {base:.0f} ms in this run)"
    )
    worst = 0.0
    for name, fn in INSTRUMENTS.items():
        obj = compute[name]() if name == "probe" else made[PREPARED_OF[name]]
        tc = statistics.median(_times(compute[name], max(1, reps // 2)))
        tb = statistics.median(_times(lambda: fn(obj), reps))
        click = (lambda: fn(compute[name]())) if name == "probe" else (lambda: fn(obj))
        tk = statistics.median(_times(lambda: pio.to_json(click(), validate=False), reps))
        size = len(fn(obj).to_json().encode())
        worst = max(worst, tk)
        print(f"{name:18s} {tc:11.0f} {tb:9.0f} {tk:9.0f} {size:10,d}")
    print(f"instruments prepared by a worker process in {worker_s:.2f} s once the run is shown")
    print(
        f"instruments: slowest click-to-figure {worst:.0f} ms; {worst / 300:.2f} of 300 ms, "
        f"{worst / base:.2f} x the characteristics figure"
    )


PREPARED_OF = {"stability": "stability", "volume": "volume", "transport_grid": "grid", "adjoint": "adjoint"}


if __name__ == "__main__":
    main()
