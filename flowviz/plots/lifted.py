"""The lifted space in 3-D: the points x_k in (x_1, x_2, x_3) and the decision boundary {u(t_k, .) = 1/2}.

With lift p >= 1 the flow acts in R^(2+p) (the augmented neural ODE of Dupont, Doucet & Teh 2019): the
inner disk of the rings can rise above the annulus, and at k = L a plane (the level set of the linear f)
separates the classes. This figure only draws what :mod:`flowviz.training.lifted` computed.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from ..training.lifted import LiftedSpace, slice_name
from .figures import PALETTE, _f32, _frame_slider, _layout, _note, _views
from .probepath import probe_point_3d, probe_traces_3d
from .style import styled

__all__ = ["lifted", "lifted_title"]

BOUNDARY_COLOR = "#6a3d9a"  # a purple apart from the class colours
LEVEL = 127.5  # the boundary g = 1/2, on the byte scale the fields are stored in


def lifted_title(ls: LiftedSpace, i: int) -> str:
    """The title at frame i: what is drawn, at which k, and which coordinates (p > 1: the first three of d)."""
    k = int(ls.ks[i])
    where = (
        ""
        if ls.dim == 3
        else (f"<br>first three of d = {ls.dim} coordinates; the surface is on the slice {slice_name(ls.dim, 4)}")
    )
    return f"R^{ls.dim}: points x_k and the boundary {{u(t_k, ·) = 1/2}}, k = {k}, t_k = {float(ls.t[i]):.3g}{where}"


def _surfaces(ls: LiftedSpace, i: int, *, first: bool) -> list[go.Isosurface]:
    out = []
    for b in range(ls.fields.shape[1]):
        tr = go.Isosurface(value=ls.fields[i, b].ravel())  # indexed [z, y, x]: x varies fastest
        if first:
            gx, gy, gz = ls.axes
            Z, Y, X = np.meshgrid(gz, gy, gx, indexing="ij")
            tr.update(
                x=_f32(X.ravel()),
                y=_f32(Y.ravel()),
                z=_f32(Z.ravel()),
                isomin=LEVEL,
                isomax=LEVEL,
                surface_count=1,
                caps=dict(x_show=False, y_show=False, z_show=False),
                colorscale=[[0, BOUNDARY_COLOR], [1, BOUNDARY_COLOR]],
                showscale=False,
                opacity=0.35,
                name="boundary u = 1/2" if ls.fields.shape[1] == 1 else "boundary (top two classes tie)",
                showlegend=b == 0,
                legendgroup="boundary",
                hoverinfo="skip",
                flatshading=False,
            )
        out.append(tr)
    return out


def level_segments(F: np.ndarray, x: np.ndarray, y: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """The level set {F = level} of a field F (ny, nx) on the grid (x (nx,), y (ny,)) as line segments (marching
    squares, linear along each cell edge): x, y with NaN between segments."""
    F = np.asarray(F, np.float64) - level
    a, b, c, d = F[:-1, :-1], F[:-1, 1:], F[1:, 1:], F[1:, :-1]  # corners (i, j), (i, j+1), (i+1, j+1), (i+1, j)
    X0, X1 = np.meshgrid(x[:-1], y[:-1])[0], np.meshgrid(x[1:], y[:-1])[0]
    Y0, Y1 = np.meshgrid(x[:-1], y[:-1])[1], np.meshgrid(x[:-1], y[1:])[1]

    def cross(p, q):
        with np.errstate(divide="ignore", invalid="ignore"):
            return (p * q < 0) | ((p == 0) & (q != 0)), np.where(p != q, p / (p - q), 0.5)

    edges = []  # (hit, x, y) on the bottom, right, top and left edges of every cell
    h, f = cross(a, b)
    edges.append((h, X0 + f * (X1 - X0), Y0))
    h, f = cross(b, c)
    edges.append((h, X1, Y0 + f * (Y1 - Y0)))
    h, f = cross(d, c)
    edges.append((h, X0 + f * (X1 - X0), Y1))
    h, f = cross(a, d)
    edges.append((h, X0, Y0 + f * (Y1 - Y0)))
    hits = np.stack([e[0] for e in edges])  # (4, ny-1, nx-1)
    ex, ey = np.stack([e[1] for e in edges]), np.stack([e[2] for e in edges])
    count = hits.sum(0)
    xs, ys = [], []
    pairs = [((p, q), count == 2) for p in range(4) for q in range(p + 1, 4)]
    pairs += [((0, 3), count == 4), ((1, 2), count == 4)]  # a saddle cell: two segments
    for (p, q), only in pairs:
        m = hits[p] & hits[q] & only
        n = int(m.sum())
        if n:
            xs.append(np.stack([ex[p][m], ex[q][m], np.full(n, np.nan)], 1).ravel())
            ys.append(np.stack([ey[p][m], ey[q][m], np.full(n, np.nan)], 1).ravel())
    if not xs:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.float32)


def _input_boundary(ls: LiftedSpace, i: int, *, first: bool) -> go.Scatter3d:
    """At k = 0: where the boundary {u(0, .) = 1/2} meets the input plane x_3 = 0, a line (empty in later frames)."""
    gx, gy, gz = ls.axes
    iz = int(np.argmin(np.abs(gz)))
    xs, ys = (
        level_segments(ls.fields[i, 0, iz], gx, gy, LEVEL)
        if int(ls.ks[i]) == 0 and abs(gz[iz]) < 1e-6
        else (np.zeros(0, np.float32), np.zeros(0, np.float32))
    )
    tr = go.Scatter3d(x=xs, y=ys, z=np.zeros_like(xs))
    if first:
        tr.update(
            mode="lines", line=dict(color=BOUNDARY_COLOR, width=6), name="boundary on x₃ = 0 (k = 0)", hoverinfo="skip"
        )
    return tr


def _points(ls: LiftedSpace, i: int, c: int, *, first: bool) -> go.Scatter3d:
    m = ls.y == c
    p = ls.x[i, m]
    tr = go.Scatter3d(x=_f32(p[:, 0]), y=_f32(p[:, 1]), z=_f32(p[:, 2]))
    if first:
        tr.update(
            mode="markers",
            name=f"class {c}",
            marker=dict(color=PALETTE[c], size=3.5, line=dict(color="white", width=0.5)),
        )
    return tr


@styled
def lifted(obj, *, probe_path=None) -> go.Figure:
    """3-D view of a lifted run (lift >= 1): x_k in its first three coordinates over the surface {u(t_k, .) = 1/2}
    (C > 2: where the top two classes tie), one browser-side frame per k with a slider and a play button.
    With ``probe_path`` (L+1, d): the probe's path in the same coordinates, its point x_k in each frame.

    At k = L the surface is the plane where the linear f changes class; at k = 0 its trace on x_3 = 0 is the
    decision boundary on the input plane.
    """
    v = _views(obj)
    ls = v.lifted
    if ls is None:
        return _note(
            "no lift (p = 0): the flow acts in the plane; set lift ≥ 1 to see R^(2+p)", "Lifted space", size=18
        )
    classes = [c for c in range(int(ls.y.max()) + 1) if (ls.y == c).any()]
    traces = (
        _surfaces(ls, 0, first=True)
        + [_points(ls, 0, c, first=True) for c in classes]
        + [_input_boundary(ls, 0, first=True)]
    )
    moving = list(range(len(traces)))
    pp = None if probe_path is None else np.asarray(probe_path)[:, :3]
    if pp is not None:  # the path stays; its point x_k moves with the frames
        traces += probe_traces_3d(pp, int(ls.ks[0]))
        moving.append(len(traces) - 1)
    frames = [
        go.Frame(
            name=str(int(k)),
            data=_surfaces(ls, i, first=False)
            + [_points(ls, i, c, first=False) for c in classes]
            + [_input_boundary(ls, i, first=False)]
            + ([probe_point_3d(pp, int(k), full=False)] if pp is not None else []),
            traces=moving,
            layout=dict(title_text=lifted_title(ls, i)),
        )
        for i, k in enumerate(ls.ks)
    ]
    fig = go.Figure(data=traces, frames=frames)
    sliders, menus = _frame_slider(ls.ks, v.t)
    gx, gy, gz = ls.axes
    rng = [[float(a[0]), float(a[-1])] for a in (gx, gy, gz)]
    # fonts of the scene set here, so presentation mode's larger page type does not pile up the 3-D tick labels
    ax = dict(nticks=6)
    fig.update_layout(
        scene=dict(
            xaxis=dict(title="x₁", range=rng[0], **ax),
            yaxis=dict(title="x₂", range=rng[1], **ax),
            zaxis=dict(title="x₃", range=rng[2], **ax),
            aspectmode="data",
            camera=dict(eye=dict(x=1.3, y=-1.3, z=0.7), center=dict(x=0, y=0, z=-0.16)),  # near: fills its frame
            domain=dict(x=[0, 1], y=[0, 1]),
        ),
        uirevision="lifted",
    )
    return _layout(fig, lifted_title(ls, 0), height=680, sliders=sliders, updatemenus=menus)
