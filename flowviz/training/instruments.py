"""The instruments' mathematics on one characteristic and per block: probe, stability, adjoint.

Plain numpy result objects (no plotly). Notation: block k maps x_(k-1) to x_k; for Euler (paper, eq. 10)
x_k = x_(k-1) + s_k V_k(x_(k-1)), whose Jacobian is I + s_k DV_k(x_(k-1)).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..core import linalg
from ..core.errors import ConfigError
from ..core.model import FlowModel
from ..core.points import DATA_LIMIT, check_extent, check_points
from ..core.solvers import TooStiff
from ..core.transport import GridSolution, block_velocity

__all__ = [
    "ProbeData",
    "StabilityData",
    "AdjointData",
    "STABILITY_POLYNOMIALS",
    "amplification",
    "jacobian",
    "flow_paths",
    "velocity_jacobians",
    "step_jacobians",
    "probe_data",
    "stability_data",
    "adjoint_data",
    "adjoint_recursion",
    "continuous_adjoint",
    "TransportComparison",
    "transport_comparison",
]

# R(z) of each scheme on y' = lambda y, z = s lambda: coefficients of 1, z, z^2, ... Every explicit s-stage RK
# method of order s <= 4 has the Taylor polynomial of e^z (Kutta's 3/8 rule included).
STABILITY_POLYNOMIALS = {
    "euler": (1.0, 1.0),
    "midpoint": (1.0, 1.0, 0.5),
    "rk4": (1.0, 1.0, 0.5, 1 / 6, 1 / 24),
}


def amplification(z: object, scheme: str) -> np.ndarray:
    """|R(z)| for complex z (any shape): the scheme is absolutely stable at z where this is <= 1."""
    if scheme not in STABILITY_POLYNOMIALS:
        raise ConfigError(f"no stability region for scheme {scheme!r}; valid: {', '.join(STABILITY_POLYNOMIALS)}")
    z = np.asarray(z, dtype=np.complex128)
    R: np.ndarray = np.abs(np.polynomial.polynomial.polyval(z, STABILITY_POLYNOMIALS[scheme]))
    return R


def jacobian(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """D fn at each point: fn maps (m, d) -> (m, d) row by row; returns (m, d, d), J[:, i, j] = d fn_i / d x_j."""
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        y = fn(x)
        rows = [torch.autograd.grad(y[:, i].sum(), x, retain_graph=i < y.shape[1] - 1)[0] for i in range(y.shape[1])]
    return torch.stack(rows, 1).detach()


def _at_step(fn: Callable[[Tensor, int], Tensor], k: int) -> Callable[[Tensor], Tensor]:
    """z -> fn(z, k)."""
    return lambda z: fn(z, k)


def velocity_jacobians(model: FlowModel, xs: Tensor) -> Tensor:
    """s_k DV_k(x_(k-1)) for points xs (L+1, m, d) (row k-1 of xs is the input of block k): (L, m, d, d)."""
    return torch.stack(
        [float(model.steps[k - 1]) * jacobian(_at_step(model.velocity, k), xs[k - 1]) for k in range(1, model.L + 1)]
    )


def step_jacobians(model: FlowModel, xs: Tensor) -> Tensor:
    """D(block k)(x_(k-1)) for points xs (L+1, m, d): (L, m, d, d); = I + s_k DV_k for Euler."""
    return torch.stack([jacobian(_at_step(model.step_map, k), xs[k - 1]) for k in range(1, model.L + 1)])


def flow_paths(model: FlowModel, x: np.ndarray) -> Tensor:
    """The deterministic characteristics (L+1, m, d) of points x (m, 2) (no noise: the flow's own paths);
    ConfigError unless x is finite and within a dataset's bounds (core.points.check_points)."""
    x = check_points(x, limit=DATA_LIMIT, what="point")
    with torch.no_grad():
        z = model.lift(torch.as_tensor(x.astype(np.float32), device=model.device))
        return model.flow(z, record=True)


@dataclass(frozen=True)
class ProbeData:
    """Everything along the characteristic of one start point x0 (2,).

    xs (L+1, d): x_0 .. x_L; u (L+1, C): u(t_k, x_k) (constant for eps = 0); f (L+1, C): the read-out f(x_k);
    ratio (L,): |x_k - x_(k-1)| / |x_(k-1)| (= |s_k V_k| / |x| for Euler); eig (L, d) complex: eigenvalues of
    block k's Jacobian at x_(k-1) (I + s_k DV_k for Euler); det (L,): det D(block k)(x_(k-1)), < 0 where block
    k folds at this point; extra (L+1, p): the lifted coordinates.
    """

    x0: np.ndarray
    t: np.ndarray
    xs: np.ndarray
    u: np.ndarray
    f: np.ndarray
    ratio: np.ndarray
    eig: np.ndarray
    extra: np.ndarray
    det: np.ndarray


def probe_data(model: FlowModel, x0: object) -> ProbeData:
    """The probe at start point x0 = (x1, x2); ConfigError unless finite and within [-1e3, 1e3] (``probe=``'s
    rule, core.points.check_points). Where the characteristic leaves the floats, eig and det are NaN."""
    start = check_points(x0).reshape(1, 2).astype(np.float32)
    xs = flow_paths(model, start)  # (L+1, 1, d)
    u = np.stack([model.transported(xs[k].cpu().numpy(), k)[0] for k in range(model.L + 1)])
    with torch.no_grad():
        f = torch.softmax(model.head(xs[:, 0]), -1).cpu().numpy()
    steps = (xs[1:, 0] - xs[:-1, 0]).norm(dim=-1)
    ratio = (steps / xs[:-1, 0].norm(dim=-1).clamp_min(1e-6)).cpu().numpy()
    J = step_jacobians(model, xs)[:, 0].double()  # (L, d, d)
    eig = linalg.eigvals(J).cpu().numpy()
    x = xs[:, 0].cpu().numpy()
    return ProbeData(
        start[0],
        model.times.astype(np.float32),
        x,
        u.astype(np.float32),
        f.astype(np.float32),
        ratio.astype(np.float32),
        eig,
        x[:, 2:],
        linalg.det(J).cpu().numpy(),
    )


@dataclass(frozen=True)
class StabilityData:
    """Per block k the spectrum z = s_k lambda of s_k DV_k at the points x_(k-1), against the scheme's region.

    z (L, m, d) complex; outside (L,): fraction of the m*d eigenvalues with |R(z)| > 1; max_abs (L,): largest
    |s_k lambda|; det (L, m): det D(step k)(x_(k-1)), the Jacobian of the scheme's own step (autograd in
    float64), < 0 exactly where step k folds (= det(I + s_k DV_k) for Euler); fold_eig (L, m): the number of
    real eigenvalues of s_k DV_k below -1 (for Euler det < 0 exactly where it is odd: det = prod (1 + z_i);
    for midpoint and rk4 the step's Jacobian is not I + s_k DV_k and only ``det`` decides a fold).
    """

    scheme: str
    z: np.ndarray
    outside: np.ndarray
    max_abs: np.ndarray
    det: np.ndarray
    fold_eig: np.ndarray
    y: np.ndarray


def stability_data(
    model: FlowModel, x: np.ndarray, y: np.ndarray | None = None, *, max_points: int = 200, seed: int = 0
) -> StabilityData:
    """The spectra of s_k DV_k along the characteristics of (a seeded subsample of) points x (n, 2)."""
    scheme = model.config.scheme
    if scheme not in STABILITY_POLYNOMIALS:
        raise ConfigError("the plain (non-residual) net is no time stepper: it has no stability region")
    x = check_points(x, limit=DATA_LIMIT, what="point")
    idx = np.arange(len(x))
    if len(x) > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(len(x), max_points, replace=False))
    xs = flow_paths(model, x[idx])
    M = velocity_jacobians(model, xs).double()  # (L, m, d, d)
    z = linalg.eigvals(M).cpu().numpy()
    det = linalg.det(step_jacobians(model.double_copy(), xs.double())).cpu().numpy()
    real = np.abs(z.imag) <= 1e-9 * np.maximum(1, np.abs(z.real))
    fold = ((z.real < -1) & real).sum(-1)
    out = (amplification(z, scheme) > 1 + 1e-12).reshape(model.L, -1).mean(1)
    yy = np.zeros(len(idx), int) if y is None else np.asarray(y)[idx]
    return StabilityData(scheme, z, out, np.abs(z).reshape(model.L, -1).max(1), det, fold, yy)


@dataclass(frozen=True)
class AdjointData:
    """p_k = dl/dx_k (the gradient of the mean cross-entropy l w.r.t. the points at step k) at x_k.

    xs, p (L+1, m, d); norm (L+1,): mean |p_k|; loss: l; y (m,). continuous: (L's, |p_0(L) - p_0|) against
    torchdiffeq's odeint_adjoint on the same field (mean over the points), or None.
    """

    t: np.ndarray
    xs: np.ndarray
    p: np.ndarray
    norm: np.ndarray
    loss: float
    y: np.ndarray
    continuous: tuple[np.ndarray, np.ndarray] | None = None  # (L', |p_0(L') - p_0|)
    stiff: str | None = None  # why ``continuous`` is missing: the flow is too stiff for odeint_adjoint's budget


def adjoint_recursion(model: FlowModel, xs: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """p_L = dl/dx_L from the head, then p_(k-1) = D(block k)(x_(k-1))^T p_k (= (I + s_k DV_k)^T p_k for
    Euler): the discretised adjoint equation p' = -Dv^T p run from T back to 0. Returns (p (L+1, m, d), l)."""
    xL = xs[-1].detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model.head(xL), y)
        pL = torch.autograd.grad(loss, xL)[0]
    J = step_jacobians(model, xs)  # (L, m, d, d)
    ps = [pL]
    for k in range(model.L, 0, -1):
        ps.append(torch.einsum("mij,mi->mj", J[k - 1], ps[-1]))
    return torch.stack(ps[::-1]), loss.detach()


def continuous_adjoint(
    model: FlowModel, x0: np.ndarray, y: np.ndarray, *, rtol: float = 1e-6, atol: float = 1e-8
) -> np.ndarray:
    """p_0 = dl/dx_0 through the continuous flow x' = v(t, x), by torchdiffeq's odeint_adjoint (float64)."""
    linalg.check_finite_weights(model, "the continuous adjoint")
    from torchdiffeq import odeint_adjoint

    from ..core.solvers import adaptive

    m = model.double_copy()
    vf = [block_velocity(m, k) for k in range(1, m.L + 1)]

    class Field(torch.nn.Module):
        def forward(self, t: Tensor, x: Tensor) -> Tensor:
            k = int(np.clip(np.searchsorted(m.times[1:], float(t.detach()), side="left"), 0, m.L - 1))
            return vf[k](float(t.detach()), x)

    jumps: np.ndarray | list[float] = m.times[1:-1] if m.config.time_mode == "per_step" else []
    dev = m.device
    opts = {"jump_t": torch.as_tensor(np.asarray(jumps, np.float64), device=dev)} if len(jumps) else {}
    z0 = m.lift(torch.as_tensor(check_points(x0, limit=DATA_LIMIT, what="point"), device=dev)).requires_grad_(True)
    t = torch.as_tensor([0.0, float(m.times[-1])], dtype=torch.float64, device=dev)
    with torch.enable_grad():
        zT = adaptive(
            lambda f, o: odeint_adjoint(
                f, z0, t, rtol=rtol, atol=atol, method="dopri5", options=o, adjoint_options=dict(o), adjoint_params=()
            ),
            Field(),
            opts,
        )[-1]
        loss = F.cross_entropy(m.head(zT), torch.as_tensor(np.asarray(y), dtype=torch.long, device=dev))
        return torch.autograd.grad(loss, z0)[0].cpu().numpy()


def adjoint_data(
    model: FlowModel,
    x: np.ndarray,
    y: np.ndarray,
    *,
    max_points: int = 150,
    seed: int = 0,
    with_continuous: bool = False,
) -> AdjointData:
    """p_k at the characteristics of a seeded subsample of the points; with ``with_continuous`` also
    |p_0(L') - p_0| against the continuous adjoint for L' = L (per-step weights) or L, 2L, .. <= 256."""
    x = check_points(x, limit=DATA_LIMIT, what="point")
    idx = np.arange(len(x))
    if len(x) > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(len(x), max_points, replace=False))
    xi, yi = np.asarray(x, np.float32)[idx], np.asarray(y)[idx]
    xs = flow_paths(model, xi)
    yt = torch.as_tensor(yi, dtype=torch.long, device=model.device)
    p, loss = adjoint_recursion(model, xs, yt)
    cont, stiff = None, None
    try:  # under the step budget of flowviz.core.solvers.solve_limits; a path that left the floats has no reference
        ref = (
            continuous_adjoint(model, xi, yi)
            if with_continuous and model.config.scheme != "plain" and bool(torch.isfinite(xs).all())
            else None
        )
    except TooStiff as e:
        ref, stiff = None, f"{e}: the discrete adjoint p_k is drawn without the continuous comparison."
    if ref is not None:
        Ls = (
            [model.L]
            if model.config.time_mode == "per_step"
            else [model.L * 2**i for i in range(4) if model.L * 2**i <= 256]
        )
        errs = []
        for L in Ls:
            mm = model if L == model.L else model.rediscretised(n_steps=int(L))
            pp, _ = adjoint_recursion(mm, flow_paths(mm, xi), yt)
            errs.append(float(np.linalg.norm(pp[0].cpu().numpy() - ref, axis=-1).mean()))
        cont = (np.asarray(Ls), np.asarray(errs))
    pn = p.cpu().numpy()
    return AdjointData(
        model.times.astype(np.float32),
        xs.cpu().numpy(),
        pn,
        np.linalg.norm(pn, axis=-1).mean(1),
        float(loss),
        yi,
        cont,
        stiff,
    )


@dataclass(frozen=True)
class TransportComparison:
    """u(0, .) of the grid solver at resolutions res (R,) against F from the characteristics on the finest grid.

    grid (res, res, C): the finest grid solution; F (res, res, C); x1, x2 (res,); err (R,): mean |u_grid - F|
    of P(class) over the box at each resolution (numerical diffusion shrinking as h -> 0)."""

    scheme: str
    res: np.ndarray
    err: np.ndarray
    x1: np.ndarray
    x2: np.ndarray
    grid: np.ndarray
    F: np.ndarray
    viscosity: float

    @property
    def orders(self) -> np.ndarray:
        """The measured order between successive resolutions: log(err_i / err_(i+1)) / log(res_(i+1) / res_i)."""
        orders: np.ndarray = np.log(self.err[:-1] / self.err[1:]) / np.log(self.res[1:] / self.res[:-1])
        return orders


def transport_comparison(
    model: FlowModel,
    extent: Sequence[float],
    *,
    resolutions: Sequence[int] = (32, 64, 128),
    scheme: str = "semi_lagrangian",
) -> TransportComparison:
    """The grid solver (flowviz.solve_transport) at several resolutions against F = f o Phi on each grid
    (semi-Lagrangian with the network's own blocks as its time steps: the difference is the grid's alone)."""
    from ..core.transport import solve_transport

    box = check_extent(extent)
    errs: list[float] = []
    sol: GridSolution | None = None
    F_: np.ndarray | None = None
    for N in resolutions:
        sol = solve_transport(
            model,
            resolution=int(N),
            scheme=scheme,
            extent=box,
            time_steps="blocks" if scheme == "semi_lagrangian" else "flow",
        )
        X1, X2 = np.meshgrid(sol.x1, sol.x2)
        F_ = model.predict_proba(np.c_[X1.ravel(), X2.ravel()]).reshape(sol.u.shape)
        errs.append(float(np.abs(sol.u - F_).mean()))
    assert sol is not None and F_ is not None  # at least one resolution
    return TransportComparison(
        scheme, np.asarray(resolutions), np.asarray(errs), sol.x1, sol.x2, sol.u, F_.astype(np.float32), sol.viscosity
    )
