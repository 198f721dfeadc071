"""Level sets of fields sampled on grids, as the lifted view draws them: a line in the plane, a surface in space.

The lifted space's fields come as bytes of a probability on a rectilinear grid (:mod:`flowviz.training.lifted`).
A trained boundary is sharp: within one cell the probability goes from 0 to 1, and a level set interpolated
linearly between two saturated bytes sits in the middle of every cell it crosses, a staircase. :func:`smooth_field`
turns the bytes into their log-odds (linear across a soft boundary, where linear interpolation is right), samples
them on a uniform grid and blurs them by about one cell, so that the staircase's steps, never its shape, are gone;
:func:`level_surface` meshes the level set (surface nets: one vertex per cell the surface crosses, the mean of its
crossings on the cell's edges; one quad per grid edge it crosses).
"""

from __future__ import annotations

import numpy as np

__all__ = ["level_segments", "smooth_field", "level_surface"]


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


def _interp_axis(F: np.ndarray, axis: int, old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """F linearly interpolated along ``axis`` from nodes ``old`` to nodes ``new`` (within old's range)."""
    pos = np.clip(np.interp(new, old, np.arange(len(old))), 0, len(old) - 1)
    i = np.minimum(pos.astype(int), len(old) - 2)
    w = (pos - i).astype(F.dtype)
    shape = [1] * F.ndim
    shape[axis] = len(new)
    w = w.reshape(shape)
    return np.take(F, i, axis=axis) * (1 - w) + np.take(F, i + 1, axis=axis) * w


def _blur(F: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian blur of ``sigma`` nodes along every axis (the edge value continued beyond the grid)."""
    r = max(1, int(np.ceil(2.5 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k = (k / k.sum()).astype(F.dtype)
    for axis in range(F.ndim):
        pad = [(0, 0)] * F.ndim
        pad[axis] = (r, r)
        P = np.pad(F, pad, mode="edge")
        n = F.shape[axis]
        F = sum(k[j] * np.take(P, np.arange(j, j + n), axis=axis) for j in range(2 * r + 1))
    return F


def smooth_field(
    q: np.ndarray, axes: tuple[np.ndarray, ...], *, sigma: float = 1.0, max_nodes: int = 48
) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Bytes ``q`` = round(255 p) of a probability p on the rectilinear grid ``axes`` (q indexed [z, y, x], axes
    (x, y, z)) -> the log-odds of p, sampled on a uniform grid (its cell: the largest of the axes' finest cells, at
    most ``max_nodes`` a side) and blurred by ``sigma`` of its cells; level 0 there is level 1/2 of p. Its nodes are
    whole multiples of the cell: a plane x_i = 0 within the box is a plane of nodes."""
    F = np.log((np.asarray(q, np.float32) + 0.5) / (255.5 - np.asarray(q, np.float32)))  # 0 <=> q = 127.5
    lo = np.array([a[0] for a in axes], np.float64)
    hi = np.array([a[-1] for a in axes], np.float64)
    h = max(max(float(np.diff(a).min()) for a in axes), float((hi - lo).max()) / (max_nodes - 1))
    new = tuple(h * np.arange(np.ceil(lo[i] / h - 1e-6), np.floor(hi[i] / h + 1e-6) + 1) for i in range(3))
    for i, (old, nodes) in enumerate(zip(axes, new)):  # x is the last axis of F, z the first
        F = _interp_axis(F, 2 - i, np.asarray(old, np.float64), nodes)
    return _blur(F, sigma).astype(np.float32), tuple(a.astype(np.float32) for a in new)


def level_surface(F: np.ndarray, axes: tuple[np.ndarray, ...], level: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The level set {F = level} of F (indexed [z, y, x]) on the grid ``axes`` (x, y, z) as a triangle mesh:
    vertices (n, 3) float32 (x, y, z) and triangles (m, 3) int32, each wound so that its normal (counter-clockwise
    seen from it) points to where F > level. Surface nets: a vertex in every cell the level set crosses, at the mean
    of its crossings of the cell's edges; two triangles for every grid edge it crosses, between the four cells
    around that edge. The grid is continued by one cell beyond each side (F as at the side) and the vertices there
    moved onto it: the surface ends on the grid's boundary."""
    if min(np.shape(F)) < 2:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int32)
    box = [(float(a[0]), float(a[-1])) for a in axes]
    axes = tuple(np.r_[2 * a[0] - a[1], a, 2 * a[-1] - a[-2]] for a in (np.asarray(a, np.float64) for a in axes))
    verts, faces = _surface_net(np.pad(np.asarray(F, np.float64), 1, mode="edge") - level, axes)
    for i, (lo, hi) in enumerate(box):
        verts[:, i] = np.clip(verts[:, i], lo, hi)
    return verts, faces


def _surface_net(D: np.ndarray, axes: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray]:
    """level_surface's mesh of {D = 0}, on the grid as it is."""
    nz, ny, nx = D.shape
    gx, gy, gz = axes
    cells = (nz - 1, ny - 1, nx - 1)
    total = np.zeros((*cells, 3))
    count = np.zeros(cells)
    crossed = []  # per axis: the edges crossed, as (start node index (z, y, x), rising)
    coords = (gz, gy, gx)  # along the array axes
    for a in range(3):  # edges along array axis a (0: z, 1: y, 2: x)
        d0 = D[tuple(slice(0, -1) if b == a else slice(None) for b in range(3))]
        d1 = D[tuple(slice(1, None) if b == a else slice(None) for b in range(3))]
        hit = (d0 > 0) != (d1 > 0)
        idx = np.argwhere(hit)  # start nodes of the crossed edges
        f0, f1 = d0[hit], d1[hit]
        pts = np.stack([coords[b][idx[:, b]] for b in range(3)], 1)
        step = coords[a][idx[:, a] + 1] - coords[a][idx[:, a]]
        pts[:, a] += f0 / (f0 - f1) * step
        pts = pts[:, ::-1]  # (x, y, z)
        others = [b for b in range(3) if b != a]
        for o1 in (0, 1):  # the (up to) four cells around an edge: its other two indices minus 0 or 1
            for o2 in (0, 1):
                c = idx.copy()
                c[:, others[0]] -= o1
                c[:, others[1]] -= o2
                ok = (c >= 0).all(1) & (c[:, 0] < cells[0]) & (c[:, 1] < cells[1]) & (c[:, 2] < cells[2])
                np.add.at(total, tuple(c[ok].T), pts[ok])
                np.add.at(count, tuple(c[ok].T), 1)
        crossed.append((idx, f1 > 0))
    active = count > 0
    vid = np.full(cells, -1, np.int64)
    vid[active] = np.arange(int(active.sum()))
    verts = (total[active] / count[active][:, None]).astype(np.float32)
    tris = []
    for a, (idx, rising) in enumerate(crossed):
        b1, b2 = [b for b in range(3) if b != a]
        inner = ((idx[:, b1] >= 1) & (idx[:, b1] < cells[b1]) & (idx[:, b2] >= 1) & (idx[:, b2] < cells[b2])) & (
            idx[:, a] < cells[a]
        )
        idx, rising = idx[inner], rising[inner]

        def cell(o1, o2, idx=idx, b1=b1, b2=b2):
            c = idx.copy()
            c[:, b1] -= o1
            c[:, b2] -= o2
            return vid[tuple(c.T)]

        q = np.stack([cell(1, 1), cell(0, 1), cell(0, 0), cell(1, 0)], 1)  # counter-clockwise in (b1, b2)
        # its normal is +a where (b1, b2, a) is a right-handed order of (x, y, z): a = y (array axes z, x, y); for
        # a = z (y, x, z) and a = x (z, y, x) it is -a. Wound again where that is not the way F rises
        flip = ~rising if a == 1 else rising
        q[flip] = q[flip][:, ::-1]
        tris.append(q[:, [0, 1, 2]])
        tris.append(q[:, [0, 2, 3]])
    faces = np.concatenate(tris).astype(np.int32) if tris else np.zeros((0, 3), np.int32)
    return verts, faces
