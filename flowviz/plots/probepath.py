"""The probe's characteristic x_0 .. x_L marked in the views, in one style everywhere.

A figure of :mod:`flowviz.plots` that shows the plane (or the lifted space) takes ``probe_path=`` (L+1, d): the
path of one start point through the blocks, e.g. ``flowviz.training.instruments.flow_paths(model, [x0])[:, 0]``.
It draws the whole path as one static trace named :data:`PROBE` (a black line with diamonds, apart from the
class colours by hue and shape) and the point of the frame on screen as a star: the whole path, because the
viewer sees where the point is going before pressing play (as the faint paths of the data do), and a static
trace costs its bytes once instead of once per frame. ``None`` (the default) draws nothing.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

__all__ = ["PROBE", "PROBE_POINT", "probe_traces", "probe_point", "probe_traces_3d", "probe_point_3d"]

PROBE = "probe"  # the path's trace name (the legend's entry)
PROBE_POINT = "probe x_k"  # the highlighted point's trace name
INK = "#000000"  # Okabe-Ito's black: apart from the class colours 0..6 by hue, and from every class by shape
_LINE = dict(color=INK, width=3)
_MARK = dict(color=INK, size=7, symbol="diamond", line=dict(color="white", width=1))
_STAR = dict(color=INK, size=20, symbol="star", line=dict(color="white", width=2))


def _f32(a):
    return np.asarray(a, dtype=np.float32)


def probe_traces(
    path: np.ndarray, k: int, *, label: str = "x_k", legend: bool = True, star_legend: bool = False
) -> list[go.Scatter]:
    """[the path (first two coordinates), the point path[k] as a star] for a planar panel; ``legend``: the path
    has its legend entry (one per figure), ``star_legend``: the star has its own (hover names it anyway)."""
    p = np.asarray(path)
    return [
        go.Scatter(
            x=_f32(p[:, 0]),
            y=_f32(p[:, 1]),
            mode="lines+markers",
            name=PROBE,
            line=_LINE,
            marker=_MARK,
            legendgroup=PROBE,
            showlegend=legend,
            customdata=np.arange(len(p)),
            hovertemplate="probe x_%{customdata}: (%{x:.3g}, %{y:.3g})<extra></extra>",
        ),
        probe_point(p, k, label=label, legend=star_legend),
    ]


def probe_point(path: np.ndarray, k: int, *, label: str = "x_k", legend: bool = True, full: bool = True) -> go.Scatter:
    """The star at path[k]; without ``full`` only its coordinates (what a frame carries: the rest stays)."""
    p = np.asarray(path)
    tr = go.Scatter(x=_f32(p[k : k + 1, 0]), y=_f32(p[k : k + 1, 1]))
    if full:
        tr.update(
            mode="markers",
            name=f"probe {label}",
            marker=_STAR,
            legendgroup=PROBE,
            showlegend=legend,
            hovertemplate=f"probe {label}: (%{{x:.3g}}, %{{y:.3g}})<extra></extra>",
        )
    return tr


def probe_traces_3d(xyz: np.ndarray, k: int | None) -> list[go.Scatter3d]:
    """The path in three coordinates xyz (L+1, 3), and (when k is given) the point xyz[k] as a large marker."""
    p = _f32(xyz)
    out = [
        go.Scatter3d(
            x=p[:, 0],
            y=p[:, 1],
            z=p[:, 2],
            mode="lines+markers",
            name=PROBE,
            legendgroup=PROBE,
            line=dict(color=INK, width=6),
            marker=dict(color=INK, size=3, symbol="diamond"),
        )
    ]
    return out + ([probe_point_3d(p, k)] if k is not None else [])


def probe_point_3d(xyz: np.ndarray, k: int, *, full: bool = True) -> go.Scatter3d:
    """The point xyz[k] (L+1, 3); without ``full`` only its coordinates (a frame's update)."""
    p = _f32(xyz)
    tr = go.Scatter3d(x=p[k : k + 1, 0], y=p[k : k + 1, 1], z=p[k : k + 1, 2])
    if full:
        tr.update(
            mode="markers",
            name=PROBE_POINT,
            legendgroup=PROBE,
            marker=dict(color=INK, size=8, symbol="diamond", line=dict(color="white", width=1)),
        )
    return tr
