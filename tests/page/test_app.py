"""The page in streamlit.testing's AppTest: loads, trains, shows figures that match the config."""

import time

import pytest
from helpers.page import SMALL, app, config_of, figures, link_of, settle

from flowviz import Config
from flowviz.ui.controls import group_key
from flowviz.ui.plaintext import shown


def test_page_loads_trains_the_default_and_shows_every_view():
    at = settle(app(SMALL).run())
    view = at.radio(key="view")
    assert view.options == [
        "Characteristics",
        "Decision surface",
        "Transport",
        "Velocity field",
        "Diagnostics",
        "Instruments",
        "Depth sweep",
        "Dictionary",
    ]
    figs = figures(at)
    assert len(figs) == 1 and len(figs[0]["frames"]) == 7  # L + 1 animation frames of the characteristics
    counts = {}
    for name in view.options:
        at.radio(key="view").set_value(name).run()
        assert not at.exception
        counts[name] = len(at.get("plotly_chart"))
    assert counts == {
        "Characteristics": 1,
        "Decision surface": 1,
        "Transport": 2,
        "Velocity field": 1,
        "Diagnostics": 4,
        "Instruments": 1,
        "Depth sweep": 0,
        "Dictionary": 0,
    }
    assert any("layer k" in m.value and "time tₖ" in m.value for m in at.markdown)  # typeset
    at.radio(key="view").set_value("Velocity field").run()
    vel = figures(at)[0]
    assert len(vel["frames"]) == 6  # V_k for k = 1..L
    assert "x_k = x_{k-1} + s_k" in at.latex[0].value and "T/L = 0.1667" in at.latex[0].value
    assert at.caption[0].value.startswith("xₖ = xₖ₋₁ + sₖ Vₖ(xₖ₋₁) is one Euler step")  # typeset, as in the figures


@pytest.mark.parametrize(
    "dataset, field, classes",
    [
        ("moons", "two_layer", 2),
        ("circles", "mlp", 2),
        ("rings", "antisymmetric", 2),
        ("spirals", "two_layer", 3),
        ("xor", "mlp", 2),
        ("checkerboard", "two_layer", 2),
        ("blobs", "antisymmetric", 4),
    ],
)
def test_each_dataset_and_field_family_leads_to_matchingfigures(dataset, field, classes):
    q = dict(SMALL, dataset=dataset, field=field, n_classes="3" if dataset == "spirals" else "4", lift="1")
    at = settle(app(q).run())
    figs = figures(at)
    char = figs[0]
    assert len(char["frames"]) == 7
    markers = [tr for tr in char["data"] if tr.get("mode") == "markers"]
    assert len(markers) == classes
    assert "first two of 3 coordinates" in char["layout"]["title"]["text"]


def test_url_round_trip_and_bad_values_fall_back_with_a_notice():
    at = settle(app(dict(SMALL, n_steps="5", scheme="rk4", bogus="1", lr="nan")).run())
    assert any("bogus" in shown(w.value) for w in at.warning) and any("lr" in shown(w.value) for w in at.warning)
    cfg = Config.from_query(link_of(at))
    assert cfg.n_steps == 5 and cfg.scheme == "rk4" and cfg.lr == Config().lr


def test_bad_csv_upload_shows_an_error_and_keeps_the_previous_data():
    from flowviz.ui.page import STATE_KEY

    at = settle(app(SMALL).run())
    state = at.session_state[STATE_KEY]
    # AppTest has no file-uploader driver; give the page's state the bytes a user would upload
    assert state.upload_csv("good.csv", b"x1,x2,label\n0,0,0\n1,1,1\n2,2,0\n3,3,1\n")[0]
    good = state.csv
    ok, msg = state.upload_csv("bad.csv", b"x1,x2,label\n1,2,0\n")
    assert not ok and "at least 4" in msg and "previous data stay" in msg
    assert state.csv is good
    at.selectbox(key="w_dataset").set_value("csv").run()  # the page trains on the good points
    at.button(key="train").click().run()
    at = settle(at)
    assert config_of(at).dataset == "csv" and {m.label: m.value for m in at.metric}["status"] == "done"
    assert not at.error


def test_stop_takes_effect_and_keeps_the_picture():
    at = app(dict(SMALL, train_steps="20000", n_samples="2000")).run()
    time.sleep(1.0)
    at.run()
    at.button(key="stop").click().run()
    at = settle(at, timeout=30)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["status"] == "cancelled" and int(metrics["step"].split(" / ")[0]) < 20000
    assert at.get("plotly_chart")


def test_bad_widget_value_is_refused_and_the_last_good_config_kept():
    at = settle(app(SMALL).run())
    at.session_state[group_key("training")] = True  # the folded Training group, opened
    at.run()
    at.number_input(key="w_batch_size").set_value(500).run()  # more than the 200 samples
    assert any("batch_size=500" in shown(e.value) for e in at.sidebar.error)
    assert config_of(at).batch_size == 0  # the link keeps the last good config
    assert not at.exception


def test_a_folded_group_draws_its_widgets_only_when_opened_and_keeps_the_links_values():
    at = app(SMALL).run()
    keys = lambda: {w.key for w in at.sidebar.number_input}  # noqa: E731
    assert "w_train_steps" not in keys() and "w_n_samples" in keys()  # Training is folded, Data open
    assert config_of(at).train_steps == int(SMALL["train_steps"])  # the link's value, not a widget's default
    at.session_state[group_key("training")] = True
    at.run()
    assert at.number_input(key="w_train_steps").value == int(SMALL["train_steps"])
    at.session_state[group_key("training")] = False
    at.run()
    assert "w_train_steps" not in keys() and config_of(at).train_steps == int(SMALL["train_steps"])
    assert not at.exception


def test_sweep_tab_runs_a_small_sweep():
    at = settle(app(SMALL).run())
    at.radio(key="view").set_value("Depth sweep").run()
    at.text_input(key="sweep_values_n_steps").set_value("1,2,4").run()
    at.button(key="sweep_go").click().run()
    t = time.time()
    while time.time() - t < 60 and (not at.success or len(figures(at)) < 7):  # (side by side: a worker's views)
        time.sleep(0.3)
        at.run()
    assert not at.exception
    assert any("one batched computation" in s.value for s in at.success)
    figs = figures(at)
    assert len(figs) == 7  # metrics, surfaces, error, one-field order, conditions, transfer, side by side
    transfer = next(f for f in figs if "Depth transfer" in f["layout"]["title"]["text"])
    assert transfer["data"][0]["y"] == ["1", "2", "4"]
    order = next(f for f in figs if "Order of convergence on one field" in f["layout"]["title"]["text"])
    assert "no field between the blocks" in order["layout"]["annotations"][0]["text"]  # per-step weights
    at.text_input(key="sweep_values_n_steps").set_value("1,999").run()
    at.button(key="sweep_go").click().run()
    assert any("out of range" in shown(e.value) for e in at.error) and len(figures(at)) == 7  # the last one stays


def test_a_scenario_link_opens_its_view_and_round_trips():
    at = settle(app({"scenario": "deep_vs_shallow", "train_steps": "30", "n_samples": "200"}).run())
    assert at.radio(key="view").value == "Side by side"
    assert any("Deep means small steps" in m.value for m in at.markdown)
    lead, fig = figures(at)[:2]  # the scenario's point first (both runs' residual ratios), then the pair
    assert [t["name"] for t in lead["data"]] == ["n_steps = 2", "n_steps = 64"]
    assert (
        fig["layout"]["annotations"][0]["text"] == "n_steps = 2"
        and "n_steps = 64" in fig["layout"]["annotations"][1]["text"]
    )
    from flowviz import preset

    assert link_of(at)["scenario"] == "deep_vs_shallow"
    assert config_of(at) == preset("deep_vs_shallow").replace(train_steps=30, n_samples=200)


def test_bad_link_flags_fall_back_with_notices():
    at = settle(app(dict(SMALL, scenario="nope", hide="data,bogus", present="1")).run())
    text = " ".join(shown(w.value) for w in at.warning)
    assert "scenario" in text and "bogus" in text
    assert link_of(at)["present"] == "1" and link_of(at)["hide"] == "data" and "scenario" not in link_of(at)
    assert not any(getattr(w, "key", None) == "w_dataset" for w in at.sidebar.selectbox)  # the data group is hidden
    fig = figures(at)[0]
    from flowviz.plots.style import FRAMES

    present = FRAMES["present"]  # projector style: the frame's type and height (the page stretches it to the screen)
    assert fig["layout"]["font"]["size"] == present.text and fig["layout"]["height"] == present.height


def test_picking_a_scenario_sets_itsconfig_of():
    at = settle(app(SMALL).run())
    at.selectbox(key="w_scenario_pick").set_value("folding").run()
    at = settle(at)
    cfg = config_of(at)
    assert cfg.n_steps == 2 and cfg.horizon == 8.0
    assert at.radio(key="view").value == "Diagnostics"


def test_import_of_a_run_and_of_garbage():
    import pickle

    from flowviz import train
    from flowviz.runfiles.files import weights_bytes
    from flowviz.ui.page import STATE_KEY, data_for, registry

    at = settle(app(SMALL).run())
    state = at.session_state[STATE_KEY]
    before = link_of(at)
    r = train(Config(n_samples=200, n_steps=3, train_steps=10, time_mode="tied"))
    for name, raw, msg in [
        ("model.safetensors", pickle.dumps({"a": 1}), "not a safetensors file"),
        ("model.safetensors", weights_bytes(r.model)[:100], "truncated"),
        ("config.json", b'{"n_steps": -3}', "n_steps"),
    ]:
        err = state.import_file(name, raw, registry(), data_for)
        assert msg in err and "Nothing was changed" in err
        at.run()
        assert link_of(at) == before
    assert state.import_file("model.safetensors", weights_bytes(r.model), registry(), data_for) is None
    at = settle(at)
    assert config_of(at) == r.config  # the page shows the imported run: its config, its final metrics
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["status"] == "done" and metrics["train accuracy"] == f"{r.metrics['train_accuracy']:.3f}"


def test_export_buttons_and_the_offline_characteristics_file():
    import re

    from flowviz import plots
    from flowviz.ui.page import EXPORT_KEY, registry

    at = settle(app(SMALL).run())
    closed = {str(e.proto.label) for e in at.get("download_button")}
    assert not closed & {"model.safetensors", "Download the lecture pack"}  # the box is closed: not drawn
    at.session_state[EXPORT_KEY] = True
    at.run()
    labels = [str(e.proto.label) for e in at.get("download_button")]
    from flowviz.plots import video

    assert sorted(labels) == sorted(
        [
            "characteristics.html",
            "model.safetensors",
            "config.json",
            "data.csv",
            "trajectories.npz",
            "metrics.json",
            "Download the lecture pack",
        ]
        + ([] if video.missing() else ["Video of this animation (mp4, 1280x720)"])
    )
    run = registry().start(config_of(at))  # the page's run: runs are shared by config
    assert run.finished
    html = plots.characteristics(run.views()).to_html(include_plotlyjs=True, auto_play=False)
    assert not re.search(r"<script[^>]+src=", html) and "Plotly.addFrames" in html  # offline, animated


def test_the_samples_figure_drawn_while_a_run_starts_shows_every_point_by_class_and_split():
    import numpy as np

    from flowviz import make_dataset, plots

    data = make_dataset(Config(dataset="blobs", n_classes=3, n_samples=300, test_fraction=0.2))
    fig = plots.samples(data)
    for c in range(3):
        for name, x, y in (("train", data.x_train, data.y_train), ("test", data.x_test, data.y_test)):
            tr = [t for t in fig.data if t.name == f"{name}, class {c}"]
            assert len(tr) == 1 and np.allclose(np.c_[tr[0].x, tr[0].y], x[y == c])
    assert sum(len(t.x) for t in fig.data) == 300
    assert fig.layout.yaxis.scaleanchor == "x" and "x<sub>1</sub>" in fig.layout.xaxis.title.text


def test_velocity_arrows_are_the_polyline_of_figure_factory_create_quiver():
    import numpy as np
    import plotly.figure_factory as ff

    from flowviz.plots.field import _arrows

    rng = np.random.default_rng(0)
    x, y = np.meshgrid(np.linspace(-2, 2, 7), np.linspace(-1, 1, 5))
    x, y = x.ravel(), y.ravel()
    u, w = rng.normal(size=x.size) * 0.2, rng.normal(size=x.size) * 0.2
    ref = ff.create_quiver(x, y, u, w, scale=1.0).data[0]
    ax, ay = _arrows(x, y, u, w)
    for ours, theirs in ((ax, ref.x), (ay, ref.y)):
        theirs = np.array([np.nan if t is None else t for t in theirs], dtype=float)
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6, equal_nan=True)


def test_an_over_budget_link_shows_a_notice_and_the_page_stays():  # the real cost model
    heavy = Config(n_samples=400, n_steps=256, width=256, train_steps=20000)  # case 7's hard-limit link
    q = {k: str(v) for k, v in heavy.to_query().items()}
    at = app(q).run()  # a link starts its run at once
    assert not at.exception
    errors = " ".join(e.value for e in at.error).replace("\\", "")  # (shown as plain text: markdown escaped)
    assert "not started" in errors and "n_steps" in errors and "width" in errors
    assert any(b.label == "Train" for b in at.button)
