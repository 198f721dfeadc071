"""The page: sidebar controls, Train / Stop / Reset, live progress and the views.

Training runs in a worker (flowviz.serve.runs.registry); the page polls the run's latest snapshot from fragments, so
sliders and tabs never interrupt it. What the page remembers is one ``PageState`` (flowviz.ui.state) under
``STATE_KEY``, built once from the link; each ``*_ui`` function draws one part and returns plain values.
"""

from __future__ import annotations

import functools
import logging

import streamlit as st

from .. import plots
from ..core.assets import ASSETS
from ..core.config import Config
from ..core.data import Dataset, make_dataset, split
from ..core.errors import FlowvizError
from ..core.presets import preset_info
from ..plots.notation import typeset
from ..serve.runs.registry import Run
from . import figcache, hands, links, packs, room_ui
from .controls import block_formula, make_config, sidebar
from .notices import notice
from .session import admit, pace, session_id, settle
from .shared import registry
from .state import PageState
from .views import instruments, lecture, sweep
from .views.dictionary import dictionary

log = logging.getLogger("flowviz.ui")

STATE_KEY = "page"  # the one session-state key of the page's own state (widgets keep theirs: w_*, view, ...)
EXPORT_KEY = "export_open"  # the export box's state (True while open)

TABS = [
    "Characteristics",
    "Decision surface",
    "Transport",
    "Velocity field",
    "Diagnostics",
    "Instruments",
    "Depth sweep",
    "Dictionary",
]
SIDE_BY_SIDE = "Side by side"  # shown when a scenario compares two runs
LIFTED = "Lifted space"  # shown for runs with a lift (p >= 1): the points and the boundary in 3-D
VIEW_FIGURES = {
    "Characteristics": [plots.characteristics],
    "Decision surface": [plots.decision],
    "Transport": [plots.transport, plots.spacetime],
    "Velocity field": [plots.velocity],
    "Diagnostics": [plots.folding, plots.diagnostics, plots.learning_curves, plots.weights],  # the fold first
    LIFTED: [plots.lifted],
}


def waiting_text(reg, run) -> str:
    """What a page waiting for a worker says: its place in the queue, the estimated wait and its own cost."""
    from ..serve.budget import duration

    place, wait = reg.queue_place(run)
    text = f"Waiting for a free worker: place {place} in the queue"
    text += f", about {duration(wait)} to wait." if wait is not None else "."
    if run.cost is not None:
        text += f" This run will take {run.cost.describe()}."
    return text


@st.cache_data(max_entries=64, show_spinner=False)
def dataset(config_json: str) -> Dataset:
    return make_dataset(Config.from_json(config_json))


@functools.cache
def css(name: str) -> str:
    """A style sheet of assets/ as a <style> block."""
    return f"<style>\n{(ASSETS / name).read_text()}</style>"


def page_state() -> PageState:
    """This session's state, built from the link on its first rerun."""
    ss = st.session_state
    if STATE_KEY not in ss:
        ss[STATE_KEY] = PageState.from_link({k: st.query_params.get_all(k) for k in st.query_params.keys()})
    return ss[STATE_KEY]


def data_for(cfg: Config, state: PageState) -> Dataset:
    """The points a config trains on: generated (cached), or the uploaded CSV's."""
    if cfg.dataset == "csv":
        if state.csv is None:
            raise FlowvizError("dataset=csv needs your points: upload a CSV file (columns x1, x2, label)")
        import numpy as np

        x, y = state.csv  # few points of a class: no test split (hands.MIN_TEST_PER_CLASS)
        return split(x, y, hands.test_fraction(y, cfg.test_fraction), np.random.default_rng(cfg.seed))
    return dataset(cfg.to_json())


def _run(key: str | None) -> Run | None:
    return registry().get(key) if key else None


def main():
    state = page_state()
    st.set_page_config(
        page_title="flowviz: a ResNet is a flow",
        page_icon="〰",
        layout="wide",
        initial_sidebar_state="collapsed" if state.present else "expanded",
    )
    if not admit():  # one client's bounds (its pages, its reruns, its share of script time); its runs queue
        return  # in its own turn
    try:
        _page(state)
    finally:
        settle()


def _charged(body):
    """A fragment's body, its own reruns admitted and charged to its client like a page's run."""

    @functools.wraps(body)
    def run():
        pace()
        try:
            return body()
        finally:
            settle(fragment=True)

    return run


def _page(state: PageState) -> None:
    """The page, once admitted: title, sidebar, buttons, status and views."""
    if state.take_widget_reset():  # the config changed under the sidebar: new widgets show the new one
        hands.sync_widgets(state)
    title_ui(state.present)
    for n in state.notices:
        notice(n)

    lecture.scenario_picker(state)
    values = sidebar(
        state.config,
        has_csv=state.csv is not None,
        hidden=state.hidden,
        csv_label=f"drawn ({len(state.csv[0])})" if state.drawn_data else None,
        gen=state.widget_gen,
        fold=not state.present,  # presentation mode draws every group (folded ones there moved a figure down)
    )
    if "upload" not in state.hidden:
        upload_ui(state)
    with st.sidebar.expander("Import a run · presentation mode", expanded=False):
        import_ui(state)
        present_ui(state)
    cfg = config_ui(values, state)
    st.query_params.from_dict(state.url(cfg))
    room_ui.panel(state)
    if not state.present:  # presentation mode: the title shares the buttons' line
        lecture.header(state)

    action, status = buttons_ui(state)
    if action == "reset":  # the default page, in presentation mode if this one is
        fresh = state.reset()
        for k in list(st.session_state.keys()):
            del st.session_state[k]
        st.session_state[STATE_KEY] = fresh
        st.query_params.from_dict(fresh.url())
        st.rerun()
    if action in hands.ACTIONS:
        hands.act(state, action, registry(), session_id())
    hands.notices(state, registry(), session_id())
    if not state.present:
        st.latex(block_formula(cfg))
    if action == "train" or state.take_autostart():
        start(state, cfg, restart=False)

    run, cmp_run = _run(state.run_key), _run(state.compare_key)
    if run is not None and state.run_config != cfg:
        st.info(
            "The settings changed since this run started: the pictures show the previous settings. "
            "Press **Train** to train the new ones."
        )
    live = any(r is not None and not r.finished for r in (run, cmp_run))
    if run is not None and not live:  # this run of the script draws the full views: no second run for them
        state.finished_shown((run.key, run.status, state.compare_key))
    with status:
        progress(live)
    if state.sweep_live and not sweep.running(registry(), state):
        state.sweep_settled()
    views(live or state.sweep_live)


def title_ui(present: bool) -> None:
    """Style sheet, title and one line of what the page shows (presentation mode: style sheet only)."""
    if present:
        st.html(css("present.css"))
        return
    st.html(css("compact.css"))
    st.markdown("#### flowviz — a residual network is a flow")
    st.caption(
        "xₖ = xₖ₋₁ + sₖ Vₖ(xₖ₋₁) is one Euler step of x' = v(t, x) (Li & Shi 2017). "
        "Choose data, a field and a partition; train; watch the characteristics carry the classes apart."
    )


def upload_ui(state: PageState) -> None:
    """The CSV box: a new file is validated; on error the previous points stay."""
    up = st.sidebar.file_uploader(
        "Your own points (CSV: x1, x2, label)",
        type=["csv"],
        key="csv_upload",
        help="At most 20,000 rows and 2 MB; a bad file is refused and nothing is lost.",
    )
    if up is not None and up.name != state.csv_name:
        ok, msg = state.upload_csv(up.name, up.getvalue())
        notice(msg, "success" if ok else "error", st.sidebar)


def import_ui(state: PageState) -> None:
    """The import box: a run (.safetensors) or a config (.json) flowviz exported; never a pickle."""
    imp = st.file_uploader(
        "Import a run or config (model.safetensors, config.json)",
        type=["safetensors", "json"],
        key="run_import",
        help="files flowviz exported; never a pickle",
    )
    if imp is None or not state.first_sight(imp.file_id):
        return
    try:
        err = state.import_file(imp.name, imp.getvalue(), registry(), data_for)
    except Exception:  # whatever a file does, the page stays
        log.exception("import of %r failed", imp.name[:80])
        err = "This file could not be opened. Nothing was changed."
    if err:
        notice(err, "error")
    else:
        st.rerun()


def present_ui(state: PageState) -> None:
    on = st.toggle(
        "Presentation mode",
        value=state.present,
        key="w_present",
        help="large type, sidebar folded, figures within a 1280 x 720 projector frame; the link keeps it (present=1)",
    )
    if on != state.present:
        state.set_present(on)
        st.query_params["present"] = "1" if on else "0"
        st.rerun()


def config_ui(values: dict, state: PageState) -> Config:
    """The sidebar's values as a config; a bad combination is named and the last good config kept."""
    cfg, err = make_config(values, state.config)
    if err:
        notice(err, "error", st.sidebar)
        return state.config
    state.choose(cfg)
    return cfg


def buttons_ui(state: PageState):
    """Train, Stop, Reset, Pause/Resume/Step (and the scenario's text in presentation mode): the button pressed,
    or None, and the container of the run's status (presentation mode: title, buttons and status share one line)."""
    if state.present:
        t, c1, c2, c3, c5, c6, c7, c4, status = st.columns(
            [2.6, 0.62, 0.62, 0.68, 0.75, 0.62, 0.95, 1.45, 2.0], vertical_alignment="center"
        )
        with t:
            lecture.header(state)
        status = status.container(key="fv_status")
    else:
        c1, c2, c3, c5, c6, c7, c4 = st.columns([1, 1, 1, 1, 1, 1.2, 1.5])
        status = st.container()
    lecture.about(state, c4)
    hand = hands.run_buttons(state, registry(), (c5, c6, c7))
    if hand:
        return hand, status
    pressed = {
        "train": c1.button(
            "Train", type="primary", width="stretch", key="train", help="train this config (a shared run if one exists)"
        ),
        "stop": c2.button("Stop", width="stretch", key="stop", help="stop training; the last state stays on screen"),
        "reset": c3.button("Reset", width="stretch", key="reset", help="back to the default settings"),
    }
    return next((name for name, hit in pressed.items() if hit), None), status


def start(state: PageState, cfg: Config, *, restart=False) -> None:
    """Start (or join) the run for ``cfg`` and the scenario's compared run; a refusal is a notice."""
    try:
        paused = _run(state.run_key)
        if paused is not None and paused.paused and state.run_config == cfg and not restart:
            paused.go()  # Train on a paused run goes on from where it paused
            return
        state.start(registry(), data_for(cfg, state), cfg, restart=restart)
        registry().claim(session_id(), {state.run_key, state.compare_key})  # one training job per session
        for r in (_run(state.run_key), _run(state.compare_key)):
            if r is not None and (not r.owners or restart):
                r.owners.add(session_id())  # this window started it: its Stop and Pause act on it
    except FlowvizError as e:
        notice(str(e), "error")


@_charged  # a refresh of its own counts against its client's bounds
def _progress_body():
    state = page_state()
    run = _run(state.run_key)
    if run is None:
        st.info("Press **Train** to start.")
        return
    _rerun_when_finished(state, run)
    run.seen_by(session_id())  # (a window that did not start it may stop it only if no other window watches)
    snap = run.latest
    if run.status == "queued":
        notice(waiting_text(registry(), run), "info")  # (shown literally, as every alert but the page's own few)
    if run.notice:
        notice(run.notice, "info")
    if state.present:  # one line, so the figure keeps the projector frame
        if snap:
            test = f"{snap.test_accuracy:.2f} test" if len(run.data.y_test) else "no test split"
            st.caption(
                f"step {snap.step} / {run.config.train_steps} · loss {snap.loss:.3f} · accuracy "
                f"{snap.train_accuracy:.2f} train, {test} · {run.status}"
            )
        if run.error:
            notice(run.error, "error")
        return
    cols = st.columns(6)
    cols[0].metric("step", f"{snap.step if snap else 0} / {run.config.train_steps}")
    cols[1].metric("loss", f"{snap.loss:.4f}" if snap else "—")
    cols[2].metric("train accuracy", f"{snap.train_accuracy:.3f}" if snap else "—")
    cols[3].metric("test accuracy", f"{snap.test_accuracy:.3f}" if snap and len(run.data.y_test) else "—")
    cols[4].metric("steps / s", f"{snap.steps_per_second:.0f}" if snap else "—")
    cols[5].metric("status", run.status)
    if snap:
        st.progress(min(1.0, snap.step / max(1, run.config.train_steps)))
    if not len(run.data.y_test):
        st.caption(
            f"No test split: a class has fewer than {hands.MIN_TEST_PER_CLASS} points, so no test accuracy "
            f"is reported; the accuracy shown is on the {len(run.data.y_train)} training points."
        )
    if run.error:
        notice(run.error, "error")


def _rerun_when_finished(state: PageState, run: Run) -> None:
    """Once the run (and a compared one) has finished, rerun the page: the live refresh stops and the full
    views are drawn. Both fragments check, so the picture follows within half a second."""
    cmp_run = _run(state.compare_key)
    if (
        run.finished
        and (cmp_run is None or cmp_run.finished)
        and state.finished_shown((run.key, run.status, state.compare_key))
    ):
        st.rerun()


def progress(live: bool):
    st.fragment(run_every=0.5 if live else None)(_progress_body)()


@_charged
def _views_body():
    state = page_state()
    hands.keep_choices()  # the sub-view stays where it was while a new run has no picture yet
    if state.sweep_live:  # a sweep this page watches stays watched (not cancelled) whichever view is shown
        sweep.running(registry(), state)
    run = _run(state.run_key)
    if run is None:
        return
    full = run  # (the run itself; ``run`` below is it as it was at the link's training step, if one is set)
    run, v = hands.shown(state, full)
    cmp_run = _run(state.compare_key)
    _rerun_when_finished(state, full)
    if v is None:  # the data meanwhile (and the browser loads its plotting code while the run trains)
        try:
            st.plotly_chart(
                lecture.style(plots.samples(run.data), state.present),
                width="stretch",
                theme=None,
                key="fig_samples",
                height=lecture.chart_height(state.present),
            )
        except Exception:
            log.exception("samples figure failed")
        if run is not full:  # a kept training step whose picture no worker could make
            st.caption(run.notice or "The picture of this training step is not ready; choose it again.")
        else:
            st.caption(
                "No picture of the flow: the run stopped before its first snapshot."
                if run.finished
                else "Training… the flow's first picture appears in a moment."
            )
        return
    if v.live and not state.present:  # presentation: the status line says it trains; the frame keeps its room
        step = v.history[-1]["step"] if v.history else run.latest.step
        st.caption(f"Live view of step {step} (coarser, redrawn at most once a second); the full picture follows.")
    hands.step_row(state, full)
    tabs = (
        TABS[:1]
        + ([LIFTED] if run.config.lift > 0 else [])
        + TABS[1:]
        + ([SIDE_BY_SIDE] if cmp_run is not None else [])
    )
    choice, side = view_ui(state, tabs)
    room_ui.publish(state, run, v, choice, cmp_run)
    if choice == "Dictionary":
        st.markdown(typeset(dictionary(run.config)))
        return
    if choice == "Instruments":
        instruments.panel(state, run, v)
        return
    if choice == "Depth sweep":
        try:
            sweep.panel(registry(), state, state.config, data_for(state.config, state))
        except FlowvizError as e:
            notice(str(e), "error")
        if state.sweep_live and not sweep.running(registry(), state):
            state.sweep_settled()
            st.rerun()  # the sweep has finished: turn the refresh off
        return
    if choice == SIDE_BY_SIDE:
        _side_by_side(state, run, cmp_run, v)
    else:
        path = instruments.probe_path(state, run)  # once per (run, step, probe): every view marks it
        extra = {}
        if choice == "Characteristics" and v.frame_surfaces is not None:
            extra = {
                "fixed_window": side.toggle(
                    "One window",
                    key="fixed_window",
                    help="keep the whole flow's window in every frame (to compare "
                    "frames); off: each frame shows its own points' window",
                )
            }
        for fn in VIEW_FIGURES[choice]:
            mark = hands.learning_mark(fn, state, full)  # the learning curves: the whole run, the step marked
            _chart(
                fn,
                full.views() if mark is not None else v,
                state.present,
                probe_path=path,
                mark=mark,
                **(extra if fn is plots.characteristics else {}),
            )
        if not state.present:
            packs.video_buttons(run, v, VIEW_FIGURES[choice], state)
    if not v.live and not state.present:
        box = st.expander("Export this run", key=EXPORT_KEY, on_change="rerun")  # its buttons drawn once opened
        if box.open:
            with box:
                lecture.export_panel(run, v)
                packs.pack_button(run, v, state)


def view_ui(state: PageState, tabs: list[str]):
    """The view picker: one view at a time (the browser draws only what is shown; all six at once took
    seconds). Picking reruns the views' fragment only; training goes on in its worker. The choice outlives
    runs in which the radio is not drawn (its widget state would be dropped). Returns the view and a column
    beside the picker (for the view's own switch)."""
    ss, want = st.session_state, state.view_pick
    if ss.get("view") not in tabs or (want in tabs and ss.get("view") != want):
        ss.view = want if want in tabs else tabs[0]

    def picked():
        state.pick_view(ss.view, ss.get("instrument"))
        st.query_params.from_dict(state.url())

    left, right = st.columns([8, 2], vertical_alignment="center")  # room for "One window" beside its switch
    with left:
        # the default is the chosen view too: a widget the browser mounts anew (a fragment's rerun beside a whole
        # page's) reported its default, the first view, as a change
        return st.radio(
            "View",
            tabs,
            index=tabs.index(ss.view),
            horizontal=True,
            key="view",
            label_visibility="collapsed",
            on_change=state.callback(picked),
        ), right


def _chart(fn, v, present: bool, key: str | None = None, probe_path=None, mark=None, **options):
    try:
        # the probe's path as nested tuples: hashable, so the figure cache keys on it (every page probing it shares)
        kw = (
            {"probe_path": tuple(map(tuple, probe_path.tolist()))}
            if probe_path is not None and fn in plots.PROBE_VIEWS
            else {}
        )
        kw.update({k: val for k, val in options.items() if val})
        fig = hands.adjust(figcache.figure(fn, v, present, **kw), page_state(), mark_step=mark)  # k=, speed=
        st.plotly_chart(
            fig, width="stretch", theme=None, key=key or f"fig_{fn.__name__}", height=lecture.chart_height(present)
        )
    except Exception:  # a figure must never take the page down
        log.exception("figure %s failed", fn.__name__)
        st.error(f"The {fn.__name__} view could not be drawn for this run.")


def _side_by_side(state: PageState, run, cmp_run, v):
    from ..plots.sweep import side_by_side

    w = cmp_run.views()
    if w is None:
        st.caption("The compared run has not published its first snapshot yet…")
        return
    changes = links.compare_changes(state.scenario)
    right = ", ".join(f"{k} = {val}" for k, val in changes.items())
    left = ", ".join(f"{k} = {getattr(run.config, k)}" for k in changes)
    paths = (instruments.probe_path(state, run), instruments.probe_path(state, cmp_run))  # each run's own
    lead = preset_info(state.scenario).get("lead_figure") if state.scenario else None
    if lead == "residual_ratios":  # the scenario's point first: one figure of both runs
        from ..plots.sweep import residual_ratios

        try:
            st.plotly_chart(
                lecture.style(residual_ratios(v, w, (left, right)), state.present),
                width="stretch",
                theme=None,
                key="fig_residual_ratios",
                height=lecture.chart_height(state.present),
            )
        except Exception:
            log.exception("residual ratio figure failed")
    try:
        fig = side_by_side(v, w, (left, right), probe_paths=paths if state.probe is not None else None)
        st.plotly_chart(
            lecture.style(fig, state.present),
            width="stretch",
            theme=None,
            key="fig_side_by_side",
            height=lecture.chart_height(state.present),
        )
    except Exception:
        log.exception("side-by-side figure failed")
        st.error("The side-by-side view could not be drawn.")
    extra = preset_info(state.scenario)["side_figures"] if state.scenario else []
    for name in extra:  # the figures that carry this scenario's point, for both runs
        c = st.columns(2)
        for i, (col, vv) in enumerate(zip(c, (v, w))):
            with col:
                _chart(plots.FIGURES[name], vv, state.present, key=f"fig_{name}_{i}", probe_path=paths[i])


def views(live: bool):
    st.fragment(run_every=1.0 if live else None)(_views_body)()
