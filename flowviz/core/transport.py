"""The transport terminal value problem solved on a grid of the plane (paper, section 4, item 1).

    d_t u + v . grad u + eps Laplacian u = 0  on [0, T] x box,   u(T, .) = f,

solved backward from t = T with a grid method instead of the characteristics of single points. For eps > 0
this is the backward equation of the stochastic characteristics dX = v dt + sqrt(2 eps) dW that flowviz's
Monte-Carlo surface averages, u(0, x) = E f(X_T). The paper (section 4, item 1) only names "adding dissipative
terms" and gives no equation; the equation above is flowviz's reading, with +eps Laplacian u, the sign that makes
this backward problem well posed. Only for p = 0 (no lift): the grid is the plane itself.

Schemes (``GRID_SCHEMES``):

- ``semi_lagrangian``: over each block, u(t_(k-1), x) = u(t_k, X(x)) with X(x) the position at t_k of the
  characteristic from x at t_(k-1) (RK4 on the same field), u(t_k, .) read off the grid
  by bilinear interpolation: error O(L h^2), order 2 in the grid spacing h (the interpolation's order).
- ``upwind``: first-order upwind finite differences, explicit, with a CFL-limited step: order 1 in h, reached
  once the grid resolves the front of u (its numerical diffusion |v| h / 2 smears a steep front at order 1/2
  until then).

Diffusion (eps > 0) is split off after each block and advanced by explicit steps within the stable limit
dt <= h^2 / (4 eps), with zero-flux edges. Where a characteristic leaves the box the grid holds no value: there
the solver follows it on to t = T (the network's blocks for ``time_steps="blocks"``, the field by RK4 for ``flow``)
and applies f, u(t_k, X) = f(Phi_(t_k -> T)(X)): semi-Lagrangian departure points outside the box, and the ring of
ghost nodes around the box that upwind's one-sided differences read. For eps > 0 that outside value follows the
drift alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from .errors import ConfigError
from .linalg import check_finite_weights
from .points import check_extent
from .timegrid import slot_of_time

if TYPE_CHECKING:
    from .model import FlowModel

__all__ = ["GridSolution", "GRID_SCHEMES", "solve_transport", "block_velocity"]

GRID_SCHEMES = {"semi_lagrangian": 2, "upwind": 1}  # name -> order in the grid spacing
MAX_RESOLUTION = 512

Velocity = Callable[[float, Tensor], Tensor]  # v(t, x) at points x (n, d)
CFL = 0.9


@dataclass(frozen=True)
class GridSolution:
    """u(0, .) on a res x res grid: u (res, res, C), rows along x2, columns along x1 (as flowviz's surfaces)."""

    x1: np.ndarray
    x2: np.ndarray
    u: np.ndarray
    scheme: str
    order: int
    viscosity: float


def block_velocity(model: FlowModel, k: int) -> Velocity:
    """v(t, x) on block k (1..L), t in [t_(k-1), t_k]: per-step weights use slot k throughout the block
    (v is piecewise constant in t, and the left end t_(k-1) belongs to block k here); other modes are continuous."""
    c = model.config
    slot = None
    if c.time_mode == "per_step":
        slot = np.zeros(c.n_steps)
        slot[k - 1] = 1.0

    # per-step and tied weights do not change within the block: one contraction per dtype
    fixed: dict[tuple[torch.dtype, torch.device], tuple[Tensor, ...]] = {}

    def v(t: float, x: Tensor) -> Tensor:
        key = (x.dtype, x.device)
        params = fixed.get(key)
        if params is None:
            row = slot if slot is not None else slot_of_time(c.time_mode, t, model.times, c.knots)
            r = torch.as_tensor(row, dtype=x.dtype, device=x.device)
            params = tuple(torch.tensordot(r, p.to(x.dtype), dims=1) for p in model.field.slot_params())
            if c.time_mode != "continuous" and not torch.is_grad_enabled():
                fixed[key] = params
        return model.field.velocity(params, t, x)

    return v


def _rk4(v: Velocity, t0: float, s: float, x: Tensor, n: int) -> Tensor:
    """Classical RK4 from t0 over s in n substeps."""
    h = s / n
    for i in range(n):
        t = t0 + i * h
        k1 = v(t, x)
        k2 = v(t + h / 2, x + h / 2 * k1)
        k3 = v(t + h / 2, x + h / 2 * k2)
        k4 = v(t + h, x + h * k3)
        x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x


def _bilinear(U: Tensor, pts: Tensor, lo: tuple[float, float], h: tuple[float, float]) -> Tensor:
    """U (C, N, N) on the grid (rows x2, cols x1) read at points (M, 2), edge values outside: (C, M)."""
    N = U.shape[-1]
    fx = ((pts[:, 0] - lo[0]) / h[0]).clamp(0, N - 1)
    fy = ((pts[:, 1] - lo[1]) / h[1]).clamp(0, N - 1)
    i0 = fx.floor().long().clamp(max=N - 2)
    j0 = fy.floor().long().clamp(max=N - 2)
    wx, wy = fx - i0, fy - j0

    def g(j: Tensor, i: Tensor) -> Tensor:
        return U[:, j, i]

    return (1 - wy) * ((1 - wx) * g(j0, i0) + wx * g(j0, i0 + 1)) + wy * (
        (1 - wx) * g(j0 + 1, i0) + wx * g(j0 + 1, i0 + 1)
    )


def _pad(U: Tensor) -> Tensor:
    return torch.nn.functional.pad(U[None], (1, 1, 1, 1), mode="replicate")[0]


def _ring(N: int) -> tuple[Tensor, Tensor]:
    """Row and column indices of the border of an (N+2, N+2) array, the ghost nodes around an N x N grid."""
    i = torch.arange(N + 2)
    e, z = torch.full_like(i, N + 1), torch.zeros_like(i)
    return torch.cat([z, e, i[1:-1], i[1:-1]]), torch.cat([i, i, z[1:-1], e[1:-1]])


def _upwind_block(
    U: Tensor,
    v: Velocity,
    t0: float,
    s: float,
    pts: Tensor,
    h: tuple[float, float],
    ghost: Callable[[float], Tensor] | None = None,
) -> Tensor:
    """Advance U back over one block: U += dt (v . grad U), one-sided differences on the side v points to.

    ``ghost(t)``: u(t, .) at the ring of nodes around the box (:func:`_ring` order), (C, 4N+4); else edge copies."""
    C, N, _ = U.shape
    V = v(t0 + s / 2, pts)
    speed = float((V[:, 0].abs() / h[0] + V[:, 1].abs() / h[1]).max())
    n = max(1, math.ceil(s * speed / CFL))
    dt = s / n
    rows, cols = _ring(N)
    for i in range(n):
        V = v(t0 + s - (i + 0.5) * dt, pts).T.reshape(2, N, N)  # time runs backward through the block
        P = _pad(U)
        if ghost is not None:
            P[:, rows, cols] = ghost(t0 + s - i * dt)
        fx, bx = (P[:, 1:-1, 2:] - U) / h[0], (U - P[:, 1:-1, :-2]) / h[0]
        fy, by = (P[:, 2:, 1:-1] - U) / h[1], (U - P[:, :-2, 1:-1]) / h[1]
        U = U + dt * (V[0] * torch.where(V[0] > 0, fx, bx) + V[1] * torch.where(V[1] > 0, fy, by))
    return U


def _diffuse(U: Tensor, eps: float, s: float, h: tuple[float, float]) -> Tensor:
    """Explicit heat steps U += dt eps Laplacian U over time s, dt <= h^2 / (4 eps), zero-flux edges."""
    limit = 0.9 / (2 * eps * (1 / h[0] ** 2 + 1 / h[1] ** 2))
    n = max(1, math.ceil(s / limit))
    dt = s / n
    for _ in range(n):
        P = _pad(U)
        lap = (P[:, 1:-1, 2:] - 2 * U + P[:, 1:-1, :-2]) / h[0] ** 2 + (P[:, 2:, 1:-1] - 2 * U + P[:, :-2, 1:-1]) / h[
            1
        ] ** 2
        U = U + dt * eps * lap
    return U


@torch.no_grad()
def solve_transport(
    model: FlowModel,
    resolution: int = 128,
    scheme: str = "semi_lagrangian",
    *,
    extent: tuple[float, float, float, float] = (-2.5, 2.5, -2.5, 2.5),
    substeps: int | None = None,
    viscosity: float | None = None,
    time_steps: str = "flow",
    dtype: torch.dtype = torch.float32,
) -> GridSolution:
    """u(0, .) of the transport problem of a trained ``model`` on a resolution x resolution grid over
    ``extent`` = (x1 lo, x1 hi, x2 lo, x2 hi), solved backward from u(T, .) = f with a grid scheme.

    ``viscosity`` defaults to the model's eps; ``substeps``: RK4 steps per block for the departure points
    (default max(1, ceil(16 s_k / T))). ``time_steps``: ``flow`` follows the continuous field (the PDE's own
    solution, the limit of every discretisation); ``blocks`` (semi-Lagrangian only) takes the departure points from
    the network's own blocks, so that the only difference from F = f o Phi is the grid's interpolation (numerical
    diffusion), which vanishes at order 2 as the grid is refined. Lifted models (p > 0) are refused.
    """
    if scheme not in GRID_SCHEMES:
        raise ConfigError(f"unknown grid scheme {scheme!r}; valid: {', '.join(GRID_SCHEMES)}")
    if model.dim != 2:
        raise ConfigError(f"the grid solver works on the plane only (lift = 0); this model has lift = {model.dim - 2}")
    if not 8 <= int(resolution) <= MAX_RESOLUTION:
        raise ConfigError(f"resolution={resolution} is out of range: 8 <= resolution <= {MAX_RESOLUTION}")
    if time_steps not in ("flow", "blocks") or (time_steps == "blocks" and scheme != "semi_lagrangian"):
        raise ConfigError(f"time_steps={time_steps!r}: valid are 'flow', and 'blocks' with the semi_lagrangian scheme")
    if model.config.scheme == "plain":
        raise ConfigError("the plain (non-residual) net is not a flow: it has no transport equation")
    extent = check_extent(extent)
    check_finite_weights(model, "the grid solver")
    eps = float(model.config.viscosity if viscosity is None else viscosity)
    m = model.double_copy() if dtype == torch.float64 else model
    N = int(resolution)
    x1 = np.linspace(extent[0], extent[1], N)
    x2 = np.linspace(extent[2], extent[3], N)
    h = (float(x1[1] - x1[0]), float(x2[1] - x2[0]))
    X1, X2 = np.meshgrid(x1, x2)
    pts = torch.as_tensor(np.c_[X1.ravel(), X2.ravel()], dtype=dtype, device=m.device)
    U = torch.softmax(m.head(pts.to(m.P.dtype)), -1).to(dtype).T.reshape(-1, N, N)  # u(T, .) = f: (C, N, N)
    lo = (float(x1[0]), float(x2[0]))
    T = float(m.times[-1])
    n_sub = [substeps or max(1, math.ceil(16 * float(sk) / T)) for sk in m.steps]
    vfs = [block_velocity(m, k) for k in range(1, m.L + 1)]

    def follow(y: Tensor, k: int, t: float | None = None) -> Tensor:
        """u(t, y) = f(Phi_(t -> T)(y)) at points y (M, 2) outside the box, t in (t_(k-1), t_k] (t_k if None)."""
        y = y.to(m.P.dtype)
        if time_steps == "blocks":
            y = m.flow(y, k0=k)
        else:
            if t is not None and t < float(m.times[k]):
                frac = (float(m.times[k]) - t) / float(m.steps[k - 1])
                y = _rk4(vfs[k - 1], t, float(m.times[k]) - t, y, max(1, math.ceil(n_sub[k - 1] * frac)))
            for j in range(k + 1, m.L + 1):
                y = _rk4(vfs[j - 1], float(m.times[j - 1]), float(m.steps[j - 1]), y, n_sub[j - 1])
        return torch.softmax(m.head(y), -1).to(dtype).T

    ghost_pts: Tensor | None = None
    if scheme == "upwind":
        rows, cols = _ring(N)
        ghost_pts = torch.stack([lo[0] + (cols.to(dtype) - 1) * h[0], lo[1] + (rows.to(dtype) - 1) * h[1]], 1)
        ghost_pts = ghost_pts.to(m.device)
    for k in range(m.L, 0, -1):
        t0, s = float(m.times[k - 1]), float(m.steps[k - 1])
        v = vfs[k - 1]
        if scheme == "semi_lagrangian":
            if time_steps == "blocks":
                X = m.step_map(pts.to(m.P.dtype), k).to(dtype)
            else:
                X = _rk4(v, t0, s, pts, n_sub[k - 1])
            vals = _bilinear(U, X, lo, h)
            out = (X[:, 0] < x1[0]) | (X[:, 0] > x1[-1]) | (X[:, 1] < x2[0]) | (X[:, 1] > x2[-1])
            if bool(out.any()):
                vals[:, out] = follow(X[out], k)
            U = vals.reshape(-1, N, N)
        else:
            assert ghost_pts is not None  # set above for the upwind scheme

            def ghost(t: float, k: int = k, at: Tensor = ghost_pts) -> Tensor:
                return follow(at, k, t)

            U = _upwind_block(U, v, t0, s, pts, h, ghost)
        if eps > 0:
            U = _diffuse(U, eps, s, h)
    u = U.permute(1, 2, 0).cpu().numpy()
    return GridSolution(
        x1.astype(np.float32), x2.astype(np.float32), u.astype(np.float32), scheme, GRID_SCHEMES[scheme], eps
    )
