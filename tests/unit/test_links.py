"""Links, notices and the page's state without a page: the pure modules of flowviz.ui."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowviz import Config, preset
from flowviz.ui import links
from flowviz.ui.plaintext import NOTICE_LIMIT, clip, is_inert, literal, shown
from flowviz.ui.state import PageState

HOSTILE = [
    "[Login here](https://evil.example/phish)",
    "x' ### Your session has expired. [Sign in again](https://evil.example/login) '",
    "![x](https://evil.example/t.png)",
    "a`b",
    "<img src=x onerror=alert(1)>",
    "**bold** _it_ ~~s~~",
    "www.evil.example",
    "me@evil.example",
    ":smile: :material/home: :red[red]",
    "$x^2$",
    "| a | b |",
    "1. list\n# head\n    code\n===",
    "\\[escaped\\]",
    "a\u2060b\u202eevil",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_literal_shows_markdown_as_its_characters(text):
    src = literal(text)
    assert is_inert(src) and shown(src) == clip(text, NOTICE_LIMIT)
    if "\\" not in text:
        assert not is_inert(text)  # and the checker sees the danger in the raw text


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=800))
def test_any_text_becomes_inert_markdown_of_the_same_characters(text):
    src = literal(text)
    assert is_inert(src)
    assert shown(src) == clip(text, NOTICE_LIMIT) and len(shown(src)) <= NOTICE_LIMIT


def test_a_link_is_read_into_config_flags_and_notices():
    link = links.parse_link(
        {"scenario": "folding", "present": ["0", "1"], "hide": "data,upload", "n_steps": ["4", "3"], "bogus": "1"}
    )
    assert link.config == preset("folding").replace(n_steps=3)  # a repeated key takes its last value
    assert link.flags == {
        "scenario": "folding",
        "present": True,
        "hide": frozenset({"data", "upload"}),
        "probe": None,
        "points": (),
        "view": None,
        "room": None,
        "step": None,
        "k": None,
        "speed": None,
    }
    assert link.view == "Diagnostics" and len(link.notices) == 1 and "bogus" in link.notices[0]
    q = links.link_of(link.config, link.flags)
    assert q["scenario"] == "folding" and q["present"] == "1" and q["hide"] == "data,upload"
    assert links.parse_link(q) == link.__class__(link.config, link.flags, (), link.view)  # the page's own link


def test_a_key_ten_thousand_characters_long_is_echoed_cut():
    link = links.parse_link({"k" * 10_000: "1", "n_steps": "x" * 10_000})
    assert len(link.notices) == 2 and all(len(n) < 800 for n in link.notices)  # not 20,000
    assert "10002 characters" in link.notices[0] and "not a setting" in link.notices[0]
    assert "too long" in link.notices[1]


def test_a_new_link_flag_is_one_row_of_the_table(monkeypatch):
    flag = links.Flag(
        0,
        lambda t: (int(t), []) if t.isdigit() else (0, [f"bad level {t!r}"]),
        lambda v: str(v) if v else None,
        "a level",
    )
    monkeypatch.setitem(links.FLAGS, "level", flag)
    link = links.parse_link({"level": "7", "n_steps": "5"})
    assert link.flags["level"] == 7 and link.config.n_steps == 5 and not link.notices
    assert links.link_of(link.config, link.flags)["level"] == "7"
    assert "level" not in links.link_of(link.config, {**link.flags, "level": 0})


def test_page_state_changes_through_its_methods():
    state = PageState.from_link({"n_steps": "5", "present": "1"})
    assert state.config.n_steps == 5 and state.present and state.take_autostart() and not state.take_autostart()
    state.apply_scenario("folding")
    assert state.config == preset("folding") and state.scenario == "folding" and state.view_pick == "Diagnostics"
    assert state.take_autostart() and state.take_widget_reset() and not state.take_widget_reset()
    assert state.url()["scenario"] == "folding" and state.url()["present"] == "1"
    assert state.import_file("config.json", Config(width=5).to_json().encode(), None, None) is None
    assert state.config == Config(width=5) and state.scenario is None and state.take_widget_reset()
    metrics = json.dumps({"config": Config(width=6).to_dict(), "history": [{"step": 1}]}).encode()
    assert state.import_file("metrics.json", metrics, None, None) is None and state.config.width == 6
    ok, msg = state.upload_csv("[x](https://evil.example).csv", b"x1,x2,label\n0,0,0\n1,1,1\n2,2,0\n3,3,1\n")
    assert ok and state.csv[0].shape == (4, 2) and is_inert(literal(msg)) and "evil" in shown(literal(msg))


def test_after_reset_the_old_pages_widget_callbacks_do_nothing():
    """Reset replaces the page state; the rerun after it calls the old page's widget callbacks (the browser still
    reports their values): made with ``state.callback``, they change nothing, neither state."""
    state = PageState.from_link({"present": "1", "step": "10"})
    calls = []
    moved = state.callback(lambda k: (calls.append(k), state.set_frame(k)))
    moved(3)
    assert calls == [3] and state.flags["k"] == 3
    fresh = state.reset()
    moved(5)
    assert calls == [3] and state.flags["k"] == 3 and fresh.flags["k"] is None and fresh.present
    assert not fresh.retired and fresh.callback(lambda: 1)() == 1


def test_the_view_flag_opens_a_view_or_an_instrument_and_the_link_keeps_it():
    from flowviz.ui.state import PageState

    link = links.parse_link({"scenario": "moons", "view": "stability"})
    assert link.view == "Instruments" and link.flags["view"] == "stability" and not link.notices
    state = PageState.from_link({"scenario": "moons", "view": "stability"})
    assert (state.view_pick, state.instrument_pick) == ("Instruments", "Stability region")
    assert state.url()["view"] == "stability"
    state.pick_view("Transport")
    assert state.url()["view"] == "transport" and links.parse_link(state.url()).view == "Transport"
    state.pick_view("Instruments", "Adjoint")
    assert links.parse_link(state.url()).flags["view"] == "adjoint"
    bad = links.parse_link({"view": "<b>nowhere</b>"})  # falls back to the scenario's view, named in a notice
    assert bad.flags["view"] is None and bad.view is None and "valid views are" in bad.notices[0]
    for name, (view, instrument) in links.VIEWS.items():  # every name round-trips
        assert links.view_of(view, instrument) == name
