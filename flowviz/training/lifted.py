"""The lifted space R^(2+p) as the views show it: u(t_k, .) on a 3-D grid, and u at each point's own coordinates.

With a lift (p >= 1, after Dupont, Doucet & Teh 2019, augmented neural ODEs) the points leave the plane x_3 = 0
as soon as k > 0, so a planar picture of u(t_k, .) on that slice says nothing about the colour at a point.
These functions compute what is true instead: u(t_k, x_k) at the full coordinates of each point, and u(t_k, .)
on a box of the first three coordinates (the remaining p - 1 coordinates zero), whose level set {u = 1/2}
(for C > 2 classes: the set where the top two classes tie) is the decision boundary at step k.
Plain numpy out, no plotly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.model import FlowModel

__all__ = [
    "LiftedSpace",
    "lifted_space",
    "point_values",
    "boundary_fields",
    "slice_name",
    "grid_axes",
    "GRID_3D",
    "FRAMES_3D",
]

# The 3-D grid is transported from every frame's step to L: its cost is (nodes) * sum_k (L - k) block evaluations.
GRID_3D = 16  # grid nodes per axis across the input's box, about half as many beyond (rings_lift: 22 x 23 x 19)
FRAMES_3D = 33  # at most this many frames (all of k = 0..L up to L = 32)


@dataclass(frozen=True)
class LiftedSpace:
    """Points and the decision boundary in the first three coordinates, for the frames k in ``ks``.

    x (F, m, 3): x_k of the shown points; y (m,): their labels; point_class (F, m): argmax u(t_k, x_k) at the
    points' full coordinates; axes: the grid (gx, gy, gz), each (r,); fields (F, B, r, r, r) uint8: round(255 g)
    of B functions g whose level g = 1/2 is the boundary (B = 1: g = u_1 for two classes; else B = C - 1:
    g = (1 + u_c - max_(j != c) u_j) / 2, the boundary of class c's region), indexed [z, y, x];
    dim: d = 2 + p.
    """

    ks: np.ndarray
    t: np.ndarray
    x: np.ndarray
    y: np.ndarray
    point_class: np.ndarray
    axes: tuple[np.ndarray, ...]
    fields: np.ndarray
    dim: int


def slice_name(dim: int, first: int = 3) -> str:
    """Which slice a picture of u shows: the coordinates x_first .. x_dim set to zero ("" when none are)."""
    if dim < first:
        return ""
    sub = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")
    names = [f"x{str(i).translate(sub)}" for i in range(first, dim + 1)]
    return f"{names[0]} = 0" if len(names) == 1 else f"{names[0]} = … = {names[-1]} = 0"


def point_values(model: FlowModel, xs: np.ndarray, ks: np.ndarray) -> np.ndarray:
    """u(t_k, x_k) at the full coordinates of each point: xs (L+1, m, d), frames ks (F,) -> (F, m, C).

    With eps = 0 this is F(x_0) for every k (u is constant along a characteristic, in R^d); with eps > 0 it is
    a martingale along the sample path, not a constant.
    """
    return np.stack([model.transported(xs[int(k)], int(k)) for k in ks]).astype(np.float32)


def boundary_fields(u: np.ndarray) -> np.ndarray:
    """Class probabilities u (..., C) -> (B, ...) fields whose level 1/2 is the decision boundary (see LiftedSpace)."""
    C = u.shape[-1]
    if C == 2:
        return u[None, ..., 1]
    g = []
    for c in range(C - 1):  # every boundary face between classes i < j lies in the level set of g_i
        others = np.delete(u, c, axis=-1).max(-1)
        g.append((1 + u[..., c] - others) / 2)
    return np.stack(g)


def _box(xs3: np.ndarray, margin: float = 0.12) -> list[np.ndarray]:
    lo, hi = xs3.min((0, 1)), xs3.max((0, 1))
    pad = np.maximum((hi - lo) * margin, 0.25)
    return [lo - pad, hi + pad]


def grid_axes(xs3: np.ndarray, res: int = GRID_3D) -> tuple[np.ndarray, ...]:
    """Grid nodes of each of the first three axes, for points xs3 (F, m, 3) of all frames: one box around them
    all (so the axes stay put while k moves), with ``res`` nodes across the input's own box (frame 0, where the
    boundary around the data is finest; x_3 over the same width about 0, with the input plane x_3 = 0 a node)
    and about res / 2 across the rest."""
    lo, hi = _box(xs3)
    lo0, hi0 = _box(xs3[:1])
    half = float(max(hi0[:2] - lo0[:2])) / 2
    lo0[2], hi0[2] = -half, half
    axes = []
    for i in range(3):
        a, b = max(lo[i], lo0[i]), min(hi[i], hi0[i])
        n = res + 1 - res % 2 if i == 2 else res  # x_3: an odd count, so the input plane x_3 = 0 is a node
        fine = np.linspace(a, b, n) if i < 2 or a > 0 or b < 0 else np.linspace(-half, half, n)
        coarse = np.linspace(lo[i], hi[i], max(2, res // 2))
        step = (b - a) / (n - 1)
        outside = coarse[(coarse < a - step / 2) | (coarse > b + step / 2)]
        axes.append(np.sort(np.r_[fine, outside, lo[i], hi[i]]).astype(np.float32))
        axes[-1] = np.unique(axes[-1])
    return tuple(axes)


def lifted_space(
    model: FlowModel,
    xs: np.ndarray,
    y: np.ndarray,
    ks: np.ndarray,
    *,
    point_u: np.ndarray | None = None,
    res: int = GRID_3D,
) -> LiftedSpace:
    """The 3-D view's numbers for a lifted model (d >= 3): xs (L+1, m, d) the shown characteristics.

    ``point_u`` (F, m, C): u(t_k, x_k) if already computed (:func:`point_values`).

    The grid (:func:`grid_axes`) covers all the shown points of all frames; coordinates beyond the third are zero
    on it.
    """
    if model.dim < 3:
        raise ValueError("the 3-D view needs a lift: lift >= 1")
    ks = np.asarray(ks)
    axes = grid_axes(xs[..., :3], res)
    Z, Y, X = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")  # (nz, ny, nx) indexed [z, y, x]
    pts = np.zeros((X.size, model.dim), np.float32)
    pts[:, 0], pts[:, 1], pts[:, 2] = X.ravel(), Y.ravel(), Z.ravel()
    fields = []
    for k in ks:
        u = model.transported(pts, int(k)).reshape(*X.shape, -1)
        fields.append(np.round(boundary_fields(u) * 255).clip(0, 255).astype(np.uint8))
    pu = point_values(model, xs, ks) if point_u is None else point_u
    pc = pu.argmax(-1).astype(np.int8)
    return LiftedSpace(
        ks,
        model.times[ks].astype(np.float32),
        xs[ks][..., :3].astype(np.float32),
        np.asarray(y),
        pc,
        axes,
        np.stack(fields),
        model.dim,
    )
