"""Peak resident memory and time of runs, against the cost model (flowviz.core.cost).

One measuring process imports torch and flowviz once (one torch thread, malloc tuned as in the workers),
then forks a child per config, so one config's peak does not hide another's and no child pays the import.
Each child resets its peak (``/proc/self/clear_refs``), then measures:

- step_s: the median of ``--steps`` optimiser steps of flowviz's own training loop (after one warm-up
  step), timed between the loop's cancel checks;
- snapshot_s: one snapshot's evaluation (train and test points; mc_samples paths each when viscosity > 0);
- analysis_s: the final pictures (flowviz.training.analysis.analyse);
- live_s: one live view (the same, ``live=True``: what a training worker makes every second or so);
- peak_mb: the child's peak resident set (VmHWM) over all of it: what a whole run of the config peaks at,
  since training reaches its steady state in the first steps.

Each child runs under an address-space cap (``--limit-mb``, 6000 MB above the measuring process by default, as a
worker runs under FLOWVIZ_WORKER_MB): a config that needs more ends as an error in its child, never as a full
machine.

Times are the process's CPU seconds (one torch thread, so the seconds an idle core would take): the
development machine is shared by many agents (load averages of 10 to 25 on 2 cores), and wall-clock times
there measure the queue more than the run (the ``*_wall_s`` fields keep them for comparison). Few steps,
their median, and the run's time scaled from them.
``--fit`` refits the cost model's constants on the table and prints them with the ratios before and after; the
last line gives the median and the largest ratio of estimate to measurement (either way) for time and memory.
``--measured LOG`` takes the rows from an earlier run's stderr instead of measuring them again.

    python bench/memory.py [--steps 3] [--small] [--fit] [--limit-mb 6000] [--only 0,3]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PARENT = r"""
import json, os, statistics, sys, time, warnings
sys.path.insert(0, {root!r})
import torch
torch.set_num_threads(1)
from flowviz.serve.work.process import limit_memory, tune_malloc
tune_malloc()
from flowviz.core.config import Config
from flowviz.core.data import make_dataset
from flowviz.core.model import build_model
from flowviz.training.analysis import analyse
from flowviz.training.train import evaluate, train_iter
import torchdiffeq  # noqa: F401  (the reference solution's import, paid once as in a long-lived worker)
import torch._dynamo  # noqa: F401  (the first optimiser's import, 1.3 s: a worker's fork server has it preloaded)
warnings.simplefilter("ignore")
_w = Config(n_samples=60, n_steps=2, width=4, train_steps=2)  # warm lazy initialisation, as a worker has
analyse(build_model(_w, 2), make_dataset(_w))

def kb(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])

class Clock:  # the loop asks is_set() once before every step: the gaps are the steps
    def __init__(self):
        self.t = []
    def is_set(self):
        self.t.append(time.process_time())
        return False

def child(spec):
    limit_memory(float(spec.get("limit_mb", 0)))  # over it: a MemoryError here, not a full machine
    open("/proc/self/clear_refs", "w").write("5")  # peak := current resident set
    cfg = Config.from_dict(spec["config"])
    steps = int(spec["steps"])
    ds = make_dataset(cfg)
    model = build_model(cfg, ds.n_classes)
    clock = Clock()
    for _ in train_iter(cfg.replace(train_steps=steps + 2), data=ds, model=model, log_every=10**9, cancel=clock):
        pass
    gaps = [b - a for a, b in zip(clock.t[1:], clock.t[2:])]  # step 1 is the warm-up; the last is untimed
    out = {{"step_s": statistics.median(gaps)}}
    model.train(False)
    xtr, ytr = torch.as_tensor(ds.x_train), torch.as_tensor(ds.y_train)
    xte, yte = torch.as_tensor(ds.x_test), torch.as_tensor(ds.y_test)
    t, w = time.process_time(), time.perf_counter()
    evaluate(model, xtr, ytr), evaluate(model, xte, yte)
    out["snapshot_s"], out["snapshot_wall_s"] = time.process_time() - t, time.perf_counter() - w
    if spec.get("analysis", True):
        t, w = time.process_time(), time.perf_counter()
        analyse(model, ds)
        out["analysis_s"], out["analysis_wall_s"] = time.process_time() - t, time.perf_counter() - w
    if spec.get("live", False):
        t, w = time.process_time(), time.perf_counter()
        analyse(model, ds, live=True)
        out["live_s"], out["live_wall_s"] = time.process_time() - t, time.perf_counter() - w
    out["peak_mb"] = kb("VmHWM") / 1024
    return out

for line in sys.stdin:
    spec = json.loads(line)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            res = child(spec)
        except BaseException as e:
            res = {{"error": f"{{type(e).__name__}}: {{e}}"[:300]}}
        os.write(w, json.dumps(res).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    print(data.decode() if data else json.dumps({{"error": f"child died (status {{status}}): out of memory?"}}),
          flush=True)
"""


def measure_many(
    configs: list[dict],
    *,
    steps: int = 3,
    analysis: bool = True,
    timeout: float = 1800,
    log=None,
    limit_mb: float = 6000.0,
) -> list[dict]:
    """Measure each config (a dict of config keys) in a forked child of one measuring process, each child capped
    at ``limit_mb`` of address space above the measuring process (0: no cap)."""
    specs = "".join(
        json.dumps(
            {
                "config": {k: v for k, v in c.items() if k not in ("analysis", "live")},
                "steps": steps,
                "analysis": analysis and c.get("analysis", True),
                "live": c.get("live", analysis and c.get("analysis", True)),
                "limit_mb": limit_mb,
            }
        )
        + "\n"
        for c in configs
    )
    p = subprocess.Popen(
        [sys.executable, "-c", PARENT.format(root=str(ROOT))], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    p.stdin.write(specs)
    p.stdin.close()
    out = []
    for line in p.stdout:  # one line per config, as each child ends (progress on stderr with --verbose)
        out.append(json.loads(line))
        if log is not None:
            print(json.dumps({"config": configs[len(out) - 1], **out[-1]}), file=log, flush=True)
    if p.wait(timeout) != 0:
        raise RuntimeError(f"the measuring process ended with status {p.returncode}")
    return out


def measured_vs_estimated(configs: list[dict], results: list[dict]) -> list[dict]:
    """Rows of config, measurement and the cost model's estimate of the same phases."""
    sys.path.insert(0, str(ROOT))
    import warnings

    from flowviz.core.config import Config
    from flowviz.core.cost import estimate

    rows = []
    for c, r in zip(configs, results):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            e = estimate(Config.from_dict({k: v for k, v in c.items() if k not in ("analysis", "live")}))
        rows.append(
            {
                "config": c,
                **r,
                "est_step_s": e.part("step"),
                "est_snapshot_s": e.part("snapshot"),
                "est_analysis_s": e.part("analysis"),
                "est_live_s": e.part("live view"),
                "est_peak_mb": e.peak_mb,
            }
        )
    return rows


BIG = {"n_samples": 20_000, "n_steps": 256, "width": 256, "test_fraction": 0.2, "analysis": False}
CASE8 = {
    "dataset": "blobs",
    "n_samples": 2000,
    "n_classes": 8,
    "test_fraction": 0.5,
    "field": "mlp",
    "mlp_depth": 6,
    "width": 64,
    "lift": 8,
    "knots": 64,
    "time_mode": "continuous",
    "n_steps": 16,
    "scheme": "rk4",
    "viscosity": 1.0,
    "mc_samples": 4,
}
LINK8 = {"test_fraction": 0.9, "batch_size": 100, "kinetic": 100.0, "smoothness": 100.0, "mc_samples": 2}

# The configs of the table: the reference, the hard-limit configs, and the keys that multiply, alone and
# combined (issue 17, case 8, at sizes that run in seconds).
TABLE = {
    "reference (n = 1,000, L = 32, width 16)": {"n_samples": 1000, "n_steps": 32},
    "two_layer euler n = 20,000 L = 256 width 256 (chain)": dict(BIG),
    "two_layer rk4, limits (autograd, checkpointed)": dict(BIG, scheme="rk4"),
    "mlp euler, limits (autograd, checkpointed)": dict(BIG, field="mlp"),
    "midpoint L = 64 width 64": {"n_samples": 4000, "n_steps": 64, "width": 64, "scheme": "midpoint"},
    "rk4 lift 8 width 128": {"n_samples": 4000, "n_steps": 32, "width": 128, "lift": 8, "scheme": "rk4"},
    "mlp depth 6 width 128": {"n_samples": 2000, "n_steps": 32, "field": "mlp", "mlp_depth": 6, "width": 128},
    "viscosity 0.5, mc_samples 32": {"n_samples": 2000, "n_steps": 32, "viscosity": 0.5, "mc_samples": 32},
    "viscosity rk4 mc 16 lift 4": {"n_samples": 1000, "n_steps": 16, "viscosity": 0.2, "scheme": "rk4", "lift": 4},
    "continuous knots 64 rk4 width 128": {
        "n_samples": 2000,
        "n_steps": 64,
        "time_mode": "continuous",
        "knots": 64,
        "scheme": "rk4",
        "width": 128,
    },
    "tied mlp depth 4 width 256 batch 500": {
        "n_samples": 10000,
        "n_steps": 32,
        "time_mode": "tied",
        "field": "mlp",
        "mlp_depth": 4,
        "width": 256,
        "batch_size": 500,
    },
    "antisymmetric lift 8 L = 128": {"n_samples": 4000, "n_steps": 128, "field": "antisymmetric", "lift": 8},
    "case 8 small (mlp 6 x 64, lift 8, rk4, continuous, viscosity, mc 4)": dict(CASE8),
    "case 8, width 128 and L = 32": dict(CASE8, width=128, n_steps=32, mc_samples=2),
    # the link's other keys: kinetic (a second recorded flow with its own stage weights), smoothness (theta_k of
    # every block and their differences), 90 % test points, mini-batches
    "case 8 with kinetic and smoothness, L = 16": dict(
        CASE8, kinetic=100.0, smoothness=100.0, mc_samples=2, analysis=False
    ),
    "case 8 as the link, width 128, L = 32": dict(CASE8, **LINK8, width=128, n_steps=32, analysis=False),
    "case 8 as the link, width 256, L = 64": dict(CASE8, **LINK8, width=256, n_steps=64, analysis=False),
    # ... with the link's batch of 2,000 points: a checkpointed backward's width-vectors (cost.K["ckpt_width"])
    "case 8 as the link, width 256, L = 64, batch 2,000": {
        **CASE8,
        **LINK8,
        "width": 256,
        "n_steps": 64,
        "n_samples": 2200,
        "test_fraction": 0.1,
        "batch_size": 2000,
        "analysis": False,
    },
    "antisymmetric lift 8 L = 32": {"n_samples": 2000, "n_steps": 32, "field": "antisymmetric", "lift": 8},
}


TIME_KEYS = ["dispatch", "mac", "elem", "train", "fast_block", "fast_elem", "adam", "analysis", "live"]
TIME_KEYS += ["spill", "spill_mb"]
MEMORY_KEYS = ["base_mb", "act_mb", "eval_mb", "mix_copies", "kinetic_copies", "smooth_copies", "ckpt_width"]
PLAN_KEYS = ("analysis", "live")  # what a row measures, beside the config's keys
PHASES = {"step_s": "step", "snapshot_s": "snapshot", "analysis_s": "analysis", "live_s": "live view"}


def fit(rows: list[dict], *, min_s: float = 0.002) -> dict:
    """Refit the cost model's constants on measured rows ({"config": ..., "step_s": ..., "peak_mb": ...}):
    least squares of log(estimate / measurement), Nelder-Mead (scipy: bench only). Returns the constants."""
    import warnings

    import numpy as np
    from scipy.optimize import minimize

    from flowviz.core import cost
    from flowviz.core.config import Config

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfgs = [
            cost._values(Config.from_dict({k: v for k, v in r["config"].items() if k not in PLAN_KEYS}).to_dict())
            for r in rows
        ]
    pairs = [(c, PHASES[k], r[k]) for c, r in zip(cfgs, rows) for k in PHASES if r.get(k, 0) > min_s]

    def loss(x, names, phases):
        cost.K.update({k: float(v) for k, v in zip(names, np.exp(x))})
        err = []
        for c, r in zip(cfgs, rows):
            _, peak, parts = cost._cost(c, None, None)
            parts = dict(parts)
            if "peak" in phases:
                err.append(math.log(peak / r["peak_mb"]))
            err += [math.log(parts[p] / m) for cc, p, m in pairs if cc is c and p in phases]
        return float(np.sum(np.square(err)))

    for names, phases in ((TIME_KEYS, ("step", "snapshot", "analysis", "live view")), (MEMORY_KEYS, ("peak",))):
        res = minimize(
            loss,
            np.log([cost.K[k] for k in names]),
            args=(names, phases),
            method="Nelder-Mead",
            options={"maxiter": 3000, "xatol": 1e-3, "fatol": 1e-6},
        )
        loss(res.x, names, phases)
    fitted = {k: float(f"{cost.K[k]:.3g}") for k in TIME_KEYS + MEMORY_KEYS}
    print("fitted constants:", fitted)
    return fitted


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--small", action="store_true", help="tiny sizes (the test suite checks the script runs)")
    ap.add_argument("--fit", action="store_true", help="refit the cost model's constants on the table")
    ap.add_argument(
        "--log",
        nargs="*",
        default=(),
        help="with --fit: also fit on these logs (JSON lines on stderr of this script and of train_scaling.py --keys)",
    )
    ap.add_argument("--only", default="", help="comma-separated numbers of the table's rows (0-based)")
    ap.add_argument(
        "--limit-mb",
        type=float,
        default=6000.0,
        help="each child's address-space cap above the measuring process (0: none)",
    )
    ap.add_argument(
        "--measured",
        default="",
        help="rows measured before (this script's stderr, JSON lines): compare or refit without measuring again",
    )
    a = ap.parse_args(argv)
    table = dict(TABLE)
    if a.small:
        table = {
            "tiny two_layer": {"n_samples": 200, "n_steps": 8, "width": 8},
            "tiny case 8": dict(CASE8, n_samples=200, width=8, n_steps=4, mc_samples=2),
        }
    if a.only:
        keep = {int(i) for i in a.only.split(",")}
        table = {k: v for i, (k, v) in enumerate(table.items()) if i in keep}
    if a.measured:  # rows measured before (this script's stderr): refit or compare without measuring again
        got = [json.loads(line) for line in Path(a.measured).read_text().splitlines() if line.strip()]
        table = {json.dumps(r["config"]): r["config"] for r in got}
        cfgs, measured = list(table.values()), [{k: v for k, v in r.items() if k != "config"} for r in got]
    else:
        cfgs = [dict(v, train_steps=a.steps + 1) for v in table.values()]
        measured = measure_many(cfgs, steps=a.steps, log=sys.stderr, limit_mb=a.limit_mb)
    if a.fit:
        print("before the fit: " + _summary(measured_vs_estimated(cfgs, measured)))
        logged = [json.loads(line) for f in a.log for line in Path(f).read_text().splitlines() if line.strip()]
        fit([{"config": c, **r} for c, r in zip(cfgs, measured)] + [r for r in logged if "error" not in r])
    rows = measured_vs_estimated(cfgs, measured)
    print(
        f"{'config':70s} {'step s':>15s} {'snapshot s':>15s} {'analysis s':>15s} {'peak MB':>13s}"
        "   (measured / estimated)"
    )
    for name, r in zip(table, rows):
        if "error" in r:
            print(f"{name[:70]:70s} {r['error']}")
            continue
        cells = [f"{r.get(k, float('nan')):7.3g}/{r['est_' + k]:<7.3g}" for k in ("step_s", "snapshot_s", "analysis_s")]
        mem = f"{r['peak_mb']:6.0f}/{r['est_peak_mb']:<6.0f}"
        print(f"{name[:70]:70s} {cells[0]:>15s} {cells[1]:>15s} {cells[2]:>15s} {mem}")
    print(_summary(rows))


def _summary(rows: list[dict]) -> str:
    """Median and largest ratio of estimate to measurement (either way), time (phases over 10 ms) and memory."""
    import statistics

    t, m = [], []
    for r in rows:
        if "error" in r:
            continue
        for k in ("step_s", "snapshot_s", "analysis_s"):
            if r.get(k, 0) > 0.01:  # below 10 ms the timer and the load dominate
                t.append(max(r[k] / r["est_" + k], r["est_" + k] / r[k]))
        m.append(max(r["peak_mb"] / r["est_peak_mb"], r["est_peak_mb"] / r["peak_mb"]))
    t, m = t or [1.0], m or [1.0]
    return (
        f"ratio of estimate to measurement over {len(rows)} configs: time median {statistics.median(t):.2f}, "
        f"largest {max(t):.2f}; memory median {statistics.median(m):.2f}, largest {max(m):.2f}"
    )


if __name__ == "__main__":
    main()
