"""What a run will cost before it starts: seconds and peak resident memory, from its config alone.

The model counts the work that the code does (flowviz.core.model, flowviz.training.train and
flowviz.training.analysis) in three units, each with a constant fitted to measurements on one CPU
thread (``bench/memory.py --fit``; the table is in bench/README.md):

- dispatch: one torch op called from Python (tens of microseconds, whatever its size);
- multiply-adds: the matrix products of the field, n points x (L S) stage evaluations x MACs per evaluation,
  plus mixing the weight slots into the weights of every stage (P @ theta, timegrid.py);
- element operations: activations, Runge-Kutta combinations, noise, optimiser updates.

The keys that multiply: the training points (n_samples, test_fraction, batch_size), the stage evaluations
L S (n_steps; scheme: euler 1, midpoint 2, rk4 4), the Monte-Carlo samples of every evaluation when
viscosity > 0 (mc_samples), the field's size (field, width, mlp_depth, lift), the weight slots (time_mode,
knots), train_steps, the final pictures (transported surfaces, Jacobians, the reference solution) and the
instruments (stability, volume, grid solver, the adjoint with odeint_adjoint).

Stiffness: the adaptive solves (the dopri5 reference, odeint_adjoint) take as many steps as the trained flow
needs. Before training they are priced from the partition and the horizon T; after training a worker measures
them (:func:`measure_stiffness`: the reference solved once within the run's budget, timed) and re-estimates
(``estimate(..., stiffness=...)``) before the final pictures and instruments start; :func:`solve_budget`
gives every adaptive solve of the run its evaluation budget (flowviz.core.solvers.solve_limits).

Memory: a fixed base (interpreter, torch, flowviz), the parameters and their optimiser state, the weights of
every stage, and the larger of the training step's activations (kept by autograd, or recomputed above a
budget) and the analysis' recorded paths.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

from .config import Config
from .errors import ConfigError, FlowvizWarning

if TYPE_CHECKING:
    from torch import Tensor

    from .model import FlowModel

__all__ = [
    "Cost",
    "Stiffness",
    "estimate",
    "measure_stiffness",
    "guard",
    "over_budget",
    "machine_mb",
    "DEFAULT_MAX_RUN_SECONDS",
    "DEFAULT_MAX_RUN_MB",
    "REFERENCE_POINTS",
    "solve_budget",
    "prior_eval_s",
    "CHECKPOINTS",
    "CHECKPOINT_MB",
    "LIVE_EVERY_S",
    "LIVE_SHARE",
    "FIRST_LIVE_ETA_S",
    "live_period",
    "checkpoint_count",
    "checkpoint_steps",
    "thin_steps",
]

# The server's default budget per run (its settings FLOWVIZ_MAX_RUN_SECONDS, FLOWVIZ_MAX_RUN_MB override it; the
# core reads no environment): a lecture's runs take seconds; two workers of at most 4 GB each leave most of a
# 24 GB machine to the server and the system. The library and the CLI warn over it; a server refuses.
DEFAULT_MAX_RUN_SECONDS = 600.0
DEFAULT_MAX_RUN_MB = 4096.0

# Fitted on one torch thread of the development machine (bench/memory.py --fit; see bench/README.md): CPU seconds
# of 45 configs (the multiplying keys alone and combined), 2026-11-30, a machine shared by many agents; the time
# constants refit on 42 configs measured at loads of 2 to 8 (the first fit's loads of 12 to 27 inflated CPU time).
K = {
    "dispatch": 4.65e-06,  # s per torch op (eval, no autograd)
    "mac": 1.41e-11,  # s per multiply-add (eval)
    "elem": 1.26e-09,  # s per element operation (eval)
    "mix_elem": 3.5e-09,  # s per stage weight written by the mixing (fresh pages each call: 3.6 to 4.6 ns measured)
    "train": 3.51,  # a training pass (forward + backward through autograd) / an eval pass
    "fast_block": 0.000124,  # s per block of the hand-written Euler chain (training, forward + backward)
    "fast_elem": 1.46e-09,  # s per point x hidden unit x block of the chain (training)
    "adam": 8.75e-09,  # s per parameter per optimiser step (Adam, gradient zeroing, the backup copy)
    "analysis": 2.65,  # the final pictures over the flows they run (numpy conversions, grids, Jacobians);
    # (refitted once analyse ran on one torch thread, core/threads.py)
    "live": 1.1,  # the same for the light views made while training (fewer frames, coarser grids, no reference)
    "spill": 0.611,  # element ops cost 1 + spill * log2(hidden MB / spill_mb) times more beyond the caches
    "spill_mb": 2.58,
    "ref_evals": 12.0,  # field evaluations of dopri5 per step of the partition (reference solution)
    "ref_per_t": 72.0,  # ... and per unit of the horizon T, before training has shown how stiff the flow is
    "ref_eval": 3.8e-4,  # s per field evaluation of an adaptive float64 solve (weights mixed, dopri5's own ops)
    "ref_unit": 1.4e-9,  # s per point x (multiply-adds + element ops) of one such evaluation
    "adjoint": 1.5,  # odeint_adjoint (forward, then backward with vector-Jacobian products) / the reference
    "stability": 3.0,  # the stability region / the Jacobians of 200 points at every step (both kinds)
    "volume": 55.0,  # the volume instrument / an eval pass of 4096 points over the L steps
    "grid": 45.0,  # the grid solver (three resolutions, the plane only) / the same pass
    "inst_part": 0.05,  # s: the fixed part of the volume instrument and of the grid solver (grids, small solves)
    "inst_setup": 0.02,  # s: the instruments' common part (the data, the box, the first Jacobians)
    "setup": 0.3,  # s: data, model, first snapshot's warm-up
    "base_mb": 290.0,  # resident memory of a worker with torch and flowviz loaded
    "act_mb": 0.794,  # allocator and temporaries over the activations autograd keeps
    "eval_mb": 1.27,  # same for evaluation and the analysis' recorded paths
    # fitted on the case-8 family (bench/memory.py, mlp 6 x 256, lift 8, rk4, continuous 64 knots, L = 16 and 64):
    "mix_copies": 2.0,  # copies of the stage weights (all L S of them) a training step holds at its peak
    "kinetic_copies": 1.4,  # more of them for the kinetic term's second, recorded flow (measured 1.33)
    "ckpt_width": 2.0,  # width-vectors per stage evaluation a checkpointed backward holds (measured: see _memory)
    "smooth_copies": 2.0,  # copies of every block's weights (L of them) for the smoothness penalty (measured 1.9)
}
# s per element of each activation, one torch thread (torch 2.13, AVX-512; bench/README.md): the element constants
# above were fitted while every activation cost about what the sigmoid does, so a field pays the difference (never
# less) on each hidden unit it evaluates; tanh, the default, is the dearest
ACTIVATION_S = {"tanh": 2.6e-09, "softplus": 1.65e-09, "sigmoid": 4.5e-10, "relu": 1.0e-10, "leaky_relu": 1.0e-10}

# The weights a run keeps for rewinding (TrainResult.checkpoints): about CHECKPOINTS of them, fewer where
# CHECKPOINTS copies of the weights would pass CHECKPOINT_MB (a large config keeps fewer, at least its first and last).
CHECKPOINTS = 100
CHECKPOINT_MB = 32.0
GENERIC_BUDGET = 256 * 2**20  # flowviz.core.model.GENERIC_BUDGET: above it each step is checkpointed
FAST_BUDGET = 8 * 2**20  # flowviz.core.fastpath.ACTIVATION_BUDGET: above it the chain recomputes
MAX_FRAMES, SURFACE_RES = 65, 100  # flowviz.training.analysis: frames and grid of the final pictures
LIVE_FRAMES, LIVE_RES = 9, 60  # ... and of the live views made while training
# A run that a page watches has its training worker make light views while it trains: one at most every
# LIVE_EVERY_S of its time, and never more than LIVE_SHARE of that time (a slow view is made less often); none
# for a run whose training ends within FIRST_LIVE_ETA_S (its full views come next). The estimate counts them.
LIVE_EVERY_S, LIVE_SHARE, FIRST_LIVE_ETA_S = 1.0, 0.2, 1.0
REFERENCE_POINTS = 200  # points of the final pictures' dopri5 reference (flowviz.training.analysis.diagnostics)
ADJOINT_POINTS = 150  # points of the adjoint instrument's odeint_adjoint (flowviz.training.instruments)
INSTRUMENTS = ("stability", "volume", "grid", "adjoint")  # flowviz.training.prepared.PREPARED: a part each
DRIVER_KEYS = (
    "n_samples",
    "train_steps",
    "n_steps",
    "scheme",
    "viscosity",
    "mc_samples",
    "lift",
    "width",
    "mlp_depth",
    "field",
    "time_mode",
    "knots",
    "kinetic",
    "smoothness",
    "horizon",
)


@dataclass(frozen=True)
class Cost:
    """An estimate of one run: ``seconds`` of one CPU thread, ``peak_mb`` resident, and the ``drivers``
    (config keys whose values make it costly, largest first). ``parts``: seconds per phase."""

    seconds: float
    peak_mb: float
    drivers: tuple[str, ...]
    parts: tuple[tuple[str, float], ...] = ()

    def describe(self) -> str:
        """Plain text, e.g. "about 2 h 10 min and 14 GB, driven by mc_samples, n_steps, width, lift"."""
        text = f"about {_duration(self.seconds)} and {_size(self.peak_mb)}"
        return text + (f", driven by {', '.join(self.drivers)}" if self.drivers else "")

    def part(self, name: str) -> float:
        """Seconds of one phase: "setup", "step" (one optimiser step), "training", "snapshots", "live view" (one
        light view made while training), "live" (all of them; 0 unless estimated ``live``), "analysis" (the
        final pictures, their "reference" included), "instruments" (all of them, with their first call's
        setup), and each instrument apart: "stability", "volume", "grid", "adjoint" (0 where it does not apply)."""
        return dict(self.parts)[name]


@dataclass(frozen=True)
class Stiffness:
    """How stiff a trained flow is, measured: the field evaluations ``evals`` its dopri5 reference made over
    [0, T] on the final pictures' points, and the CPU seconds ``eval_s`` of one there. ``done``: the reference
    ended within the probe's budget (otherwise ``evals`` is that budget, a lower bound: too stiff for it)."""

    evals: float
    eval_s: float
    done: bool = True


def measure_stiffness(
    model: FlowModel, x: object, *, probe_evals: int | None = None, memo: dict[str, Tensor] | None = None
) -> Stiffness:
    """Solve the reference of ``model`` (a FlowModel) from the points ``x`` (n, 2) within ``probe_evals`` field
    evaluations (default: the solvers' own budget), timing them. With ``memo`` (flowviz.core.solvers'
    ``solve_limits``) the solution is kept there, so the final pictures do not solve it again."""
    import time

    from .solvers import MAX_ADAPTIVE_EVALS, TooStiff, solve_limits

    count: list[float] = [0]
    t0 = time.process_time()
    done = True
    with solve_limits(max_evals=probe_evals or MAX_ADAPTIVE_EVALS, counter=count, memo=memo):
        try:
            model.reference(x)
        except TooStiff:
            done = False
    return Stiffness(float(count[0]), (time.process_time() - t0) / max(count[0], 1), done)


def prior_eval_s(config: Config, n: int = REFERENCE_POINTS) -> float:
    """CPU seconds of one field evaluation of an adaptive float64 solve of n points, from the config."""
    c = _values(config.to_dict())
    f = _field(c)
    return K["ref_eval"] + K["ref_unit"] * n * (f["mac"] + f["elem"])


def solve_budget(cost: Cost, eval_s: float, budget_s: float | None) -> int | None:
    """Field evaluations each adaptive solve of a trained run (its reference, its odeint_adjoint) may make so
    that its final pictures and instruments (``cost``) fit in ``budget_s`` seconds, one evaluation of the
    reference costing ``eval_s``; None without a budget."""
    if budget_s is None:
        return None
    fixed = cost.part("analysis") - cost.part("reference") + cost.part("instruments") - cost.part("adjoint")
    share = 1.0 + K["adjoint"]
    return max(0, int((budget_s - fixed) / (max(eval_s, 1e-6) * share)))


def estimate(
    config: Config,
    n_train: int | None = None,
    *,
    log_every: int | None = None,
    stiffness: Stiffness | None = None,
    live: bool = False,
) -> Cost:
    """Seconds and peak memory of training ``config``, analysing the result (the final pictures) and making its
    instruments.

    ``n_train``: training points, when the data decides (dataset=csv); otherwise from n_samples and
    test_fraction. ``log_every``: steps between snapshots; default the server's cadence (flowviz.serve.runs.registry).
    ``stiffness``: measured on the trained flow (:func:`measure_stiffness`); without it the adaptive solves
    (the reference, odeint_adjoint) are priced from the partition and the horizon T. ``live``: a page watches
    it, so its training worker makes live views as it trains (part ``live``; ``live view`` is one of them).
    """
    config = _values(config.to_dict())
    seconds, peak, parts = _cost(config, n_train, log_every, stiffness, live)
    drivers: list[tuple[float, str]] = []
    base = Config()
    for key in DRIVER_KEYS:
        if getattr(config, key) == getattr(base, key):
            continue
        alt = _without(config, key, base)
        s2, p2, _ = _cost(alt, None if n_train is None else _scaled_n(n_train, config, alt), log_every, stiffness, live)
        factor = max(seconds / s2, (peak - K["base_mb"]) / max(p2 - K["base_mb"], 1.0))
        if factor >= 1.25:
            drivers.append((factor, key))
    return Cost(seconds, peak, tuple(k for _, k in sorted(drivers, reverse=True)), parts)


def machine_mb() -> float | None:
    """This machine's physical memory in MB (None where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    except (AttributeError, ValueError, OSError):
        return None


def over_budget(cost: Cost, budget: tuple[float, float] | None = None) -> str | None:
    """A plain-text sentence if ``cost`` is over ``budget`` (seconds, MB; default the server's default budget),
    else None."""
    seconds, mb = budget or (DEFAULT_MAX_RUN_SECONDS, DEFAULT_MAX_RUN_MB)
    if cost.seconds <= seconds and cost.peak_mb <= mb:
        return None
    return (
        f"this run will take {cost.describe()}: over a server's budget of {_duration(seconds)} and "
        f"{_size(mb)} per run (FLOWVIZ_MAX_RUN_SECONDS, FLOWVIZ_MAX_RUN_MB), which would refuse it"
    )


def guard(config: Config, n_train: int | None = None, *, log_every: int | None = None) -> Cost:
    """The library's check before training on a CPU: a ConfigError if the run cannot fit in this machine's
    memory, a FlowvizWarning if it is over the server's default budget (the library and the CLI only warn)."""
    cost = estimate(config, n_train, log_every=log_every)
    total = machine_mb()
    if total is not None and cost.peak_mb > total:
        raise ConfigError(
            f"this run needs {cost.describe()}, more than this machine's {_size(total)} of memory; "
            f"make the keys that drive it smaller"
        )
    why = over_budget(cost)
    if why:
        warnings.warn(FlowvizWarning(why), stacklevel=3)
    return cost


# ----------------------------------------------------------------------------------------------- the model
def _without(config: Config, key: str, base: Config) -> Config:
    """The config's values with ``key`` at its default, to see how much that key adds."""
    d = {k: v for k, v in vars(config).items() if k != "dim"}
    d[key] = getattr(base, key)
    if key == "n_samples" and d["batch_size"] > d["n_samples"]:
        d["batch_size"] = 0
    return _values(d)


def _values(d: dict[str, Any]) -> Config:
    """A config's values as plain attributes (no validation: the model only reads them). Typed as the Config
    whose attributes it has (``dim`` included)."""
    return cast(Config, SimpleNamespace(**d, dim=2 + d["lift"]))


def _scaled_n(n_train: int, config: Config, alt: Config) -> int:
    return max(1, round(n_train * alt.n_samples / config.n_samples))


def _split(config: Config, n_train: int | None) -> tuple[int, int]:
    """(training points, test points), as flowviz.core.data.split makes them."""
    if n_train is not None:
        n_test = round(n_train * config.test_fraction / max(1e-9, 1 - config.test_fraction))
        return int(n_train), int(n_test)
    n = config.n_samples
    n_test = min(int(round(config.test_fraction * n)), n - 2)
    return n - n_test, n_test


FieldCounts = dict[str, int]  # what _field counts per point and stage evaluation


def _field(c: Config) -> FieldCounts:
    """Per point and stage evaluation: multiply-adds, element ops, torch ops; parameters per slot."""
    d, w, h = c.dim, c.width, c.mlp_depth
    if c.field == "two_layer":
        return {"mac": 2 * d * w, "elem": w + 2 * d, "ops": 3, "slot": 2 * d * w + w + d, "store": 3 * w, "act": w}
    if c.field == "mlp":
        slot = d * w + w + (h - 1) * (w * w + w) + w * d + d + (w if c.time_input else 0)
        return {
            "mac": 2 * d * w + (h - 1) * w * w,
            "elem": h * w + 2 * d,
            "ops": 2 * h + 2,
            "slot": slot,
            "store": 3 * w * h,
            "act": h * w,
        }
    return {"mac": d * d, "elem": 3 * d, "ops": 5, "slot": d * d + d, "store": 4 * d, "small": True, "act": d}


def _slots(c: Config) -> int:
    return {"per_step": c.n_steps, "tied": 1, "continuous": c.knots}[c.time_mode]


def _stages(c: Config) -> int:
    return {"euler": 1, "plain": 1, "midpoint": 2, "rk4": 4}[c.scheme]


def _act(c: Config, f: FieldCounts, n: int, evals: int) -> float:
    """Seconds the field's activation adds over the element constants on ``evals`` evaluations of n points."""
    return max(0.0, ACTIVATION_S[c.activation] - ACTIVATION_S["sigmoid"]) * n * evals * f["act"]


def _eval_pass(
    c: Config, f: FieldCounts, n: int, steps: int, *, noisy: bool, mix: bool = True, act: bool = True
) -> float:
    """Seconds of one no-grad flow over ``steps`` steps of n points (generic path), weights mixed first;
    without ``act``, the activations' own cost apart (a training pass runs them once, the backward is cheap)."""
    S = _stages(c)
    E = steps * S
    # hidden layers beyond the caches stream through memory: element ops cost more (measured: 2.9x at 6.5 MB)
    spill = 1 + K["spill"] * max(0.0, math.log2(4 * n * c.width / 2**20 / K["spill_mb"]))
    ops, elem = K["dispatch"] * E * (f["ops"] + 3), K["elem"] * spill * n * E * f["elem"]
    # a field whose ops all act on (n, d) tensors (no hidden layer) costs its dispatches or its elements, whichever
    # is more: at these sizes each op is its dispatch (antisymmetric, lift 8: 7 ms a step on 500 and 2,000 points)
    t = K["dispatch"] * steps + K["mac"] * n * E * f["mac"] + (max(ops, elem) if f.get("small") else ops + elem)
    t += _act(c, f, n, E) if act else 0.0
    if noisy:
        t += K["dispatch"] * 3 * steps + K["elem"] * 8 * n * steps * c.dim  # sqrt(2 eps s) xi after each step
    if mix:  # field.weights(P): (L S, K) @ (K, slot), written out (memory-bound when large), unbound into L S
        LS = c.n_steps * S
        t += K["mac"] * LS * _slots(c) * f["slot"] + K["mix_elem"] * LS * f["slot"] + K["dispatch"] * LS * 2
    return t


def _fast(c: Config, *, training: bool) -> bool:
    ok = c.field == "two_layer" and c.scheme == "euler"
    return ok and not (training and (c.viscosity > 0 or c.kinetic > 0))


def _predict(c: Config, f: FieldCounts, n: int) -> float:
    """predict_proba over n points: mc_samples noisy flows when viscosity > 0, else one flow."""
    if n == 0:
        return 0.0
    if c.viscosity > 0:
        return c.mc_samples * _eval_pass(c, f, n, c.n_steps, noisy=True)
    if _fast(c, training=False):
        return _chain(c, n) / K["train"] + _act(c, f, n, c.n_steps)
    return _eval_pass(c, f, n, c.n_steps, noisy=False)


def _chain(c: Config, n: int) -> float:
    """One forward and backward of the hand-written Euler chain over n points."""
    return K["fast_block"] * c.n_steps + K["fast_elem"] * n * c.n_steps * (c.width + 1) * (1 + 0.5 * c.dim)


def _step(c: Config, f: FieldCounts, bs: int, n_params: int) -> float:
    """Seconds of one optimiser step on a batch of bs points."""
    E = c.n_steps * _stages(c)
    if _fast(c, training=True):  # above its budget the chain's backward recomputes every block's activations
        keep = c.n_steps * (c.width + 1) * bs * 4 <= FAST_BUDGET
        t = _chain(c, bs) + _act(c, f, bs, E) * (1 if keep else 2)
    else:
        t = K["train"] * _eval_pass(c, f, bs, c.n_steps, noisy=c.viscosity > 0, act=False) + _act(c, f, bs, E)
        if _train_bytes(c, f, bs) > GENERIC_BUDGET:  # checkpointed: each step's stages run twice
            t += _eval_pass(c, f, bs, c.n_steps, noisy=False, mix=False)
        if c.kinetic > 0:  # a second, recorded flow (with its stage weights) and its differences
            t += K["train"] * (
                _eval_pass(c, f, bs, c.n_steps, noisy=c.viscosity > 0, act=False)
                + K["dispatch"] * 8
                + K["elem"] * 4 * bs * (c.n_steps + 1) * c.dim
            )
            t += _act(c, f, bs, E)
    if c.smoothness > 0 and c.time_mode != "tied":  # sum_k |theta_k - theta_(k-1)|^2 / s_k over theta_k =
        L, slot = c.n_steps, f["slot"]  # P_blocks @ slots at every block: L x slots x slot multiply-adds, L x slot
        t += K["train"] * (
            K["dispatch"] * 8 * (f["ops"] + 1)
            + K["mac"] * L * _slots(c) * slot  # elements
            + K["elem"] * 4 * L * slot
        )
    return t + K["adam"] * n_params + K["dispatch"] * 30


def _reference(c: Config, f: FieldCounts, stiffness: Stiffness | None, n: int = REFERENCE_POINTS) -> float:
    """Seconds of one dopri5 reference of n points (none for the plain net or a viscous flow): the measured
    evaluations and their cost when given, else a prior from the partition and the horizon."""
    if c.viscosity > 0 or c.scheme == "plain":
        return 0.0
    per_eval = K["ref_eval"] + K["ref_unit"] * n * (f["mac"] + f["elem"])
    if stiffness is not None:
        return stiffness.evals * stiffness.eval_s * n / REFERENCE_POINTS + stiffness.evals * K["ref_eval"] * (
            1 - n / REFERENCE_POINTS
        )
    evals = max(K["ref_evals"] * (c.n_steps if c.time_mode == "per_step" else 4) + 50, K["ref_per_t"] * c.horizon)
    return evals * per_eval


def _instruments(c: Config, f: FieldCounts, stiffness: Stiffness | None) -> dict[str, float]:
    """Seconds of each instrument made after the final pictures (flowviz.training.prepared.PREPARED's names)
    and of their common first call ("setup"). An instrument that does not apply costs nothing: no stability
    region for the plain net, no grid solver for a lifted run."""
    plain = c.scheme == "plain"
    ev = _eval_pass(c, f, 4096, c.n_steps, noisy=False)
    jac = _eval_pass(c, f, 200, 1, noisy=False) + c.dim * K["train"] * _eval_pass(c, f, 200, 1, noisy=False, mix=False)
    return {
        "setup": K["inst_setup"],
        "stability": 0.0 if plain else K["stability"] * c.n_steps * jac,
        "volume": K["inst_part"] + K["volume"] * ev,
        "grid": K["inst_part"] + K["grid"] * ev if c.dim == 2 else 0.0,
        "adjoint": 0.0 if plain else K["adjoint"] * _reference(c, f, stiffness, ADJOINT_POINTS),
    }


def _analysis(c: Config, f: FieldCounts, n: int, *, live: bool = False) -> float:
    """Seconds of flowviz.training.analysis.analyse (the final pictures, full resolution; ``live``: the light
    views made while training), its reference solution apart."""
    L = c.n_steps
    noisy = c.viscosity > 0
    frames = _frame_steps(L, LIVE_FRAMES if live else MAX_FRAMES)
    res = LIVE_RES if live else SURFACE_RES
    mc = c.mc_samples if noisy else 1
    t = 0.0
    for k in frames:  # transported surfaces u(t_k, .) on a res x res grid of the step-k plane
        t += mc * _eval_pass(c, f, res**2, max(L - k, 0), noisy=noisy)
    for m in (min(n, 300), 880, min(n, 200), 625, n):  # characteristics, grid, diagnostics x2, all points
        t += _eval_pass(c, f, m, L, noisy=noisy)
    t += len(frames) * (_eval_pass(c, f, 225, 1, noisy=False, mix=False) + K["mac"] * _slots(c) * f["slot"])
    # smallest Jacobian determinant: per step, a one-step flow (weights mixed again) and d backward passes
    jac = _eval_pass(c, f, 625, 1, noisy=False) + c.dim * K["train"] * _eval_pass(c, f, 625, 1, noisy=False, mix=False)
    t += L * jac
    return K["live" if live else "analysis"] * t + _predict(c, f, n)


def live_period(view_s: float, every_s: float = LIVE_EVERY_S) -> float:
    """Seconds between two live views that take ``view_s`` each: every ``every_s``, and never more than
    LIVE_SHARE of the training worker's time."""
    return max(every_s, view_s / LIVE_SHARE)


def _live(training_s: float, view_s: float) -> float:
    """Seconds of the live views over a training of ``training_s`` seconds (which they lengthen)."""
    if training_s <= FIRST_LIVE_ETA_S:
        return 0.0
    share = view_s / live_period(view_s)
    return training_s * share / (1 - share)


def _frame_steps(L: int, max_frames: int = MAX_FRAMES) -> list[int]:
    if L + 1 <= max_frames:
        return list(range(L + 1))
    return sorted({round(i * L / (max_frames - 1)) for i in range(max_frames)})


def _train_bytes(c: Config, f: FieldCounts, bs: int) -> float:
    """What autograd would keep for a whole training forward (flowviz.core.model._activation_bytes)."""
    return 4.0 * bs * c.n_steps * _stages(c) * (f["store"] + 4 * c.dim)


def _n_params(c: Config, f: FieldCounts) -> int:
    return _slots(c) * f["slot"] + 8 * (c.dim + 1)


def _memory(c: Config, f: FieldCounts, bs: int, n: int) -> float:
    """Peak resident MB: base + parameters (value, gradient, two Adam moments, backup) + the larger of a training
    step's peak (the stage weights of each recorded flow and their gradients, the smoothness penalty's block
    weights, the activations autograd keeps) and the evaluation's (its stage weights, the analysis' recorded
    paths)."""
    mb = 2.0**-20
    L, S, d = c.n_steps, _stages(c), c.dim
    params = 5 * 4 * _n_params(c, f)
    mixed: float
    act: float
    if _fast(c, training=True):
        mixed = 0 if c.time_mode == "per_step" else 2 * 4 * L * f["slot"]
        keep = L * (c.width + 1) * bs * 4 <= FAST_BUDGET
        act = 4 * bs * (L + 1) * (d + 1) + (4 * 2 * L * bs * (c.width + d) if keep else 4 * 3 * bs * c.width)
        act += 2 * 4 * L * (c.width + 1) * (d + 1)  # folded weights and their gradients
    else:  # the stage weights (P @ theta for every stage evaluation) and, in the backward, their gradients, per
        # recorded flow: the kinetic term records a second flow that mixes its own (a large recorded flow)
        flows = 2 if c.kinetic > 0 else 1
        mixed = (K["mix_copies"] + (K["kinetic_copies"] if c.kinetic > 0 else 0.0)) * 4 * L * S * f["slot"]
        act = _train_bytes(c, f, bs)
        if act > GENERIC_BUDGET:  # checkpointed: the inputs of every step, one step's stages at a time, and
            # about two width-vectors per stage evaluation of every step, held through the backward: measured
            # peaks grow linearly in L (bench/memory.py); which tensors they are was not identified
            act = 4 * bs * (L + 1) * d * 2 + act / L + 4 * bs * L * S * c.width * K["ckpt_width"]
        act *= flows
    if c.smoothness > 0 and c.time_mode != "tied" and L > 1:  # theta_k of every block, their differences and
        mixed += K["smooth_copies"] * 4 * L * f["slot"]  # squares, and the gradients of each (train.penalties)
    train = mixed + K["act_mb"] * act  # (the stage weights live while the step does; an evaluation mixes its own)
    # evaluation and analysis: recorded paths of all points (L+1, n, d) in torch and numpy, a few hidden layers
    ev = 4 * (L + 1) * n * d * 2 + 4 * max(n, SURFACE_RES**2) * (3 * c.width + 4 * d) + 4 * L * S * f["slot"]
    kept = checkpoint_count(4 * _n_params(c, f)) * 4 * _n_params(c, f)  # the checkpoints' weights
    return K["base_mb"] + mb * (params + kept + max(train, K["eval_mb"] * ev))


def _cost(
    c: Config, n_train: int | None, log_every: int | None, stiffness: Stiffness | None = None, live: bool = False
) -> tuple[float, float, tuple[tuple[str, float], ...]]:
    f = _field(c)
    n_tr, n_te = _split(c, n_train)
    bs = c.batch_size if 0 < c.batch_size < n_tr else n_tr
    n_params = _n_params(c, f)
    every = log_every or max(1, min(25, c.train_steps // 40 or 1))
    step = _step(c, f, bs, n_params)
    snap = _predict(c, f, n_tr) + _predict(c, f, n_te)
    n_snaps = c.train_steps // every + 1
    body = _analysis(c, f, n_tr + n_te)
    reference = _reference(c, f, stiffness)
    each = _instruments(c, f, stiffness)
    instruments = sum(each.values())
    view = _analysis(c, f, n_tr + n_te, live=True)
    training = c.train_steps * step + n_snaps * snap
    parts = {
        "setup": K["setup"],
        "step": step,
        "training": c.train_steps * step,
        "snapshot": snap,
        "snapshots": n_snaps * snap,
        "live view": view,
        "live": _live(training, view) if live else 0.0,
        "analysis": body + reference,
        "reference": reference,
        "instruments": instruments,
        **{name: each[name] for name in INSTRUMENTS},
    }
    seconds = parts["setup"] + training + parts["live"] + parts["analysis"] + instruments
    return seconds, _memory(c, f, bs, n_tr + n_te), tuple(parts.items())


def _duration(s: float) -> str:
    if s < 60:
        return f"{max(s, 1):.0f} s"
    m = round(s / 60)
    if m < 60:
        return f"{m} min"
    h, m = divmod(m, 60)
    if h >= 48:
        return f"{h / 24:.0f} days"
    return f"{h} h {m} min" if m else f"{h} h"


def _size(mb: float) -> str:
    return f"{mb:.0f} MB" if mb < 1024 else f"{mb / 1024:.0f} GB" if mb >= 10 * 1024 else f"{mb / 1024:.1f} GB"


def checkpoint_count(state_bytes: int, budget_mb: float | None = None) -> int:
    """How many copies of weights of ``state_bytes`` a run keeps: CHECKPOINTS, fewer over ``budget_mb`` (default
    CHECKPOINT_MB), at least 2."""
    budget = CHECKPOINT_MB if budget_mb is None else budget_mb
    return max(2, min(CHECKPOINTS, int(budget * 2**20 // max(1, state_bytes))))


def checkpoint_steps(total: int, state_bytes: int, budget_mb: float | None = None) -> list[int]:
    """The training steps 0 .. ``total`` whose weights a run keeps: every step while they fit, else 0, ``total`` and
    steps spaced geometrically between (dense early, where the picture changes most); ``checkpoint_count`` many."""
    n = checkpoint_count(state_bytes, budget_mb)
    if total + 1 <= n:
        return list(range(total + 1))

    def spread(m: int) -> list[int]:
        return sorted({0, total} | {round(total ** (i / (m - 1))) for i in range(m)})

    m = 2
    while m < 8 * n and len(spread(m + 1)) <= n:
        m += 1
    return thin_steps(spread(m), n)


def thin_steps(steps: Iterable[int], n: int) -> list[int]:
    """At most ``n`` of ``steps`` (sorted, the first and last kept): repeatedly the step whose neighbours are
    closest in log(1 + step) goes, so a merged set keeps a geometric spread."""
    s = sorted(set(steps))
    while len(s) > max(2, n):
        gaps = [math.log1p(s[i + 1]) - math.log1p(s[i - 1]) for i in range(1, len(s) - 1)]
        del s[1 + gaps.index(min(gaps))]
    return s
