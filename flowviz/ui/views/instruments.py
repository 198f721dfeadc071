"""The Instruments view: probe one characteristic, the stability region, volume and density, the grid solver,
the adjoint flow, and points drawn by hand. Link parameters ``probe=x1,x2`` and ``points=...``.

page.py calls :func:`panel` to draw the view; the link parameters are rows of ``links.FLAGS`` and the probe and
the drawn points live in the page's ``PageState``.
"""

from __future__ import annotations

import logging
import time
from functools import partial

import numpy as np
import streamlit as st

from ... import plots
from ...core.errors import FlowvizError
from ...core.lru import LRU
from ...core.points import MAX_POINTS, RANGE, parse_selection
from ...plots.clickplane import click_plane
from ...plots.notation import typeset
from .. import figcache, guards, links
from ..notices import notice
from . import lecture

log = logging.getLogger("flowviz.ui")

SUBVIEWS = ["Probe", "Stability region", "Volume and density", "Grid solver", "Adjoint", "Draw points"]
CLUSTER = 25  # points a box or lasso adds at most (a seeded sample of the grid points inside, jittered)
_CACHE: LRU = LRU(24)  # per-run results (instrument data, probe paths), shared by sessions like the runs
WAIT_S = 60.0  # the longest wait for a worker preparing the instruments before the page says it still waits
NOTICE_KEY = "plane_notice"  # a selection that was ignored, named on the next draw of the view

guards.install()  # Streamlit's readers of a selection and a link, made safe for hostile input


def _cached(key, fn):
    """``fn()``, made once per key while it is among the last ones used."""
    return _CACHE.get_or_make(key, fn)


# ---------------------------------------------------------------------------------------------- selection
def selected_points(event, plot: str, state) -> tuple[np.ndarray | None, str | None]:
    """(The (x1, x2) (m, 2) of a new selection event (points of any trace; box and lasso give the grid points
    inside), a notice): every plane's one reader of the client's selection, ``core.points.parse_selection``
    with the link's bounds. (None, None) when the event is empty or was handled before (Streamlit returns the
    selection on every rerun); (None, a notice) when it is malformed: never raises."""
    xy, note = parse_selection(event)
    if xy is None or not state.new_selection(plot, (len(xy), round(float(xy.sum()), 6))):
        return None, note
    return xy, None


def _ignored(note: str | None) -> None:
    """Keep a selection's notice for the view's next draw (a callback runs before the page)."""
    if note:
        st.session_state[NOTICE_KEY] = note


def drawn_points(xy: np.ndarray, label: int, spacing: float, have: int) -> tuple[list, str | None]:
    """The points a click (one) or a cluster (a box or lasso: a seeded sample of at most CLUSTER of the grid
    points inside, jittered by half the grid spacing) adds to ``have`` drawn ones, and a notice past the link's
    limit."""
    if len(xy) > 1:
        rng = np.random.default_rng(have)
        xy = xy[rng.choice(len(xy), min(CLUSTER, len(xy)), replace=False)]
        xy = xy + rng.uniform(-spacing / 2, spacing / 2, xy.shape)
    xy = np.clip(xy, -RANGE, RANGE)
    room = max(MAX_POINTS - have, 0)
    new = [(float(a), float(b), int(label)) for a, b in xy[:room]]
    return new, (
        f"At most {MAX_POINTS} drawn points (what a link holds); the rest were not added." if len(xy) > room else None
    )


# ------------------------------------------------------------------------------------------------- panel
def _model(run):
    """(the run's model in its latest state, that step), or (None, None) before it has weights."""
    snap = run.latest
    if snap is None or snap.state is None:
        return None, None
    return run.model(), snap.step


def probe_path(state, run) -> np.ndarray | None:
    """The probe's characteristic x_0 .. x_L (L+1, d) in the run's latest state, or None without a probe: made
    once per (run, step, probe) and drawn by the probe plane and every view of flowviz.plots.PROBE_VIEWS."""
    probe = state.probe
    if probe is None or run is None:
        return None
    model, step = _model(run)
    if model is None:
        return None
    try:  # in the view worker (flowviz.serve.runs.registry.Registry.compute): a crash there cannot end the server
        return _cached(
            (run.key, step, "probe", probe),
            lambda: _registry().compute(run, "probe_path", probe=[float(a) for a in probe]),
        )
    except FlowvizError as e:
        notice(str(e), "error")
        return None


def _registry():
    from ..shared import registry

    return registry()


def _data(run, model, step, views, name: str):
    """Instrument ``name``'s data (flowviz.training.prepared), or None with a plain message while a worker makes
    it. A finished run's are made by a worker (Run.prepare); while a worker is at them the page waits for it,
    in steps of 0.1 s that keep the page responsive, and past WAIT_S says so: it never computes them again.
    Made by the view worker (Registry.compute) only where no worker is on them: a run still training, or
    no training worker was free for them (trainings go first). Nothing is computed in the server process."""
    if run.finished:
        obj, t0 = run.instrument(name), time.monotonic()
        if obj is None and run.preparing():
            note = st.empty()
            while obj is None and run.preparing() and time.monotonic() - t0 < WAIT_S:
                note.caption(f"A worker is preparing this run's instruments… {time.monotonic() - t0:.1f} s")
                time.sleep(0.1)
                obj = run.instrument(name)
            note.empty()
            obj = run.instrument(name)
        if obj is not None:
            return obj
        if run.preparing():
            st.info(
                f"A worker is still preparing this run's instruments ({time.monotonic() - t0:.0f} s so far); "
                "this view shows them once they are ready."
            )
            return None
    return _cached((run.key, step, name), lambda: _registry().compute(run, name, extent=list(views.extent)))


def panel(state, run, views) -> None:
    """Draw the Instruments view for ``run`` (its FlowViews ``views``); ``state`` is the page's PageState."""
    pick = state.take_instrument_pick()
    if pick in SUBVIEWS:  # a scenario opens on its instrument
        st.session_state["instrument"] = pick
    sub = st.radio(
        "Instrument",
        SUBVIEWS,
        horizontal=True,
        key="instrument",
        label_visibility="collapsed",
        on_change=state.callback(
            lambda: (state.pick_view("Instruments", st.session_state.instrument), _write_link(state))
        ),
    )
    if st.session_state.get(NOTICE_KEY):
        notice(str(st.session_state.pop(NOTICE_KEY)), "warning")
    if sub == "Draw points":
        return _draw(state, views)
    model, step = _model(run)
    if model is None:
        st.caption("The instruments need the run's first snapshot…")
        return
    try:
        if sub == "Probe":
            return _probe(state, run, model, step, views)
        if sub == "Stability region":
            obj = _data(run, model, step, views, "stability")
            if obj is None:
                return
            _show(plots.stability, obj, state, "fig_stability")
            k = int(np.argmax(obj.max_abs))
            st.caption(
                f"Largest |sₖ λ| = {obj.max_abs[k]:.3g} at block {k + 1}; {100 * obj.outside.max():.0f}% of "
                f"the eigenvalues of the worst block lie outside the {obj.scheme} region; "
                f"{int((obj.det < 0).sum())} point-blocks fold: det D(step k) < 0, the Jacobian of the "
                f"{obj.scheme} step itself"
                + (
                    ", each with a real eigenvalue of sₖ DVₖ below −1."
                    if obj.scheme == "euler"
                    else " (for midpoint and rk4 it is not I + sₖ DVₖ: a fold is read "
                    "from the step's Jacobian, not from where the eigenvalues lie)."
                )
            )
        elif sub == "Volume and density":
            _volume(run, model, step, views, state)
        elif sub == "Grid solver":
            if model.dim != 2:
                st.info(
                    "The grid solver works on the plane: this run is lifted (p > 0), so its transport "
                    "equation lives in ℝ²⁺ᵖ."
                )
                return
            obj = _data(run, model, step, views, "grid")
            if obj is not None:
                _show(plots.transport_grid, obj, state, "fig_transport_grid")
        elif sub == "Adjoint":
            live = not run.finished
            obj = (
                _cached((run.key, step, "adjoint", live), lambda: _registry().compute(run, "adjoint_live"))
                if live
                else _data(run, model, step, views, "adjoint")
            )
            if obj is None:
                return
            _show(plots.adjoint, obj, state, "fig_adjoint")
            if obj.stiff:
                st.caption(typeset(obj.stiff[0].upper() + obj.stiff[1:]))
            if live:
                st.caption(
                    f"Training: pₖ of the snapshot at step {step}; the comparison with the continuous "
                    "adjoint follows when training ends."
                )
    except FlowvizError as e:
        notice(str(e), "error")


def _show(fn, obj, state, key, **kw):
    """The figure ``fn(obj, **kw)``, built once per data object and shared by the pages (ui.figcache)."""
    try:
        st.plotly_chart(
            figcache.figure(fn, obj, state.present, **kw),
            width="stretch",
            theme=None,
            key=key,
            height=lecture.chart_height(state.present),
        )
    except Exception:  # a figure must never take the page down
        log.exception("instrument figure %s failed", key)
        st.error("This instrument could not be drawn for this run.")


def _volume(run, model, step, views, state):
    """The volume instrument with its density panel as a KDE of x_k (prepared) or the exact push-forward."""
    from ...training.volume import DENSITIES

    kinds = list(DENSITIES) if model.dim == 2 else ["kde"]
    kind = st.radio(
        "Density", kinds, horizontal=True, key="volume_density", format_func=lambda k: typeset(DENSITIES[k])
    )
    if kind == "exact":  # made by the view worker, as every computation on a run's weights
        obj = _cached(
            (run.key, step, "volume_exact"), lambda: _registry().compute(run, "volume_exact", extent=list(views.extent))
        )
    else:
        obj = _data(run, model, step, views, "volume")
    if obj is not None:
        _show(plots.volume, obj, state, "fig_volume")


def _probe(state, run, model, step, views):
    s = views.surfaces
    e = views.extent
    probe = state.probe
    path = probe_path(state, run)
    fig = click_plane(
        e,
        data=views.data,
        surface=(s.x1, s.x2, s.u[0]),
        probe_path=path,
        height=470,
        title="Click any point of the plane to probe it",
    )
    fig = lecture.style(fig, state.present)
    figcache.handed(fig)  # a room's followers see the plane with its probe too
    st.plotly_chart(
        fig,
        width="stretch",
        theme=None,
        key="probe_plane",
        on_select=partial(_on_probe, state),
        selection_mode="points",
    )
    if probe is None:
        st.info("Click a point on the plane (or give probe=x1,x2 in the link) to follow its characteristic.")
        return
    pr = _cached(
        (run.key, step, "probe_data", probe),  # once per click, in the view worker
        lambda: _registry().compute(run, "probe_data", probe=[float(a) for a in probe]),
    )
    _show(plots.probe, pr, state, "fig_probe", data_points=None)


def _draw(state, views):
    e = views.extent if views is not None else (-3, 3, -3, 3)
    c1, c2, c3, c4, c5 = st.columns([2.2, 1, 1, 1.6, 2])
    c1.radio("Class of new points", list(range(8)), horizontal=True, key="draw_class", format_func=lambda c: f"{c}")
    c2.button(
        "Undo",
        width="stretch",
        disabled=not state.drawn,
        key="draw_undo",
        on_click=state.callback(_changed),
        args=(state, state.undo_drawn),
    )
    c3.button(
        "Clear",
        width="stretch",
        disabled=not state.drawn,
        key="draw_clear",
        on_click=state.callback(_changed),
        args=(state, state.clear_drawn),
    )
    c4.button(
        "Train on these points",
        type="primary",
        width="stretch",
        key="draw_train",
        on_click=state.callback(_train_drawn),
        args=(state,),
    )
    c5.caption(f"{len(state.drawn)} drawn points (≤ {MAX_POINTS}); a click adds one, a box or lasso a cluster.")
    res = 41
    fig = click_plane(
        e,
        drawn=links.drawn_arrays(state.drawn) if state.drawn else None,
        res=res,
        height=520,
        title="Draw your own data (click; box or lasso from the toolbar)",
    )
    st.plotly_chart(
        lecture.style(fig, state.present),
        width="stretch",
        theme=None,
        key="draw_plane",
        on_select=partial(_on_draw, state, e, res),
        selection_mode=("points", "box", "lasso"),
    )
    if state.draw_message is not None:
        kind, text = state.draw_message
        state.draw_message = None
        notice(text, kind)
    if state.widget_reset:  # use_drawn changed the config: the whole page reruns (sidebar shows csv, run starts)
        st.rerun()


def _write_link(state):
    """The link follows the probe and the drawn points at once (a callback runs before the page writes it)."""
    st.query_params.from_dict(state.url())


def _changed(state, change):
    change()
    _write_link(state)


def _on_probe(state):
    """A click on the probe plane (a callback: it runs before the page, which then draws the new probe)."""
    xy, note = selected_points(st.session_state.get("probe_plane"), "probe_plane", state)
    _ignored(note)
    if xy is not None:
        state.set_probe(xy[0, 0], xy[0, 1])
        _write_link(state)


def _on_draw(state, extent, res):
    """A click, box or lasso on the drawing plane (a callback, as _on_probe)."""
    xy, note = selected_points(st.session_state.get("draw_plane"), "draw_plane", state)
    _ignored(note)
    if xy is not None:
        new, note = drawn_points(
            xy, int(st.session_state.get("draw_class", 0)), (extent[1] - extent[0]) / (res - 1), len(state.drawn)
        )
        state.add_drawn(new)
        state.draw_message = ("warning", note) if note else None
        _write_link(state)


def _train_drawn(state):
    """The Train button's callback (it runs before the page, so the sidebar's dataset can switch to csv)."""
    error = state.use_drawn()
    state.draw_message = ("error", error) if error else None
