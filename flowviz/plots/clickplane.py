"""The plane one clicks on: the probe's start point and the points one draws (no streamlit here).

An invisible grid of markers covers the plane, so a click anywhere selects a point (Streamlit's point selection
reports a trace's points only); box and lasso selections report the grid points inside them.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from .figures import PALETTE, _equal_axes, _f32, _layout, _surface_trace
from .probepath import probe_traces
from .style import styled

__all__ = ["click_plane", "GRID_NAME"]

GRID_NAME = "click grid"


@styled
def click_plane(
    extent,
    *,
    data=None,
    surface=None,
    drawn=None,
    probe_path=None,
    res: int = 41,
    title: str = "",
    drag: str = "zoom",
    height: int = 560,
) -> go.Figure:
    """The input plane over ``extent`` = (x1 lo, x1 hi, x2 lo, x2 hi) with, when given: a surface (Surfaces-like:
    x1, x2, u (res, res, C)), the data points, drawn points (x (n, 2), y (n,)), a probe path (L+1, d) with its
    start starred, and a res x res grid of invisible markers that catches clicks (its trace is named GRID_NAME)."""
    fig = go.Figure()
    if surface is not None:
        fig.add_trace(_surface_trace(None, surface[2], surface[0], surface[1], showscale=False))
    if data is not None:
        for c in range(int(data.n_classes)):
            m = data.y == c
            fig.add_trace(
                go.Scatter(
                    x=_f32(data.x[m, 0]),
                    y=_f32(data.x[m, 1]),
                    mode="markers",
                    name=f"class {c}",
                    marker=dict(color=PALETTE[c], size=6, line=dict(color="white", width=0.5)),
                )
            )
    if drawn is not None and len(drawn[0]):
        x, y = np.asarray(drawn[0]), np.asarray(drawn[1])
        for c in np.unique(y):
            m = y == c
            fig.add_trace(
                go.Scatter(
                    x=_f32(x[m, 0]),
                    y=_f32(x[m, 1]),
                    mode="markers",
                    name=f"drawn, class {c}",
                    marker=dict(color=PALETTE[int(c)], size=11, symbol="diamond", line=dict(color="black", width=1)),
                )
            )
    if probe_path is not None:  # drawn as every view draws it, starred at the start point x_0
        fig.add_traces(probe_traces(probe_path, 0, label="x_0", star_legend=True))
    g1 = np.linspace(extent[0], extent[1], res)
    g2 = np.linspace(extent[2], extent[3], res)
    G1, G2 = np.meshgrid(g1, g2)
    fig.add_trace(
        go.Scatter(
            x=_f32(G1.ravel()),
            y=_f32(G2.ravel()),
            mode="markers",
            name=GRID_NAME,
            marker=dict(size=max(6, int(500 / res)), color="rgba(0,0,0,0)"),
            showlegend=False,
            hovertemplate="(%{x:.3g}, %{y:.3g})<extra></extra>",
        )
    )
    fig.update_xaxes(range=[extent[0], extent[1]])
    fig.update_yaxes(range=[extent[2], extent[3]])
    _equal_axes(fig)
    return _layout(fig, title, height=height, dragmode=drag, clickmode="event+select")
