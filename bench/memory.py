"""Peak resident memory of training: the reference run and the largest config the limits allow.

Each config trains in a fresh Python process (so one peak does not hide another) for a few steps, then
the child reports its peak resident set size (ru_maxrss). The largest configs: 20,000 points, L = 256,
width 256 (the hard limits) for the two-layer field with the hand-written chain, and for the general
autograd path (rk4 over an antisymmetric field, and a 2-hidden-layer MLP field). Target: at most 2 GB each;
the last line gives the largest peak and its ratio to 2 GB.

    python bench/memory.py [--steps 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
import flowviz
cfg = flowviz.Config.from_dict(json.loads({cfg!r}))
t = time.perf_counter()
r = flowviz.train(cfg, log_every=10**6)
peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"peak_mb": peak_kb / 1024, "seconds": time.perf_counter() - t}}))
"""


def measure(cfg: dict) -> dict:
    code = CHILD.format(root=str(ROOT), cfg=json.dumps(cfg))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1800)
    if p.returncode != 0:
        lines = p.stderr.strip().splitlines()
        why = lines[-1] if lines else f"killed (exit {p.returncode}): out of memory?"
        return {"peak_mb": float("nan"), "seconds": float("nan"), "error": why}
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--small", action="store_true", help="tiny sizes (the test suite checks the script runs)")
    a = ap.parse_args(argv)
    big = {"n_samples": 20_000, "n_steps": 256, "width": 256, "train_steps": a.steps, "test_fraction": 0.2}
    if a.small:
        big = {"n_samples": 200, "n_steps": 8, "width": 8, "train_steps": a.steps}
    runs = {
        "reference (moons, n = 1,000, L = 32, width 16, 300 steps)":
            {"dataset": "moons", "n_samples": 1000, "n_steps": 32, "width": 16,
             "train_steps": 5 if a.small else 300},
        "largest two_layer / euler (hand-written chain)": dict(big, field="two_layer"),
        "largest two_layer / rk4 (autograd)": dict(big, field="two_layer", scheme="rk4"),
        "largest mlp / euler (autograd)": dict(big, field="mlp"),
    }
    peaks = []
    for name, cfg in runs.items():
        r = measure(cfg)
        peaks.append(r["peak_mb"])
        extra = f"  ({r['error']})" if "error" in r else ""
        print(f"{name:55s} peak {r['peak_mb']:8.0f} MB  {r['seconds']:7.1f} s{extra}")
    worst = max(peaks, key=lambda v: float("inf") if v != v else v)
    print(f"largest peak {worst:.0f} MB; ratio to the 2 GB target = {worst / 2048:.2f}")


if __name__ == "__main__":
    main()
