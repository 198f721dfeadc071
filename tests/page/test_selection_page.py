"""Crafted selections on a page (AppTest): whatever a rewritten websocket frame sends as a chart's selection,
the probe and drawing planes show a plain notice and keep their state (the parser itself:
tests/unit/test_selection.py)."""

import json

import pytest
from helpers.page import SMALL, app, instruments
from tiny import wait_for


def _event(pts):
    return {
        "selection": {
            "points": [{"x": x, "y": y, "curve_number": 0} for x, y in pts],
            "point_indices": [],
            "box": [],
            "lasso": [],
        }
    }


DEEP = "[" * 10_000 + "]" * 10_000
CRAFTED = [  # (what Streamlit receives as the chart's widget value, a word of the notice shown)
    (json.dumps(_event([(1e300, 1e300)])), "within"),
    (json.dumps(_event([("NaN", "Infinity")])), "within"),
    (json.dumps(_event([("abc", "def")])), "not numbers"),
    (json.dumps(_event([([0.1, 0.2], [0.3])])), "not numbers"),
    (json.dumps({"selection": {"points": [[0.1, 0.2]]}}), "not numbers"),
    ("[0.1, 0.2]", "not an object"),
    ("probe me", "not JSON"),
    (DEEP, "nested too deep"),
]


def _send(at, key_part, raw, field="string_value"):
    """The browser's selection event on a chart, as raw widget state (what a rewritten websocket frame sends)."""
    from streamlit.proto.WidgetStates_pb2 import WidgetState

    chart = next(el for el in at.get("plotly_chart") if key_part in el.proto.id)
    states = at._tree.get_widget_states()
    ws = WidgetState(id=chart.proto.id)
    setattr(ws, field, raw)
    kept = [w for w in states.widgets if w.id != chart.proto.id]
    del states.widgets[:]
    states.widgets.extend(kept + [ws])
    return at._run(states)


@pytest.mark.slow
def test_crafted_selections_on_the_probe_and_drawing_planes_give_a_notice_not_an_error():
    at = app(dict(SMALL, probe="0.5,0.25")).run()  # the planes need the run's first snapshot, not its end
    assert wait_for(lambda: any(r.key == "view" for r in at.run().radio), 120)
    instruments(at, "Probe")
    assert wait_for(lambda: any("probe_plane" in el.proto.id for el in at.run().get("plotly_chart")), 120)
    for plane, sub, cases in (("probe_plane", "Probe", CRAFTED), ("draw_plane", "Draw points", CRAFTED[::3])):
        at.radio(key="instrument").set_value(sub).run()
        for raw, word in cases:
            _send(at, plane, raw)
            assert not at.exception, (plane, raw[:60], at.exception)
            shown = [w.value for w in at.warning]
            assert any("selection on the plane was ignored" in w and word in w for w in shown), (plane, raw[:60], shown)
            assert at.session_state["page"].probe == (0.5, 0.25) and not at.session_state["page"].drawn
        _send(at, plane, "not json either", field="json_value")  # parsed by Streamlit before any deserializer
        assert not at.exception, at.exception
    _send(at, "draw_plane", json.dumps(_event([(0.5, -0.5)])))  # the plane still answers a real click
    assert [d[:2] for d in at.session_state["page"].drawn] == [(0.5, -0.5)]
    at.radio(key="instrument").set_value("Probe").run()
    _send(at, "probe_plane", json.dumps(_event([(0.125, -0.75)])))
    assert at.session_state["page"].probe == (0.125, -0.75) and not at.exception
    other = app(SMALL).run()  # another page of the same server process answers
    assert not other.exception and other.radio(key="view").options
