"""The Instruments view in AppTest: probe= and points= in the link, simulated selections, bad links."""

import base64
import json

import numpy as np
import pytest
from helpers.page import SMALL, app, figures, instruments, settle
from streamlit.proto.WidgetStates_pb2 import WidgetState
from tiny import wait_for

from flowviz.core.points import decode_points, encode_points
from flowviz.plots.probepath import PROBE
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


def test_probe_from_the_link_and_a_click():
    at = settle(app(dict(SMALL, probe="0.5,0.25")).run())
    instruments(at, "Probe")
    figs = figures(at)
    assert len(figs) == 2 and figs[1]["layout"]["title"]["text"].startswith("Probe at x₀ = (0.5, 0.25)")
    assert at.query_params["probe"] == ["0.5,0.25"] or at.query_params["probe"] == "0.5,0.25"
    _select(at, "probe_plane", [(0.1, -0.2)])
    at.run()
    assert at.session_state["page"].probe == (0.1, -0.2)
    assert "0.1,-0.2" in str(at.query_params["probe"])
    assert figures(at)[1]["layout"]["title"]["text"].startswith("Probe at x₀ = (0.1, -0.2)")


def test_drawn_points_by_clicks_and_a_box_go_to_the_link_and_train():
    at = settle(app(SMALL).run())
    instruments(at, "Draw points")
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
    at = settle(app(dict(SMALL, dataset="csv", points=text)).run())
    assert not at.warning
    assert len(at.session_state["page"].drawn) == 40 and at.session_state["page"].csv_name == "drawn points"


def test_bad_probe_and_points_in_the_link_give_notices():
    at = app(dict(SMALL, probe="1,abc", points="!!notbase64")).run()
    assert not at.exception
    texts = [shown(w.value) for w in at.warning]
    assert any("Ignored probe=" in t and "two numbers" in t for t in texts)
    assert any("Ignored points" in t and "base64" in t for t in texts)
    big = encode_points(np.zeros((500, 2)), np.r_[np.zeros(250, int), np.ones(250, int)]) + "AAAA"
    at = app(dict(SMALL, points=big)).run()
    assert any("Ignored points" in shown(w.value) and "too long" in shown(w.value) for w in at.warning)


def _plain(text: str) -> str:
    """A title as typed, from the figure style's typeset form (x<sub>k</sub> -> x_k, ρ₀ -> ρ_0)."""
    return text.replace("<sub>", "_").replace("</sub>", "").replace("₀", "_0")


@pytest.mark.slow
def test_the_volume_instruments_density_switch_draws_the_exact_push_forward():
    at = settle(app(SMALL).run())
    instruments(at, "Volume and density")
    panels = [_plain(a["text"]) for f in figures(at) for a in f["layout"].get("annotations", [])]
    assert any("KDE of x_k" in t for t in panels)
    at.radio(key="volume_density").set_value("exact").run()
    assert not at.exception and not at.error
    panels = [_plain(a["text"]) for f in figures(at) for a in f["layout"].get("annotations", [])]
    assert any("exact: ρ_0 / |det DΦ|" in t for t in panels)


# ------------------------------------------------------------------------------------------------ the probe's path
def _arr(a):
    """A plotly JSON array: a typed array ({"dtype", "bdata"}) or a list."""
    if isinstance(a, dict):
        return np.frombuffer(base64.b64decode(a["bdata"]), dtype=a["dtype"]).astype(float)
    return np.asarray(a, float)


def _blocks_path(model, x0) -> np.ndarray:
    """x_0 .. x_L (L+1, d) of one start point, block by block (as tests/unit/test_probe_views.py checks every
    view against it)."""
    import torch

    z = model.lift(torch.tensor([x0], dtype=torch.float32))
    out = [z]
    with torch.no_grad():
        for k in range(1, model.L + 1):
            z = model.step_map(z, k)
            out.append(z)
    return torch.cat(out).numpy()


@pytest.mark.slow
def test_a_link_with_probe_marks_it_in_the_default_view():
    from flowviz.core.model import build_model
    from flowviz.ui.shared import registry

    at = settle(app(dict(SMALL, probe="0.5,0.25")).run())
    assert at.radio(key="view").value == "Characteristics"
    (spec,) = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    run = registry().get(at.session_state["page"].run_key)
    model = build_model(run.config, run.data.n_classes)
    model.load_state_dict(run.latest.state)
    path = _blocks_path(model.train(False), (0.5, 0.25))
    traces = [t for t in spec["data"] if t.get("name") == PROBE]
    assert len(traces) == 1
    got = np.stack([_arr(traces[0]["x"]), _arr(traces[0]["y"])], -1)
    np.testing.assert_allclose(got, path[:, :2].astype(np.float32), rtol=1e-5, atol=1e-6)
    star = [i for i, t in enumerate(spec["data"]) if t.get("name") == "probe x<sub>k</sub>"]
    assert len(star) == 1 and all(star[0] in f["traces"] for f in spec["frames"])
    at = settle(app(SMALL).run())
    (spec,) = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert not [t for t in spec["data"] if (t.get("name") or "").startswith(PROBE)]


@pytest.mark.slow
def test_a_scenario_pair_shows_each_runs_probe_path_side_by_side():
    at = settle(
        app({"scenario": "deep_vs_shallow", "train_steps": "30", "n_samples": "200", "probe": "0.5,0.25"}).run()
    )
    assert at.radio(key="view").value == "Side by side"
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]  # the residual ratios first, then the pair
    assert "Residual ratio" in specs[0]["layout"]["title"]["text"]
    lines = [t for t in specs[1]["data"] if t.get("name") == PROBE]
    assert sorted(len(_arr(t["x"])) for t in lines) == [3, 65]  # x_0 .. x_L of L = 2 and of L = 64


def _refuse(*a, **kw):
    raise AssertionError("an instrument computed in the server")


def test_a_finished_run_shown_by_a_page_has_its_instruments_without_computing_them_in_the_server(monkeypatch):
    """The page's own path (the view worker computes what no worker made) refuses here, and every instrument
    still opens: the workers (other processes) made them once the finished run was shown."""
    from flowviz.serve.runs.registry import Registry
    from flowviz.ui.shared import registry

    monkeypatch.setattr(Registry, "compute", _refuse)  # nor in the view worker: only the instruments task
    at = settle(app(dict(SMALL, seed="77")).run())
    run = registry().get(at.session_state["page"].run_key)
    assert wait_for(lambda: run.preparing() or run.instruments_made(), 30)
    for sub, title in (
        ("Stability region", "Stability, block"),
        ("Volume and density", "Volume at"),
        ("Grid solver", "The transport equation on a grid"),
        ("Adjoint", "Backpropagation is the adjoint flow"),
    ):
        instruments(at, sub)
        assert any(f["layout"]["title"]["text"].startswith(title) for f in figures(at)), sub
        assert not at.error
    assert run.instruments_made()
