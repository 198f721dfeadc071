"""Time steppers (a table of explicit Runge-Kutta tableaux) and the reference ODE solution.

A stepper advances x_(k-1) to x_k over s_k = t_k - t_(k-1):

    K_i = v(t_(k-1) + c_i s_k, x_(k-1) + s_k sum_j a_ij K_j),   x_k = x_(k-1) + s_k sum_i b_i K_i.

``euler`` is the paper's rule (eq. 10): one stage at c = 1, i.e.
x_k = x_(k-1) + s_k V_k(x_(k-1)) with V_k = v(t_k, .). ``midpoint`` is the
explicit midpoint rule (order 2) and ``rk4`` is Kutta's 3/8 rule (order 4),
the variant torchdiffeq's ``rk4`` uses, so both agree step for step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.utils.checkpoint
from torch import Tensor

__all__ = ["Tableau", "STEPPERS", "integrate", "reference_solution", "REFERENCE_RTOL", "REFERENCE_ATOL", "TIGHT_RTOL",
           "TIGHT_ATOL"]


@dataclass(frozen=True)
class Tableau:
    """Butcher tableau of an explicit Runge-Kutta method (a is lower triangular, rows of growing length)."""

    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    order: int

    @property
    def stages(self) -> int:
        return len(self.c)


STEPPERS: dict[str, Tableau] = {
    "euler": Tableau(c=(1.0,), a=((),), b=(1.0,), order=1),
    "midpoint": Tableau(c=(0.0, 0.5), a=((), (0.5,)), b=(0.0, 1.0), order=2),
    "rk4": Tableau(c=(0.0, 1 / 3, 2 / 3, 1.0), a=((), (1 / 3,), (-1 / 3, 1.0), (1.0, -1.0, 1.0)),
                   b=(1 / 8, 3 / 8, 3 / 8, 1 / 8), order=4),
}

# f(k, i, t, x): the velocity of stage i of step k (0-based) at time t, points x (n, d) -> (n, d)
StageField = Callable[[int, int, float, Tensor], Tensor]
# noise(k, s_k, x) -> increment to add after step k (stochastic characteristics), or None
Noise = Optional[Callable[[int, float, Tensor], Tensor]]  # noqa: UP045


def integrate(f: StageField, x0: Tensor, times, tab: Tableau, *, record: bool = False,
              noise: Noise = None, checkpoint: bool = False) -> Tensor:
    """Solve x' = v(t, x) on the partition ``times`` (length L+1) from x0 (n, d).

    Returns x_L (n, d), or with ``record`` the whole trajectory (L+1, n, d).
    ``checkpoint``: keep only x_k for the backward and recompute each step's stages there
    (memory O(L n d) instead of O(L S n width); the noise is drawn outside, so it is not redrawn).
    """
    times = [float(t) for t in times]
    x = x0
    xs = [x0] if record else None

    def step(k: int, x: Tensor) -> Tensor:
        t0, s = times[k], times[k + 1] - times[k]
        ks: list[Tensor] = []
        for i, c in enumerate(tab.c):
            xi = x
            for aij, kj in zip(tab.a[i], ks):
                if aij != 0.0:
                    xi = xi + (s * aij) * kj
            ks.append(f(k, i, t0 + c * s, xi))
        incr = None
        for bi, ki in zip(tab.b, ks):
            if bi != 0.0:
                incr = ki * (s * bi) if incr is None else incr + ki * (s * bi)
        return x + incr

    recompute = checkpoint and torch.is_grad_enabled()
    for k in range(len(times) - 1):
        s = times[k + 1] - times[k]
        x = torch.utils.checkpoint.checkpoint(step, k, x, use_reentrant=False) if recompute else step(k, x)
        if noise is not None:
            x = x + noise(k, s, x)
        if record:
            xs.append(x)
    return torch.stack(xs) if record else x


# Tolerances of the reference: the views' default, and the tight one of the convergence study (its errors go
# down to ~1e-10; at rtol 1e-8 the reference itself is off by ~6e-9 and rk4 curves flatten there).
REFERENCE_RTOL, REFERENCE_ATOL = 1e-8, 1e-10
TIGHT_RTOL = TIGHT_ATOL = 1e-11


def reference_solution(v: Callable[[float, Tensor], Tensor], x0: Tensor, times, *, jumps=None,
                       rtol: float = REFERENCE_RTOL, atol: float = REFERENCE_ATOL) -> Tensor:
    """The continuous solution x(t_k) of x' = v(t, x) by torchdiffeq's adaptive dopri5, in float64.

    ``jumps``: times where v jumps or kinks in t (per-step weights, knots), which the solver must not step across.
    Returns shape (L+1, n, d).
    """
    from torchdiffeq import odeint

    t = torch.as_tensor(np.asarray(times, dtype=np.float64))
    opts = {"jump_t": torch.as_tensor(np.asarray(jumps, dtype=np.float64))} if jumps is not None and len(jumps) else {}
    with torch.no_grad():
        return odeint(lambda tt, x: v(float(tt), x), x0.double(), t, rtol=rtol, atol=atol,
                      method="dopri5", options=opts)
