"""The Instruments view: probe one characteristic, the stability region, volume and density, the grid solver,
the adjoint flow, and points drawn by hand. Link parameters ``probe=x1,x2`` and ``points=...``.

page.py calls :func:`link_state` when a session starts, :func:`link_params` when it writes the link, and
:func:`panel` to draw the view.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from functools import partial

import numpy as np
import streamlit as st

from .. import plots
from ..core.errors import FlowvizError
from ..core.model import build_model
from ..core.points import MAX_POINTS, RANGE, decode_points, encode_points, format_probe, parse_probe
from ..core.presets import preset_info
from ..plots.clickplane import click_plane
from ..training import instruments as ins
from ..training import volume as vol
from . import lecture

log = logging.getLogger("flowviz.ui")

LINK_PARAMS = ("probe", "points")
SUBVIEWS = ["Probe", "Stability region", "Volume and density", "Grid solver", "Adjoint", "Draw points"]
CLUSTER = 25  # points a box or lasso adds at most (a seeded sample of the grid points inside, jittered)
_CACHE: OrderedDict = OrderedDict()
_LOCK = threading.Lock()
_KEEP = 24


def _cached(key, fn):
    """Per-run results (models, instrument data), least recently used out; shared by sessions like the runs."""
    with _LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    out = fn()
    with _LOCK:
        _CACHE[key] = out
        while len(_CACHE) > _KEEP:
            _CACHE.popitem(last=False)
    return out


# ------------------------------------------------------------------------------------------------- link
def link_state(ss, q: dict) -> list[str]:
    """Read ``probe=`` and ``points=`` from the link into the session; a bad value is dropped with a notice."""
    notices = []
    ss.probe, ss.drawn = None, []
    if ss.get("scenario") and preset_info(ss.scenario).get("instrument") in SUBVIEWS:
        ss["instrument"] = preset_info(ss.scenario)["instrument"]
    if q.get("probe"):
        try:
            ss.probe = parse_probe(q["probe"])
        except FlowvizError as e:
            notices.append(f"Ignored `probe` from the link: {e}")
    if q.get("points"):
        try:
            x, y = decode_points(q["points"])
            ss.drawn = [(float(a), float(b), int(c)) for (a, b), c in zip(x, y)]
            ss.csv, ss.csv_name = (x, y), "drawn points"
        except FlowvizError as e:
            notices.append(f"Ignored `points` from the link: {e}")
    return notices


def link_params(ss) -> dict:
    """The link's ``probe`` and ``points`` for this session (nothing when unset)."""
    out = {}
    if ss.get("probe") is not None:
        out["probe"] = format_probe(ss.probe)
    if ss.get("drawn"):
        try:
            out["points"] = encode_points(*_drawn_arrays(ss.drawn))
        except FlowvizError:
            pass  # more than the link holds: the points stay in the session only
    return out


def _drawn_arrays(drawn):
    a = np.asarray(drawn, dtype=np.float64).reshape(-1, 3)
    return a[:, :2], a[:, 2].astype(int)


# ---------------------------------------------------------------------------------------------- selection
def selected_points(event, seen_key: str, ss) -> np.ndarray | None:
    """The (x1, x2) of a new selection event (points of any trace; box and lasso give the grid points inside),
    or None when the event is empty or was handled before (Streamlit returns the selection on every rerun)."""
    sel = (event or {}).get("selection") or {}
    pts = sel.get("points") or []
    if not pts:
        return None
    xy = np.array([[float(p["x"]), float(p["y"])] for p in pts if "x" in p and "y" in p])
    sig = (len(xy), round(float(xy.sum()), 6)) if len(xy) else None
    if sig is None or ss.get(seen_key) == sig:
        return None
    ss[seen_key] = sig
    return xy


def add_drawn(ss, xy: np.ndarray, label: int, spacing: float) -> str | None:
    """Add a click (one point) or a cluster (a box or lasso: a seeded sample of at most CLUSTER of the grid
    points inside, jittered by half the grid spacing) of class ``label``; a notice past the link's limit."""
    if len(xy) > 1:
        rng = np.random.default_rng(len(ss.drawn))
        xy = xy[rng.choice(len(xy), min(CLUSTER, len(xy)), replace=False)]
        xy = xy + rng.uniform(-spacing / 2, spacing / 2, xy.shape)
    xy = np.clip(xy, -RANGE, RANGE)
    room = MAX_POINTS - len(ss.drawn)
    ss.drawn = ss.drawn + [(float(a), float(b), int(label)) for a, b in xy[:max(room, 0)]]
    if len(xy) > room:
        return f"At most {MAX_POINTS} drawn points (what a link holds); the rest were not added."
    return None


# ------------------------------------------------------------------------------------------------- panel
def _model(run):
    snap = run.latest
    if snap is None or snap.state is None:
        return None, None

    def build():
        m = build_model(run.config, run.data.n_classes)
        m.load_state_dict(snap.state)
        return m.train(False)

    return _cached((run.key, snap.step, "model"), build), snap.step


def panel(ss, run, views, *, start) -> None:
    """Draw the Instruments view for ``run`` (its FlowViews ``views``); ``start(cfg)`` starts a run."""
    sub = st.radio("Instrument", SUBVIEWS, horizontal=True, key="instrument", label_visibility="collapsed")
    if sub == "Draw points":
        return _draw(ss, views, start)
    model, step = _model(run)
    if model is None:
        st.caption("The instruments need the run's first snapshot…")
        return
    data = run.data
    try:
        if sub == "Probe":
            return _probe(ss, model, views)
        if sub == "Stability region":
            obj = _cached((run.key, step, "stability"), lambda: ins.stability_data(model, data.x, data.y))
            _show(plots.stability(obj), ss, "fig_stability")
            k = int(np.argmax(obj.max_abs))
            st.caption(f"Largest |s_k λ| = {obj.max_abs[k]:.3g} at block {k + 1}; {100 * obj.outside.max():.0f}% of "
                       f"the eigenvalues of the worst block lie outside the {obj.scheme} region; "
                       f"{int((obj.det < 0).sum())} point-blocks have det(I + s_k DV_k) < 0, each with a real "
                       "eigenvalue of s_k DV_k below −1.")
        elif sub == "Volume and density":
            obj = _cached((run.key, step, "volume"), lambda: vol.volume_data(model, data, extent=views.extent))
            _show(plots.volume(obj), ss, "fig_volume")
        elif sub == "Grid solver":
            if model.dim != 2:
                st.info("The grid solver works on the plane: this run is lifted (p > 0), so its transport "
                        "equation lives in R^(2+p).")
                return
            obj = _cached((run.key, step, "grid"), lambda: ins.transport_comparison(model, views.extent))
            _show(plots.transport_grid(obj), ss, "fig_transport_grid")
        elif sub == "Adjoint":
            live = not run.finished
            obj = _cached((run.key, step, "adjoint", live), lambda: ins.adjoint_data(
                model, data.x_train, data.y_train, with_continuous=not live))
            _show(plots.adjoint(obj), ss, "fig_adjoint")
            if live:
                st.caption(f"Training: p_k of the snapshot at step {step}; the comparison with the continuous "
                           "adjoint follows when training ends.")
    except FlowvizError as e:
        st.error(str(e))


def _show(fig, ss, key):
    try:
        st.plotly_chart(lecture.style(fig, ss.present), width="stretch", theme=None, key=key)
    except Exception:  # a figure must never take the page down
        log.exception("instrument figure %s failed", key)
        st.error("This instrument could not be drawn for this run.")


def _probe(ss, model, views):
    s = views.surfaces
    e = views.extent
    path = ins.flow_paths(model, np.asarray([ss.probe], np.float32))[:, 0].cpu().numpy() if ss.probe else None
    fig = click_plane(e, data=views.data, surface=(s.x1, s.x2, s.u[0]), probe_path=path, height=470,
                      title="Click any point of the plane to probe it")
    st.plotly_chart(lecture.style(fig, ss.present), width="stretch", theme=None, key="probe_plane",
                    on_select=_on_probe, selection_mode="points")
    if ss.probe is None:
        st.info("Click a point on the plane (or give `probe=x1,x2` in the link) to follow its characteristic.")
        return
    _show(plots.probe(ins.probe_data(model, ss.probe), data_points=None), ss, "fig_probe")


def _draw(ss, views, start):
    e = views.extent if views is not None else (-3, 3, -3, 3)
    c1, c2, c3, c4, c5 = st.columns([2.2, 1, 1, 1.6, 2])
    c1.radio("Class of new points", list(range(8)), horizontal=True, key="draw_class",
             format_func=lambda c: f"{c}")
    if c2.button("Undo", width="stretch", disabled=not ss.drawn, key="draw_undo"):
        ss.drawn, ss._draw_seen = ss.drawn[:-1], None  # the same spot may be clicked again
    if c3.button("Clear", width="stretch", disabled=not ss.drawn, key="draw_clear"):
        ss.drawn, ss._draw_seen = [], None
    c4.button("Train on these points", type="primary", width="stretch", key="draw_train", on_click=_train_drawn,
              args=(ss,))
    c5.caption(f"{len(ss.drawn)} drawn points (≤ {MAX_POINTS}); a click adds one, a box or lasso a cluster.")
    res = 41
    fig = click_plane(e, drawn=_drawn_arrays(ss.drawn) if ss.drawn else None, res=res, height=520,
                      title="Draw your own data (click; box or lasso from the toolbar)")
    st.plotly_chart(lecture.style(fig, ss.present), width="stretch", theme=None, key="draw_plane",
                    on_select=partial(_on_draw, e, res), selection_mode=("points", "box", "lasso"))
    if ss.get("_draw_note"):
        st.warning(ss.pop("_draw_note"))
    if ss.pop("_draw_error", None):
        st.error(ss.get("_draw_message", ""))
    if ss.pop("_start_drawn", False):
        start(ss.config)
        st.rerun()  # the whole page: the sidebar shows dataset csv, the run starts
    _write_link(ss)


def _on_probe():
    """A click on the probe plane (a callback: it runs before the page, which then draws the new probe)."""
    ss = st.session_state
    xy = selected_points(ss.get("probe_plane"), "_probe_seen", ss)
    if xy is not None:
        ss.probe = (float(xy[0, 0]), float(xy[0, 1]))
        _write_link(ss)


def _on_draw(extent, res):
    """A click, box or lasso on the drawing plane (a callback, as _on_probe)."""
    ss = st.session_state
    xy = selected_points(ss.get("draw_plane"), "_draw_seen", ss)
    if xy is not None:
        ss._draw_note = add_drawn(ss, xy, int(ss.get("draw_class", 0)), (extent[1] - extent[0]) / (res - 1))
        _write_link(ss)


def _train_drawn(ss):
    """The Train button's callback (it runs before the page, so the sidebar's dataset can switch to csv)."""
    try:
        x, y = decode_points(encode_points(*_drawn_arrays(ss.drawn)))  # the link's points, validated as a CSV
    except FlowvizError as err:
        ss._draw_error, ss._draw_message = True, f"Drawn points: {err}. Nothing was trained; the previous run stays."
        return
    ss.csv, ss.csv_name = (x, y), "drawn points"
    ss.config = ss.config.replace(dataset="csv")
    ss["w_dataset"] = "csv"
    ss._start_drawn = True


def _write_link(ss):
    for k in LINK_PARAMS:
        if k in st.query_params and k not in link_params(ss):
            del st.query_params[k]
    for k, v in link_params(ss).items():
        st.query_params[k] = v
