"""What the views show, computed from a trained model as plain numpy result objects.

This is the boundary the plotting code uses: everything here is float32 (or
float64 where noted) numpy, nothing is a tensor, and nothing imports plotly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import numpy as np
import torch

from ..core import linalg
from ..core.data import Dataset, square_box
from ..core.model import FlowModel
from ..core.solvers import Cancelled, Flag, TooStiff
from ..core.threads import threads_that_pay
from .lifted import FRAMES_3D, GRID_3D, LiftedSpace, lifted_space, point_values

__all__ = [
    "Characteristics",
    "Surfaces",
    "Velocity",
    "Diagnostics",
    "FlowViews",
    "analyse",
    "characteristics",
    "deformed_grid",
    "transported_surfaces",
    "velocity_grid",
    "diagnostics",
    "frame_steps",
    "channel_fraction",
    "flow_extent",
    "plane_grid",
    "frame_windows",
    "window_surfaces",
    "Folding",
    "folding",
    "step_jacobian",
    "fold_points",
    "residual_ratio",
    "weight_drift",
    "roughness",
    "reference_points",
]

MAX_FRAMES = 65  # views animate at most this many steps; deeper nets are shown at every ceil(L/64)-th step
_T = TypeVar("_T")

LIVE_FRAMES = 9  # frames of the live views while training (they are rebuilt and redrawn every second)


def frame_steps(L: int, max_frames: int = MAX_FRAMES) -> np.ndarray:
    """The steps k shown as frames: all of 0..L when L + 1 <= max_frames, else evenly spaced with 0 and L."""
    if L + 1 <= max_frames:
        return np.arange(L + 1)
    return np.unique(np.round(np.linspace(0, L, max_frames)).astype(int))


@dataclass(frozen=True)
class Characteristics:
    """Paths x_0 .. x_L of points: x (L+1, m, d), their labels y (m,), times t (L+1,)."""

    t: np.ndarray
    x: np.ndarray
    y: np.ndarray
    n_total: int  # points in the dataset; x holds a seeded subsample of them


@dataclass(frozen=True)
class Surfaces:
    """u(t_k, .) on a square grid of the (x1, x2) plane of step k, for k in ``ks``.

    u: (len(ks), res, res, C), rows along x2 and columns along x1. With a lift
    the grid is the slice where the extra coordinates are zero.
    """

    ks: np.ndarray
    t: np.ndarray
    x1: np.ndarray
    x2: np.ndarray
    u: np.ndarray
    mc_stderr: np.ndarray | None = None  # (len(ks),): largest Monte-Carlo standard error of u on the grid (eps > 0)


@dataclass(frozen=True)
class Velocity:
    """V_k = v(t_k, .) on a grid: v (len(ks), res, res, d) for k in ``ks`` (1..L)."""

    ks: np.ndarray
    t: np.ndarray
    x1: np.ndarray
    x2: np.ndarray
    v: np.ndarray


@dataclass(frozen=True)
class Diagnostics:
    """Per-step checks of the paper's section 3.3 and of invertibility.

    residual_ratio (L,): mean |Phi_k(x_(k-1)) - x_(k-1)| / |x_(k-1)| over the data along the drift
        characteristics (= |s_k V_k| / |x| for Euler; the viscous noise is not part of it);
    weight_drift (L-1,): |theta_k - theta_(k-1)| of adjacent blocks;
    min_jac_det (L,): smallest det D(step map k) over a det_grid x det_grid grid of the data box, carried
        along the drift (< 0: the step folds the plane);
    error (L+1,): mean |x_k - x(t_k)| against the dopri5 reference (NaN for the plain net);
    disc_error: error[-1] = |x_L - x(T)|;
    min_jac_det_data (L,): the same smallest det over the (subsampled) data points themselves.
    """

    residual_ratio: np.ndarray
    weight_drift: np.ndarray
    min_jac_det: np.ndarray
    error: np.ndarray
    disc_error: float
    min_jac_det_data: np.ndarray | None = None
    det_grid: int = 25
    stiff: str | None = None  # why the reference (and so ``error``) is missing: the flow is too stiff to solve


@dataclass(frozen=True)
class FlowViews:
    """Everything the app and the notebook figures show for one trained model."""

    config: object
    t: np.ndarray
    extent: tuple[float, float, float, float]
    data: Dataset
    characteristics: Characteristics
    grid: np.ndarray  # deformed grid lines (len(ks), n_lines, n_pts, d)
    grid_ks: np.ndarray
    surfaces: Surfaces
    velocity: Velocity
    diagnostics: Diagnostics
    history: list[dict[str, float]] = field(default_factory=list)
    weights: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (L, n_weights) per-block weights, flattened
    output_points: np.ndarray | None = None  # x_L of all points (n, d)
    output_surface: Surfaces | None = None  # f = u(T, .) on a box around x_L (extra coordinates zero)
    live: bool = False  # a light version made while training (no reference solution, coarser grids)
    predicted: np.ndarray | None = None  # the model's class for every point of data.x (n,)
    # lifted runs (p >= 1) only: u(t_k, x_k) of the shown points at their full coordinates (len(ks), m, C),
    # the class f gives each output point x_L (n,), and the 3-D view's numbers
    point_u: np.ndarray | None = None
    output_class: np.ndarray | None = None
    lifted: LiftedSpace | None = None
    folding: Folding | None = None  # |D(step k) - I| per step: what makes a step fold
    # each frame's own window around its points x_k (len(ks), 4) and u(t_k, .) on a grid of it (x1, x2: (len(ks), res))
    windows: np.ndarray | None = None
    frame_surfaces: Surfaces | None = None


def _t(x: object, model: FlowModel) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float32), device=model.device)


def characteristics(
    model: FlowModel, x: np.ndarray, y: np.ndarray, *, max_points: int = 300, seed: int = 0
) -> Characteristics:
    """Trajectories of at most ``max_points`` points (a seeded subsample), shape (L+1, m, d)."""
    idx = np.arange(len(x))
    if len(x) > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(len(x), max_points, replace=False))
    xs = model.trajectory(np.asarray(x)[idx])
    return Characteristics(model.times.astype(np.float32), xs.astype(np.float32), np.asarray(y)[idx], len(x))


def plane_grid(extent: Sequence[float], res: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A res x res grid over a box (x1 lo, x1 hi, x2 lo, x2 hi): x1 (res,), x2 (res,), points (res*res, 2)."""
    x1 = np.linspace(extent[0], extent[1], res, dtype=np.float32)
    x2 = np.linspace(extent[2], extent[3], res, dtype=np.float32)
    X1, X2 = np.meshgrid(x1, x2)
    return x1, x2, np.c_[X1.ravel(), X2.ravel()]


def deformed_grid(
    model: FlowModel, extent: Sequence[float], *, n_lines: int = 11, n_pts: int = 40, ks: np.ndarray | None = None
) -> np.ndarray:
    """Images of a grid's lines under the flow: (len(ks), 2 * n_lines, n_pts, d)."""
    a = np.linspace(extent[0], extent[1], n_lines, dtype=np.float32)
    b = np.linspace(extent[2], extent[3], n_lines, dtype=np.float32)
    sa = np.linspace(extent[0], extent[1], n_pts, dtype=np.float32)
    sb = np.linspace(extent[2], extent[3], n_pts, dtype=np.float32)
    vert = np.stack([np.c_[np.full(n_pts, v), sb] for v in a])  # x1 = const
    horiz = np.stack([np.c_[sa, np.full(n_pts, v)] for v in b])  # x2 = const
    pts = np.concatenate([vert, horiz]).reshape(-1, 2)
    xs = model.trajectory(pts)  # (L+1, lines * n_pts, d)
    ks = np.arange(model.L + 1) if ks is None else ks
    lines: np.ndarray = xs[ks].reshape(len(ks), 2 * n_lines, n_pts, -1).astype(np.float32)
    return lines


@torch.no_grad()
def transported_surfaces(
    model: FlowModel, extent: Sequence[float], *, res: int = 100, ks: np.ndarray | None = None
) -> Surfaces:
    """u(t_k, x) = f(Phi_(k->L)(x)) on a res x res grid of the step-k plane, for each k in ks."""
    ks = frame_steps(model.L) if ks is None else np.asarray(ks)
    x1, x2, pts = plane_grid(extent, res)
    z = np.c_[pts, np.zeros((len(pts), model.dim - 2), np.float32)]
    if model.config.viscosity > 0:  # Monte-Carlo means over paths shared by all grid points, and their error
        mc = [model.monte_carlo(z, int(k)) for k in ks]
        u, se = np.stack([m[0] for m in mc]), np.array([float(m[1].max()) for m in mc], np.float32)
    else:
        u, se = np.stack([model.transported(z, int(k)) for k in ks]), None
    return Surfaces(
        ks, model.times[ks].astype(np.float32), x1, x2, u.reshape(len(ks), res, res, -1).astype(np.float32), se
    )


def frame_windows(
    xs: np.ndarray, ks: Sequence[int] | np.ndarray, *, q: float = 0.005, margin: float = 0.12
) -> np.ndarray:
    """(len(ks), 4) windows (x1 lo, x1 hi, x2 lo, x2 hi) of the frames k in ``ks`` for points xs (L+1, m, d):
    the central 1 - 2q of each of the first two coordinates, widened by ``margin`` of the larger span on each side,
    made square about its centre (equal aspect), and grown where needed so that every point x_k lies inside."""
    out = np.zeros((len(ks), 4), np.float64)
    for i, k in enumerate(ks):
        p = np.asarray(xs[int(k), :, :2], np.float64)
        p = p[np.isfinite(p).all(1)]
        if not len(p):
            out[i] = (-1, 1, -1, 1)
            continue
        lo, hi = np.quantile(p, q, axis=0), np.quantile(p, 1 - q, axis=0)
        half = max(float((hi - lo).max()) / 2 * (1 + 2 * margin), 1e-3)
        c = (lo + hi) / 2
        half = max(half, float(np.abs(p - c).max()) * 1.02)  # every point inside
        out[i] = (c[0] - half, c[0] + half, c[1] - half, c[1] + half)
    return out


@torch.no_grad()
def window_surfaces(
    model: FlowModel, windows: np.ndarray, ks: Sequence[int] | np.ndarray, *, res: int = 100
) -> Surfaces:
    """u(t_k, .) on a res x res grid of each frame's own window (x1, x2 of the result: (len(ks), res))."""
    ks = np.asarray(ks)
    x1s: list[np.ndarray] = []
    x2s: list[np.ndarray] = []
    us: list[np.ndarray] = []
    ses: list[float] = []
    for w, k in zip(windows, ks):
        x1, x2, pts = plane_grid(w, res)
        z = np.c_[pts, np.zeros((len(pts), model.dim - 2), np.float32)]
        if model.config.viscosity > 0:
            u, se = model.monte_carlo(z, int(k))
            ses.append(float(se.max()))
        else:
            u = model.transported(z, int(k))
        x1s.append(x1)
        x2s.append(x2)
        us.append(u.reshape(res, res, -1))
    return Surfaces(
        ks,
        model.times[ks].astype(np.float32),
        np.stack(x1s),
        np.stack(x2s),
        np.stack(us).astype(np.float32),
        np.array(ses, np.float32) if ses else None,
    )


def roughness(u: np.ndarray) -> float:
    """Mean |discrete Laplacian| of a surface u (res, res) or (res, res, C) on its grid: the 5-point stencil
    u[i+1,j] + u[i-1,j] + u[i,j+1] + u[i,j-1] - 4 u[i,j] over interior nodes (no division by h^2), mean over classes.
    Monte-Carlo speckle raises it; a smoother surface lowers it."""
    u = np.asarray(u, dtype=np.float64)
    lap = u[2:, 1:-1] + u[:-2, 1:-1] + u[1:-1, 2:] + u[1:-1, :-2] - 4 * u[1:-1, 1:-1]
    return float(np.abs(lap).mean())


@torch.no_grad()
def velocity_grid(
    model: FlowModel, extent: Sequence[float], *, res: int = 15, ks: np.ndarray | None = None
) -> Velocity:
    """V_k = v(t_k, x) on a res x res grid (extra coordinates zero), for each k in ks (default: all 1..L)."""
    ks = np.arange(1, model.L + 1) if ks is None else np.asarray(ks)
    x1, x2, pts = plane_grid(extent, res)
    z = model.lift(_t(pts, model))
    v = np.stack([model.velocity(z, int(k)).cpu().numpy() for k in ks])
    return Velocity(ks, model.times[ks].astype(np.float32), x1, x2, v.reshape(len(ks), res, res, -1))


def min_jacobian_det(model: FlowModel, pts_per_step: torch.Tensor) -> np.ndarray:
    """Smallest det of the Jacobian of step map k over points (L, m, d) lying in the space of step k-1."""
    out = np.empty(model.L)
    for k in range(1, model.L + 1):
        J = step_jacobian(model, pts_per_step[k - 1], k)
        out[k - 1] = float(linalg.det(J.double()).min())
    return out


def residual_ratio(model: FlowModel, x: np.ndarray, xs: np.ndarray | None = None) -> np.ndarray:
    """Section 3.3's first condition per step: mean over points x (n, 2) of |Phi_k(x_(k-1)) - x_(k-1)| / |x_(k-1)|,
    shape (L,) float32 (= |s_k V_k| / |x| for Euler).

    Measured along the drift characteristics (no viscous noise), so it is a property of the blocks: with eps > 0 it
    equals the value of the same weights at eps = 0. ``xs``: those characteristics if already computed (L+1, n, d).
    """
    xs = model.trajectory(x, noise=False) if xs is None else xs
    step = np.linalg.norm(np.diff(xs, axis=0), axis=-1)
    ratio: np.ndarray = (step / np.maximum(np.linalg.norm(xs[:-1], axis=-1), 1e-6)).mean(1).astype(np.float32)
    return ratio


def weight_drift(model: FlowModel) -> np.ndarray:
    """Section 3.3's second condition: |theta_k - theta_(k-1)| over all weights of adjacent blocks, (L-1,) float32."""
    if model.L < 2:
        return np.zeros(0, np.float32)
    with torch.no_grad():
        d2 = cast(torch.Tensor, sum((p[1:] - p[:-1]).pow(2).flatten(1).sum(1) for p in model.block_params()))
    return d2.sqrt().cpu().numpy().astype(np.float32)


def step_jacobian(model: FlowModel, x: torch.Tensor, k: int) -> torch.Tensor:
    """D(step map k) at points x (m, d) of the space of step k-1: (m, d, d), J[:, i, j] = d y_i / d x_j."""
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        y = model.step_map(x, k)
        rows = [torch.autograd.grad(y[:, i].sum(), x, retain_graph=i < model.dim - 1)[0] for i in range(model.dim)]
    return torch.stack(rows, 1)


@dataclass(frozen=True)
class Folding:
    """Why a step folds: A_k = D(step k) - I (= s_k DV_k for Euler; per-step weights absorb s_k into W2, eq. 16).

    det D(step k) = det(I + A_k) > 0 wherever the spectral norm |A_k| < 1, so a fold needs |A_k| >= 1; in the
    plane det(I + A_k) < 0 exactly where A_k has one real eigenvalue below -1.
    max_norm (L,): max over the points of |A_k|_2; min_eig (L,): min over the points of the real eigenvalues of
    A_k (inf where all are complex: a complex pair cannot make det negative); points: how many were checked.
    """

    max_norm: np.ndarray
    min_eig: np.ndarray
    points: int

    THRESHOLD = 1.0  # |A_k| below this at every point: no fold possible


def folding(model: FlowModel, pts_per_step: torch.Tensor) -> Folding:
    """The size of each step's own derivative A_k = D(step k) - I over points (L, m, d) of the spaces of k-1."""
    norm, eig = np.empty(model.L), np.empty(model.L)
    for k in range(1, model.L + 1):
        A = step_jacobian(model, pts_per_step[k - 1], k).double()
        A = A - torch.eye(model.dim, dtype=A.dtype, device=A.device)
        norm[k - 1] = float(linalg.spectral_norm(A).max())
        ev = linalg.eigvals(A)
        real = torch.where(ev.imag.abs() <= 1e-9 * (1 + ev.real.abs()), ev.real, torch.inf)
        eig[k - 1] = float(real.min())
    return Folding(norm.astype(np.float32), eig.astype(np.float32), int(pts_per_step.shape[1]))


def reference_points(x: np.ndarray, *, max_points: int = 200, seed: int = 0) -> np.ndarray:
    """The points (a seeded subsample of at most ``max_points`` of x) whose reference the diagnostics solve."""
    rng = np.random.default_rng(seed)
    return x if len(x) <= max_points else x[rng.choice(len(x), max_points, replace=False)]


def diagnostics(
    model: FlowModel,
    x: np.ndarray,
    extent: Sequence[float],
    *,
    max_points: int = 200,
    grid: int = 25,
    seed: int = 0,
    with_reference: bool = True,
) -> Diagnostics:
    """Residual ratio, weight drift, smallest Jacobian determinant (grid and data) and discretisation error."""
    sub = reference_points(x, max_points=max_points, seed=seed)
    xs = model.trajectory(sub, noise=False)  # (L+1, m, d): the drift characteristics
    ratio = residual_ratio(model, sub, xs)
    _, _, gpts = plane_grid(extent, grid)
    gtraj = torch.as_tensor(model.trajectory(gpts, noise=False), device=model.device)
    det = min_jacobian_det(model, gtraj[:-1])
    det_data = min_jacobian_det(model, torch.as_tensor(xs[:-1], device=model.device))
    err, stiff = np.full(model.L + 1, np.nan), None
    if with_reference and model.config.scheme != "plain" and model.config.viscosity == 0:
        try:  # under the step budget of flowviz.core.solvers.solve_limits
            ref = model.reference(sub)
            err = np.linalg.norm(xs.astype(np.float64) - ref, axis=-1).mean(1)
        except TooStiff as e:
            stiff = (
                f"{e}: the discrete characteristics are drawn without the continuous reference x(t) "
                "(no discretisation error)."
            )
    return Diagnostics(
        ratio,
        weight_drift(model),
        det.astype(np.float32),
        err,
        float(err[-1]),
        det_data.astype(np.float32),
        grid,
        stiff,
    )


def flow_extent(ds: Dataset, xs: np.ndarray, margin: float = 0.1) -> tuple[float, float, float, float]:
    """A square box around the data and all its characteristics (first two coordinates)."""
    return square_box(np.concatenate([ds.x, xs[..., :2].reshape(-1, 2)]), margin)


def analyse(
    model: FlowModel,
    data: Dataset,
    *,
    history: list[dict[str, float]] | None = None,
    res: int = 100,
    max_points: int = 300,
    with_reference: bool = True,
    live: bool = False,
    cancel: Flag | None = None,
) -> FlowViews | None:
    """All views of a trained model (the object the figures take).

    ``live``: a lighter version for refreshing while training (coarser surfaces, no reference solution).
    ``cancel`` (``is_set()``) is checked between the stages: None comes back once it is set (a worker's final
    pictures that nobody waits for any more stop within one stage).
    """
    with threads_that_pay(res * res + len(data.x), model.config.width, model.device):
        try:
            return _analyse(
                model,
                data,
                history=history,
                res=res,
                max_points=max_points,
                with_reference=with_reference,
                live=live,
                cancel=cancel,
            )
        except (_Stopped, Cancelled):
            return None


class _Stopped(Exception):
    """Raised between analyse's stages once its cancel flag is set."""


def _analyse(
    model: FlowModel,
    data: Dataset,
    *,
    history: list[dict[str, float]] | None,
    res: int,
    max_points: int,
    with_reference: bool,
    live: bool,
    cancel: Flag | None,
) -> FlowViews:
    def stage(value: _T) -> _T:
        if cancel is not None and cancel.is_set():
            raise _Stopped
        return value

    if live:  # refreshed every second while training: a few frames, coarse grids (the final picture has all)
        res, with_reference = min(res, 60), False
    model.train(False)
    ch = stage(characteristics(model, data.x, data.y, max_points=max_points, seed=model.config.seed))
    extent = flow_extent(data, ch.x)
    ks = frame_steps(model.L, LIVE_FRAMES if live else MAX_FRAMES)
    surf = stage(transported_surfaces(model, extent, res=res, ks=ks))
    grid = stage(deformed_grid(model, data.extent(), ks=ks))
    vel = stage(velocity_grid(model, extent, ks=ks[ks > 0] if len(ks) > 1 else None))
    diag = stage(diagnostics(model, data.x_train, data.extent(), with_reference=with_reference))
    with torch.no_grad():
        weights = {name: p.flatten(1).cpu().numpy() for name, p in zip(model.field.names, model.block_params())}
    out = model.trajectory(data.x)[-1].astype(np.float32)
    pred = model.predict_proba(data.x).argmax(1)
    out_box = flow_extent(Dataset(out[:, :2], data.y, out[:0, :2], data.y[:0], data.n_classes), out[None, :, :2])
    x1, x2, pts = plane_grid(out_box, res)
    z = torch.as_tensor(np.c_[pts, np.zeros((len(pts), model.dim - 2), np.float32)], device=model.device)
    with torch.no_grad():
        f = torch.softmax(model.head(z), -1).cpu().numpy().reshape(1, res, res, -1)
    osurf = Surfaces(np.array([model.L]), model.times[-1:].astype(np.float32), x1, x2, f.astype(np.float32))
    lifted: dict[str, Any] = {}
    if model.dim > 2:  # the points leave the slice x_3 = 0: what is true at their own coordinates
        pu = point_values(model, ch.x, ks)
        with torch.no_grad():
            oc = model.head(torch.as_tensor(out, device=model.device)).argmax(-1).cpu().numpy()
        lifted = dict(point_u=pu, output_class=oc, lifted=stage(_lifted(model, ch, ks, pu, live)))
    fold = None if live else folding(model, fold_points(model, data.x_train, data.extent(), seed=model.config.seed))
    stage(fold)
    windows = frame_windows(ch.x, ks)
    # each frame's window is narrower than the whole flow's: two thirds of the nodes across keep its cells as fine
    fsurf = None if live else stage(window_surfaces(model, windows, ks, res=max(32, res * 2 // 3)))
    return FlowViews(
        model.config,
        model.times.astype(np.float32),
        extent,
        data,
        ch,
        grid,
        ks,
        surf,
        vel,
        diag,
        list(history or []),
        weights,
        out,
        osurf,
        live,
        pred,
        folding=fold,
        windows=windows,
        frame_surfaces=fsurf,
        **lifted,
    )


def _lifted(model: FlowModel, ch: Characteristics, ks: np.ndarray, pu: np.ndarray, live: bool) -> LiftedSpace:
    ks3 = frame_steps(model.L, min(len(ks), FRAMES_3D))
    same = len(ks3) == len(ks) and bool((ks3 == ks).all())
    return lifted_space(model, ch.x, ch.y, ks3, point_u=pu if same else None, res=10 if live else GRID_3D)


def fold_points(
    model: FlowModel, x: np.ndarray, extent: Sequence[float], *, grid: int = 25, max_points: int = 200, seed: int = 0
) -> torch.Tensor:
    """Where folding is checked: a grid x grid lattice of the box and up to max_points data points, carried
    along the flow: (L, m, d), row k-1 in the space of step k-1."""
    rng = np.random.default_rng(seed)
    sub = x if len(x) <= max_points else x[rng.choice(len(x), max_points, replace=False)]
    pts = np.concatenate([plane_grid(extent, grid)[2], np.asarray(sub, np.float32)])
    return torch.as_tensor(model.trajectory(pts)[:-1], device=model.device)


def channel_fraction(model: FlowModel, radii: Iterable[float], *, n: int = 3600, inner_class: int = 0) -> float:
    """Share of points on circles of the given radii that the model calls ``inner_class``.

    For the rings dataset with circles inside the annulus this measures the keyhole:
    a planar flow with a linear f must give a positive share (the inner region is
    unbounded), a lifted model can give none.
    """
    a = np.linspace(0, 2 * math.pi, n, endpoint=False)
    pts = np.concatenate([r * np.c_[np.cos(a), np.sin(a)] for r in radii]).astype(np.float32)
    return float((model.predict_proba(pts).argmax(1) == inner_class).mean())
