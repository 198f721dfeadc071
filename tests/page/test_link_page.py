"""Links on the real page (streamlit.testing's AppTest): every valid value renders, and nothing a link
says is interpreted as markdown. The page's autostart is switched off here (a link at the hard limits would
otherwise start a training of hours per case); training from a link is tested in test_app.py."""

import dataclasses
import math
import time

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from streamlit.testing.v1 import AppTest
from tiny import ROOT

from flowviz import Config
from flowviz.core.config import value_range
from flowviz.core.presets import preset_info, preset_names
from flowviz.plots.notation import typeset
from flowviz.ui import links
from flowviz.ui.controls import group_key
from flowviz.ui.plaintext import is_inert, shown
from flowviz.ui.state import PageState

NUMERIC = [f.name for f in dataclasses.fields(Config) if f.type in ("int", "float")]
ALERTS = ("warning", "error", "info", "success")
NO_WIDGET = {"mlp_depth", "gamma"}  # keys the sidebar does not offer (links, config files and the CLI do)


@pytest.fixture(autouse=True)
def no_autostart(monkeypatch):
    monkeypatch.setattr(PageState, "take_autostart", lambda self: False)


def _page(query: dict, *, unfold: bool = False) -> AppTest:
    """The page opened by a link (``unfold``: with every sidebar group open, so that all its widgets are drawn)."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    for k, v in query.items():
        at.query_params[k] = v
    if unfold:
        for g in links.GROUPS:
            at.session_state[group_key(g)] = True
    return at.run()


def _alerts(at) -> list[str]:
    return [e.value for kind in ALERTS for e in at.get(kind)]


def _renders(at) -> None:
    assert not at.exception, at.exception
    assert at.button(key="train").label == "Train" and at.button(key="reset").label == "Reset"


def _text(v) -> str:
    return repr(v) if isinstance(v, float) else str(v)


# links with every numeric key at its minimum, at its maximum, and the issue's in-range values that crashed
# the page; dataset, time_mode, partition and viscosity chosen so that every conditional box is drawn
SHOW_ALL = {"dataset": "blobs", "time_mode": "continuous", "partition": "geometric"}
BOUND_LINKS = {
    "minimum": {**SHOW_ALL, **{k: _text(value_range(k)[0]) for k in NUMERIC}, "viscosity": "0.5"},
    "maximum": {**SHOW_ALL, **{k: _text(value_range(k)[1]) for k in NUMERIC}},
    "inside": {
        **SHOW_ALL,
        "seed": "2000000",
        "lr": "1e-9",
        "horizon": "1e-300",
        "viscosity": "0",
        "partition_ratio": "0.1",
        "n_steps": "2",
    },
    "open bounds": {
        **SHOW_ALL,
        "lr": _text(math.nextafter(0.0, 1.0)),
        "horizon": "1e-30",
        "n_steps": "3",
        "viscosity": "1e-300",
    },
}


@pytest.mark.parametrize("name", BOUND_LINKS)
def test_every_key_at_its_bounds_renders_through_a_link(name):
    q = BOUND_LINKS[name]
    at = _page(q, unfold=True)
    _renders(at)
    notices = " ".join(shown(a) for a in _alerts(at))
    cfg = Config.from_query({k: v for k, v in at.query_params.items() if k in Config.keys()})
    for key in NUMERIC:
        box = [b for b in at.number_input if b.key == f"w_{key}"]
        if key == "mc_samples" and cfg.viscosity == 0:
            assert not box  # drawn only with viscosity
        elif key in NO_WIDGET:
            assert not box
        else:
            assert len(box) == 1, key
            assert (box[0].min, box[0].max) == value_range(key)  # the widget's range is the config's
            assert box[0].value == getattr(cfg, key)
        if key in q:  # the link's value is taken, or a notice names the key
            assert float(q[key]) == getattr(cfg, key) or key in notices, (key, q[key], notices)
    if name == "inside":
        assert cfg.seed == 2_000_000 and cfg.lr == 1e-9  # values the old widgets refused
        assert "horizon" in notices and "float32" in notices  # 1e-300 / 2: no float32 step can be that small
    if name == "open bounds":
        assert cfg.lr == 5e-324 and cfg.horizon == 1e-30


def test_a_tiny_horizon_renders_its_step_as_a_power_of_ten():
    at = _page({"horizon": "1e-30", "n_steps": "3"})
    _renders(at)
    assert r"s_k = T/L = 3.333 \times 10^{-31}" in at.latex[0].value  # not "3.333e-31", set as a subtraction


# ---------------------------------------------------------------- the property: any link renders, inert
META = "[]()!#*_`~<>|\\$:@&=+-.'\"{}% \n\t"
UNICODE_DIGITS = "٠١٢٣٤٥٦٧٨٩０１２３４５６７８９"


def _bound_texts(key):
    lo, hi = value_range(key)
    out = [lo, hi, lo - 1, hi + 1, hi * 10, -hi]
    if isinstance(lo, float):
        out += [math.nextafter(lo, -1.0), math.nextafter(hi, 2 * hi), 0.0, -0.0]
    return [_text(v) for v in out] + ["nan", "inf", "-inf", "1e999", "9" * 300, "1" * 5000]


KEYS = st.one_of(
    st.sampled_from(list(Config.keys()) + list(links.FLAGS)),
    st.text(alphabet=META + "abcxyz" + UNICODE_DIGITS, min_size=1, max_size=40),
)
VALUES = st.one_of(
    st.text(alphabet=META + "abc" + UNICODE_DIGITS + "0123456789e", max_size=60),
    st.sampled_from(NUMERIC).flatmap(lambda k: st.sampled_from(_bound_texts(k))),
    st.sampled_from(
        [
            "[Login](https://evil.example)",
            "![x](https://evil.example/t.png)",
            "### Expired",
            "www.evil.example",
            ":red[x]",
            "$x$",
            "<img src=x>",
            "data,`x`",
            "folding",
            "1",
            "true",
            "١٢",
        ]
    ),
)
LINKS = st.dictionaries(KEYS, st.one_of(VALUES, st.lists(VALUES, min_size=2, max_size=3)), max_size=5)
FIXED_MARKDOWN = {"#### flowviz — a residual network is a flow"} | {
    t
    for n in preset_names()
    for t in (f"##### {typeset(preset_info(n)['title'])}", typeset(preset_info(n)["description"]))
}  # typeset as the page shows them


# the page's own alerts that use markdown (no user text in them)
OWN_ALERTS = {"Press **Train** to start.", "Upload a CSV below to use your own points."}
ISSUE_LINK = {
    "n_steps": "[Login here](https://evil.example/phish)",
    "hide": "data,a`b",
    "x' ### Your session has expired. [Sign in again](https://evil.example/login) '": "1",
    "![x](https://evil.example/t.png)": "1",
}


# each example is a page load (about 4 s on the loaded 2-core machine): ten, no shrinking (a failure prints
# the link as drawn)
@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
)
@example(ISSUE_LINK)
@given(LINKS)
def test_any_link_renders_and_nothing_it_says_is_interpreted(q):
    t = time.perf_counter()
    at = _page(q)
    _renders(at)
    for a in _alerts(at):
        assert a in OWN_ALERTS or is_inert(a), a  # every notice is plain text: no link, image, heading, code
    for m in at.markdown:  # markdown elements are the page's own texts, never the link's
        assert m.value in FIXED_MARKDOWN or m.value.startswith("<style>") or is_inert(m.value), m.value
    assert time.perf_counter() - t < 30


def test_the_issues_hostile_link_is_echoed_literally():
    at = _page(ISSUE_LINK)
    _renders(at)
    text = [shown(a.value) for a in at.warning]
    assert any("n_steps='[Login here](https://evil.example/phish)' is not a valid int" in t for t in text)
    assert any("### Your session has expired. [Sign" in t for t in text)
    assert any("hide='a`b'" in t for t in text) and any("'![x](https://evil.example/t.png)'" in t for t in text)
