"""The page: sidebar controls, Train / Stop / Reset, live progress and the views.

Training runs in a worker (flowviz.runs); the page polls the run's latest
snapshot from fragments, so sliders and tabs never interrupt it.
"""

from __future__ import annotations

import logging

import streamlit as st

from .. import plots
from ..config import Config
from ..data import Dataset, load_csv, make_dataset, split
from ..errors import FlowvizError
from ..runs import Registry, Run
from . import sweep_tab
from .controls import block_formula, make_config, sidebar

log = logging.getLogger("flowviz.ui")

TABS = ["Characteristics", "Decision surface", "Transport", "Velocity field", "Diagnostics", "Depth sweep",
        "Dictionary"]
VIEW_FIGURES = {
    "Characteristics": [plots.characteristics],
    "Decision surface": [plots.decision],
    "Transport": [plots.transport, plots.spacetime],
    "Velocity field": [plots.velocity],
    "Diagnostics": [plots.learning_curves, plots.diagnostics, plots.weights],
}

DICTIONARY = """
| Neural network | Transport equation | Where to see it |
|---|---|---|
| layer k | time t_k | the step slider of **Characteristics** and **Velocity field** |
| weights W_k, biases b_k, activation a | velocity field v(t, x) | **Velocity field**; the weight heatmaps in **Diagnostics** |
| output function f | terminal value u(T, ·) = f | right panel of **Decision surface** |
| prediction map F | initial value u(0, ·) | left panel of **Decision surface** |
| label y | initial value u(0, X) = F(X) | the coloured points on F |
| feed-forward | solving the characteristic IVP x' = v(t, x) | the paths in **Characteristics** and the 3-D view in **Transport** |
| prediction | solving the transport TVP ∂_t u + v·∇u = 0 | **Transport**: u(t_k, ·) from k = L down to 0 |
| supervised learning | the inverse problem: find v carrying the samples to their labels | the learning curves in **Diagnostics** |

A residual block x_k = x_(k-1) + s_k V_k(x_(k-1)) is one forward-Euler step of the ODE x' = v(t, x) (Li & Shi
2017, eq. 10); with the paper's field (eq. 2) it is exactly the two-layer block of eq. 17. The transported value
u is constant along each path, so the colour under a point never changes as it moves: that is the method of
characteristics. Deep means a fine partition: small steps, each making a little progress along a smooth flow.
"""


@st.cache_resource
def registry() -> Registry:
    """One run registry per server process, shared by all sessions."""
    return Registry()


@st.cache_data(max_entries=64, show_spinner=False)
def dataset(config_json: str) -> Dataset:
    return make_dataset(Config.from_json(config_json))


def _state():
    ss = st.session_state
    if "config" not in ss:
        ss.config, ss.notices = _config_from_url()
        ss.run_key, ss.run_config, ss.csv, ss.csv_name = None, None, None, None
        ss.autostart = True
    return ss


def _config_from_url() -> tuple[Config, list[str]]:
    """The config in the URL; bad keys or values fall back to defaults, each named in a notice."""
    q = {k: st.query_params.get_all(k)[-1] for k in st.query_params.keys()}
    good, notices = {}, []
    for k, val in q.items():
        try:
            Config.from_query({**good, k: val})
            good[k] = val
        except FlowvizError as e:
            notices.append(f"Ignored `{k}` from the link: {e}")
    try:
        return Config.from_query(good), notices
    except FlowvizError as e:
        return Config(), notices + [f"The link's settings do not fit together ({e}); using the defaults."]


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
    try:
        data = _data_for(cfg, ss)
        run = registry().start(cfg, data, restart=restart)
        ss.run_key, ss.run_config = run.key, cfg
    except FlowvizError as e:
        st.error(str(e))


def _run(ss) -> Run | None:
    return registry().get(ss.run_key) if ss.run_key else None


def main():
    st.set_page_config(page_title="flowviz: a ResNet is a flow", page_icon="〰", layout="wide",
                       initial_sidebar_state="expanded")
    ss = _state()
    st.markdown("#### flowviz — a residual network is a flow")
    st.caption("x_k = x_(k−1) + s_k V_k(x_(k−1)) is one Euler step of x' = v(t, x) (Li & Shi 2017). "
               "Choose data, a field and a partition; train; watch the characteristics carry the classes apart.")
    for n in ss.notices:
        st.warning(n)

    values = sidebar(ss.config, has_csv=ss.csv is not None)
    up = st.sidebar.file_uploader("Your own points (CSV: x1, x2, label)", type=["csv"], key="csv_upload",
                                  help="At most 20,000 rows and 2 MB; a bad file is refused and nothing is lost.")
    if up is not None and up.name != ss.csv_name:
        handle_upload(ss, up.name, up.getvalue(), error=st.sidebar.error, ok=st.sidebar.success)

    cfg, err = make_config(values, ss.config)
    if err:
        st.sidebar.error(err)
        cfg = ss.config
    elif cfg != ss.config:
        ss.config = cfg
    st.query_params.from_dict(cfg.to_query())

    c1, c2, c3, _ = st.columns([1, 1, 1, 4])
    if c1.button("Train", type="primary", width="stretch", help="train this config (a shared run if one exists)"):
        _start(cfg, ss, restart=False)
    if c2.button("Stop", width="stretch", help="stop training; the last state stays on screen"):
        run = _run(ss)
        if run is not None:
            run.stop()
    if c3.button("Reset", width="stretch", help="back to the default settings"):
        for k in list(ss.keys()):
            del ss[k]
        st.query_params.clear()
        st.rerun()
    st.latex(block_formula(cfg))

    if ss.autostart:
        ss.autostart = False
        _start(cfg, ss)

    run = _run(ss)
    if run is not None and ss.run_config != cfg:
        st.info("The settings changed since this run started: the pictures show the previous settings. "
                "Press **Train** to train the new ones.")
    progress(run is not None and not run.finished)
    ss["_sweep_live"] = sweep_tab.running(registry(), ss)
    views((run is not None and not run.finished) or ss["_sweep_live"])


def _progress_body():
    ss = st.session_state
    run = _run(ss)
    if run is None:
        st.info("Press **Train** to start.")
        return
    snap = run.latest
    if run.status == "queued":
        st.info(f"Waiting for a free worker ({registry().queued_before(run)} runs ahead).")
    cols = st.columns(5)
    cols[0].metric("step", f"{snap.step if snap else 0} / {run.config.train_steps}")
    cols[1].metric("loss", f"{snap.loss:.4f}" if snap else "—")
    cols[2].metric("train accuracy", f"{snap.train_accuracy:.3f}" if snap else "—")
    cols[3].metric("test accuracy", f"{snap.test_accuracy:.3f}" if snap else "—")
    cols[4].metric("steps / s", f"{snap.steps_per_second:.0f}" if snap else "—")
    if snap:
        st.progress(min(1.0, snap.step / max(1, run.config.train_steps)), text=run.status)
    if run.error:
        st.error(run.error)


def progress(live: bool):
    st.fragment(run_every=0.5 if live else None)(_progress_body)()


def _views_body():
    ss = st.session_state
    run = _run(ss)
    if run is None:
        return
    v = run.views()
    if run.finished and st.session_state.get("_shown_final") != (run.key, run.status):
        st.session_state["_shown_final"] = (run.key, run.status)
        st.rerun()  # turn the live refresh off
    if v is None:
        st.caption("The first picture appears after the first snapshot…")
        return
    if v.live:
        st.caption("Live view (coarser, refreshed about once a second); the full picture follows when training ends.")
    # One view at a time: the browser draws only what is shown (all six at once took seconds to render).
    # Picking a view reruns this fragment only; training goes on in its worker.
    choice = st.radio("View", TABS, horizontal=True, key="view", label_visibility="collapsed")
    if choice == "Dictionary":
        st.markdown(DICTIONARY)
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
    for fn in VIEW_FIGURES[choice]:
        try:
            st.plotly_chart(fn(v), width="stretch", theme=None, key=f"fig_{fn.__name__}")
        except Exception:  # a figure must never take the page down
            log.exception("figure %s failed", fn.__name__)
            st.error(f"The {fn.__name__} view could not be drawn for this run.")


def views(live: bool):
    st.fragment(run_every=1.0 if live else None)(_views_body)()
