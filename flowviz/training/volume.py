"""What the flow does to area: log |det D Phi_(0->k)| along characteristics, Jacobi's formula, pushed densities.

Discrete: log |det D Phi_(0->k)(x)| = sum_(j<=k) log |det D(block j)(x_(j-1))|, with D(block j) = I + s_j DV_j
for Euler. Continuous (Jacobi's formula): d/dt log det D Phi_(0->t)(x) = div v(t, x(t)), so along the exact
characteristic log det D Phi_(0->t)(x) = int_0^t div v ds, solved with torchdiffeq on the augmented state
(x, l), l' = div v (a fine fixed-grid rk4, far finer than the discretisations it is compared with).
The two agree as the steps shrink (Euler: at order 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..core import linalg
from ..core.data import square_box
from ..core.model import FlowModel
from ..core.points import DATA_LIMIT, check_extent, check_points
from ..core.timegrid import slot_of_time
from .analysis import frame_steps, plane_grid
from .instruments import flow_paths, step_jacobians

__all__ = ["VolumeData", "logdet_sum", "divergence_integral", "class_densities", "volume_data"]


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
        row = torch.as_tensor(slot_of_time(m.config.time_mode, t, m.times, m.config.knots), dtype=z.dtype)
        W1, b1, W2, b2 = (torch.tensordot(row, p, dims=1) for p in m.field.slot_params())
        h = torch.addmm(b1, z, W1.T)
        a = m.field.act.fn(h)
        return torch.addmm(b2, a, W2.T), m.field.act.grad(h, a) @ (W1 * W2.T).sum(1)
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        v = m.vector_field(t, z)
        d = z.shape[1]
        div = sum(torch.autograd.grad(v[:, i].sum(), z, retain_graph=i < d - 1)[0][:, i] for i in range(d))
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
    sub = [np.linspace(a, b, max(min_sub, int(np.ceil(per_unit * (b - a) / T))) + 1)[:-1]
           for a, b in zip(m.times[:-1], m.times[1:])]
    grid = torch.as_tensor(np.concatenate(sub + [m.times[-1:]]))

    def rhs(t, s):
        v, div = _divergence(m, float(t), s[:, :d])
        return torch.cat([v, div[:, None]], 1)

    z0 = m.lift(torch.as_tensor(check_points(x, limit=DATA_LIMIT, what="point")))
    s0 = torch.cat([z0, z0.new_zeros(len(z0), 1)], 1)
    with torch.no_grad():
        out = odeint(rhs, s0, torch.as_tensor(m.times), method="rk4",
                     options=dict(grid_constructor=lambda f, y0, t: grid, perturb=True))
    return out[..., -1].numpy()


def class_densities(xs: np.ndarray, y: np.ndarray, n_classes: int, ks, *, res: int = 50):
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
            bw = np.maximum(q.std(0), 1e-3) * len(q) ** (-1 / 6)  # Scott's rule in 2-D
            # the Gaussian kernel is separable: density = E2 @ E1^T / n (rows x2, columns x1)
            e1 = np.exp(-0.5 * ((g1[:, None] - q[None, :, 0]) / bw[0]) ** 2)
            e2 = np.exp(-0.5 * ((g2[:, None] - q[None, :, 1]) / bw[1]) ** 2)
            dens[i, c] = e2 @ e1.T / (len(q) * 2 * np.pi * bw.prod())
    return np.asarray(box, np.float32), np.asarray(dens, np.float32)


@dataclass(frozen=True)
class VolumeData:
    """logdet, integral (K, res, res): the discrete sum and the divergence integral at steps ks (K,) over the
    input grid x1, x2; Ls, diff: mean |sum - integral| at T for the discretisations L' (the run's own L for
    per-step weights); box (4,) and density (K, C, r, r): the classes pushed forward to step k."""

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


def volume_data(model: FlowModel, data, *, extent=None, res: int = 30, max_frames: int = 17,
                max_points: int = 300, seed: int = 0) -> VolumeData:
    """The volume view of a model and its data (extent: the input box, the data's by default)."""
    extent = check_extent(data.extent() if extent is None else extent)
    x1, x2, pts = plane_grid(extent, res)
    ks = frame_steps(model.L, max_frames)
    disc = logdet_sum(model, pts)
    cont = divergence_integral(model, pts)
    if model.config.time_mode == "per_step" or model.config.scheme == "plain":
        Ls, diff = np.array([model.L]), np.array([np.abs(disc[-1] - cont[-1]).mean()])
    else:
        Ls = np.array(sorted({2, 4, 8, 16, 32, 64, model.L}))
        diff = np.array([np.abs((disc if L == model.L else logdet_sum(model.with_steps(int(L)), pts))[-1]
                                - cont[-1]).mean() for L in Ls])
    x, y = data.x, data.y
    if len(x) > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(len(x), max_points, replace=False))
        x, y = x[idx], y[idx]
    box, dens = class_densities(flow_paths(model, x).cpu().numpy(), y, data.n_classes, ks)
    shape = (len(ks), res, res)
    return VolumeData(ks, model.times[ks].astype(np.float32), x1, x2, disc[ks].reshape(shape).astype(np.float32),
                      cont[ks].reshape(shape).astype(np.float32), Ls, diff, box, dens)
