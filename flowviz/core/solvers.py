"""Time steppers (a table of explicit Runge-Kutta tableaux) and the reference ODE solution.

A stepper advances x_(k-1) to x_k over s_k = t_k - t_(k-1):

    K_i = v(t_(k-1) + c_i s_k, x_(k-1) + s_k sum_j a_ij K_j),   x_k = x_(k-1) + s_k sum_i b_i K_i.

``euler`` is the paper's rule (eq. 10): one stage at c = 1, i.e.
x_k = x_(k-1) + s_k V_k(x_(k-1)) with V_k = v(t_k, .). ``midpoint`` is the
explicit midpoint rule (order 2) and ``rk4`` is Kutta's 3/8 rule (order 4),
the variant torchdiffeq's ``rk4`` uses, so both agree step for step.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Optional, Protocol

import numpy as np
import torch
import torch.utils.checkpoint
from torch import Tensor

from .errors import FlowvizError

__all__ = [
    "Tableau",
    "STEPPERS",
    "integrate",
    "reference_solution",
    "REFERENCE_RTOL",
    "REFERENCE_ATOL",
    "TIGHT_RTOL",
    "TIGHT_ATOL",
    "TooStiff",
    "Cancelled",
    "solve_limits",
    "adaptive",
    "MAX_ADAPTIVE_EVALS",
]


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
    "rk4": Tableau(
        c=(0.0, 1 / 3, 2 / 3, 1.0),
        a=((), (1 / 3,), (-1 / 3, 1.0), (1.0, -1.0, 1.0)),
        b=(1 / 8, 3 / 8, 3 / 8, 1 / 8),
        order=4,
    ),
}

# f(k, i, t, x): the velocity of stage i of step k (0-based) at time t, points x (n, d) -> (n, d)
StageField = Callable[[int, int, float, Tensor], Tensor]
# noise(k, s_k, x) -> increment to add after step k (stochastic characteristics), or None
Noise = Optional[Callable[[int, float, Tensor], Tensor]]  # noqa: UP045


def integrate(
    f: StageField,
    x0: Tensor,
    times: Sequence[float] | np.ndarray,
    tab: Tableau,
    *,
    record: bool = False,
    noise: Noise = None,
    checkpoint: bool = False,
) -> Tensor:
    """Solve x' = v(t, x) on the partition ``times`` (length L+1) from x0 (n, d).

    Returns x_L (n, d), or with ``record`` the whole trajectory (L+1, n, d).
    ``checkpoint``: keep only x_k for the backward and recompute each step's stages there
    (memory O(L n d) instead of O(L S n width); the noise is drawn outside, so it is not redrawn).
    """
    ts = [float(t) for t in times]
    x = x0
    xs: list[Tensor] = [x0] if record else []

    def step(k: int, x: Tensor) -> Tensor:
        t0, s = ts[k], ts[k + 1] - ts[k]
        ks: list[Tensor] = []
        for i, c in enumerate(tab.c):
            xi = x
            for aij, kj in zip(tab.a[i], ks):
                if aij != 0.0:
                    xi = xi + (s * aij) * kj
            ks.append(f(k, i, t0 + c * s, xi))
        incr: Tensor | None = None
        for bi, ki in zip(tab.b, ks):
            if bi != 0.0:
                incr = ki * (s * bi) if incr is None else incr + ki * (s * bi)
        assert incr is not None  # every tableau has a nonzero weight
        return x + incr

    recompute = checkpoint and torch.is_grad_enabled()
    for k in range(len(ts) - 1):
        s = ts[k + 1] - ts[k]
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


def reference_solution(
    v: Callable[[float, Tensor], Tensor],
    x0: Tensor,
    times: Sequence[float] | np.ndarray,
    *,
    jumps: Sequence[float] | np.ndarray | None = None,
    rtol: float = REFERENCE_RTOL,
    atol: float = REFERENCE_ATOL,
) -> Tensor:
    """The continuous solution x(t_k) of x' = v(t, x) by torchdiffeq's adaptive dopri5, in float64.

    ``jumps``: times where v jumps or kinks in t (per-step weights, knots), which the solver must not step across.
    Returns shape (L+1, n, d).
    """
    from torchdiffeq import odeint

    t = torch.as_tensor(np.asarray(times, dtype=np.float64))
    opts = {"jump_t": torch.as_tensor(np.asarray(jumps, dtype=np.float64))} if jumps is not None and len(jumps) else {}
    now = getattr(_limits, "now", None)
    memo = now[4] if now is not None else None
    if memo is not None:  # the same solve again within one solve_limits block (a stiffness probe, then the views)
        import hashlib

        key = hashlib.sha256(
            x0.detach().double().cpu().numpy().tobytes()
            + t.numpy().tobytes()
            + np.asarray([rtol, atol, -1] + list(jumps if jumps is not None else [])).tobytes()
        )
        if key.hexdigest() in memo:
            hit: Tensor = memo[key.hexdigest()].clone()
            return hit
    with torch.no_grad():
        out = adaptive(
            lambda f, o: odeint(f, x0.double(), t, rtol=rtol, atol=atol, method="dopri5", options=o),
            lambda tt, x: v(float(tt), x),
            opts,
        )
    if memo is not None:
        memo[key.hexdigest()] = out.clone()
    return out


# ------------------------------------------------------------------------------- budgets of adaptive solves
MAX_ADAPTIVE_EVALS = 60_000  # field evaluations one adaptive solve may make (dopri5: 6 per step) by default


class TooStiff(FlowvizError):
    """An adaptive solve needed more field evaluations than its budget (or its step size underflowed): the flow
    is too stiff to draw exactly. ``evals``: the evaluations made before it stopped."""

    def __init__(self, evals: int, budget: int):
        super().__init__(
            f"this flow is too stiff to draw exactly: its adaptive solver needs more than {budget:,} "
            f"evaluations of the field (the budget of this run)"
        )
        self.evals, self.budget = evals, budget


class Cancelled(Exception):
    """An adaptive solve stopped between two evaluations of the field because its cancel flag was set."""


_limits = threading.local()


class Flag(Protocol):
    """A cancel flag (a threading.Event, or anything with ``is_set``)."""

    def is_set(self) -> bool: ...


ODEFunc = Callable[[Tensor, Tensor], Tensor]  # (t, x) -> v(t, x), as torchdiffeq calls it


@contextmanager
def solve_limits(
    *,
    max_evals: int | None = None,
    cancel: Flag | None = None,
    counter: list[float] | None = None,
    needs: float | None = None,
    memo: dict[str, Tensor] | None = None,
) -> Iterator[None]:
    """Within this block (this thread), every adaptive solve of flowviz (the dopri5 reference, odeint_adjoint)
    stops after ``max_evals`` field evaluations with TooStiff, and between two evaluations with Cancelled once
    ``cancel`` (``is_set()``) is set; ``counter[0]`` adds up the evaluations made (and ``counter[1]``, if there,
    keeps the latest time reached). ``needs``: the evaluations a solve is measured to need
    (flowviz.core.cost.measure_stiffness); above ``max_evals`` a solve is TooStiff at once. Nested blocks keep
    the tighter budget and both flags. ``memo``: references solved within the block are kept there and
    not solved again (the same points, times and tolerances; one model per block)."""
    old = getattr(_limits, "now", None)
    budget = max_evals if old is None or max_evals is None else min(max_evals, old[0] or max_evals)
    if budget is None and old is not None:
        budget = old[0]
    flags = tuple(f for f in ((old[1] if old else ()) + ((cancel,) if cancel is not None else ())))
    counters = (old[2] if old else ()) + ((counter,) if counter is not None else ())
    refuse = (needs is not None and budget is not None and needs > budget) or (old is not None and old[3])
    memo = memo if memo is not None else (old[4] if old is not None else None)
    _limits.now = (budget, flags, counters, refuse, memo)
    try:
        yield
    finally:
        _limits.now = old


def adaptive(solve: Callable[[ODEFunc, dict[str, Any]], Tensor], func: ODEFunc, options: dict[str, Any]) -> Tensor:
    """``solve(func', options')``: an adaptive torchdiffeq solve under this thread's :func:`solve_limits`
    (``func'`` counts its evaluations and checks the cancel flags, ``options'`` adds torchdiffeq's own
    ``max_num_steps``). A step budget hit, or a step size that underflows, is TooStiff."""
    budget, flags, counters, refuse, _ = getattr(_limits, "now", None) or (None, (), (), False, None)
    budget = MAX_ADAPTIVE_EVALS if budget is None else int(budget)
    if refuse:
        raise TooStiff(0, budget)
    made = [0]

    def counted(t: Tensor, x: Tensor) -> Tensor:
        made[0] += 1
        for c in counters:
            c[0] += 1
            if len(c) > 1:
                c[1] = max(c[1], float(t))
        if made[0] > budget:
            raise TooStiff(made[0], budget)
        if any(f.is_set() for f in flags):
            raise Cancelled("cancelled")
        return func(t, x)

    if isinstance(func, torch.nn.Module):  # odeint_adjoint needs a module: wrap it as one

        class Counted(torch.nn.Module):
            """The field as a module, its parameters still registered (odeint_adjoint finds them)."""

            def __init__(self, inner: torch.nn.Module) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, t: Tensor, x: Tensor) -> Tensor:
                return counted(t, x)

        wrapped: ODEFunc = Counted(func)
    else:
        wrapped = counted
    opts = dict(options, max_num_steps=budget // 6 + 1)
    try:
        return solve(wrapped, opts)
    except AssertionError as e:  # torchdiffeq's own guards: max_num_steps exceeded, underflow in dt
        if "max_num_steps" in str(e) or "underflow" in str(e):
            raise TooStiff(made[0], budget) from None
        raise
