"""The lifted space in 3-D: the points x_k in (x_1, x_2, x_3) and the decision boundary {u(t_k, .) = 1/2}.

With lift p >= 1 the flow acts in R^(2+p) (the augmented neural ODE of Dupont, Doucet & Teh 2019): the
inner disk of the rings can rise above the annulus, and at k = L a plane (the level set of the linear f)
separates the classes. This figure only draws what :mod:`flowviz.training.lifted` computed: the boundary as the
level set of its fields smoothed by about one grid cell (:mod:`.levelset`; a trained boundary is sharper than the
grid, and its level set taken as it is would be a staircase of the grid's cells).
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from ..training.lifted import LiftedSpace, slice_name
from .figures import PALETTE, _f32, _frame_slider, _layout, _note, _views
from .levelset import level_segments, level_surface, smooth_field
from .probepath import probe_point_3d, probe_traces_3d
from .style import styled

__all__ = ["lifted", "lifted_title"]

BOUNDARY_COLOR = "#6a3d9a"  # a purple apart from the class colours


def lifted_title(ls: LiftedSpace, i: int) -> str:
    """The title at frame i: what is drawn, at which k, and which coordinates (p > 1: the first three of d)."""
    k = int(ls.ks[i])
    where = (
        ""
        if ls.dim == 3
        else (f"<br>first three of d = {ls.dim} coordinates; the surface is on the slice {slice_name(ls.dim, 4)}")
    )
    return f"R^{ls.dim}: points x_k and the boundary {{u(t_k, ·) = 1/2}}, k = {k}, t_k = {float(ls.t[i]):.3g}{where}"


def _smoothed(ls: LiftedSpace, i: int) -> list[tuple[np.ndarray, tuple[np.ndarray, ...]]]:
    """Frame i's boundary fields as :func:`.levelset.smooth_field` makes them (level 0: the boundary)."""
    return [smooth_field(ls.fields[i, b], ls.axes) for b in range(ls.fields.shape[1])]


def _surfaces(ls: LiftedSpace, smooth, *, first: bool) -> list[go.Mesh3d]:
    """The boundaries of one frame as meshes (vertex indices as 16-bit integers where they fit)."""
    out = []
    for b, (F, axes) in enumerate(smooth):
        verts, faces = level_surface(F, axes)
        ids = faces.astype(np.uint16 if len(verts) < 2**16 else np.int32)
        tr = go.Mesh3d(x=verts[:, 0], y=verts[:, 1], z=verts[:, 2], i=ids[:, 0], j=ids[:, 1], k=ids[:, 2])
        if first:
            tr.update(
                color=BOUNDARY_COLOR,
                opacity=0.35,
                name="boundary u = 1/2" if len(smooth) == 1 else "boundary (top two classes tie)",
                showlegend=b == 0,
                legendgroup="boundary",
                hoverinfo="skip",
                flatshading=False,
            )
        out.append(tr)
    return out


def _input_boundary(ls: LiftedSpace, i: int, smooth, *, first: bool) -> go.Scatter3d:
    """At k = 0: where the boundary {u(0, .) = 1/2} meets the input plane x_3 = 0, a line (empty in later frames)."""
    F, (gx, gy, gz) = smooth[0]
    iz = int(np.argmin(np.abs(gz)))
    xs, ys = (
        level_segments(F[iz], gx, gy, 0.0)
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
    smooth = [_smoothed(ls, i) for i in range(len(ls.ks))]
    traces = (
        _surfaces(ls, smooth[0], first=True)
        + [_points(ls, 0, c, first=True) for c in classes]
        + [_input_boundary(ls, 0, smooth[0], first=True)]
    )
    moving = list(range(len(traces)))
    pp = None if probe_path is None else np.asarray(probe_path)[:, :3]
    if pp is not None:  # the path stays; its point x_k moves with the frames
        traces += probe_traces_3d(pp, int(ls.ks[0]))
        moving.append(len(traces) - 1)
    frames = [
        go.Frame(
            name=str(int(k)),
            data=_surfaces(ls, smooth[i], first=False)
            + [_points(ls, i, c, first=False) for c in classes]
            + [_input_boundary(ls, i, smooth[i], first=False)]
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
    span = [r[1] - r[0] for r in rng]
    plane = max(span[0], span[1])
    # true proportions, unless the lift's coordinate spans more than the plane (a flow part-trained pushes
    # points far along x₃): then x₃ is drawn as tall as the plane is wide, so the scene keeps its frame
    aspect = (
        dict(aspectmode="data")
        if span[2] <= plane
        else dict(aspectmode="manual", aspectratio=dict(x=span[0] / plane, y=span[1] / plane, z=1.0))
    )
    # fonts of the scene set here, so presentation mode's larger page type does not pile up the 3-D tick labels
    ax = dict(nticks=6)
    fig.update_layout(
        scene=dict(
            xaxis=dict(title="x₁", range=rng[0], **ax),
            yaxis=dict(title="x₂", range=rng[1], **ax),
            zaxis=dict(title="x₃", range=rng[2], **ax),
            **aspect,
            camera=dict(eye=dict(x=1.3, y=-1.3, z=0.7), center=dict(x=0, y=0, z=-0.16)),  # near: fills its frame
            domain=dict(x=[0, 1], y=[0, 1]),
        ),
        uirevision="lifted",
    )
    return _layout(fig, lifted_title(ls, 0), height=680, sliders=sliders, updatemenus=menus)
