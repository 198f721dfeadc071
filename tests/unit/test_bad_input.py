"""The bad-input catalogue: each case gets a clear message, and what was there before stays."""

import io
import pickle

import numpy as np
import pytest
import torch

import flowviz
from flowviz import Config, TrainingDiverged
from flowviz.core.errors import CheckpointError, DataError
from flowviz.runfiles.files import model_from_bytes, weights_bytes
from flowviz.ui.links import config_from_query, parse_link
from flowviz.ui.state import PageState

# ---------------------------------------------------------------- links: query parameters
QUERY_CASES = [
    ({"bogus": "1"}, "bogus", "not a setting"),
    ({"n_steps": "abc"}, "n_steps", "not a valid int"),
    ({"n_steps": "3.5"}, "n_steps", "whole number"),
    ({"lr": "nan"}, "lr", "finite"),
    ({"horizon": "inf"}, "horizon", "finite"),
    ({"n_samples": "-5"}, "n_samples", "out of range"),
    ({"n_steps": "1e9"}, "n_steps", "out of range"),
    ({"width": "100000"}, "width", "hard limit"),
    ({"dataset": "donut"}, "dataset", "not one of"),
    ({"scheme": "heun"}, "scheme", "not one of"),
    ({"time_input": "maybe"}, "time_input", "boolean"),
    ({"dataset": "x" * 5000}, "dataset", "too long"),
    ({"horizon": "0"}, "horizon", "out of range"),
    ({"batch_size": "5000", "n_samples": "100"}, "batch_size", "larger than n_samples"),
]


@pytest.mark.parametrize("q, key, msg", QUERY_CASES, ids=[c[1] + "-" + c[2][:12] for c in QUERY_CASES])
def test_bad_link_values_fall_back_with_a_notice(q, key, msg):
    cfg, notices = config_from_query(q, Config())
    text = " ".join(notices)
    assert key in text and msg in text, text
    if key in Config.keys():
        assert getattr(cfg, key) == getattr(Config(), key)  # the default stays for the bad key
    rest = {k: v for k, v in q.items() if k != key}
    assert cfg == Config.from_query(rest)  # the good keys of the link still apply, nothing else changed


def test_link_flags_that_are_not_ours_are_named():
    link = parse_link({"scenario": "nope", "hide": "data,evil", "present": "1"})
    assert link.flags == {
        "scenario": None,
        "present": True,
        "hide": {"data"},
        "probe": None,
        "points": (),
        "view": None,
        "room": None,
        "step": None,
        "k": None,
        "speed": None,
    }
    assert any("scenario" in n for n in link.notices) and any("evil" in n for n in link.notices)


# ---------------------------------------------------------------- CSV uploads
GOOD = (np.array([[0, 0], [1, 1], [2, 2], [3, 3]], np.float32), np.array([0, 1, 0, 1]))
CSV_CASES = [
    (b"", "empty"),
    (b"a,b,c\n1,2,0\n2,3,1\n3,4,0\n4,5,1\n", "header must be x1,x2,label"),
    (b"x1,x2,label\n1,two,0\n2,3,1\n3,4,0\n4,5,1\n", "not a number"),
    (b"x1,x2,label\nnan,2,0\n2,3,1\n3,4,0\n4,5,1\n", "NaN or infinite"),
    (b"x1,x2,label\ninf,2,0\n2,3,1\n3,4,0\n4,5,1\n", "NaN or infinite"),
    (b"x1,x2,label\n1,2,0\n2,3,0\n3,4,0\n4,5,0\n", "single class"),
    (b"x1,x2,label\n" + b"1,2,0\n2,3,1\n" * 10_001, "at most"),
    (b"\x00\x01\x02binary\xff\xfe" * 100, "binary"),
    (b"x1,x2,label\n" + b"1.0,2.0,1\n" * 300_000, "too large"),
    (b"x1,x2,label\n1,2\n2,3,1\n3,4,0\n4,5,1\n", "expected 3 values"),
    (b"x1,x2,label\n1,2,0.5\n2,3,1\n3,4,0\n4,5,1\n", "whole numbers"),
    (b"x1,x2,label\n1,2,0\n2,3,1\n", "at least 4"),
]


@pytest.mark.parametrize("raw, msg", CSV_CASES, ids=[c[1] for c in CSV_CASES])
def test_bad_csv_uploads_are_refused_and_the_previous_points_kept(raw, msg):
    state = PageState(csv=GOOD)
    ok, text = state.upload_csv("points.csv", raw)
    assert not ok and msg in text, text
    assert "previous data stay" in text and state.csv is GOOD


# ---------------------------------------------------------------- run imports
@pytest.fixture(scope="module")
def trained():
    return flowviz.train(Config(n_samples=100, n_steps=3, width=4, train_steps=5, time_mode="tied"))


def _import(name, raw):
    state = PageState(run_key="before", autostart=False)
    err = state.import_file(name, raw, registry=None, data_for=None)
    return err, state


IMPORT_CASES = [
    ("model.safetensors", lambda r: pickle.dumps(r.model.state_dict()), "not a safetensors file"),
    ("model.safetensors", lambda r: weights_bytes(r.model)[:60], "truncated"),
    ("model.safetensors", lambda r: b"", "not a safetensors file"),
    ("model.safetensors", lambda r: _torch_zip(r), "not a safetensors file"),
    ("model.safetensors", lambda r: _foreign(), "not written by flowviz"),
    ("model.safetensors", lambda r: _wrong_shapes(r), "shape"),
    ("model.safetensors", lambda r: _other_family(r), "do not fit"),
    ("model.safetensors", lambda r: _bad_config(r), "config is not valid"),
    ("config.json", lambda r: b'{"n_steps": -3}', "n_steps"),
    ("config.json", lambda r: b"not json at all", "not valid JSON"),
    ("config.json", lambda r: b'{"config": {"dataset": "donut"}}', "dataset"),
    ("run.pkl", lambda r: pickle.dumps({"a": 1}), "safetensors or a config.json"),
]


def _torch_zip(r):
    buf = io.BytesIO()
    torch.save(r.model.state_dict(), buf)
    return buf.getvalue()


def _foreign():
    from safetensors.torch import save

    return save({"w": torch.zeros(3)})


def _meta(r, **over):
    d = {"format": "flowviz-run-1", "config": r.config.to_json(), "n_classes": "2"}
    d.update(over)
    return d


def _wrong_shapes(r):
    from safetensors.torch import save

    sd = {k: v.contiguous() for k, v in r.model.state_dict().items()}
    sd["field.W1"] = torch.zeros(1, 3, 3)
    return save(sd, metadata=_meta(r))


def _other_family(r):
    from safetensors.torch import save

    sd = {k: v.contiguous() for k, v in r.model.state_dict().items()}
    return save(sd, metadata=_meta(r, config=r.config.replace(field="antisymmetric").to_json()))


def _bad_config(r):
    from safetensors.torch import save

    sd = {k: v.contiguous() for k, v in r.model.state_dict().items()}
    return save(sd, metadata=_meta(r, config='{"width": 99999}'))


@pytest.mark.parametrize("name, make, msg", IMPORT_CASES, ids=[f"{c[0]}-{c[2][:16]}" for c in IMPORT_CASES])
def test_bad_imports_are_refused_and_nothing_changes(trained, name, make, msg):
    err, state = _import(name, make(trained))
    assert err is not None and msg in err, err
    assert "Nothing was changed" in err and state.run_key == "before" and state.config == Config()
    assert state == PageState(run_key="before", autostart=False)  # nothing else changed either


def test_a_good_import_gives_identical_predictions(trained):
    m = model_from_bytes(weights_bytes(trained.model))
    np.testing.assert_array_equal(m.predict_proba(trained.data.x), trained.model.predict_proba(trained.data.x))


# ---------------------------------------------------------------- numerical trouble
def test_a_diverging_learning_rate_keeps_the_last_finite_state():
    cfg = Config(n_samples=200, optimizer="sgd", lr=10.0, horizon=50.0, n_steps=2, train_steps=50)
    with pytest.raises(TrainingDiverged, match="smaller learning rate") as e:
        flowviz.train(cfg)
    r = e.value.result
    assert all(torch.isfinite(p).all() for p in r.model.parameters())
    assert np.isfinite(r.model.predict_proba(r.data.x)).all()


@pytest.mark.slow
def test_a_step_size_that_overflows_is_reported_in_a_run(registry):

    reg = registry("thread", 1)
    run = reg.start(
        Config(n_samples=200, optimizer="sgd", lr=5.0, horizon=100.0, n_steps=1, train_steps=200, weight_decay=0.0)
    )
    run.join(60)
    assert run.status == "error" and "diverged" in run.error and "step size" in run.error
    assert run.latest is not None and run.latest.state is not None
    assert all(torch.isfinite(v).all() for v in run.latest.state.values())  # the last finite weights
    assert run.views() is not None  # the last good picture stays on screen


def test_direct_api_errors_are_typed():
    with pytest.raises(DataError):
        flowviz.load_csv(b"x1,x2,label\n")
    with pytest.raises(CheckpointError):
        model_from_bytes(b"garbage-bytes")


# ---------------------------------------------------------------- issue 17: what the catalogue missed
def _header_only(header: bytes) -> bytes:
    """A .safetensors file that is only a header (8-byte little-endian length, then the header's bytes)."""
    return len(header).to_bytes(8, "little") + header


DEEP = b"[" * 49_000 + b"]" * 49_000
IMPORT_CASES_17 = [
    ("model.safetensors", lambda r: _header_only(b"[]"), "header is a JSON list"),
    ("model.safetensors", lambda r: _header_only(DEEP), "nested 49000 levels deep"),
    ("model.safetensors", lambda r: _header_only(b'{"__metadata__": [1]}'), "not a map of text to text"),
    ("model.safetensors", lambda r: _bad_config_text(r, DEEP.decode()), "nested 49000 levels deep"),
    ("model.safetensors", lambda r: _bad_config_text(r, '{"seed": ' + "7" * 5000 + "}"), "5000 characters"),
    ("config.json", lambda r: DEEP, "nested 49000 levels deep"),
    ("config.json", lambda r: b'["config"]', "holds a list"),
    ("config.json", lambda r: b'"config"', "holds a str"),
    ("config.json", lambda r: b'{"seed": ' + b"1" * 5000 + b"}", "5000 characters"),
    ("config.json", lambda r: b'{"seed": 1e999}', "seed=inf must be a whole number"),
]


def _bad_config_text(r, text):
    from safetensors.torch import save

    sd = {k: v.contiguous() for k, v in r.model.state_dict().items()}
    return save(sd, metadata=_meta(r, config=text))


@pytest.mark.parametrize("name, make, msg", IMPORT_CASES_17, ids=[f"{c[0]}-{c[2][:20]}" for c in IMPORT_CASES_17])
def test_hostile_imports_are_refused_in_plain_words(trained, name, make, msg):
    err, state = _import(name, make(trained))
    assert err is not None and msg in err, err
    for python_words in ("Traceback", "list indices", "Exceeds the limit", "RecursionError", "AttributeError"):
        assert python_words not in err
    assert state == PageState(run_key="before", autostart=False)


@pytest.mark.parametrize(
    "raw, msg",
    [
        (b"x1,x2,label\n1e300,2,0\n2,3,1\n3,4,0\n4,5,1\n", "line 2: coordinate 1e+300 is too large"),
        (b"x1,x2,label\n1,2,0\n2,3,1\n3,-4e38,0\n4,5,1\n", "line 4: coordinate"),
        (b"x1,x2,label\n1,2,0\n2,3,1e300\n3,4,-1e300\n4,5,0\n", "line 3: label 1e+300 is not a small class id"),
        (b"x1,x2,label\n1,2,0\n2,3,1\n3,4,1001\n4,5,0\n", "line 4: label 1001.0"),
    ],
)
def test_csv_values_float32_cannot_hold_or_labels_that_would_merge_are_refused(raw, msg):
    state = PageState(csv=GOOD)
    ok, text = state.upload_csv("points.csv", raw)
    assert not ok and msg in text and state.csv is GOOD, text


def test_csv_at_the_bounds_loads_exactly():
    x, y = flowviz.load_csv(b"x1,x2,label\n1e6,-1e6,-1000\n0,0,1000\n1,1,-1000\n2,2,1000\n")
    assert x.dtype == np.float32 and np.isfinite(x).all() and x[0].tolist() == [1e6, -1e6]
    assert y.tolist() == [0, 1, 0, 1]  # -1000 and 1000 stay two classes


def test_a_geometric_partition_float32_cannot_resolve_is_refused_at_config_time():
    link = {"partition": "geometric", "partition_ratio": "0.1", "n_steps": "256", "train_steps": "50"}
    cfg, notices = config_from_query(link, Config())
    assert len(notices) == 1 and "partition_ratio" in notices[0] and "float32" in notices[0]
    assert cfg == Config(partition="geometric", n_steps=256, train_steps=50)  # the rest of the link applies
    with pytest.raises(flowviz.core.errors.ConfigError, match="finer than float32 can resolve"):
        Config(partition="geometric", partition_ratio=0.1, n_steps=256)
    from flowviz.core.timegrid import partition

    t = partition(cfg.horizon, cfg.n_steps, cfg.partition, cfg.partition_ratio).astype(np.float32)
    assert (np.diff(t) > 0).all()


def test_the_refused_partition_would_have_collapsed_times_and_an_accepted_one_trains():
    """The refusal is not arbitrary: in the refused partition neighbouring float32 times are equal (what
    made the solver fail after training); a short geometric run at the edge of what is accepted trains."""
    from flowviz.core.timegrid import partition

    t = partition(1.0, 256, "geometric", 0.1).astype(np.float32)
    assert (np.diff(t) == 0).any()
    r = flowviz.train(
        Config(partition="geometric", partition_ratio=0.5, n_steps=20, n_samples=100, width=4, train_steps=5)
    )
    assert np.isfinite(r.model.predict_proba(r.data.x)).all()


HOSTILE_LINKS = [
    {"n_steps": "[Login here](https://evil.example/phish)"},
    {"x' ### Your session has expired. [Sign in again](https://evil.example/login) '": "1"},
    {"![x](https://evil.example/t.png)": "1"},
    {"hide": "data,a`b` [x](https://evil.example)"},
    {"scenario": "<img src=https://evil.example/t.png>"},
    {"k" * 10_000: "1"},
]


@pytest.mark.parametrize("q", HOSTILE_LINKS, ids=range(len(HOSTILE_LINKS)))
def test_hostile_link_notices_are_plain_text_of_bounded_length(q):
    from flowviz.ui.plaintext import is_inert, literal, shown

    notices = parse_link(q).notices
    assert notices
    for n in notices:
        assert is_inert(literal(n)) and len(shown(literal(n))) <= 800
