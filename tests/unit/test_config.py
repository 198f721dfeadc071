import dataclasses
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowviz import ACTIVATIONS, CHOICES, DATASETS, FIELDS, STEPPERS, Config, ConfigError, preset, preset_names
from flowviz.core.timegrid import unresolved_step


def _strategy(f):
    m = f.metadata
    if m["choices"]:
        return st.sampled_from(m["choices"])
    if f.type == "bool":
        return st.booleans()
    if f.type == "int":
        return st.integers(m["lo"], m["hi"])
    return st.floats(m["lo"], m["hi"], allow_nan=False, exclude_min=m["lo_open"])


configs = (
    st.fixed_dictionaries({f.name: _strategy(f) for f in dataclasses.fields(Config) if f.name != "batch_size"})
    .filter(  # partitions float32 resolves (see timegrid)
        lambda d: unresolved_step(d["horizon"], d["n_steps"], d["partition"], d["partition_ratio"]) is None
    )
    .map(lambda d: Config(**d))
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs)
def test_query_and_json_round_trips_are_lossless(cfg):
    q = cfg.to_query()
    assert all(isinstance(v, str) for v in q.values())
    assert Config.from_query(q) == cfg
    assert Config.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert Config.from_json(cfg.to_json()) == cfg


def test_keys_fixed_by_the_issue_exist_with_their_names():
    fixed = (
        "dataset n_samples noise n_classes test_fraction seed field width activation time_mode knots lift "
        "horizon n_steps partition partition_ratio scheme head viscosity mc_samples optimizer lr train_steps "
        "batch_size weight_decay smoothness kinetic device"
    ).split()
    assert set(fixed) <= set(Config.keys())
    assert CHOICES["dataset"] == ("moons", "circles", "rings", "spirals", "xor", "checkerboard", "blobs", "csv")
    assert CHOICES["field"] == ("two_layer", "mlp", "antisymmetric")
    assert CHOICES["activation"] == ("relu", "tanh", "sigmoid", "softplus", "leaky_relu")
    assert CHOICES["time_mode"] == ("per_step", "tied", "continuous")
    assert CHOICES["scheme"] == ("euler", "midpoint", "rk4", "plain")
    assert CHOICES["device"] == ("auto", "cpu", "cuda", "mps")


def test_name_tables_match_the_config_choices():
    assert set(DATASETS) == set(CHOICES["dataset"])
    assert set(FIELDS) == set(CHOICES["field"])
    assert set(ACTIVATIONS) == set(CHOICES["activation"])
    assert set(STEPPERS) | {"plain"} == set(CHOICES["scheme"])


@pytest.mark.parametrize(
    "query, words",
    [
        ({"datset": "moons"}, ["unknown config key 'datset'", "dataset"]),
        ({"dataset": "donut"}, ["dataset='donut'", "moons", "spirals"]),
        ({"n_steps": "1000"}, ["n_steps=1000", "<= 256"]),
        ({"n_samples": "50000"}, ["n_samples=50000", "20000"]),
        ({"width": "0"}, ["width=0", ">= 1"]),
        ({"lift": "9"}, ["lift=9", "<= 8"]),
        ({"train_steps": "30000"}, ["train_steps=30000"]),
        ({"lr": "nan"}, ["lr=nan", "finite"]),
        ({"lr": "-1"}, ["lr=-1.0", "> 0"]),
        ({"horizon": "0"}, ["horizon=0.0", "> 0"]),
        ({"noise": "abc"}, ["noise='abc'", "float"]),
        ({"n_steps": "3.5"}, ["n_steps='3.5'", "whole number"]),
        ({"time_input": "maybe"}, ["time_input", "boolean"]),
        ({"activation": "x" * 300}, ["too long"]),
        ({"batch_size": "2000", "n_samples": "100"}, ["batch_size=2000", "n_samples=100"]),
    ],
)
def test_bad_values_name_key_value_and_what_is_allowed(query, words):
    with pytest.raises(ConfigError) as e:
        Config.from_query(query)
    for w in words:
        assert w in str(e.value)


def test_from_dict_rejects_wrong_types_and_unknown_keys():
    with pytest.raises(ConfigError, match="n_steps"):
        Config.from_dict({"n_steps": "many"})
    with pytest.raises(ConfigError, match="unknown config key 'bogus'"):
        Config.from_dict({"bogus": 1})
    with pytest.raises(ConfigError, match="JSON object"):
        Config.from_dict([1, 2])
    with pytest.raises(ConfigError, match="not valid JSON"):
        Config.from_json("{oops")
    with pytest.raises(ConfigError, match="must be of type"):
        Config(n_steps=True)


def test_frozen_and_ints_given_for_floats_are_the_same_config():
    cfg = Config(horizon=2)
    assert isinstance(cfg.horizon, float) and cfg == Config(horizon=2.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.horizon = 3.0


def test_with_sets_and_replace_validate():
    cfg = Config().with_sets(["n_steps=8", "scheme=rk4", "time_input=false"])
    assert (cfg.n_steps, cfg.scheme, cfg.time_input) == (8, "rk4", False)
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        Config().with_sets(["n_steps"])
    with pytest.raises(ConfigError, match="out of range"):
        Config().replace(n_steps=0)


def test_presets_load_and_validate():
    names = preset_names()
    assert {"moons", "reference", "rings_plane", "rings_lift"} <= set(names)
    ref = preset("reference")
    assert (ref.dataset, ref.n_samples, ref.width, ref.n_steps, ref.scheme, ref.train_steps) == (
        "moons",
        1000,
        16,
        32,
        "euler",
        300,
    )
    with pytest.raises(ConfigError, match="unknown preset 'nope'; valid presets: "):
        preset("nope")


def test_geometric_partition_sums_to_the_horizon():
    from flowviz.core.timegrid import partition

    t = partition(2.0, 10, "geometric", 1.5)
    s = t[1:] - t[:-1]
    assert t[0] == 0 and math.isclose(t[-1], 2.0)
    assert s[1:] / s[:-1] == pytest.approx([1.5] * 9)


# ------------------------------------------------- limits belong to the server (issue 14, section 4)
def _beyond(key):
    """A config dict with ``key`` one past its server limit (batch_size needs the points to exist)."""
    from flowviz import LIMITS

    over = {key: int(LIMITS[key][1]) + 1}
    if key == "batch_size":
        over["n_samples"] = over["batch_size"]
    return over


@pytest.mark.parametrize(
    "key", ["n_samples", "width", "knots", "lift", "mlp_depth", "n_steps", "mc_samples", "train_steps", "batch_size"]
)
def test_cost_keys_go_beyond_the_server_limit_in_python_with_a_warning_naming_it(key):
    from flowviz import LIMITS, FlowvizWarning
    from flowviz.core.config import SERVER_LIMITED

    assert key in SERVER_LIMITED
    over = _beyond(key)
    with pytest.warns(FlowvizWarning) as seen:
        cfg = Config(**over)
    assert f"{key}={over[key]} is beyond the server's limit {key} <= {int(LIMITS[key][1])} (flowviz.LIMITS)" in [
        str(w.message).split(":")[0] for w in seen
    ]
    assert getattr(cfg, key) == over[key]
    first = "n_samples" if key == "batch_size" else key  # (n_samples comes first and is over too)
    with pytest.raises(ConfigError, match=rf"{first}={over[first]} is out of range: must be <= .*hard limit"):
        cfg.check_server_limits()
    with pytest.raises(ConfigError, match="hard limit"):  # a link is strict, and says why before building
        Config.from_query({k: str(v) for k, v in over.items()})


def test_other_bounds_and_lower_limits_hold_in_python_too():
    for bad in (
        {"noise": 3.0},
        {"n_classes": 9},
        {"horizon": 101.0},
        {"n_steps": 0},
        {"width": 0},
        {"seed": 2**31},
        {"viscosity": 2.0},
    ):
        with pytest.raises(ConfigError, match="out of range"):
            Config(**bad)


def test_within_the_limits_nothing_warns_and_the_server_check_passes(recwarn):
    from flowviz import LIMITS

    cfg = Config(
        **{
            k: (int(hi) if isinstance(getattr(Config(), k), int) else hi)
            for k, (lo, hi) in LIMITS.items()
            if k != "batch_size"
        }
    )
    assert cfg.check_server_limits() is cfg
    assert not [w for w in recwarn if "limit" in str(w.message)]


def test_a_link_beyond_a_limit_gets_the_notice_and_keeps_the_default():
    from flowviz.ui.links import config_from_query

    cfg, notices = config_from_query({"n_steps": "1024", "width": "64"}, Config())
    assert cfg.n_steps == Config().n_steps and cfg.width == 64
    assert len(notices) == 1 and "n_steps" in notices[0] and "<= 256" in notices[0]


def test_the_server_refuses_a_run_beyond_the_limits_that_python_accepts(registry):
    from flowviz import FlowvizWarning

    with pytest.warns(FlowvizWarning):
        cfg = Config(n_steps=300, n_samples=60, train_steps=1)
    reg = registry("thread", prestart=False)
    with pytest.raises(ConfigError, match="n_steps=300 .*<= 256"):
        reg.start(cfg)
    assert reg.started == 0


def test_with_steps_beyond_the_limit_rediscretises_and_converges():
    """The notebook's convergence study the old hard limit forbade: Euler's error against dopri5 at the
    data points falls about 4-fold from L = 128 to L = 512 (first order)."""
    import numpy as np

    import flowviz
    from flowviz import FlowvizWarning

    r = flowviz.train(Config(n_samples=80, time_mode="tied", width=8, n_steps=8, train_steps=40, horizon=2.0))
    x = r.data.x_train[:20]
    errs = {}
    for L in (128, 512):
        if L > 256:
            with pytest.warns(FlowvizWarning, match="n_steps <= 256"):
                m = r.model.with_steps(L)
        else:
            m = r.model.with_steps(L)
        assert m.L == L
        errs[L] = float(np.abs(m.trajectory(x)[-1] - m.reference(x)[-1]).max())
    assert 2.5 < errs[128] / errs[512] < 6.0, errs
