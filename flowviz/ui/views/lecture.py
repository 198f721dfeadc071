"""The lecture kit on the page: the scenario picker, its title and text, presentation styling, export.

What a link means (scenario=, present=, hide=) is read in ``links`` (pure); the page's state changes only
through ``state.PageState``'s methods.
"""

from __future__ import annotations

import streamlit as st

from ... import plots
from ...core.presets import preset_info, preset_names
from ...plots.notation import typeset
from ...runfiles import export
from ...runfiles.files import weights_bytes
from ..state import NO_SCENARIO


def scenario_picker(state) -> None:
    """The sidebar's scenario list (first thing a lecturer sees)."""
    names = [NO_SCENARIO] + preset_names()
    cur = state.scenario or NO_SCENARIO

    def changed():
        state.apply_scenario(st.session_state.w_scenario_pick)

    st.sidebar.selectbox(
        "Scenario",
        names,
        index=names.index(cur),
        key="w_scenario_pick",
        on_change=state.callback(changed),
        format_func=lambda n: "— your own settings —" if n == NO_SCENARIO else preset_info(n)["title"],
        help="curated lecture scenarios; each opens with the view that shows its point",
    )


def header(state) -> None:
    """Title and description of the open scenario (in presentation mode the text waits in a popover)."""
    if state.scenario:
        info = preset_info(state.scenario)
        st.markdown(
            f"##### {typeset(info['title'])}", help=typeset(info["title"]) if state.present else None
        )  # shortened there
        if not state.present:
            st.markdown(typeset(info["description"]))


def about(state, container) -> None:
    """Presentation mode: the scenario's text behind a button, so the figure keeps the screen."""
    if state.scenario and state.present:
        with container.popover("What to look at", width="stretch"):
            st.markdown(typeset(preset_info(state.scenario)["description"]))


def chart_height(present: bool):
    """st.plotly_chart's height: presentation mode stretches a figure to the frame (assets/present.css sets its
    element's height from the viewport), the page keeps the figure's own."""
    return "stretch" if present else "content"


def style(fig, present: bool):
    """A figure of flowviz.plots in presentation mode's frame (flowviz.plots.style), or as built (the page's)."""
    return plots.presentation(fig) if present else fig


def export_panel(run, views) -> None:
    """Download buttons; each file is made only when its button is pressed."""
    cfg, model_state = run.config, run.latest.state if run.latest else None
    if model_state is None or views is None or views.live:
        return

    def model():
        return run.model()

    metrics = run.latest.metrics()
    files = [
        (
            "characteristics.html",
            "text/html",
            "the animated characteristics, interactive, works offline",
            lambda: plots.characteristics(views).to_html(include_plotlyjs=True, auto_play=False),
        ),
        (
            "model.safetensors",
            "application/octet-stream",
            "the trained weights, with the config inside",
            lambda: weights_bytes(model()),
        ),
        (
            "config.json",
            "application/json",
            "the config (open it again with Import)",
            lambda: (cfg.to_json() + "\n").encode(),
        ),
        ("data.csv", "text/csv", "the points: x1, x2, label, split", lambda: export.data_csv(run.data)),
        (
            "trajectories.npz",
            "application/octet-stream",
            "t, x (L+1, n, d), y",
            lambda: export.trajectories_npz(model(), run.data),
        ),
        (
            "metrics.json",
            "application/json",
            "config, final metrics and the training history",
            lambda: export.metrics_json(cfg, metrics, run.history),
        ),
    ]
    cols = st.columns(3)
    for i, (name, mime, what, make) in enumerate(files):
        cols[i % 3].download_button(
            name, data=make, file_name=name, mime=mime, help=what, on_click="ignore", key=f"dl_{name}", width="stretch"
        )
