"""The cost model (flowviz.core.cost) against real measurements, and the budget it feeds."""

import importlib.util
import warnings

import pytest

import flowviz
from flowviz import Config, ConfigError, FlowvizWarning
from flowviz.core import cost
from flowviz.core.cost import Cost, estimate

CASE8_LINK = (
    "dataset=blobs&n_samples=20000&n_classes=8&noise=2&test_fraction=0.9&field=mlp&mlp_depth=6&width=256"
    "&lift=8&knots=64&time_mode=continuous&horizon=100&n_steps=256&scheme=rk4&viscosity=1&mc_samples=256"
    "&train_steps=20000&batch_size=2000&lr=10&smoothness=100&kinetic=100&gamma=10&weight_decay=1"
    "&seed=999999"
)


def _query(link: str) -> dict:
    return dict(kv.split("=", 1) for kv in link.split("&"))


def _bench_memory(root):
    spec = importlib.util.spec_from_file_location("bench_memory", root / "bench" / "memory.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


C8 = {
    "field": "mlp",
    "mlp_depth": 6,
    "lift": 8,
    "scheme": "rk4",
    "time_mode": "continuous",
    "knots": 64,
    "viscosity": 1.0,
    "dataset": "blobs",
    "n_classes": 8,
}
# the case-8 link's other keys: the kinetic term (a second recorded flow), the smoothness penalty (every block's
# weights), 90 % test points (snapshots), mini-batches
LINK8 = {"test_fraction": 0.9, "batch_size": 50, "kinetic": 100.0, "smoothness": 100.0, "mc_samples": 2}
# Sizes that run in well under a second of CPU each; every multiplying key of issue 17 appears, alone and in
# the combinations of its case 8. "analysis": also time the final pictures; "live": also one live view (with the
# final pictures by default).
MEASURED = [
    {"n_samples": 1000, "n_steps": 32},  # the chain (reference)
    {"n_samples": 4000, "n_steps": 16, "width": 128, "analysis": False, "live": True},  # the chain, wide
    {"n_samples": 2000, "n_steps": 16, "width": 64, "scheme": "rk4", "analysis": False, "live": True},
    {"n_samples": 2000, "n_steps": 16, "width": 32, "scheme": "midpoint", "lift": 8, "analysis": False, "live": True},
    {"n_samples": 1000, "n_steps": 8, "field": "mlp", "mlp_depth": 6, "width": 64, "analysis": False, "live": True},
    {"n_samples": 1000, "n_steps": 16, "viscosity": 0.5, "mc_samples": 16, "analysis": False, "live": True},
    {
        "n_samples": 1000,
        "n_steps": 16,
        "width": 64,
        "scheme": "rk4",
        "time_mode": "continuous",
        "knots": 64,
        "analysis": False,
    },
    {
        "n_samples": 4000,
        "n_steps": 16,
        "field": "mlp",
        "mlp_depth": 4,
        "width": 128,
        "time_mode": "tied",
        "batch_size": 250,
        "analysis": False,
    },
    {"n_samples": 2000, "n_steps": 32, "field": "antisymmetric", "lift": 8, "analysis": False},
    {"n_samples": 1000, "n_steps": 16, "kinetic": 1.0, "smoothness": 1.0, "analysis": False},
    {"n_samples": 3000, "n_steps": 16, "width": 256, "scheme": "midpoint", "analysis": False},  # 240 MB kept
    dict(C8, n_samples=400, n_steps=8, width=64, mc_samples=4, analysis=False),  # case 8, small
    dict(C8, n_samples=100, n_steps=32, width=256, mc_samples=2, analysis=False),  # case 8, heavy weights
    dict(C8, **LINK8, n_samples=1000, n_steps=8, width=64, analysis=False),  # case 8 as the link, small
    dict(C8, **LINK8, n_samples=1000, n_steps=32, width=256, analysis=False),  # ... and heavy
    {"n_samples": 300, "n_steps": 8, "width": 16, "scheme": "rk4", "lift": 2},  # with the pictures
    {"n_samples": 300, "n_steps": 8, "width": 16, "viscosity": 0.2, "mc_samples": 4},  # noisy pictures
]


@pytest.fixture(scope="module")
def measured(root):
    """Measured once, two measuring processes at a time (one per core of the machines the suite runs on); a
    config whose time is off by more than 2 is measured again, alone (at most twice), and the smallest CPU time
    kept: other processes on the machine only ever add to a measurement (caches, memory bandwidth)."""
    from concurrent.futures import ThreadPoolExecutor

    bench = _bench_memory(root)
    cfgs = [dict(c, train_steps=4) for c in MEASURED]
    step_s = [_estimate(c).part("step") for c in cfgs]
    bins, load = ([], []), [0.0, 0.0]  # the heaviest first, each to the process with less to do (by estimate)
    for i in sorted(range(len(cfgs)), key=lambda i: -step_s[i]):
        b = load.index(min(load))
        bins[b].append(i)
        load[b] += step_s[i] + 0.1  # + a child's start
    with ThreadPoolExecutor(2) as ex:
        parts = list(ex.map(lambda b: bench.measure_many([cfgs[i] for i in b], steps=3), bins))
    rows = [None] * len(cfgs)
    for b, part in zip(bins, parts):
        for i, r in zip(b, part):
            rows[i] = r
    for _ in range(2):  # at most twice more
        again = [i for i, (c, r) in enumerate(zip(cfgs, rows)) if "error" not in r and _off(c, r)]
        for i, r in zip(again, bench.measure_many([cfgs[i] for i in again], steps=3) if again else []):
            rows[i] = {k: (min(v, r[k]) if k.endswith("_s") and k in r else v) for k, v in rows[i].items()}
    return list(zip(cfgs, rows))


MIN_S = 0.005  # below 5 ms of CPU a step's time is the timer's and the load's, not the run's


def _within(measured_value: float, estimated: float, factor: float = 2.0) -> bool:
    return measured_value / factor <= estimated <= measured_value * factor


def _estimate(c: dict) -> Cost:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return estimate(Config.from_dict({k: v for k, v in c.items() if k not in ("analysis", "live")}))


def _pairs(c: dict, r: dict) -> list[tuple[str, float, float]]:
    """(what, measured, estimated) for every compared quantity of one config."""
    e = _estimate(c)
    pairs = [("peak_mb", r["peak_mb"], e.peak_mb)]
    if r["step_s"] > MIN_S:
        pairs.append(("step", r["step_s"], e.part("step")))
    if c.get("viscosity", 0) > 0:  # mc_samples multiplies every evaluation: the snapshots
        pairs.append(("snapshot", r["snapshot_s"], e.part("snapshot")))
    if "analysis_s" in r:
        pairs.append(("analysis", r["analysis_s"], e.part("analysis")))
    if "live_s" in r:
        pairs.append(("live view", r["live_s"], e.part("live view")))
    return pairs


def _off(c: dict, r: dict) -> bool:
    return any(not _within(m, est) for _, m, est in _pairs(c, r))


@pytest.mark.alone  # CPU times: measured with no other test process beside it (see the Makefile)
def test_estimate_is_within_a_factor_2_of_measured_time_and_peak_memory(measured):
    """Each config is trained for a few steps in a forked child (one torch thread); its CPU seconds per step
    (median of 3), per snapshot and for the final pictures, and its peak resident memory (VmHWM), are set
    against the cost model's estimate of the same phases (one live view too, where measured)."""
    assert len(measured) >= 12
    bad, compared = [], 0
    for c, r in measured:
        assert "error" not in r, (c, r)
        pairs = _pairs(c, r)
        compared += any(what == "step" for what, _, _ in pairs)
        bad += [(c, what, round(m, 4), round(est, 4)) for what, m, est in pairs if not _within(m, est)]
    assert not bad, bad
    assert compared >= 12  # steps long enough to time
    assert sum(what == "live view" for c, r in measured for what, _, _ in _pairs(c, r)) >= 8


@pytest.mark.alone  # shares the measured fixture with the test above: measured once, in the alone part
def test_the_heaviest_measured_config_is_heavy_in_memory_too(measured):
    """The test is not won by the fixed base alone: one config needs several hundred MB over it, and the
    estimate tracks that part within a factor of 2 as well."""
    base = cost.K["base_mb"]
    c, r = max(measured, key=lambda cr: cr[1]["peak_mb"])
    e = _estimate(c)
    assert r["peak_mb"] - base > 300, (c, r)
    assert _within(r["peak_mb"] - base, e.peak_mb - base), (c, r["peak_mb"], e.peak_mb)


def test_case_8_link_is_estimated_at_hours_and_many_gigabytes():
    cfg = Config.from_query(_query(CASE8_LINK))
    e = estimate(cfg)
    assert e.seconds > 10 * 3600 and e.peak_mb > 5 * 1024  # hours of CPU; issue 17 saw 14.3 GB resident
    # (the terms that multiply are measured at the largest safe sizes in MEASURED: kinetic's second flow and the
    # smoothness penalty's block weights, from the link, are in the estimate and among its drivers)
    assert {"mc_samples", "n_steps", "width", "mlp_depth", "scheme", "kinetic"} <= set(e.drivers)
    # (lift: d = 10 next to 5 hidden layers of 256: it adds about 1 % here)
    assert cost.over_budget(e) is not None
    text = e.describe()
    assert text.startswith("about ") and " GB, driven by " in text and ("days" in text or " h" in text)


# Peak resident memory of case 8's first training steps (VmHWM, one torch thread, malloc tuned as in a worker),
# measured on 2026-11-30 outside the suite (it needs up to 14 GB and minutes): L = 64 with the link's batch of
# 2,000 by `python bench/memory.py --only 17` (its row "case 8 as the link, width 256, L = 64, batch 2,000"; 4,251
# MB for one step alone); L = 128 the link with 2,200 points and one step; L = 256 the link as written (13,527
# and 13,727 MB in two runs). Issue 17 reported 14.3 GB.
CASE8_PEAKS_MB = {64: 4821, 128: 7743, 256: 13627}


@pytest.mark.parametrize("L", sorted(CASE8_PEAKS_MB))
def test_case_8_at_its_batch_of_2000_is_estimated_within_a_factor_2_of_its_measured_peak(L):
    q = _query(CASE8_LINK)
    if L < 256:
        q.update(n_steps=str(L), n_samples="2200", test_fraction="0.1", mc_samples="1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FlowvizWarning)
        e = estimate(Config.from_query(q))
    assert _within(CASE8_PEAKS_MB[L], e.peak_mb)  # 1.09-1.27x under since K["ckpt_width"]; it was 1.9-2.2x


def test_hard_limit_link_of_case_7_is_over_the_default_budget_and_presets_are_not():
    hard = Config.from_query({"n_samples": "20000", "n_steps": "256", "width": "256", "train_steps": "20000"})
    e = estimate(hard)
    assert e.seconds > 3600 and e.drivers[:1] in (("train_steps",), ("n_samples",), ("n_steps",), ("width",))
    assert cost.over_budget(e) is not None and cost.over_budget(e, (1e9, 1e9)) is None
    for name in flowviz.preset_names():  # a lecture's scenarios must never be refused
        e = estimate(flowviz.preset(name))
        assert e.seconds < cost.DEFAULT_MAX_RUN_SECONDS / 4 and e.peak_mb < cost.DEFAULT_MAX_RUN_MB / 4, name


def test_describe_is_plain_text_with_hours_minutes_and_size():
    c = Cost(seconds=2 * 3600 + 10 * 60, peak_mb=14 * 1024, drivers=("mc_samples", "n_steps", "width", "lift"))
    assert c.describe() == "about 2 h 10 min and 14 GB, driven by mc_samples, n_steps, width, lift"
    assert Cost(42.0, 312.0, ()).describe() == "about 42 s and 312 MB"
    assert Cost(600.0, 1536.0, ("width",)).describe() == "about 10 min and 1.5 GB, driven by width"


def test_drivers_are_the_keys_that_multiply_largest_first():
    assert estimate(Config()).drivers == ()
    assert estimate(Config(width=256)).drivers == ("width",)
    e = estimate(Config(viscosity=0.5, mc_samples=256, n_steps=64))
    assert e.drivers[0] in ("mc_samples", "viscosity") and "n_steps" in e.drivers
    assert "noise" not in e.drivers and "seed" not in e.drivers
    # each multiplying key, alone, makes the run dearer; a lift makes its training steps dearer (d = 10 in the
    # field), its whole run less so: a lifted run has no grid solver (measured, one thread: 2.38 s in all with
    # lift 8 against 2.35 and 2.53 s without)
    base = estimate(Config())
    assert estimate(Config(lift=8)).part("step") > 1.25 * base.part("step")
    assert base.part("grid") > 0 and estimate(Config(lift=8)).part("grid") == 0
    for change in (
        {"n_steps": 64},
        {"scheme": "rk4"},
        {"width": 128},
        {"field": "mlp"},
        {"train_steps": 3000},
        {"n_samples": 8000},
        {"viscosity": 0.5},
    ):
        assert estimate(Config(**change)).seconds > 1.25 * base.seconds, change
    assert estimate(Config(field="mlp", mlp_depth=6)).seconds > estimate(Config(field="mlp")).seconds
    assert estimate(Config(viscosity=0.5, mc_samples=64)).seconds > 2 * estimate(Config(viscosity=0.5)).seconds


def test_train_refuses_what_cannot_fit_in_memory_before_allocating_it():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FlowvizWarning)
        cfg = Config(n_samples=200_000, n_steps=4096, width=1024, field="mlp", train_steps=1)
    assert estimate(cfg).peak_mb > cost.machine_mb()
    with pytest.raises(ConfigError, match="more than this machine's .* of memory"):
        flowviz.train(cfg)


def test_train_warns_with_the_estimate_over_the_budget(monkeypatch):
    monkeypatch.setattr(cost, "DEFAULT_MAX_RUN_SECONDS", 0.001)
    with pytest.warns(FlowvizWarning, match=r"this run will take about \d+ s and \d+ MB.*over a server's budget"):
        flowviz.train(Config(n_samples=60, width=4, n_steps=2, train_steps=2))


def test_the_command_line_prints_one_line_with_the_estimate_before_training(root):
    """Case 7's hard-limit config: the estimate line comes before the first step; then the run is stopped."""
    import subprocess
    import sys

    args = ["--set", "n_samples=20000", "--set", "n_steps=256", "--set", "width=256", "--set", "train_steps=20000"]
    p = subprocess.Popen(
        [sys.executable, "-m", "flowviz", "train", *args, "--out", "unused"],
        cwd=root,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        first = p.stderr.readline()
    finally:
        p.kill()
        p.wait()
    assert first.startswith("flowviz: warning: this run will take about "), first
    assert "driven by train_steps" in first and "FLOWVIZ_MAX_RUN_SECONDS" in first
    assert " h" in first or "days" in first
