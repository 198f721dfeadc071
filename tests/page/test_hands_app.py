"""The lecturer's hands on the page (AppTest): pause, resume and step; the training-step slider; step= and k=
in the link; drawn points as a dataset; Reset in presentation mode; Stop in a window that did not start a run."""

import json
import time

import pytest
import tiny
import torch
from helpers.page import settle
from streamlit.testing.v1 import AppTest
from tiny import ROOT, link

from flowviz import Config, train
from flowviz.ui.page import STATE_KEY
from flowviz.ui.shared import registry

pytestmark = pytest.mark.slow


def _app(query=None):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    return at


def _status(at) -> tuple[str, int]:
    m = {m.label: m.value for m in at.metric}
    return m.get("status", ""), int(m.get("step", "0 / 0").split(" / ")[0])


def _until(at, pred, timeout=60):
    t = time.time()
    while time.time() - t < timeout:
        at.run()
        assert not at.exception, at.exception
        if pred(at):
            return at
        time.sleep(0.2)
    raise AssertionError(f"not reached in {timeout} s: {_status(at)}")


def _settled(at):
    """Finished or paused, with its full (not live) views on the page."""
    return (
        _status(at)[0] in ("done", "paused", "cancelled")
        and at.get("plotly_chart")
        and not any("Live view" in c.value for c in at.caption)
    )


def _step_slider(at):
    return next(s for s in at.select_slider if s.label.startswith("Training step"))


def _figures(at):
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def _link(at) -> dict:
    return {k: v[-1] if isinstance(v, list) else v for k, v in at.query_params.items()}


def test_pause_step_and_resume_move_the_step_counter_and_end_with_the_unpaused_weights():
    cfg = tiny.SMALL.replace(train_steps=4000, batch_size=32, seed=11)
    at = _until(_app(link(cfg)).run(), lambda a: _status(a)[0] == "training" and _status(a)[1] > 0)
    at.button(key="pause").click().run()
    at = _until(at, lambda a: _status(a)[0] == "paused" and _settled(a))
    status, p = _status(at)
    assert 0 < p < 4000 and at.button(key="pause").label == "Resume"
    at.button(key="step1").click().run()
    at = _until(at, lambda a: _status(a)[0] == "paused" and _status(a)[1] != p)
    assert _status(at)[1] == p + 1
    at.button(key="step10").click().run()
    at = _until(at, lambda a: _status(a)[0] == "paused" and _status(a)[1] != p + 1)
    assert _status(at)[1] == p + 11
    at.button(key="pause").click().run()  # Resume
    at = _until(at, lambda a: _status(a)[0] == "done", timeout=120)
    assert _status(at)[1] == 4000
    run = registry().get(at.session_state[STATE_KEY].run_key)
    whole = train(cfg.replace(device="cpu"))
    assert all(torch.equal(run.latest.state[k], v) for k, v in whole.model.state_dict().items())


def test_the_training_step_slider_moves_every_view_and_the_link():
    at = _until(_app(link(tiny.SMALL.replace(train_steps=40))).run(), _settled)
    state = at.session_state[STATE_KEY]
    slider = _step_slider(at)
    assert slider.value == 40 and "10" in slider.options and "0" in slider.options
    latest = {}
    for view in ("Characteristics", "Decision surface", "Transport", "Velocity field", "Diagnostics"):
        at.radio(key="view").set_value(view).run()
        latest[view] = _figures(at)
    _step_slider(at).set_value(10).run()
    assert state.flags["step"] == 10 and _link(at)["step"] == "10"
    for view, figs in latest.items():
        at.radio(key="view").set_value(view).run()
        at = _until(at, lambda a: a.get("plotly_chart"))
        now = _figures(at)
        assert now != figs, view  # the view moved
    # Diagnostics: the learning curves mark step 10 over the whole run
    assert any(s.get("x0") == 10 for f in _figures(at) for s in f["layout"].get("shapes", []))


def test_a_link_with_step_and_k_opens_there():
    q = dict(link(tiny.SMALL.replace(train_steps=40)), step="10", k="3", speed="100")
    at = _until(_app(q).run(), _settled)
    state = at.session_state[STATE_KEY]
    assert state.flags["step"] == 10 and state.flags["k"] == 3 and _step_slider(at).value == 10
    fig = _figures(at)[0]
    assert fig["layout"]["sliders"][0]["active"] == 3 and "k = 3" in fig["layout"]["title"]["text"]
    play = fig["layout"]["updatemenus"][0]["buttons"][0]
    assert play["args"][1]["frame"]["duration"] == 100
    assert {k: _link(at)[k] for k in ("step", "k", "speed")} == {"step": "10", "k": "3", "speed": "100"}
    at.button(key="frame_next").click().run()
    assert state.flags["k"] == 4 and _figures(at)[0]["layout"]["sliders"][0]["active"] == 4
    at.button(key="frame_back").click().run()
    at.button(key="frame_back").click().run()
    assert state.flags["k"] == 2 and _link(at)["k"] == "2"


def test_drawn_points_in_a_scenario_are_the_dataset_and_few_of_a_class_have_no_test_split():
    at = _until(_app({"scenario": "moons", "train_steps": "30"}).run(), _settled)
    state = at.session_state[STATE_KEY]
    view = at.radio(key="view").value
    pts = [(-1.0 + 0.1 * i, 0.5, 0) for i in range(7)] + [(-1.0 + 0.1 * i, -0.5, 1) for i in range(7)]
    state.add_drawn(pts)
    assert state.use_drawn() is None
    at = _until(at, lambda a: _settled(a) and registry().get(state.run_key).config.dataset == "csv")
    run = registry().get(state.run_key)
    assert len(run.data.x_train) == 14 and len(run.data.x_test) == 0
    assert state.scenario == "moons" and _link(at)["scenario"] == "moons" and "points" in _link(at)
    assert _link(at)["dataset"] == "csv" and state.config.dataset == "csv"
    assert at.radio(key="view").value == view  # the view stays where it was
    from flowviz.ui.controls import widget_key

    ds = at.selectbox(key=widget_key("dataset", state.widget_gen))
    assert ds.value == "csv" and "drawn (14)" in ds.options
    text = " ".join(c.value for c in at.caption)
    assert "No test split" in text and _status(at)[0] == "done"
    assert {m.label: m.value for m in at.metric}["test accuracy"] == "—"
    assert not any("settings changed" in i.value for i in at.info)


def test_reset_in_presentation_mode_stays_there_with_sidebar_and_picture_agreeing():
    at = _until(
        _app({"scenario": "rings", "present": "1", "train_steps": "30", "n_samples": "200"}).run(),
        lambda a: a.get("plotly_chart"),
    )
    at.button(key="reset").click().run()
    at = _until(at, lambda a: a.get("plotly_chart"))
    state = at.session_state[STATE_KEY]
    assert state.present and _link(at)["present"] == "1" and state.scenario is None
    assert state.config == Config()
    from flowviz.ui.controls import widget_key

    gen = state.widget_gen
    assert gen > 0 and at.session_state[widget_key("dataset", gen)] == "moons"
    assert at.session_state[widget_key("noise", gen)] == Config().noise
    assert registry().get(state.run_key).config == state.config  # the picture is of the sidebar's config


def test_stop_from_a_window_that_did_not_start_a_shared_run_is_refused_there_and_says_so():
    # (AppTest gives every app one session id: the window that started the run is another session, by hand)
    at = _until(_app(link(tiny.SMALL.replace(train_steps=20000, seed=12))).run(), lambda a: _status(a)[0] == "training")
    state = at.session_state[STATE_KEY]
    shared = registry().get(state.run_key)
    shared.owners, shared.viewers["lecturer"] = {"lecturer"}, time.time()  # started and watched by another window
    registry().claim("lecturer", {shared.key})
    at.button(key="stop").click().run()
    assert "shared with another window" in " ".join(w.value for w in at.warning)
    assert shared.status == "training" and not shared.cancel.is_set()
    at.button(key="pause").click().run()  # Pause likewise
    assert "shared with another window" in " ".join(w.value for w in at.warning) and not shared.cancel.is_set()
    at.button(key="own_copy").click().run()
    copy = registry().get(state.run_key)
    assert copy is not shared and copy.config == shared.config and "test session id" in copy.owners
    at.button(key="stop").click().run()
    assert copy.cancel.is_set() and not shared.cancel.is_set()
    assert "Stopped at step" in " ".join(i.value for i in at.info)
    state.run_key, shared.viewers["lecturer"] = shared.key, time.time() - 60  # the other window has closed
    at.button(key="stop").click().run()
    assert shared.cancel.is_set()


def test_step_k_and_speed_are_link_flags_validated_like_the_others():
    from flowviz.ui import links

    good = links.parse_link({"step": "40", "k": "7", "speed": "100", "n_steps": "8"})
    assert (good.flags["step"], good.flags["k"], good.flags["speed"]) == (40, 7, 100) and not good.notices
    assert {k: links.link_of(good.config, good.flags)[k] for k in ("step", "k", "speed")} == {
        "step": "40",
        "k": "7",
        "speed": "100",
    }
    bad = links.parse_link({"step": "-3", "k": "9", "speed": "1", "n_steps": "8", "train_steps": "50"})
    assert bad.flags["step"] is None and bad.flags["k"] is None and bad.flags["speed"] is None
    text = " ".join(bad.notices)
    assert "step='-3'" in text and "k=9" in text and "8 layers" in text and "speed='1'" in text
    assert links.parse_link({"step": "60", "train_steps": "50"}).flags["step"] is None  # beyond the run


def test_reset_after_moving_the_sliders_runs_no_old_callback():
    """Reset clears every widget key and reruns; that rerun calls the callbacks of the old page's widgets (the
    browser still reports their values), which must act on nothing: no exception, the default page."""
    at = settle(_app(dict(link(tiny.SMALL.replace(train_steps=40)), present="1")))  # presentation mode's one line
    _step_slider(at).set_value(10).run()
    at.select_slider(key="frame_ms").set_value(100).run()
    old = at.session_state[STATE_KEY]
    assert old.flags["step"] == 10 and old.flags["speed"] == 100
    at.button(key="reset").click().run()
    assert not at.exception, at.exception
    at = settle(at)
    state = at.session_state[STATE_KEY]
    assert state is not old and old.retired and state.config == Config() and state.present
    assert state.flags["step"] is None and state.flags["speed"] is None and "step" not in _link(at)
