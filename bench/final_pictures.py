"""A run's final pictures and instruments: seconds from the end of its training to its last instrument.

A server trains a seeded config in a worker process while a page watches it (the registry is asked for the run
every 20 ms, as a page polls); the clock starts when the run's last snapshot (``done``) is seen and stops when
every instrument that fits the run has its data. Each tree named on the command line (a checkout of flowviz:
this one, and e.g. a worktree of main) is measured in turn, in fresh processes, interleaved over ``--reps``
repetitions; the last lines give the medians, their ratio, and whether the seeded numbers (the final weights,
views and instruments) are bit-identical across the trees.

    python bench/final_pictures.py [--reps 5] [--preset moons] [--steps 200] [--set KEY=VALUE ...] TREE [TREE ...]

e.g. against main: ``git worktree add /tmp/main main; python bench/final_pictures.py /tmp/main .``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ONE = r"""
import hashlib, json, sys, time
import numpy as np
import flowviz
try:
    from flowviz.serve.runs.registry import Registry
except ImportError:  # the tree before serve's two wings
    from flowviz.serve.runs import Registry

def digest(obj, h):
    import dataclasses
    if isinstance(obj, np.ndarray):
        h.update(str(obj.dtype).encode()); h.update(np.ascontiguousarray(obj).tobytes())
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            h.update(f.name.encode()); digest(getattr(obj, f.name), h)
    elif isinstance(obj, dict):
        for k in sorted(obj, key=str):
            h.update(str(k).encode()); digest(obj[k], h)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            digest(v, h)
    elif hasattr(obj, "detach"):
        digest(obj.detach().cpu().numpy(), h)
    elif isinstance(obj, float):
        h.update(repr(obj).encode())
    elif isinstance(obj, (int, str, bool)) or obj is None:
        h.update(repr(obj).encode())

preset, steps, sets = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
cfg = flowviz.preset(preset).replace(train_steps=steps).with_sets(sets)
reg = Registry(max_workers=1, mode="process")
reg.ready(120)
run = reg.start(cfg)
end = None
while True:
    reg.get(run.key)  # a page watching it
    if end is None and run.latest is not None and run.latest.done:
        end = time.perf_counter()
    if run.finished and run.instruments_made() and run.views() is not None and not run.views().live:
        break
    if run.error:
        raise SystemExit(run.error)
    time.sleep(0.02)
last = time.perf_counter()
from flowviz.training.prepared import PREPARED, applies
hw, hv, hi = hashlib.sha256(), hashlib.sha256(), hashlib.sha256()
digest(run.latest.state, hw)
v = run.views()
digest({f: getattr(v, f) for f in ("trajectories", "output_points", "extent") if hasattr(v, f)}, hv)
for name in PREPARED:
    if applies(name, cfg):
        digest(run._instruments.get(name), hi)
print(json.dumps({"s": last - end, "weights": hw.hexdigest()[:16], "views": hv.hexdigest()[:16],
                  "instruments": hi.hexdigest()[:16]}))
reg.shutdown()
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("trees", nargs="+")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--preset", default="moons")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--set", action="append", default=[], help="KEY=VALUE overrides of the preset's config")
    a = ap.parse_args()
    env = dict(os.environ, FLOWVIZ_CACHE_DIR="off", FLOWVIZ_WARM="0", FLOWVIZ_VIEW_WORKERS="1")
    times: dict[str, list[float]] = {t: [] for t in a.trees}
    sums: dict[str, set[str]] = {t: set() for t in a.trees}
    for rep in range(a.reps):
        for tree in a.trees if rep % 2 == 0 else reversed(a.trees):
            out = subprocess.run(
                [sys.executable, "-c", ONE, a.preset, str(a.steps), json.dumps(a.set)],
                cwd=tree,
                env=dict(env, PYTHONPATH=str(Path(tree).resolve())),
                capture_output=True,
                text=True,
            )
            if out.returncode:
                sys.exit(f"{tree}: {out.stderr[-2000:]}")
            got = json.loads(out.stdout.strip().splitlines()[-1])
            times[tree].append(got["s"])
            sums[tree].add(f"{got['weights']} {got['views']} {got['instruments']}")
            print(f"rep {rep} {tree}: {got['s']:.2f} s  {got['weights']} {got['views']} {got['instruments']}")
    med = {t: statistics.median(v) for t, v in times.items()}
    for t in a.trees:
        print(f"{t}: median {med[t]:.2f} s from training's end to the last instrument ({len(times[t])} runs)")
    same = len({s for v in sums.values() for s in v}) == 1
    print(f"seeded numbers bit-identical across the trees and runs: {same}")
    first, *rest = a.trees
    for t in rest:
        print(f"ratio {t} / {first}: {med[t] / med[first]:.2f}")


if __name__ == "__main__":
    main()
