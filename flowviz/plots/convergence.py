"""The order of convergence on ONE field (:class:`flowviz.training.convergence.Convergence`)."""

from __future__ import annotations

import math
import textwrap

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..training.convergence import Convergence
from .figures import PALETTE, _f32, _layout
from .style import round_for_reading, styled

__all__ = ["convergence", "slope_guides", "GUIDE_ORDERS"]

GUIDE_ORDERS = ((1, "dash"), (2, "dot"), (4, "dashdot"))


def slope_guides(fig, h: np.ndarray, e: np.ndarray, row: int, col: int) -> None:
    """Grey slope-p lines through the geometric mean of the points (h, e)."""
    h0, e0 = float(np.exp(np.log(h).mean())), float(np.exp(np.log(e).mean()))
    hs = np.array([h.min(), h.max()])
    for p, dash in GUIDE_ORDERS:
        fig.add_trace(
            go.Scatter(
                x=_f32(hs),
                y=_f32(e0 * (hs / h0) ** p),
                mode="lines",
                name=f"slope {p}",
                line=dict(color="#777777", dash=dash, width=2),
            ),
            row,
            col,
        )


def _floor(fig, y: float, text: str, col: int) -> None:
    """A red dashed line at ``y`` across the log-y panel ``col`` of one row, named just above its right end (placed
    by hand: plotly puts an hline's own label at ``y`` itself on a log axis, not at log10(y))."""
    fig.add_hline(y=y, line=dict(color="#d00000", width=2, dash="dash"), row=1, col=col)
    if y > 0 and math.isfinite(y):
        n = "" if col == 1 else str(col)
        fig.add_annotation(
            text=text,
            showarrow=False,
            x=1,
            xref=f"x{n} domain",
            xanchor="right",
            y=math.log10(y),
            yref=f"y{n}",
            yanchor="bottom",
        )


@styled
def convergence(conv: Convergence) -> go.Figure:
    """max |x_L − x(T)| against the step size on one re-discretised field (log-log, fitted points filled, the
    reference's floor marked), beside the decision-level errors of F_L against the exact F = f(x(T))."""
    c = conv
    fig = make_subplots(
        rows=1,
        cols=2,
        horizontal_spacing=0.12,
        subplot_titles=(
            "max over the points of |x_L − x(T)|",
            f"decision: F_L against F = f(x(T)) on a {c.grid_res}×{c.grid_res} grid",
        ),
    )
    labels = [f"L = {int(L)}" for L in c.n_steps]
    fig.add_trace(
        go.Scatter(
            x=_f32(c.step_size),
            y=c.errors,
            mode="lines+markers+text",
            text=labels,
            textposition="top center",
            name=f"{c.scheme}, one field",
            line=dict(color=PALETTE[0], width=3),
            marker=dict(
                size=11, color=[PALETTE[0] if f else "white" for f in c.fitted], line=dict(color=PALETTE[0], width=2)
            ),
        ),
        1,
        1,
    )
    slope_guides(fig, c.step_size, c.errors, 1, 1)
    _floor(fig, c.floor, f"reference floor {round_for_reading(c.floor)}", 1)
    share = [f"{v:.1%}" for v in c.decision_mismatch]
    fig.add_trace(
        go.Scatter(
            x=[int(L) for L in c.n_steps],
            y=c.decision_max_diff,
            mode="lines+markers+text",
            text=share,
            textposition="top center",
            name="max |F<sub>L</sub> − F| (labels: share of the grid where argmax F<sub>L</sub> ≠ argmax F)",
            line=dict(color=PALETTE[2], width=3),
            marker=dict(size=9),
        ),
        1,
        2,
    )
    _floor(fig, c.decision_floor, f"floor of F {round_for_reading(c.decision_floor)}", 2)
    fig.update_xaxes(type="log", title_text="step size h = max s_k", row=1, col=1)
    fig.update_yaxes(type="log", exponentformat="power", title_text="error", row=1, col=1)
    fig.update_xaxes(type="log", title_text="steps L", row=1, col=2)
    fig.update_yaxes(type="log", exponentformat="power", title_text="max |F_L − F|", row=1, col=2)
    slope = "no slope (fewer than two errors above the floor)" if math.isnan(c.slope) else f"slope {c.slope:.2f}"
    expected = "<br>".join(
        textwrap.wrap(f"expected {c.expected}: {c.reason}" if c.expected is not None else c.reason, 150)
    )
    _layout(
        fig, f"Order of convergence on one field ({c.time_mode} weights): {slope}<br><sup>{expected}</sup>", height=560
    )
    return fig
