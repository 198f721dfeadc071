"""The Instruments view in AppTest: probe= and points= in the link, simulated selections, bad links."""

import json

import numpy as np
import pytest
from streamlit.proto.WidgetStates_pb2 import WidgetState
from test_app import SMALL, _app, _figures, _settle

from flowviz.core.points import decode_points, encode_points
from flowviz.ui.plaintext import shown


def _chart(at, key_part):
    for el in at.get("plotly_chart"):
        if key_part in el.proto.id:
            return el
    raise AssertionError(f"no chart {key_part}: {[e.proto.id for e in at.get('plotly_chart')]}")


def _select(at, key_part, pts, box=False):
    """Simulate the browser's selection event on a chart (Streamlit sends it as the widget's JSON value)."""
    chart = _chart(at, key_part)
    states = at._tree.get_widget_states()
    ws = WidgetState(id=chart.proto.id)
    ws.string_value = json.dumps(
        {
            "selection": {
                "points": [
                    {"x": x, "y": y, "curve_number": 0, "point_number": i, "point_index": i}
                    for i, (x, y) in enumerate(pts)
                ],
                "point_indices": list(range(len(pts))),
                "box": [{"x": [0, 1], "y": [0, 1]}] if box else [],
                "lasso": [],
            }
        }
    )
    kept = [w for w in states.widgets if w.id != chart.proto.id]
    del states.widgets[:]
    states.widgets.extend(kept + [ws])
    at._run(states)
    assert not at.exception, at.exception
    return at


def _instruments(at, sub):
    at.radio(key="view").set_value("Instruments").run()
    at.radio(key="instrument").set_value(sub).run()
    assert not at.exception, at.exception
    return at


def test_probe_from_the_link_and_a_click():
    at = _settle(_app(dict(SMALL, probe="0.5,0.25")).run())
    _instruments(at, "Probe")
    figs = _figures(at)
    assert len(figs) == 2 and figs[1]["layout"]["title"]["text"].startswith("Probe at x₀ = (0.5, 0.25)")
    assert at.query_params["probe"] == ["0.5,0.25"] or at.query_params["probe"] == "0.5,0.25"
    _select(at, "probe_plane", [(0.1, -0.2)])
    at.run()
    assert at.session_state["page"].probe == (0.1, -0.2)
    assert "0.1,-0.2" in str(at.query_params["probe"])
    assert _figures(at)[1]["layout"]["title"]["text"].startswith("Probe at x₀ = (0.1, -0.2)")


def test_drawn_points_by_clicks_and_a_box_go_to_the_link_and_train():
    at = _settle(_app(SMALL).run())
    _instruments(at, "Draw points")
    for x, y, c in [(0.0, 0.0, 0), (1.0, 1.0, 1), (-1.0, 0.5, 1)]:
        at.radio(key="draw_class").set_value(c).run()
        _select(at, "draw_plane", [(x, y)])
    assert list(at.session_state["page"].drawn) == [(0.0, 0.0, 0), (1.0, 1.0, 1), (-1.0, 0.5, 1)]
    at.radio(key="draw_class").set_value(0).run()
    box = [(0.1 * i, -0.1 * j) for i in range(6) for j in range(6)]  # 36 grid points inside a box
    _select(at, "draw_plane", box, box=True)
    drawn = at.session_state["page"].drawn
    assert len(drawn) == 3 + 25  # a cluster: 25 of the points inside, jittered
    x, y = decode_points(str(at.query_params["points"]).strip("[]'"))
    np.testing.assert_allclose(x, np.array(drawn)[:, :2], atol=3e-4)
    at.button(key="draw_undo").click().run()
    assert len(at.session_state["page"].drawn) == 27
    at.button(key="draw_train").click().run()
    assert not at.exception
    assert at.session_state["page"].config.dataset == "csv" and len(at.session_state["page"].csv[0]) == 27


def test_points_in_the_link_train_as_csv_data():
    rng = np.random.default_rng(0)
    pts = rng.uniform(-1, 1, (40, 2))
    text = encode_points(pts, (pts[:, 0] > 0).astype(int))
    at = _settle(_app(dict(SMALL, dataset="csv", points=text)).run())
    assert not at.warning
    assert len(at.session_state["page"].drawn) == 40 and at.session_state["page"].csv_name == "drawn points"


def test_bad_probe_and_points_in_the_link_give_notices():
    at = _app(dict(SMALL, probe="1,abc", points="!!notbase64")).run()
    assert not at.exception
    texts = [shown(w.value) for w in at.warning]
    assert any("Ignored probe=" in t and "two numbers" in t for t in texts)
    assert any("Ignored points" in t and "base64" in t for t in texts)
    big = encode_points(np.zeros((500, 2)), np.r_[np.zeros(250, int), np.ones(250, int)]) + "AAAA"
    at = _app(dict(SMALL, points=big)).run()
    assert any("Ignored points" in shown(w.value) and "too long" in shown(w.value) for w in at.warning)


def _plain(text: str) -> str:
    """A title as typed, from the figure style's typeset form (x<sub>k</sub> -> x_k, ρ₀ -> ρ_0)."""
    return text.replace("<sub>", "_").replace("</sub>", "").replace("₀", "_0")


@pytest.mark.slow
def test_the_volume_instruments_density_switch_draws_the_exact_push_forward():
    at = _settle(_app(SMALL).run())
    _instruments(at, "Volume and density")
    panels = [_plain(a["text"]) for f in _figures(at) for a in f["layout"].get("annotations", [])]
    assert any("KDE of x_k" in t for t in panels)
    at.radio(key="volume_density").set_value("exact").run()
    assert not at.exception and not at.error
    panels = [_plain(a["text"]) for f in _figures(at) for a in f["layout"].get("annotations", [])]
    assert any("exact push-forward ρ_0 / |det DΦ|" in t for t in panels)
