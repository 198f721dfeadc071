"""The order of convergence of a time stepper on ONE field (paper, section 4, item 3: deep = fine partition).

A trained model with tied or continuous weights defines a field v(t, x) for every t, so the same field can be
re-discretised with L, 2L, 4L, ... steps (``FlowModel.rediscretised``) and each x_L compared with the exact
x(T) of that field. A p-th order scheme gives max |x_L - x(T)| ~ C h^p, h = max s_k, when v is smooth along
the paths. Two things break that smoothness here:

- continuous weights are piecewise linear in t (hat functions on the knots), so v has kinks in t at the knots:
  x is C^1 but x'' jumps there, a step that straddles a knot makes a local error O(h^2), and with a bounded
  number of such steps the global order is min(p, 2). Steps that end on the knots (uniform L a multiple of
  knots - 1) see a smooth field on every step and keep order p;
- relu and leaky_relu make v only piecewise smooth in x: a path crossing a kink loses order the same way.

Per-step weights are one set per block: there is no field between the blocks, so nothing to refine.

The reference x(T) is torchdiffeq's dopri5 in float64 at rtol = atol = 1e-12, stopping at the knots; its own
error is bounded by its distance to the solution at 1e-11 (``floor``, marked on the plot), and errors within
FLOOR_FACTOR of that floor are left out of the fit. The default ladder moves down (L0/2, L0/4, ...) while fewer
than three errors lie above the floor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from ..core.config import LIMITS, Config
from ..core.data import Dataset, make_dataset, square_box
from ..core.errors import ConfigError
from ..core.model import FlowModel
from ..core.solvers import STEPPERS, TIGHT_ATOL, TIGHT_RTOL
from ..core.threads import threads_that_pay
from .analysis import plane_grid

if TYPE_CHECKING:
    from .train import TrainResult

__all__ = [
    "Convergence",
    "convergence",
    "expected_order",
    "aligned_steps",
    "one_field_order",
    "KINK_REASON",
    "FLOOR_FACTOR",
]

KINK_REASON = "order limited to 2 by the kinks of the piecewise-linear weights"
NONSMOOTH_ACTIVATIONS = ("relu", "leaky_relu")  # v is only piecewise smooth in x
FLOOR_FACTOR = 3.0  # errors below FLOOR_FACTOR x the reference's own error are not fitted
START_L = {"euler": 32, "midpoint": 8, "rk4": 8}  # first L of the default ladder (higher orders reach the floor sooner)
N_DEFAULT = 5  # L, 2L, 4L, 8L, 16L (fewer where 16 L passes the n_steps limit)


@dataclass(frozen=True)
class Convergence:
    """One field re-discretised at several L, each x_L against the exact x(T).

    n_steps (J,); step_size (J,): h = max s_k; errors (J,): max over the points of |x_L - x(T)|;
    slope: least-squares slope of log(error) against log(h) over the ``fitted`` points (NaN with fewer than 2);
    expected: the order that holds for this field and these partitions, and ``reason`` why (None: no order stated);
    floor: the estimated error of the reference x(T) itself (marked on the plot);
    decision_mismatch (J,): share of a res x res grid of the input plane where argmax F_L != argmax F, F = f(x(T))
    the exact u(0, .); decision_max_diff (J,): max |F_L - F| over that grid and the classes (down to
    decision_floor, the error of F itself).
    """

    n_steps: np.ndarray
    step_size: np.ndarray
    errors: np.ndarray
    slope: float
    expected: int | None
    reason: str
    scheme: str
    floor: float
    fitted: np.ndarray
    decision_mismatch: np.ndarray
    decision_max_diff: np.ndarray
    aligned: bool
    time_mode: str
    knots: int
    n_points: int
    grid_res: int
    decision_floor: float = 0.0  # the estimated error of F itself (the grid's reference), marked on the plot

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready numbers (sweep.json)."""

        def num(v: float) -> float | None:
            return None if not math.isfinite(v) else float(v)

        return {
            "n_steps": [int(v) for v in self.n_steps],
            "step_size": [float(v) for v in self.step_size],
            "errors": [float(v) for v in self.errors],
            "slope": num(self.slope),
            "expected": self.expected,
            "reason": self.reason,
            "scheme": self.scheme,
            "floor": float(self.floor),
            "fitted": [bool(v) for v in self.fitted],
            "decision_mismatch": [float(v) for v in self.decision_mismatch],
            "decision_max_diff": [float(v) for v in self.decision_max_diff],
            "aligned": self.aligned,
            "time_mode": self.time_mode,
            "knots": self.knots,
            "n_points": self.n_points,
            "grid_res": self.grid_res,
            "decision_floor": float(self.decision_floor),
        }


def _knots_on_partition(model: FlowModel, n_steps: int) -> bool:
    """True when every interior knot of continuous weights is a point of the partition with n_steps steps."""
    c = model.config
    if c.time_mode != "continuous" or c.knots <= 2:
        return True
    times = model.rediscretised(n_steps=n_steps).times
    knots = np.linspace(0.0, c.horizon, c.knots)[1:-1]
    return bool(np.all(np.min(np.abs(times[None, :] - knots[:, None]), 1) <= 1e-12 * c.horizon))


def expected_order(model: FlowModel, scheme: str, n_steps: Sequence[int]) -> tuple[int, str, bool]:
    """(expected order, its reason, whether all partitions put their steps on the knots)."""
    c = model.config
    p = STEPPERS[scheme].order
    aligned = all(_knots_on_partition(model, L) for L in n_steps)
    m = c.knots - 1
    if c.activation in NONSMOOTH_ACTIVATIONS and p > 2:
        return (
            2,
            (
                f"order limited to 2 by the kinks of {c.activation} in x: v is only piecewise smooth, and a "
                f"path crossing a kink loses the higher order of {scheme} (order {p} on smooth fields)"
            ),
            aligned,
        )
    kinks = (
        (
            f" ({c.activation} makes v only piecewise smooth in x, which costs no order up to 2: each "
            f"crossing of a kink adds a one-step error O(h²))"
        )
        if c.activation in NONSMOOTH_ACTIVATIONS
        else ""
    )
    if c.time_mode == "tied":
        field = "one field for all t, smooth in t" if kinks else "one smooth field for all t"
        return p, f"order {p} of {scheme}: tied weights, {field}{kinks}", aligned
    if c.knots <= 2:
        return (
            p,
            (f"order {p} of {scheme}: with 2 knots the weights are linear in t, the field is smooth in t{kinks}"),
            aligned,
        )
    if aligned:
        return (
            p,
            (
                f"order {p} of {scheme}: every step ends on a knot (L a multiple of knots − 1 = {m}), so the "
                f"piecewise-linear weights are smooth on each step{kinks}"
            ),
            aligned,
        )
    if p > 2:
        return (
            2,
            (f"{KINK_REASON}: some steps straddle a knot (take uniform L a multiple of knots − 1 = {m} for order {p})"),
            aligned,
        )
    return (
        p,
        (
            f"order {p} of {scheme} (the kinks of the piecewise-linear weights at the knots would limit a "
            f"higher order to 2, not this one)"
        ),
        aligned,
    )


def aligned_steps(model: FlowModel, scheme: str, count: int = N_DEFAULT) -> list[int]:
    """The default ladder L0, 2 L0, 4 L0, ...: multiples of knots - 1 for continuous weights, so that the
    scheme's own order holds; at most the n_steps limit."""
    m = model.config.knots - 1 if model.config.time_mode == "continuous" else 1
    L0 = m * math.ceil(START_L[scheme] / m)
    hi = int(LIMITS["n_steps"][1])
    Ls = [L0 * 2**i for i in range(count) if L0 * 2**i <= hi]
    if len(Ls) < 3:  # knots - 1 too large for the ladder: start lower
        Ls = [m * 2**i for i in range(count) if m * 2**i <= hi]
    if len(Ls) < 2:
        raise ConfigError(
            f"knots = {model.config.knots}: fewer than two multiples of knots − 1 up to L = {hi}; "
            "pass n_steps=[...] yourself"
        )
    return Ls


def _points(
    model: FlowModel, data: Dataset | None, x: object, max_points: int, seed: int
) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    if x is None:
        ds = data if isinstance(data, Dataset) else make_dataset(model.config)
        x, box = ds.x_train, ds.extent()
    else:
        x = np.asarray(x, dtype=np.float32).reshape(-1, 2)
        box = square_box(x, 0.15)
    if len(x) > max_points:
        x = x[np.sort(np.random.default_rng(seed).choice(len(x), max_points, replace=False))]
    return np.asarray(x, dtype=np.float32), box


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    p: np.ndarray = e / e.sum(-1, keepdims=True)
    return p


@torch.no_grad()
def convergence(
    model: FlowModel | TrainResult,
    n_steps: Sequence[int] | None = None,
    scheme: str | None = None,
    *,
    x: object = None,
    max_points: int = 200,
    res: int = 40,
    seed: int = 0,
) -> Convergence:
    """Measure the order of convergence of ``scheme`` on the field of ``model`` (a FlowModel or a TrainResult).

    ``n_steps``: the L values (at least two); None picks a ladder L0, 2 L0, ... that keeps the scheme's order
    (multiples of knots - 1 for continuous weights). ``scheme``: euler, midpoint or rk4 (default: the model's).
    ``x``: the points (n, 2) the error is measured on (default: the training points of the model's data).
    Raises ConfigError for per-step weights (no field between the blocks) and for the plain net (no flow).
    """
    m = getattr(model, "model", model)
    width = getattr(getattr(m, "config", None), "width", 1)
    with threads_that_pay(max_points + res * res, width, getattr(m, "device", None)):
        return _convergence(model, n_steps, scheme, x=x, max_points=max_points, res=res, seed=seed)


def _convergence(
    model: FlowModel | TrainResult,
    n_steps: Sequence[int] | None,
    scheme: str | None,
    *,
    x: object,
    max_points: int,
    res: int,
    seed: int,
) -> Convergence:
    data = getattr(model, "data", None)
    model = getattr(model, "model", model)
    if not isinstance(model, FlowModel):
        raise ConfigError("convergence() takes a FlowModel or a TrainResult")
    c = model.config
    if c.time_mode == "per_step":
        raise ConfigError(
            "per-step weights are one set per block: there is no field between the blocks to refine, "
            "so no order of convergence on one field (train with time_mode tied or continuous)"
        )
    scheme = scheme or c.scheme
    if scheme not in STEPPERS:
        raise ConfigError(
            f"scheme {scheme!r} has no order of convergence; valid: {', '.join(STEPPERS)}"
            + (" (the plain net is not a flow)" if scheme == "plain" else "")
        )
    Ls = aligned_steps(model, scheme) if n_steps is None else sorted({int(v) for v in n_steps})
    if len(Ls) < 2:
        raise ConfigError(f"an order needs at least two step counts; got {Ls}")
    for L in Ls:
        model.rediscretised(n_steps=L, scheme=scheme)  # validates every L before any work
    step = c.knots - 1 if c.time_mode == "continuous" else 1  # the ladder stays on multiples of knots - 1
    pts, box = _points(model, data, x, max_points, seed)
    _, _, grid = plane_grid(box, res)
    one = model.rediscretised(n_steps=1)  # partition [0, T]: x(T) does not depend on L
    ref = one.reference(pts, rtol=TIGHT_RTOL / 10, atol=TIGHT_ATOL / 10)[-1]  # (n, d) float64
    check = one.reference(pts, rtol=TIGHT_RTOL, atol=TIGHT_ATOL)[-1]
    floor = max(float(np.linalg.norm(check - ref, axis=-1).max()), 1e-14 * float(np.abs(ref).max()))
    n = len(pts)
    head = one.double_copy()
    W, b = head.head_W.cpu().numpy(), head.head_b.cpu().numpy()
    # the grid's reference at 1e-10 (many points: cheaper), its own error bounded against the 1e-9 solution
    F = _softmax(one.reference(grid, rtol=10 * TIGHT_RTOL, atol=10 * TIGHT_ATOL)[-1] @ W.T + b)
    F_check = _softmax(one.reference(grid, rtol=100 * TIGHT_RTOL, atol=100 * TIGHT_ATOL)[-1] @ W.T + b)
    decision_floor = max(float(np.abs(F_check - F).max()), 1e-15)
    x0 = torch.as_tensor(np.concatenate([pts, grid]), device=model.device).double()
    seen: dict[int, tuple[float, float, float, float]] = {}

    def measure(L: int) -> tuple[float, float, float, float]:
        """(max error over the points, h, decision mismatch, max |F_L - F|) at L steps."""
        if L not in seen:
            m = model.rediscretised(n_steps=L, scheme=scheme).double_copy()
            xL = m.flow(m.lift(x0)).cpu().numpy()
            FL = _softmax(xL[n:] @ W.T + b)
            seen[L] = (
                float(np.linalg.norm(xL[:n] - ref, axis=-1).max()),
                float(np.max(m.steps)),
                float(np.mean(FL.argmax(1) != F.argmax(1))),
                float(np.abs(FL - F).max()),
            )
        return seen[L]

    rows = [measure(L) for L in Ls]
    while n_steps is None and sum(r[0] > FLOOR_FACTOR * floor for r in rows) < 3 and Ls[0] % (2 * step) == 0:
        Ls = [Ls[0] // 2] + Ls[:-1]  # a gentle field reaches the floor early: move the ladder down
        rows = [measure(L) for L in Ls]
    errs, h, mism, maxd = (np.array(col) for col in zip(*rows))
    fitted = np.isfinite(errs) & (errs > FLOOR_FACTOR * floor)  # np.polyfit (LAPACK gelsd) gets finite rows only
    expected, reason, aligned = expected_order(model, scheme, Ls)
    slope = float(np.polyfit(np.log(h[fitted]), np.log(errs[fitted]), 1)[0]) if fitted.sum() >= 2 else math.nan
    if fitted.sum() < len(Ls):
        reason += (
            f"; {int(len(Ls) - fitted.sum())} of {len(Ls)} errors lie within {FLOOR_FACTOR:g}x the "
            f"reference's own error {floor:.1e} and are left out of the fit"
        )
    return Convergence(
        np.array(Ls),
        h,
        errs,
        slope,
        expected,
        reason,
        scheme,
        floor,
        fitted,
        mism,
        maxd,
        aligned,
        c.time_mode,
        c.knots,
        n,
        res,
        decision_floor,
    )


class Run(Protocol):
    """A trained run with its config: a ``sweep.Member``."""

    @property
    def config(self) -> Config: ...

    @property
    def result(self) -> TrainResult: ...


def one_field_order(member: Run) -> tuple[Convergence | None, str]:
    """The true order of convergence on the field of one sweep member (``sweep.Member``: the deepest of a depth
    sweep), or why there is none."""
    c = member.config
    if c.time_mode == "per_step":
        return None, (
            "per-step weights: there is no field between the blocks to refine, so no order on one field "
            "(sweep with time_mode tied or continuous)"
        )
    if c.scheme == "plain":
        return None, "the plain net is not a flow: no order of convergence"
    try:
        conv = convergence(member.result)
    except ConfigError as e:
        return None, str(e)
    return conv, f"the field of the member L = {c.n_steps}, re-discretised at L = {', '.join(map(str, conv.n_steps))}"
