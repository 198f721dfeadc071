"""What the flow does to area: log |det D Phi_(0->k)| along characteristics, Jacobi's formula, pushed densities.

Discrete: log |det D Phi_(0->k)(x)| = sum_(j<=k) log |det D(block j)(x_(j-1))|, with D(block j) = I + s_j DV_j
for Euler. Continuous (Jacobi's formula): d/dt log det D Phi_(0->t)(x) = div v(t, x(t)), so along the exact
characteristic log det D Phi_(0->t)(x) = int_0^t div v ds, solved with torchdiffeq on the augmented state
(x, l), l' = div v (a fine fixed-grid rk4, far finer than the discretisations it is compared with).
The two agree as the steps shrink (Euler: at order 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import cast

import numpy as np
import torch

from ..core import linalg
from ..core.data import Dataset, square_box
from ..core.errors import ConfigError
from ..core.model import FlowModel
from ..core.points import DATA_LIMIT, check_extent, check_points
from ..core.timegrid import slot_of_time
from .analysis import frame_steps, plane_grid
from .instruments import flow_paths, step_jacobians

__all__ = [
    "VolumeData",
    "DENSITIES",
    "logdet_sum",
    "divergence_integral",
    "class_densities",
    "pushed_densities",
    "volume_data",
    "with_exact_density",
]

# how the density panel is made: name -> what its label says
DENSITIES = {"kde": "KDE of x_k", "exact": "exact push-forward ρ_0 / |det DΦ| along the characteristics"}


def logdet_sum(model: FlowModel, x: np.ndarray) -> np.ndarray:
    """sum_(j<=k) log |det D(block j)(x_(j-1))| for k = 0..L along the characteristics of x (m, 2): (L+1, m)."""
    xs = flow_paths(model, x)
    J = step_jacobians(model, xs).double()
    ld = linalg.logabsdet(J).cpu().numpy()  # (L, m): log |det|, NaN where the path is not finite
    return np.concatenate([np.zeros((1, ld.shape[1])), np.cumsum(ld, 0)])


def _divergence(m: FlowModel, t: float, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """v(t, z) and div v(t, z) at points z (m, d). The paper's field (eq. 2) in closed form:
    div [W2 a(W1 z + b1) + b2] = sum_j a'(h_j) (W1)_j . (W2)^j; any other field by autograd (d passes)."""
    if m.config.field == "two_layer":
        row = torch.as_tensor(
            slot_of_time(m.config.time_mode, t, m.times, m.config.knots), dtype=z.dtype, device=z.device
        )
        W1, b1, W2, b2 = (torch.tensordot(row, p, dims=1) for p in m.field.slot_params())
        h = torch.addmm(b1, z, W1.T)
        a = m.field.act.fn(h)
        return torch.addmm(b2, a, W2.T), m.field.act.grad(h, a) @ (W1 * W2.T).sum(1)
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        v = m.vector_field(t, z)
        d = z.shape[1]
        div = cast(
            torch.Tensor, sum(torch.autograd.grad(v[:, i].sum(), z, retain_graph=i < d - 1)[0][:, i] for i in range(d))
        )
    return v.detach(), div.detach()


def divergence_integral(model: FlowModel, x: np.ndarray, *, per_unit: int = 64, min_sub: int = 2) -> np.ndarray:
    """int_0^(t_k) div v(t, x(t)) dt along the continuous characteristics of x (m, 2), k = 0..L: (L+1, m).

    torchdiffeq's fixed-grid rk4 on the augmented state (x, l), l' = div v (Jacobi's formula), in float64,
    on a grid that refines every block into max(min_sub, ceil(per_unit s_k / T)) steps and is evaluated
    just inside each block (per-step weights jump at the t_k)."""
    from torchdiffeq import odeint

    m = model.double_copy()
    d = m.dim
    T = float(m.times[-1])
    sub = [
        np.linspace(a, b, max(min_sub, int(np.ceil(per_unit * (b - a) / T))) + 1)[:-1]
        for a, b in zip(m.times[:-1], m.times[1:])
    ]
    grid = torch.as_tensor(np.concatenate(sub + [m.times[-1:]]), device=m.device)

    def rhs(t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        v, div = _divergence(m, float(t), s[:, :d])
        return torch.cat([v, div[:, None]], 1)

    z0 = m.lift(torch.as_tensor(check_points(x, limit=DATA_LIMIT, what="point"), device=m.device))
    s0 = torch.cat([z0, z0.new_zeros(len(z0), 1)], 1)
    with torch.no_grad():
        out = odeint(
            rhs,
            s0,
            torch.as_tensor(m.times, device=m.device),
            method="rk4",
            options=dict(grid_constructor=lambda f, y0, t: grid, perturb=True),
        )
    integral: np.ndarray = out[..., -1].cpu().numpy()
    return integral


def _bandwidth(q: np.ndarray) -> np.ndarray:
    bw: np.ndarray = np.maximum(q.std(0), 1e-3) * len(q) ** (-1 / 6)  # Scott's rule in 2-D
    return bw


def _kde_at(q: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """The Gaussian KDE (Scott's bandwidth) of points q (n, 2) at points pts (M, 2): (M,)."""
    bw = _bandwidth(q)
    z = (pts[:, None, :] - q[None, :, :]) / bw
    kde: np.ndarray = np.exp(-0.5 * (z**2).sum(-1)).mean(1) / (2 * np.pi * bw.prod())
    return kde


def pushed_densities(
    model: FlowModel,
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    ks: Sequence[int] | np.ndarray,
    box: Sequence[float] | np.ndarray,
    *,
    res: int = 50,
    src_res: int = 90,
) -> np.ndarray:
    """The classes' densities pushed forward exactly: rho_k(x_k) = rho_0(x_0) / |det D Phi_(0->k)(x_0)| along
    the characteristics of a src_res x src_res grid of starting points x_0, rho_0 the KDE of each class's points
    x (m, 2) at k = 0 (as :func:`class_densities`); then read on a res x res grid over ``box`` (4,) by linear
    interpolation between the carried points (0 outside their hull). Plane only (p = 0): pushed into R^(2+p), a
    planar density lives on a surface. Where a step folds (det < 0) the sheets over a point are not summed.
    Returns (K, C, res, res) (rows x2, columns x1).
    """
    from scipy.interpolate import griddata

    if model.dim != 2:
        raise ConfigError(
            "the exact push-forward density is a planar one: this run is lifted (p > 0), so its "
            "points live on a surface of R^(2+p); use the KDE"
        )
    x = np.asarray(x, np.float64)
    pad = 3 * max(float(_bandwidth(x[y == c]).max()) for c in range(n_classes) if (y == c).sum() >= 2)
    lo, hi = x.min(0) - pad, x.max(0) + pad
    a1, a2 = np.linspace(lo[0], hi[0], src_res), np.linspace(lo[1], hi[1], src_res)
    src = np.stack(np.meshgrid(a1, a2), -1).reshape(-1, 2)
    xs = flow_paths(model, src).cpu().numpy().astype(np.float64)[..., :2]
    ld = logdet_sum(model, src)
    g1, g2 = np.linspace(box[0], box[1], res), np.linspace(box[2], box[3], res)
    G1, G2 = np.meshgrid(g1, g2)
    rho0 = np.stack(
        [_kde_at(x[y == c], src) if (y == c).sum() >= 2 else np.zeros(len(src)) for c in range(n_classes)], 1
    )  # (G, C)
    out = [
        griddata(xs[k], rho0 / np.exp(ld[k])[:, None], (G1, G2), method="linear", fill_value=0.0) for k in ks
    ]  # one triangulation per step for all classes: (res, res, C) each
    return np.asarray(out, np.float32).transpose(0, 3, 1, 2)


def class_densities(
    xs: np.ndarray, y: np.ndarray, n_classes: int, ks: Sequence[int] | np.ndarray, *, res: int = 50
) -> tuple[np.ndarray, np.ndarray]:
    """A Gaussian KDE (Scott's bandwidth) of each class's points x_k (first two coordinates) at the steps ks.

    xs (L+1, m, d), y (m,). Returns the box (4,) around all the x_k shown and the densities (K, C, res, res)
    (rows x2, columns x1) on one res x res grid over it, each class's density integrating to 1 over the plane.
    """
    box = square_box(xs[list(ks), :, :2].reshape(-1, 2), 0.25)
    g1 = np.linspace(box[0], box[1], res)
    g2 = np.linspace(box[2], box[3], res)
    dens = np.zeros((len(ks), n_classes, res, res))
    for i, k in enumerate(ks):
        for c in range(n_classes):
            q = xs[k, y == c, :2].astype(np.float64)
            if len(q) < 2:
                continue
            bw = _bandwidth(q)
            # the Gaussian kernel is separable: density = E2 @ E1^T / n (rows x2, columns x1)
            e1 = np.exp(-0.5 * ((g1[:, None] - q[None, :, 0]) / bw[0]) ** 2)
            e2 = np.exp(-0.5 * ((g2[:, None] - q[None, :, 1]) / bw[1]) ** 2)
            dens[i, c] = e2 @ e1.T / (len(q) * 2 * np.pi * bw.prod())
    return np.asarray(box, np.float32), np.asarray(dens, np.float32)


@dataclass(frozen=True)
class VolumeData:
    """logdet, integral (K, res, res): the discrete sum and the divergence integral at steps ks (K,) over the
    input grid x1, x2; Ls, diff: mean |sum - integral| at T for the discretisations L' (the run's own L for
    per-step weights); box (4,) and density (K, C, r, r): the classes pushed forward to step k, made as
    ``density_kind`` says (a key of ``DENSITIES``: a KDE of the points x_k, or the exact push-forward)."""

    ks: np.ndarray
    t: np.ndarray
    x1: np.ndarray
    x2: np.ndarray
    logdet: np.ndarray
    integral: np.ndarray
    Ls: np.ndarray
    diff: np.ndarray
    box: np.ndarray
    density: np.ndarray
    density_kind: str = "kde"


def volume_data(
    model: FlowModel,
    data: Dataset,
    *,
    extent: Sequence[float] | None = None,
    res: int = 30,
    max_frames: int = 17,
    max_points: int = 300,
    seed: int = 0,
    density: str = "kde",
) -> VolumeData:
    """The volume view of a model and its data (extent: the input box, the data's by default); ``density``:
    "kde" (a KDE of the points x_k) or "exact" (:func:`pushed_densities`)."""
    if density not in DENSITIES:
        raise ConfigError(f"unknown density {density!r}; valid: {', '.join(DENSITIES)}")
    if density == "exact" and model.dim != 2:
        raise ConfigError("the exact push-forward density is a planar one: this run is lifted (p > 0); use the KDE")
    box = check_extent(data.extent() if extent is None else extent)
    x1, x2, pts = plane_grid(box, res)
    ks = frame_steps(model.L, max_frames)
    disc = logdet_sum(model, pts)
    cont = divergence_integral(model, pts)
    if model.config.time_mode == "per_step" or model.config.scheme == "plain":
        Ls, diff = np.array([model.L]), np.array([np.abs(disc[-1] - cont[-1]).mean()])
    else:
        Ls = np.array(sorted({2, 4, 8, 16, 32, 64, model.L}))
        diff = np.array(
            [
                np.abs((disc if L == model.L else logdet_sum(model.with_steps(int(L)), pts))[-1] - cont[-1]).mean()
                for L in Ls
            ]
        )
    x, y = _shown(data, max_points, seed)
    dbox, dens = class_densities(flow_paths(model, x).cpu().numpy(), y, data.n_classes, ks)
    shape = (len(ks), res, res)
    vd = VolumeData(
        ks,
        model.times[ks].astype(np.float32),
        x1,
        x2,
        disc[ks].reshape(shape).astype(np.float32),
        cont[ks].reshape(shape).astype(np.float32),
        Ls,
        diff,
        dbox,
        dens,
    )
    return with_exact_density(vd, model, data, max_points=max_points, seed=seed) if density == "exact" else vd


def _shown(data: Dataset, max_points: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The (seeded subsample of the) points whose densities the panel shows."""
    x, y = data.x, data.y
    if len(x) > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(len(x), max_points, replace=False))
        x, y = x[idx], y[idx]
    return x, y


def with_exact_density(
    vd: VolumeData, model: FlowModel, data: Dataset, *, max_points: int = 300, seed: int = 0
) -> VolumeData:
    """The same volume data with the exact push-forward (:func:`pushed_densities`) as its density panel."""
    if model.dim != 2:
        raise ConfigError("the exact push-forward density is a planar one: this run is lifted (p > 0); use the KDE")
    x, y = _shown(data, max_points, seed)
    dens = pushed_densities(model, x, y, data.n_classes, vd.ks, vd.box, res=vd.density.shape[-1])
    return replace(vd, density=dens, density_kind="exact")
