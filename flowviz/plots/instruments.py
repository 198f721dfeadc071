"""The instruments' figures: probe, stability region, volume and density, the grid solver, the adjoint flow.

Each takes a trained result (anything with ``.model`` and ``.data``, e.g. flowviz.train's TrainResult) or the
instrument's own result object from flowviz.training.instruments / .volume, and returns a plotly Figure::

    r = flowviz.train(flowviz.preset("folding"))
    flowviz.plots.stability(r).show()
    flowviz.plots.probe(r, (0.5, 0.2)).show()
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..training.analysis import frame_steps
from ..training.instruments import (
    AdjointData,
    ProbeData,
    StabilityData,
    TransportComparison,
    adjoint_data,
    amplification,
    probe_data,
    stability_data,
    transport_comparison,
)
from ..training.volume import DENSITIES, VolumeData, volume_data
from .field import _arrows
from .figures import PALETTE, _f32, _frame_slider, _layout, _surface_trace
from .style import int_ticks, round_for_reading, styled

__all__ = ["probe", "stability", "volume", "transport_grid", "adjoint", "INSTRUMENTS"]

DIVERGING = "RdBu_r"  # blue (area shrinks) - white - red (area grows)
FAST = dict(_validate=False)  # traces of frames built from our own arrays: plotly's validation is 10x their cost


def _model_data(obj):
    model, data = getattr(obj, "model", None), getattr(obj, "data", None)
    if model is None or data is None:
        raise TypeError(
            f"expected a trained result (with .model and .data) or the instrument's data, got {type(obj).__name__}"
        )
    return model, data


def _subplots(**kw) -> go.Figure:
    """make_subplots without plotly's per-property validation of what we add next (our own arrays and
    settings; validation cost ten times the build of these figures)."""
    fig = make_subplots(**kw)
    fig._validate = False
    return fig


def _square(fig, row, col, anchor):
    """An equal-aspect plane that keeps its ranges: plotly narrows the plane's domain (either axis) to fit its box,
    so the ticks do not depend on the box it was first drawn in."""
    fig.update_yaxes(scaleanchor=anchor, scaleratio=1, constrain="domain", row=row, col=col)
    fig.update_xaxes(constrain="domain", row=row, col=col)


def _nice_step(raw: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten at least ``raw`` (> 0)."""
    mag = 10.0 ** np.floor(np.log10(raw))
    return float(next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw))


def _log_ticks(values, keep) -> list[int]:
    """Tick values of a log axis from ``values`` with ``keep`` (the run's own L) among them, leaving out any
    within a factor 1.6 of a kept one: labels that close touch on a narrow panel."""
    out = [int(keep)]
    for v in sorted(int(x) for x in values):
        if all(max(v, w) / min(v, w) >= 1.6 for w in out):
            out.append(v)
    return sorted(out)


# ------------------------------------------------------------------------------------------------- probe
@styled
def probe(obj, x0=None, *, data_points=None) -> go.Figure:
    """One characteristic from x0: its path, u(t_k, x_k) and the read-out f(x_k), the residual ratio,
    the eigenvalues of block k's Jacobian (I + s_k DV_k for Euler) and the coordinates against k."""
    if isinstance(obj, ProbeData):
        pr = obj
    else:
        model, data = _model_data(obj)
        pr = probe_data(model, x0)
        data_points = data if data_points is None else data_points
    L, C = len(pr.ratio), pr.u.shape[1]
    k = np.arange(L + 1)
    fig = _subplots(
        rows=2,
        cols=3,
        horizontal_spacing=0.08,
        vertical_spacing=0.22,  # the top row's axis title k, and the bottom row's titles
        subplot_titles=(
            "path x_k",
            "u(t_k, x_k) ─ and f(x_k) ┄",
            "|x_k − x_(k−1)| / |x_(k−1)|",
            "eig D(block k)(x_(k−1))",
            "coordinates of x_k",
            "",
        ),
    )
    if data_points is not None:
        for c in range(int(data_points.n_classes)):
            m = data_points.y == c
            fig.add_trace(
                go.Scatter(
                    x=_f32(data_points.x[m, 0]),
                    y=_f32(data_points.x[m, 1]),
                    mode="markers",
                    marker=dict(color=PALETTE[c], size=4),
                    opacity=0.25,
                    showlegend=False,
                    hoverinfo="skip",
                ),
                1,
                1,
            )
    fig.add_trace(
        go.Scatter(
            x=_f32(pr.xs[:, 0]),
            y=_f32(pr.xs[:, 1]),
            mode="lines+markers",
            name="x_k",
            line=dict(color="#000000", width=2),
            marker=dict(size=5, color=k, colorscale="Viridis"),
            customdata=k,
            hovertemplate="k = %{customdata}<extra></extra>",
        ),
        1,
        1,
    )
    fig.add_trace(
        go.Scatter(
            x=[pr.x0[0]],
            y=[pr.x0[1]],
            mode="markers",
            name="x_0 (probe)",
            marker=dict(symbol="star", size=16, color=PALETTE[5]),
        ),
        1,
        1,
    )
    for c in range(C):
        fig.add_trace(
            go.Scatter(
                x=k, y=_f32(pr.u[:, c]), mode="lines", line=dict(color=PALETTE[c], width=3), name=f"u, class {c}"
            ),
            1,
            2,
        )
        fig.add_trace(
            go.Scatter(
                x=k,
                y=_f32(pr.f[:, c]),
                mode="lines+markers",
                name=f"f(x_k), class {c}",
                line=dict(color=PALETTE[c], width=2, dash="dot"),
            ),
            1,
            2,
        )
    fig.add_trace(go.Bar(x=k[1:], y=_f32(pr.ratio), marker_color=PALETTE[0], name="ratio", showlegend=False), 1, 3)
    a = np.linspace(0, 2 * np.pi, 121)
    fig.add_trace(
        go.Scatter(
            x=_f32(np.cos(a)), y=_f32(np.sin(a)), mode="lines", name="|μ| = 1", line=dict(color="#888888", dash="dash")
        ),
        2,
        1,
    )
    ev = pr.eig
    kk = np.repeat(np.arange(1, L + 1), ev.shape[1])
    fig.add_trace(
        go.Scatter(
            x=_f32(ev.real.ravel()),
            y=_f32(ev.imag.ravel()),
            mode="markers",
            name="eigenvalues",
            marker=dict(color=kk, colorscale="Viridis", size=8, showscale=False),
            customdata=kk,
            hovertemplate="k = %{customdata}: %{x:.3f} + %{y:.3f}i<extra></extra>",
        ),
        2,
        1,
    )
    for i in range(pr.xs.shape[1]):
        fig.add_trace(
            go.Scatter(
                x=k,
                y=_f32(pr.xs[:, i]),
                mode="lines",
                name=f"x_(k,{i + 1})" + (" (lift)" if i >= 2 else ""),
                line=dict(color=PALETTE[(i + 4) % len(PALETTE)], width=2, dash="dash" if i >= 2 else None),
            ),
            2,
            2,
        )
    _square(fig, 1, 1, "x")
    _square(fig, 2, 1, "x4")
    xy = pr.xs[:, :2][np.isfinite(pr.xs[:, :2]).all(1)]
    if len(xy):  # the path's plane: a square around the path, neither axis squeezed to a sliver of crowded ticks
        mid, half = (xy.min(0) + xy.max(0)) / 2, max(float(np.ptp(xy, 0).max()) * 0.6, 0.05)
        fig.update_xaxes(range=[float(mid[0] - half), float(mid[0] + half)], row=1, col=1)
        fig.update_yaxes(range=[float(mid[1] - half), float(mid[1] + half)], row=1, col=1)
    for r, c in ((1, 2), (1, 3), (2, 2)):
        fig.update_xaxes(title_text="k", row=r, col=c, **int_ticks(L, 6))
    fig.update_yaxes(range=[-0.02, 1.02], row=1, col=2)
    fold = int((pr.det < 0).sum())  # blocks with det D(block k) < 0 at this point: they fold here
    drift = float(np.abs(pr.u - pr.u[-1]).max())
    title = (
        f"Probe at x_0 = ({pr.x0[0]:.3g}, {pr.x0[1]:.3g}): max_k |u(t_k, x_k) − f(x_L)| = "
        f"{round_for_reading(drift)}" + (f" · {fold} of {L} blocks fold here (det D(block k) < 0)" if fold else "")
    )
    return _layout(fig, title, height=640)


# --------------------------------------------------------------------------------------------- stability
def _region(scheme: str, lim: float, n: int = 161):
    """|R(z)| on a square of the complex plane [-lim, lim]^2 (for the filled region |R| <= 1)."""
    re = np.linspace(-lim, lim, n)
    im = np.linspace(-lim, lim, n)
    R = amplification(re[None, :] + 1j * im[:, None], scheme)
    return re, im, np.minimum(R, 3.0)


# What the red line Re z = -1 means: for Euler D(step) = I + s_k DV_k, so it is the fold line; for midpoint and
# rk4 D(step) is a polynomial in s_k DV and the scheme's own Jacobian decides
_FOLD_LINE = {
    "euler": "Re z = −1: det = Π(1 + z) < 0, a fold,<br>where an odd number of real z lie left of it<br>"
    "(in the plane: exactly one)"
}
_FOLD_LINE_RK = (
    "Re z = −1: Euler's fold line only;<br>a {scheme} step folds where det D(step k) < 0<br>"
    "(its own Jacobian), not where these eigenvalues lie"
)


@styled
def stability(obj) -> go.Figure:
    """Per block k, the eigenvalues z = s_k λ of s_k DV_k at the points x_(k−1), over the scheme's region of
    absolute stability |R(z)| <= 1, with the fraction outside and the largest |s_k λ| per block."""
    st = obj if isinstance(obj, StabilityData) else stability_data(*(lambda m, d: (m, d.x, d.y))(*_model_data(obj)))
    L = len(st.outside)
    ks = frame_steps(L, 65)[1:] if L >= 1 else np.array([1])
    big = float(np.abs(st.z).max()) if st.z.size else 1.0
    lim = max(3.2, min(big * 1.1, 40.0))
    re, im, R = _region(st.scheme, lim)
    C = int(st.y.max()) + 1 if len(st.y) else 1
    fig = _subplots(
        rows=2,
        cols=2,
        column_widths=[0.58, 0.42],
        horizontal_spacing=0.1,
        vertical_spacing=0.2,
        specs=[[{"rowspan": 2}, {}], [None, {}]],
        subplot_titles=("", "fraction of eigenvalues outside", "largest |s_k λ|"),
    )
    fig.add_trace(
        go.Contour(
            x=_f32(re),
            y=_f32(im),
            z=_f32(R),
            contours=dict(type="constraint", operation=">=", value=1.0),
            fillcolor="rgba(86,180,233,0.35)",
            line=dict(color=PALETTE[4], width=2),
            name=f"the {st.scheme} region |R(z)| ≤ 1",
            showlegend=True,
            hoverinfo="skip",
        ),
        1,
        1,
    )
    fig.add_trace(
        go.Scatter(
            x=[-1, -1],
            y=[-lim, lim],
            mode="lines",
            line=dict(color="#d00000", dash="dash"),
            name=_FOLD_LINE.get(st.scheme, _FOLD_LINE_RK).format(scheme=st.scheme),
        ),
        1,
        1,
    )

    def cloud(k):
        z = st.z[k - 1]  # (m, d)
        return [
            go.Scatter(
                x=_f32(z[st.y == c].real.ravel()),
                y=_f32(z[st.y == c].imag.ravel()),
                mode="markers",
                marker=dict(color=PALETTE[c], size=6, line=dict(color="white", width=0.5)),
                name=f"class {c}",
                **FAST,
            )
            for c in range(C)
        ]

    for tr in cloud(ks[0]):
        fig.add_trace(tr, 1, 1)
    blocks = np.arange(1, L + 1)
    fig.add_trace(go.Bar(x=blocks, y=_f32(st.outside), marker_color=PALETTE[5], showlegend=False), 1, 2)
    fig.add_trace(go.Bar(x=blocks, y=_f32(st.max_abs), marker_color=PALETTE[0], showlegend=False), 2, 2)
    fig.update_yaxes(range=[0, 1.02], row=1, col=2)
    fig.update_xaxes(title_text="block k", row=2, col=2, **int_ticks(L, 6))
    fig.update_xaxes(**int_ticks(L, 6), row=1, col=2)
    fig.update_xaxes(range=[-lim, lim], title_text="Re z", row=1, col=1)
    fig.update_yaxes(range=[-lim, lim], title_text="Im z", row=1, col=1)
    _square(fig, 1, 1, "x")

    def title(k):
        folds = int((st.det[k - 1] < 0).sum())
        return (
            f"Stability, block k = {int(k)}: {100 * st.outside[k - 1]:.0f}% of s_k λ outside, "
            f"max |s_k λ| = {st.max_abs[k - 1]:.3g}, {folds} of {st.det.shape[1]} points fold (det D(step k) < 0)"
        )

    n0 = 2
    frames = [
        go.Frame(
            name=str(int(k)), data=cloud(k), traces=list(range(n0, n0 + C)), layout=dict(title_text=title(k)), **FAST
        )
        for k in ks
    ]
    fig.frames = frames
    sliders, menus = _frame_slider(ks, ks)
    # the legend in its own place: the top of the right column, above the two bar charts (moved down for it)
    for (lo, hi), row, name in (((0.34, 0.56), 1, "fraction of eigenvalues outside"), ((0.0, 0.2), 2, "largest")):
        fig.update_yaxes(domain=[lo, hi], row=row, col=2)
        for a in fig.layout.annotations:
            if a.text.startswith(name):
                a.y = hi
    return _layout(
        fig,
        title(ks[0]),
        height=640,
        sliders=sliders,
        updatemenus=menus,
        meta=dict(legend="own"),
        legend=dict(
            orientation="v",
            xref="paper",
            yref="paper",
            x=0.62,
            y=1.0,
            xanchor="left",
            yanchor="top",
            bgcolor="rgba(0,0,0,0)",
        ),
    )


# ------------------------------------------------------------------------------------------------ volume
def _against_L(what: str, Ls, vals) -> str:
    """A panel's title for a quantity against L; with a single L (per-step weights: one set per block, no field
    between the blocks to re-discretise) it says so and gives the one value."""
    if len(Ls) > 1:
        return f"{what} against L"
    return f"{what} = {float(vals[0]):.3g}<br>(own L = {int(Ls[0])} only)"


# the density's name in its panel's title (a quarter of the figure's width; the page's choice names it in full)
_DENSITY_NAMES = {"kde": "KDE of x_k", "exact": "exact: ρ_0 / |det DΦ|"}


@styled
def volume(obj) -> go.Figure:
    """log |det DΦ_(0→k)| over the input plane (sum of log |det D(block j)|) beside ∫ div v dt along the
    continuous flow, the classes' densities pushed to step k, and the difference of the two against L."""
    vd = obj if isinstance(obj, VolumeData) else volume_data(*_model_data(obj))
    lim = float(max(np.abs(vd.logdet).max(), np.abs(vd.integral).max(), 1e-3))
    C = vd.density.shape[1]
    res = vd.density.shape[-1]
    g1 = np.linspace(vd.box[0], vd.box[1], res)
    g2 = np.linspace(vd.box[2], vd.box[3], res)
    fig = _subplots(
        rows=1,
        cols=4,
        horizontal_spacing=0.05,
        column_widths=[0.27, 0.27, 0.27, 0.19],
        subplot_titles=(
            "Σ<sub>j≤k</sub> log |det D(block j)|",
            "∫<sub>0</sub><sup>t<sub>k</sub></sup> div v dt (Jacobi)",
            f"density at k<br>({_DENSITY_NAMES.get(vd.density_kind, DENSITIES[vd.density_kind])})",
            _against_L("|sum − integral|<br>at T", vd.Ls, vd.diff),
        ),
    )

    def heat(z, show):
        return go.Heatmap(
            x=_f32(vd.x1),
            y=_f32(vd.x2),
            z=_f32(z),
            colorscale=DIVERGING,
            zmin=-lim,
            zmax=lim,
            showscale=show,
            colorbar=dict(title=dict(text="log area ratio", side="right")),
            zsmooth="best",
            **FAST,
        )

    def dens(i):
        top = float(vd.density[i].max()) or 1.0
        return [
            go.Contour(
                x=_f32(g1),
                y=_f32(g2),
                z=_f32(vd.density[i, c]),
                showscale=False,
                colorscale=[[0, PALETTE[c]], [1, PALETTE[c]]],
                contours=dict(coloring="lines", start=0.1 * top, end=top, size=0.15 * top),
                line=dict(color=PALETTE[c], width=2),
                name=f"class {c}",
                **FAST,
            )
            for c in range(C)
        ]

    last = len(vd.ks) - 1  # open at k = L: the whole flow's effect
    fig.add_trace(heat(vd.logdet[last], True), 1, 1)
    fig.add_trace(heat(vd.integral[last], False), 1, 2)
    for tr in dens(last):
        fig.add_trace(tr, 1, 3)
    fig.add_trace(
        go.Scatter(
            x=vd.Ls,
            y=_f32(vd.diff),
            mode="lines+markers",
            marker=dict(size=9),
            line=dict(color=PALETTE[3], width=3),
            name="|sum − integral|",
        ),
        1,
        4,
    )
    if len(vd.Ls) > 1:
        ref = vd.diff[0] * vd.Ls[0] / vd.Ls.astype(float)
        fig.add_trace(
            go.Scatter(x=vd.Ls, y=_f32(ref), mode="lines", line=dict(color="#888888", dash="dash"), name="slope −1"),
            1,
            4,
        )
    fig.update_xaxes(type="log", title_text="L", row=1, col=4, tickvals=_log_ticks(vd.Ls, vd.ks[-1]))
    fig.update_yaxes(type="log", exponentformat="power", row=1, col=4)
    for r, c, a in ((1, 1, "x"), (1, 2, "x2"), (1, 3, "x3")):
        _square(fig, r, c, a)

    def title(i):
        return (
            f"Volume at k = {int(vd.ks[i])}, t_k = {vd.t[i]:.3g}: mean |sum − integral| = "
            f"{round_for_reading(np.abs(vd.logdet[i] - vd.integral[i]).mean())}"
        )

    frames = [
        go.Frame(
            name=str(int(k)),
            data=[heat(vd.logdet[i], True), heat(vd.integral[i], False)] + dens(i),
            traces=list(range(2 + C)),
            layout=dict(title_text=title(i)),
            **FAST,
        )
        for i, k in enumerate(vd.ks)
    ]
    fig.frames = frames
    sliders, menus = _frame_slider(vd.ks, vd.t)
    sliders[0]["active"] = last
    return _layout(fig, title(last), height=560, sliders=sliders, updatemenus=menus, showlegend=False)


# -------------------------------------------------------------------------------------- transport grid
@styled
def transport_grid(obj, *, scheme: str = "semi_lagrangian") -> go.Figure:
    """u(0, ·) from the grid solver beside F from the characteristics and their difference, and the mean
    difference against the grid's resolution (numerical diffusion shrinking as the grid is refined)."""
    if isinstance(obj, TransportComparison):
        tc = obj
    else:
        model, data = _model_data(obj)
        tc = transport_comparison(model, data.extent(), scheme=scheme)
    fig = _subplots(
        rows=2,
        cols=3,
        horizontal_spacing=0.06,
        vertical_spacing=0.14,
        row_heights=[0.65, 0.35],
        specs=[[{}, {}, {}], [{"colspan": 3}, None, None]],
        subplot_titles=(
            f"grid solver ({tc.scheme.replace('_', '-')}, {int(tc.res[-1])}²)",
            "F from the characteristics",
            "difference (grid − F)",
            "mean |grid − F| against the resolution",
        ),
    )
    fig.add_trace(_surface_trace(None, tc.grid, tc.x1, tc.x2, colorbar_x=1.0), 1, 1)
    fig.add_trace(_surface_trace(None, tc.F, tc.x1, tc.x2, showscale=False), 1, 2)
    diff = tc.grid[..., -1] - tc.F[..., -1]
    lim = float(np.abs(diff).max()) or 1.0
    fig.add_trace(
        go.Heatmap(
            x=_f32(tc.x1),
            y=_f32(tc.x2),
            z=_f32(diff),
            colorscale=DIVERGING,
            zmin=-lim,
            zmax=lim,
            showscale=False,
            zsmooth="best",
        ),
        1,
        3,
    )
    fig.add_trace(
        go.Scatter(
            x=tc.res,
            y=_f32(tc.err),
            mode="lines+markers",
            marker=dict(size=10),
            line=dict(color=PALETTE[0], width=3),
            name="mean |grid − F|",
        ),
        2,
        1,
    )
    fig.update_xaxes(type="log", title_text="grid points per side", row=2, col=1, tickvals=[int(x) for x in tc.res])
    fig.update_yaxes(type="log", row=2, col=1)
    for c, a in ((1, "x"), (2, "x2"), (3, "x3")):
        _square(fig, 1, c, a)
    eps = f", ε = {tc.viscosity:g}" if tc.viscosity else ""
    order = (
        (
            f", measured order {tc.orders[-1]:.2f} from {int(tc.res[-2])}² to {int(tc.res[-1])}² (paths that leave "
            "the box are followed to T)"
        )
        if len(tc.res) > 1
        else ""
    )
    _layout(
        fig,
        f"The transport equation on a grid{eps}: mean |grid − F| = {tc.err[-1]:.3g} at "
        f"{int(tc.res[-1])}², {tc.err[0]:.3g} at {int(tc.res[0])}²{order}",
        height=720,
    )
    return fig.update_layout(showlegend=False)


# ---------------------------------------------------------------------------------------------- adjoint
@styled
def adjoint(obj) -> go.Figure:
    """p_k = ∂ℓ/∂x_k as arrows at the points x_k, frames k = L .. 0 (backpropagation runs backward in time),
    with mean |p_k| against k and, where computed, |p_0 − p_0(continuous)| against L."""
    ad = obj if isinstance(obj, AdjointData) else (lambda m, d: adjoint_data(m, d.x, d.y))(*_model_data(obj))
    L = len(ad.t) - 1
    ks = frame_steps(L, 33)[::-1]
    C = int(ad.y.max()) + 1 if len(ad.y) else 1
    pts = ad.xs[ks][..., :2].reshape(-1, 2)
    lo, hi = pts.min(0), pts.max(0)
    span = float((hi - lo).max()) or 1.0
    pn = np.linalg.norm(ad.p[..., :2], axis=-1)
    scale = 0.12 * span / (float(np.percentile(pn, 95)) or 1.0)  # one scale for all k: growth is visible
    cols = 3 if ad.continuous is not None else 2
    # no subplot titles: the axes say what each panel is, so the plane keeps the height
    fig = _subplots(
        rows=1,
        cols=cols,
        column_widths=[0.52, 0.24, 0.24][:cols] if cols == 3 else [0.62, 0.38],
        horizontal_spacing=0.09,
    )

    def frame(k):
        x, p = ad.xs[k], ad.p[k] * scale
        ax, ay = _arrows(x[:, 0], x[:, 1], p[:, 0], p[:, 1])
        return [
            go.Scatter(
                x=ax, y=ay, mode="lines", line=dict(color="#222222", width=1.2), name="p_k", hoverinfo="skip", **FAST
            )
        ] + [
            go.Scatter(
                x=_f32(x[ad.y == c, 0]),
                y=_f32(x[ad.y == c, 1]),
                mode="markers",
                name=f"class {c}",
                marker=dict(color=PALETTE[c], size=6),
                **FAST,
            )
            for c in range(C)
        ]

    for tr in frame(ks[0]):
        fig.add_trace(tr, 1, 1)
    fig.add_trace(
        go.Scatter(
            x=np.arange(L + 1),
            y=_f32(ad.norm),
            mode="lines+markers",
            line=dict(color=PALETTE[3], width=3),
            name="mean |p_k|",
        ),
        1,
        2,
    )
    fig.update_yaxes(type="log", exponentformat="power", nticks=5, title_text="mean |p_k|", row=1, col=2)
    fig.update_xaxes(title_text="k", row=1, col=2, **int_ticks(L, 6))
    if cols == 3:
        Ls, err = ad.continuous
        fig.add_trace(
            go.Scatter(
                x=Ls,
                y=_f32(err),
                mode="lines+markers",
                marker=dict(size=9),
                line=dict(color=PALETTE[2], width=3),
                name="|p_0 − p_0(ODE)|",
            ),
            1,
            3,
        )
        one = len(Ls) == 1  # per-step weights: no field between the blocks to re-discretise, L is fixed
        fig.update_xaxes(
            type="log",
            title_text=f"the run's own L = {int(Ls[0])} only" if one else "L",
            row=1,
            col=3,
            tickvals=[int(x) for x in Ls],
        )
        fig.update_yaxes(
            type="log",
            exponentformat="power",
            nticks=5,
            row=1,
            col=3,
            title_text=f"|p_0 − p_0(ODE)| = {float(err[0]):.3g}" if one else "|p_0 − p_0(ODE)|",
        )
    pad = 0.1 * span
    # at least as tall as wide, about the shape of the plane's panel: a wide cloud still fills the panel's height
    # (plotly keeps both ranges and narrows the plane's width instead)
    grow = max(0.0, float(hi[0] - lo[0]) - float(hi[1] - lo[1])) / 2
    fig.update_xaxes(range=[float(lo[0] - pad), float(hi[0] + pad)], title_text="x<sub>1</sub>", row=1, col=1)
    y0, y1 = float(lo[1] - pad - grow), float(hi[1] + pad + grow)
    ticks = {}
    if np.isfinite(y1 - y0) and y1 > y0:  # (a path that left the floats has no range to tick)
        step = _nice_step((y1 - y0) / 6)
        y1 = max(y1, float(np.floor(y1 / step) * step + 0.25 * step))  # the top tick's label clear of the title
        ticks = dict(tick0=0, dtick=step)
    fig.update_yaxes(range=[y0, y1], title_text="x<sub>2</sub>", row=1, col=1, **ticks)
    _square(fig, 1, 1, "x")
    growth = float(ad.norm[0] / ad.norm[-1]) if ad.norm[-1] > 0 else float("nan")

    def title(k):
        return (
            f"Backpropagation is the adjoint flow: p_k = ∂ℓ/∂x_k at k = {int(k)} (one arrow scale for all k) · "
            f"|p_0| / |p_L| = {growth:.3g}"
        )

    fig.frames = [
        go.Frame(name=str(int(k)), data=frame(k), traces=list(range(1 + C)), layout=dict(title_text=title(k)), **FAST)
        for k in ks
    ]
    sliders, menus = _frame_slider(ks, ks)
    return _layout(fig, title(ks[0]), height=600, sliders=sliders, updatemenus=menus, showlegend=False)


INSTRUMENTS = {
    "probe": probe,
    "stability": stability,
    "volume": volume,
    "transport_grid": transport_grid,
    "adjoint": adjoint,
}
