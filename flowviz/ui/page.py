"""The page: sidebar controls, Train / Stop / Reset, live progress and the views.

Training runs in a worker (flowviz.serve.runs); the page polls the run's latest
snapshot from fragments, so sliders and tabs never interrupt it.
"""

from __future__ import annotations

import logging

import streamlit as st

from .. import plots
from ..core.config import Config
from ..core.data import Dataset, load_csv, make_dataset, split
from ..core.errors import FlowvizError
from ..core.presets import preset_info
from ..serve.runs import Run
from . import instruments_tab, lecture, sweep_tab
from .controls import block_formula, make_config, sidebar
from .dictionary import dictionary
from .server import registry

log = logging.getLogger("flowviz.ui")


# On a short screen (a 1280 x 720 laptop or projector) the header, metrics and formula took 560 px and pushed
# the figure below the fold: less padding, smaller numbers there. Tall screens keep the roomier layout.
COMPACT_CSS = """
<style>
  header[data-testid="stHeader"] { background: transparent; }  /* its menu sits right of the title */
  .block-container { padding-top: 2.6rem; }
  [data-testid="stMetricValue"] { font-size: 1.9rem; }
  @media (max-height: 860px) {
    .block-container { padding-top: 0.8rem; }
    [data-testid="stMetricValue"] { font-size: 1.5rem; }
    .katex-display { margin: 0.1em 0 !important; }
  }
</style>
"""

TABS = ["Characteristics", "Decision surface", "Transport", "Velocity field", "Diagnostics", "Instruments",
        "Depth sweep", "Dictionary"]
SIDE_BY_SIDE = "Side by side"  # shown when a scenario compares two runs
LIFTED = "Lifted space"  # shown for runs with a lift (p >= 1): the points and the boundary in 3-D
VIEW_FIGURES = {
    "Characteristics": [plots.characteristics],
    "Decision surface": [plots.decision],
    "Transport": [plots.transport, plots.spacetime],
    "Velocity field": [plots.velocity],
    "Diagnostics": [plots.learning_curves, plots.diagnostics, plots.folding, plots.weights],
    LIFTED: [plots.lifted],
}

@st.cache_data(max_entries=64, show_spinner=False)
def dataset(config_json: str) -> Dataset:
    return make_dataset(Config.from_json(config_json))


def _state():
    ss = st.session_state
    if "config" not in ss:
        q = {k: st.query_params.get_all(k)[-1] for k in st.query_params.keys()}
        ss.scenario, ss.present, ss.hidden, flag_notices = lecture.link_flags(q)
        base = preset_info(ss.scenario)["config"] if ss.scenario else Config()
        ss.config, notices = config_from_query({k: v for k, v in q.items()
                                                if k not in lecture.UI_PARAMS + instruments_tab.LINK_PARAMS}, base)
        ss.notices = flag_notices + notices
        ss.run_key, ss.run_config, ss.csv, ss.csv_name = None, None, None, None
        ss.notices += instruments_tab.link_state(ss, q)  # probe=, points= (drawn points become the csv data)
        ss.autostart = True
        if ss.scenario and preset_info(ss.scenario)["view"] in TABS + [SIDE_BY_SIDE, LIFTED]:
            ss.view_pick = preset_info(ss.scenario)["view"]
    return ss


def config_from_query(q: dict, base: Config) -> tuple[Config, list[str]]:
    """The config of a link on top of ``base``; bad keys or values fall back, each named in a notice."""
    good, notices = {}, []
    for k, val in q.items():
        try:
            Config.from_query({**base.to_query(), **good, k: val})
            good[k] = val
        except FlowvizError as e:
            notices.append(f"Ignored `{k[:40]}` from the link: {e}")
    try:
        return Config.from_query({**base.to_query(), **good}), notices
    except FlowvizError as e:
        return base, notices + [f"The link's settings do not fit together ({e}); using the defaults."]


def handle_upload(ss, name: str, raw: bytes, *, error, ok) -> None:
    """Validate an uploaded CSV; on error say so and keep the previous data."""
    ss.csv_name = name
    try:
        ss.csv = load_csv(raw)
        ok(f"Loaded {len(ss.csv[0])} points from {name}; choose dataset 'csv'.")
    except FlowvizError as e:
        error(f"{name}: {e}. The previous data stay in place.")


def _data_for(cfg: Config, ss) -> Dataset:
    if cfg.dataset == "csv":
        if ss.csv is None:
            raise FlowvizError("dataset=csv needs your points: upload a CSV file (columns x1, x2, label)")
        import numpy as np

        x, y = ss.csv
        return split(x, y, cfg.test_fraction, np.random.default_rng(cfg.seed))
    return dataset(cfg.to_json())


def _start(cfg: Config, ss, *, restart=False):
    """Start (or join) the run for ``cfg``, and the scenario's compared run if it has one."""
    try:
        data = _data_for(cfg, ss)
        run = registry().start(cfg, data, restart=restart)
        ss.run_key, ss.run_config = run.key, cfg
        changes = lecture.compare_changes(ss.get("scenario"))
        ss.compare_key = registry().start(cfg.replace(**changes), data, restart=restart).key if changes else None
    except FlowvizError as e:
        st.error(str(e))


def _run(ss) -> Run | None:
    return registry().get(ss.run_key) if ss.run_key else None


def _url(ss, cfg: Config) -> dict:
    q = cfg.to_query()
    if ss.scenario:
        q["scenario"] = ss.scenario
    if ss.present:
        q["present"] = "1"
    if ss.hidden:
        q["hide"] = ",".join(sorted(ss.hidden))
    q.update(instruments_tab.link_params(ss))
    return q


def main():
    present = str(st.query_params.get("present", "")).lower() in ("1", "true", "yes", "on")
    st.set_page_config(page_title="flowviz: a ResNet is a flow", page_icon="〰", layout="wide",
                       initial_sidebar_state="collapsed" if present else "expanded")
    ss = _state()
    if ss.present:
        st.html(lecture.PRESENT_CSS)
    else:
        st.html(COMPACT_CSS)
        st.markdown("#### flowviz — a residual network is a flow")
        st.caption("x_k = x_(k−1) + s_k V_k(x_(k−1)) is one Euler step of x' = v(t, x) (Li & Shi 2017). "
                   "Choose data, a field and a partition; train; watch the characteristics carry the classes apart.")
    for n in ss.notices:
        st.warning(n)

    lecture.scenario_picker(ss)
    values = sidebar(ss.config, has_csv=ss.csv is not None, hidden=ss.hidden)
    if "upload" not in ss.hidden:
        up = st.sidebar.file_uploader("Your own points (CSV: x1, x2, label)", type=["csv"], key="csv_upload",
                                      help="At most 20,000 rows and 2 MB; a bad file is refused and nothing is "
                                           "lost.")
        if up is not None and up.name != ss.csv_name:
            handle_upload(ss, up.name, up.getvalue(), error=st.sidebar.error, ok=st.sidebar.success)
    with st.sidebar.expander("Import a run · presentation mode", expanded=False):
        _import(ss)
        on = st.toggle("Presentation mode", value=ss.present, key="w_present",
                       help="large type, sidebar folded, figures within a 1280 x 720 projector frame; "
                            "the link keeps it (present=1)")
        if on != ss.present:
            ss.present = on
            st.query_params["present"] = "1" if on else "0"
            st.rerun()

    cfg, err = make_config(values, ss.config)
    if err:
        st.sidebar.error(err)
        cfg = ss.config
    elif cfg != ss.config:
        ss.config = cfg
    st.query_params.from_dict(_url(ss, cfg))
    lecture.header(ss)

    c1, c2, c3, c4, _ = st.columns([1, 1, 1, 1.5, 2.5])
    lecture.about(ss, c4)
    if c1.button("Train", type="primary", width="stretch", help="train this config (a shared run if one exists)"):
        _start(cfg, ss, restart=False)
    if c2.button("Stop", width="stretch", help="stop training; the last state stays on screen"):
        for run in (_run(ss), _compare_run(ss)):
            if run is not None:
                run.stop()
    if c3.button("Reset", width="stretch", help="back to the default settings"):
        for k in list(ss.keys()):
            del ss[k]
        st.query_params.clear()
        st.rerun()
    if not ss.present:
        st.latex(block_formula(cfg))

    if ss.autostart:
        ss.autostart = False
        _start(cfg, ss)

    run = _run(ss)
    if run is not None and ss.run_config != cfg:
        st.info("The settings changed since this run started: the pictures show the previous settings. "
                "Press **Train** to train the new ones.")
    live = run is not None and not run.finished
    cmp_run = _compare_run(ss)
    live = live or (cmp_run is not None and not cmp_run.finished)
    progress(live)
    ss["_sweep_live"] = sweep_tab.running(registry(), ss)
    views(live or ss["_sweep_live"])


def _import(ss):
    imp = st.file_uploader("Import a run or config (model.safetensors, config.json)", type=["safetensors", "json"],
                           key="run_import", help="files flowviz exported; never a pickle")
    if imp is not None and imp.file_id != ss.get("_imported"):
        ss["_imported"] = imp.file_id
        err = lecture.import_upload(ss, imp.name, imp.getvalue(), registry(), _data_for)
        if err:
            st.error(err)
        else:
            st.rerun()


def _compare_run(ss) -> Run | None:
    return registry().get(ss.compare_key) if ss.get("compare_key") else None


def _progress_body():
    ss = st.session_state
    run = _run(ss)
    if run is None:
        st.info("Press **Train** to start.")
        return
    _rerun_when_finished(ss, run)
    snap = run.latest
    if run.status == "queued":
        st.info(f"Waiting for a free worker ({registry().queued_before(run)} runs ahead).")
    if run.notice:
        st.info(run.notice)
    if ss.present:  # one line, so the figure keeps the projector frame
        if snap:
            st.caption(f"step {snap.step} / {run.config.train_steps} · loss {snap.loss:.4f} · train accuracy "
                       f"{snap.train_accuracy:.3f} · test accuracy {snap.test_accuracy:.3f} · {run.status}")
        if run.error:
            st.error(run.error)
        return
    cols = st.columns(6)
    cols[0].metric("step", f"{snap.step if snap else 0} / {run.config.train_steps}")
    cols[1].metric("loss", f"{snap.loss:.4f}" if snap else "—")
    cols[2].metric("train accuracy", f"{snap.train_accuracy:.3f}" if snap else "—")
    cols[3].metric("test accuracy", f"{snap.test_accuracy:.3f}" if snap else "—")
    cols[4].metric("steps / s", f"{snap.steps_per_second:.0f}" if snap else "—")
    cols[5].metric("status", run.status)
    if snap:
        st.progress(min(1.0, snap.step / max(1, run.config.train_steps)))
    if run.error:
        st.error(run.error)


def _rerun_when_finished(ss, run: Run) -> None:
    """Once the run (and a compared one) has finished, rerun the page: the live refresh stops and the full
    views are drawn. Both fragments check, so the picture follows within half a second."""
    cmp_run = _compare_run(ss)
    finished = run.finished and (cmp_run is None or cmp_run.finished)
    if finished and ss.get("_shown_final") != (run.key, run.status, ss.get("compare_key")):
        ss["_shown_final"] = (run.key, run.status, ss.get("compare_key"))
        st.rerun()


def progress(live: bool):
    st.fragment(run_every=0.5 if live else None)(_progress_body)()


def _views_body():
    ss = st.session_state
    run = _run(ss)
    if run is None:
        return
    v = run.views()
    cmp_run = _compare_run(ss)
    _rerun_when_finished(ss, run)
    if v is None:  # the data meanwhile (and the browser loads its plotting code while the run trains)
        try:
            st.plotly_chart(lecture.style(plots.samples(run.data), ss.present), width="stretch", theme=None,
                            key="fig_samples")
        except Exception:
            log.exception("samples figure failed")
        st.caption("No picture of the flow: the run stopped before its first snapshot." if run.finished else
                   "Training… the flow's first picture appears in a moment.")
        return
    if v.live:
        st.caption("Live view (coarser, refreshed about once a second); the full picture follows when training ends.")
    # One view at a time: the browser draws only what is shown (all six at once took seconds to render).
    # Picking a view reruns this fragment only; training goes on in its worker.
    tabs = TABS[:1] + ([LIFTED] if run.config.lift > 0 else []) + TABS[1:] + \
        ([SIDE_BY_SIDE] if cmp_run is not None else [])
    # the choice outlives runs in which the radio is not drawn (its widget state would be dropped)
    want = ss.get("view_pick")
    if ss.get("view") not in tabs or (want in tabs and ss.get("view") != want):
        ss.view = want if want in tabs else tabs[0]

    def picked():
        ss.view_pick = ss.view

    choice = st.radio("View", tabs, horizontal=True, key="view", label_visibility="collapsed", on_change=picked)
    if choice == "Dictionary":
        st.markdown(dictionary(run.config))
        return
    if choice == "Instruments":
        instruments_tab.panel(ss, run, v, start=lambda cfg: _start(cfg, ss))
        return
    if choice == "Depth sweep":
        try:
            sweep_tab.panel(registry(), ss.config, _data_for(ss.config, ss))
        except FlowvizError as e:
            st.error(str(e))
        if ss.get("_sweep_live") and not sweep_tab.running(registry(), ss):
            ss["_sweep_live"] = False
            st.rerun()  # the sweep has finished: turn the refresh off
        return
    if choice == SIDE_BY_SIDE:
        _side_by_side(ss, run, cmp_run, v)
    else:
        for fn in VIEW_FIGURES[choice]:
            _chart(fn, v, ss.present)
    if not v.live and not ss.present:
        with st.expander("Export this run"):
            lecture.export_panel(run, v)


def _chart(fn, v, present: bool, key: str | None = None):
    try:
        st.plotly_chart(lecture.style(fn(v), present), width="stretch", theme=None, key=key or f"fig_{fn.__name__}")
    except Exception:  # a figure must never take the page down
        log.exception("figure %s failed", fn.__name__)
        st.error(f"The {fn.__name__} view could not be drawn for this run.")


def _side_by_side(ss, run, cmp_run, v):
    from ..plots.sweep import side_by_side

    w = cmp_run.views()
    if w is None:
        st.caption("The compared run has not published its first snapshot yet…")
        return
    changes = lecture.compare_changes(ss.get("scenario"))
    right = ", ".join(f"{k} = {val}" for k, val in changes.items())
    left = ", ".join(f"{k} = {getattr(run.config, k)}" for k in changes)
    try:
        fig = side_by_side(v, w, (left, right))
        st.plotly_chart(lecture.style(fig, ss.present), width="stretch", theme=None, key="fig_side_by_side")
    except Exception:
        log.exception("side-by-side figure failed")
        st.error("The side-by-side view could not be drawn.")
    extra = preset_info(ss.scenario)["side_figures"] if ss.get("scenario") else []
    for name in extra:  # the figures that carry this scenario's point, for both runs
        c = st.columns(2)
        for i, (col, vv) in enumerate(zip(c, (v, w))):
            with col:
                _chart(plots.FIGURES[name], vv, ss.present, key=f"fig_{name}_{i}")


def views(live: bool):
    st.fragment(run_every=1.0 if live else None)(_views_body)()
