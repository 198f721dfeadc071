"""The field's views: V_k = v(t_k, .) on a grid of the plane (arrows over |V_k|, one frame per k), and the size
of each step's own derivative A_k = D(step k) - I (= s_k DV_k for Euler), which decides whether a step folds."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import plotly.graph_objects as go

from .figures import PALETTE, _dims_note, _equal_axes, _f32, _frame_slider, _layout, _note, _views
from .probepath import probe_point, probe_traces
from .style import int_ticks, styled

__all__ = ["velocity", "folding"]

ROBUST_Q = 0.98  # the quantile of |V_k| over the grid and frames that sets the colour and arrow scale


@styled
def velocity(obj, *, probe_path=None) -> go.Figure:
    """V_k = v(t_k, .) as arrows over its magnitude |V_k|, with a slider over k.

    With ``probe_path`` (L+1, d): the probe's path, starred in frame k at x_(k-1), the point block k's field
    acts on (x_k = x_(k-1) + s_k V_k(x_(k-1)) for Euler): the arrow under the star points along the path.
    For the plain net (x_k = V_k(x_(k-1)), no shortcut) the arrows are the displacement V_k(x) - x: a plain block
    is a map that moves x to V_k(x), not a small step along a field.
    """
    v = _views(obj)
    vel = v.velocity
    sel = np.unique(np.round(np.linspace(0, len(vel.ks) - 1, min(len(vel.ks), 17))).astype(int))
    X1, X2 = np.meshgrid(vel.x1, vel.x2)
    plain = v.config.scheme == "plain"
    if plain:  # the grid points sit on the slice: their coordinates beyond the second are zero
        vel = replace(vel, v=vel.v - np.concatenate([np.stack([X1, X2], -1), np.zeros_like(vel.v[0, ..., 2:])], -1))
    name, mag = ("V_k(x) − x", "|V_k(x) − x|") if plain else ("V_k", "|V_k|")
    what = (
        "Plain net: displacement V_k(x) − x of block k (a map, not a small step)"
        if plain
        else "Velocity field V_k = v(t_k, ·)"
    )
    mags = np.linalg.norm(vel.v[..., :2], axis=-1)
    # colour and arrow length from a robust quantile: a few fast outliers must not make every other arrow a dot
    vmax = float(np.nanquantile(mags[np.isfinite(mags)], ROBUST_Q)) if np.isfinite(mags).any() else 1.0
    vmax = vmax or float(np.nanmax(mags)) or 1.0
    clipped = bool(np.nanmax(mags) > vmax * 1.0001)
    scale = 0.9 * float(vel.x1[1] - vel.x1[0]) / vmax
    cb_title = f"{mag}, clipped at the {100 * ROBUST_Q:.0f}th percentile" if clipped else mag

    def arrows(i):
        f = np.minimum(1.0, vmax / np.maximum(mags[i], 1e-30)).ravel() * scale  # longer arrows drawn at vmax
        return _arrows(X1.ravel(), X2.ravel(), vel.v[i, ..., 0].ravel() * f, vel.v[i, ..., 1].ravel() * f)

    def heat(i):
        return go.Heatmap(
            x=_f32(vel.x1),
            y=_f32(vel.x2),
            z=_f32(mags[i]),
            colorscale="Viridis",
            zmin=0,
            zmax=vmax,
            colorbar=dict(title=dict(text=cb_title, side="right")),
            opacity=0.8,
            zsmooth="best",
            hoverinfo="skip",
        )

    ax, ay = arrows(sel[0])
    fig = go.Figure(
        data=[
            heat(sel[0]),
            go.Scatter(x=ax, y=ay, mode="lines", line=dict(color="#222222", width=1.5), name=name, hoverinfo="skip"),
        ]
    )
    moving = [0, 1]
    if probe_path is not None:  # the path stays; the star marks x_(k-1), where V_k acts
        fig.add_traces(probe_traces(probe_path, int(vel.ks[sel[0]]) - 1, label="x_(k−1)"))
        moving.append(len(fig.data) - 1)
    frames = []
    for i in sel:
        k = vel.ks[i]
        ax, ay = arrows(i)
        # a frame carries only what changes: the heat's z and the arrows
        data = [go.Heatmap(z=_f32(mags[i])), go.Scatter(x=ax, y=ay)]
        if probe_path is not None:
            data.append(probe_point(probe_path, int(k) - 1, full=False))
        frames.append(
            go.Frame(
                name=str(int(k)),
                data=data,
                traces=moving,
                layout=dict(title_text=f"{what} at k = {int(k)}, t_k = {vel.t[i]:.3g}{_dims_note(v, name)}"),
            )
        )
    fig.frames = frames
    sliders, menus = _frame_slider(vel.ks[sel], vel.t[sel])
    _equal_axes(fig)
    fig.update_xaxes(range=[float(vel.x1[0]), float(vel.x1[-1])])
    fig.update_yaxes(range=[float(vel.x2[0]), float(vel.x2[-1])])
    return _layout(
        fig, f"{what} at k = {int(vel.ks[0])}{_dims_note(v, name)}", height=660, sliders=sliders, updatemenus=menus
    )


def _arrows(x, y, u, w, head: float = 0.3, angle: float = np.pi / 9):
    """The polyline plotly.figure_factory.create_quiver draws (scale 1, its default arrow_scale and angle):
    all shafts [x, x + u, NaN], then all heads [p1, tip, p2, NaN]. Computed with numpy: create_quiver's own
    loops are quadratic in the arrow count (120 ms for 441 arrows here), and this figure has a frame per k.
    tests/page/test_app.py checks it point for point against create_quiver."""
    ex, ey = x + u, y + w
    ang = np.arctan2(w, u)
    length = np.hypot(u, w) * head
    p1x, p1y = ex - length * np.cos(ang + angle), ey - length * np.sin(ang + angle)
    p2x, p2y = ex - length * np.cos(ang - angle), ey - length * np.sin(ang - angle)
    nan = np.full_like(x, np.nan)
    px = np.concatenate([np.stack([x, ex, nan], 1).ravel(), np.stack([p1x, ex, p2x, nan], 1).ravel()])
    py = np.concatenate([np.stack([y, ey, nan], 1).ravel(), np.stack([p1y, ey, p2y, nan], 1).ravel()])
    return _f32(px), _f32(py)


@styled
def folding(obj) -> go.Figure:
    """Per block k: max over points of |A_k|_2 and the most negative real eigenvalue of A_k = D(step k) - I.

    det(I + A_k) > 0 wherever |A_k| < 1, so a fold (det < 0) needs |A_k| >= 1 somewhere; with per-step weights
    s_k is absorbed into W2 (paper, eq. 16), so it is the product s_k DV_k, not T alone, that decides.
    """
    v = _views(obj)
    f = v.folding
    if f is None:
        return _note("computed once training has finished", "Step size of the derivative: |s_k DV_k|")
    fig = go.Figure()
    k = np.arange(1, len(f.max_norm) + 1)
    eig = np.where(np.isfinite(f.min_eig), f.min_eig, np.nan)
    fig.add_trace(go.Bar(x=k, y=_f32(f.max_norm), name="max |Aₖ|₂ over the points", marker_color=PALETTE[0]))
    fig.add_trace(go.Bar(x=k, y=_f32(eig), name="most negative real eigenvalue of Aₖ", marker_color=PALETTE[5]))
    fig.add_hline(
        y=f.THRESHOLD,
        line=dict(color="#444444", width=2, dash="dot"),
        annotation_text="|A_k| = 1: below it no fold is possible",
        annotation_position="top left",
    )
    fig.add_hline(
        y=-1,
        line=dict(color="#d00000", width=2, dash="dash"),
        annotation_text="det(I + A_k) < 0, a fold, exactly where an odd number of real eigenvalues "
        "lie below −1 (in the plane: exactly one)",
        annotation_position="bottom left",
    )
    fig.update_xaxes(title_text="block k", **int_ticks(len(k)))
    fig.update_yaxes(title_text="A_k = D(step k) − I")
    plain = v.config.scheme == "plain"
    title = (
        "Plain net: A_k = DV_k − I (a plain block is a map)"
        if plain
        else f"What folds a step: A_k = D(step k) − I{' = s_k DV_k' if v.config.scheme == 'euler' else ''}, "
        f"max |A_k| = {float(f.max_norm.max()):.3g} over {f.points} points"
    )
    return _layout(fig, title, height=440, barmode="group")
