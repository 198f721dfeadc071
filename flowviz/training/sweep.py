"""Depth and step-size sweeps: what changes when the partition gets finer (paper, section 4, item 3).

A sweep varies one key of a base config (L at fixed T, T at fixed L, the
scheme, the time dependence or the smoothness penalty) and trains every member
on the same data with the same seed. Members that differ only in their
discretisation train as one batched computation (``flowviz.training.batch``); the rest
train one after another. Each member is then measured: its discretisation
error |x_L - x(T)| against its own field's dopri5 solution, the residual ratio
|s_k V_k| / |x| of section 3.3 and the weight drift between adjacent blocks.

Also here: the depth-transfer matrix (train at L, evaluate at L'); coarse-to-fine training (train at L, double
the partition, go on) is in ``flowviz.training.refine`` and re-exported here.

The measurements are one generator, :func:`measure_members`, that yields its progress and returns a
:class:`Measures`: a server runs it in a worker (``flowviz.serve.work.measure``), the library in its own process;
both give the same numbers.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, TypeVar, cast

import numpy as np
import torch

from ..core.config import Config
from ..core.data import Dataset, Points, make_dataset
from ..core.errors import ConfigError, echo
from ..core.model import FlowModel
from ..core.solvers import Flag
from .analysis import plane_grid, residual_ratio, weight_drift
from .batch import batch_reason, train_batched
from .convergence import Convergence, one_field_order
from .refine import REFINE_KINDS, CoarseToFine, _prolongation, coarse_to_fine, refine, refined_config  # noqa: F401
from .train import TrainResult, evaluate, train

__all__ = [
    "VARY_KEYS",
    "MAX_MEMBERS",
    "GRID_RES",
    "Member",
    "Transfer",
    "Measures",
    "SweepResult",
    "parse_vary",
    "run_sweep",
    "member_diagnostics",
    "depth_transfer",
    "decision_grids",
    "measure_members",
    "stepwise",
    "refine",
    "refined_config",
    "coarse_to_fine",
    "CoarseToFine",
]

_Y = TypeVar("_Y")

VARY_KEYS = ("n_steps", "horizon", "scheme", "time_mode", "smoothness")
MAX_MEMBERS = 12
GRID_RES = 60  # the members' decision surfaces on one grid (flowviz.plots.sweep.sweep_surfaces)

Grids = tuple[np.ndarray, np.ndarray, np.ndarray]  # x1 (res,), x2 (res,), u (M, res, res, C)


class Pool(Protocol):
    """What a sweep asks of an executor of ``flowviz.serve`` (the local pool or Ray)."""

    def train_batched(
        self,
        configs: list[Config],
        data: Dataset,
        *,
        log_every: int = ...,
        cancel: Flag | None = ...,
        progress: Callable[[int], None] | None = ...,
    ) -> list[TrainResult]: ...

    def train_members(
        self,
        configs: list[Config],
        data: Dataset,
        *,
        log_every: int = ...,
        cancel: Flag | None = ...,
        progress: Callable[[int, int], None] | None = ...,
    ) -> list[TrainResult]: ...

    def measure(self, what: str, data: Dataset, **params: Any) -> Any: ...


class _Run(NamedTuple):
    """A trained run and its config, as ``one_field_order`` reads a sweep member."""

    config: Config
    result: TrainResult


def parse_vary(text: str, base: Config | None = None) -> tuple[str, list[Any]]:
    """``"n_steps=1,2,4"`` -> ("n_steps", [1, 2, 4]), each value validated as that key of ``base``."""
    base = base or Config()
    if "=" not in text:
        raise ConfigError(f"--vary wants KEY=V1,V2,...; got {echo(text)}")
    key, raw = (s.strip() for s in text.split("=", 1))
    if key not in VARY_KEYS:
        raise ConfigError(f"cannot sweep {echo(key)}; a sweep varies one of: {', '.join(VARY_KEYS)}")
    parts = [p.strip() for p in raw.split(",") if p.strip()]
    if not parts:
        raise ConfigError(f"--vary {key}= has no values")
    if len(parts) > MAX_MEMBERS:
        raise ConfigError(f"a sweep has at most {MAX_MEMBERS} members; got {len(parts)}")
    values = [getattr(base.with_sets([f"{key}={p}"]), key) for p in parts]
    if len(set(values)) != len(values):
        raise ConfigError(f"--vary {key}: values repeat")
    return key, values


def member_diagnostics(
    model: FlowModel, x: np.ndarray, *, max_points: int = 200, seed: int = 0
) -> tuple[float, np.ndarray, np.ndarray]:
    """(discretisation error, residual ratio per step (L,), weight drift per step (L-1,)).

    The error is the mean |x_L - x(T)| over up to ``max_points`` points, both in float64: the
    member's own Euler (or midpoint, rk4) chain against dopri5 on the same field. NaN for the
    plain net and for viscous runs, which have no deterministic flow.
    """
    rng = np.random.default_rng(seed)
    sub = x if len(x) <= max_points else x[rng.choice(len(x), max_points, replace=False)]
    ratio, drift = residual_ratio(model, sub), weight_drift(model)  # the one definition (analysis)
    err = math.nan
    if model.config.scheme != "plain" and model.config.viscosity == 0:
        double = model.double_copy()
        xd = double.trajectory(torch.as_tensor(sub, dtype=torch.float64, device=model.device))[-1]
        ref = model.reference(sub)[-1]
        err = float(np.linalg.norm(xd.cpu().numpy() - ref, axis=-1).mean())
    return err, ratio, drift


@dataclass
class Member:
    """One trained member of a sweep and its measurements."""

    value: object
    result: TrainResult
    wall_s: float  # its own training time, or its batch's when ``batched`` > 1
    batched: int  # members trained together with it (1: alone)
    disc_error: float
    residual_ratio: np.ndarray  # (L,)
    weight_drift: np.ndarray  # (L-1,)

    @property
    def config(self) -> Config:
        return self.result.config

    @property
    def model(self) -> FlowModel:
        return self.result.model

    @property
    def step_size(self) -> float:
        """The largest step s_k of the member's partition."""
        return float(np.max(self.model.steps))

    def record(self, key: str) -> dict[str, Any]:
        """The member's row of sweep.json."""
        m = self.result.metrics

        def num(v: float | None) -> float | None:
            return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else v

        return {
            key: self.value,
            "n_steps": self.config.n_steps,
            "horizon": self.config.horizon,
            "step_size": self.step_size,
            "train_accuracy": num(m["train_accuracy"]),
            "test_accuracy": num(m["test_accuracy"]),
            "train_loss": num(m["train_loss"]),
            "test_loss": num(m["test_loss"]),
            "wall_s": self.wall_s,
            "batched": self.batched,
            "disc_error": num(self.disc_error),
            "residual_ratio": num(float(self.residual_ratio.mean())),
            "weight_drift": num(float(self.weight_drift.mean())) if len(self.weight_drift) else 0.0,
            "error": self.result.error,
        }


@dataclass
class Transfer:
    """Accuracy of each member trained at L (rows) evaluated at L' (columns); NaN where undefined."""

    trained: list[int]
    evaluated: list[int]
    accuracy: np.ndarray  # (len(trained), len(evaluated))
    time_modes: list[str]

    def to_dict(self) -> dict[str, Any]:
        acc = [[None if not math.isfinite(v) else round(float(v), 4) for v in row] for row in self.accuracy]
        return {"trained": self.trained, "evaluated": self.evaluated, "accuracy": acc, "time_modes": self.time_modes}


@dataclass
class SweepResult:
    """A finished sweep: its members in the order of ``values``, the data, timings and the transfer matrix."""

    base: Config
    key: str
    values: list[Any]
    members: list[Member]
    data: Dataset
    wall_s: float
    batched: bool
    transfer: Transfer | None = None
    notes: list[str] = field(default_factory=list)
    convergence: Convergence | None = None  # the order on ONE field (depth sweeps of tied / continuous weights)
    convergence_note: str = ""  # why there is none, or which member's field it is
    grids: Grids | None = None  # decision_grids at GRID_RES, made with the measurements

    def records(self) -> list[dict[str, Any]]:
        return [m.record(self.key) for m in self.members]

    def decision_grids(self, res: int = GRID_RES) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """F = u(0, .) of every member on one grid over the data: x1 (res,), x2 (res,), u (M, res, res, C)
        (the ones measured with the sweep at GRID_RES; another ``res`` is computed here)."""
        if self.grids is not None and len(self.grids[0]) == res:
            return self.grids
        return decision_grids([m.model for m in self.members], self.data, res)

    def to_json(self) -> str:
        return json.dumps(
            {
                "key": self.key,
                "values": self.values,
                "base": self.base.to_dict(),
                "wall_s": self.wall_s,
                "batched": self.batched,
                "members": self.records(),
                "transfer": self.transfer.to_dict() if self.transfer else None,
                "convergence": self.convergence.to_dict() if self.convergence else None,
                "convergence_note": self.convergence_note,
                "notes": self.notes,
            },
            indent=2,
        )


def _accuracy(model: FlowModel, ds: Dataset) -> float:
    x, y = (ds.x_test, ds.y_test) if len(ds.x_test) else (ds.x_train, ds.y_train)
    dev = model.device
    return evaluate(model, torch.as_tensor(x, device=dev), torch.as_tensor(y, device=dev))[1]


def depth_transfer(models: list[FlowModel], data: Dataset, evaluated: list[int]) -> Transfer:
    """Train at L, evaluate at L': each model re-discretised to every L' (tied and continuous weights).

    Per-step weights are one set per block and have no field between the blocks, so their rows hold
    only the cell L' = L. Accuracy on the test points (the training points when there are none).
    """
    acc = np.full((len(models), len(evaluated)), np.nan)
    for i, m in enumerate(models):
        for j, Lp in enumerate(evaluated):
            if Lp == m.L:
                acc[i, j] = _accuracy(m, data)
            elif m.config.time_mode != "per_step":
                acc[i, j] = _accuracy(m.with_steps(Lp), data)
    return Transfer([m.L for m in models], list(evaluated), acc, [m.config.time_mode for m in models])


def decision_grids(models: list[FlowModel], data: Dataset, res: int = GRID_RES) -> Grids:
    """F = u(0, .) of each model on one res x res grid over the data: x1 (res,), x2 (res,), u (M, res, res, C)."""
    x1, x2, pts = plane_grid(data.extent(), res)
    u = np.stack([m.predict_proba(pts).reshape(res, res, -1) for m in models])
    return x1, x2, u.astype(np.float32)


@dataclass
class Measures:
    """What is measured of a sweep's trained members, in their order: the discretisation error, the residual
    ratio (L,) and the weight drift (L-1,) of each; for a sweep over n_steps the depth-transfer matrix and the
    order on one field; the decision grids (:func:`decision_grids`). NaN and None where nothing was measured."""

    disc_error: list[float]
    residual_ratio: list[np.ndarray]
    weight_drift: list[np.ndarray]
    transfer: Transfer | None = None
    convergence: Convergence | None = None
    convergence_note: str = ""
    grids: Grids | None = None

    @classmethod
    def none(cls, models: list[FlowModel]) -> Measures:
        """The measures of a sweep stopped before its members were measured: NaN throughout."""
        return cls(
            [math.nan] * len(models),
            [np.full(m.L, np.nan) for m in models],
            [np.full(max(m.L - 1, 0), np.nan) for m in models],
        )


def measure_members(
    results: list[TrainResult], data: Dataset, key: str, *, seed: int = 0, transfer_to: list[int] | None = None
) -> Generator[tuple[float, str], None, Measures]:
    """Measure a sweep's trained members: yields (fraction done, text) between the pieces and returns the
    :class:`Measures` (drive it with :func:`stepwise`). The depth transfer (over the members' L and
    ``transfer_to``) and the one-field order (the deepest member's field) when ``key`` is n_steps."""
    n = len(results)
    errs: list[float] = []
    ratios: list[np.ndarray] = []
    drifts: list[np.ndarray] = []
    for i, r in enumerate(results):
        yield 0.75 * i / n, f"measuring member {i + 1} of {n}"
        err, ratio, drift = member_diagnostics(r.model, data.x_train, seed=seed)
        errs.append(err)
        ratios.append(ratio)
        drifts.append(drift)
    out = Measures(errs, ratios, drifts)
    if key == "n_steps":
        yield 0.75, "depth transfer"
        cols = sorted({r.config.n_steps for r in results} | set(transfer_to or []))
        out.transfer = depth_transfer([r.model for r in results], data, cols)
        yield 0.85, "order of convergence on one field"
        out.convergence, out.convergence_note = one_field_order(_Run(config=results[-1].config, result=results[-1]))
    yield 0.95, "decision surfaces"
    out.grids = decision_grids([r.model for r in results], data)
    return out


def stepwise(
    steps: Generator[_Y, None, object], cancel: Flag | None = None, out: dict[str, object] | None = None
) -> Iterator[_Y]:
    """The items a measuring generator yields, until it returns (its value then in ``out["value"]``) or
    ``cancel`` (``is_set()``) is set between two of them (then ``out`` gets no value)."""
    while not (cancel is not None and cancel.is_set()):
        try:
            yield next(steps)
        except StopIteration as done:
            if out is not None:
                out["value"] = done.value
            return
    steps.close()


def run_sweep(
    base: Config,
    key: str,
    values: list[Any],
    *,
    data: Dataset | Points | None = None,
    batched: bool = True,
    log_every: int = 25,
    progress: Callable[[float, str], None] | None = None,
    cancel: Flag | None = None,
    transfer_to: list[int] | None = None,
    pool: Pool | None = None,
    cuda_graphs: bool = False,
) -> SweepResult:
    """Train one member per value of ``key`` (other keys from ``base``) and measure each.

    ``batched``: train members that differ only in their discretisation as one batch (they give the
    same numbers as one by one). ``pool`` (an executor of ``flowviz.serve``: the local pool or Ray): train
    there, the batch's lanes spread over its workers (one group of lanes each) or the members that cannot be
    batched one per worker, and measure there too (:func:`measure_members` in a worker): the same numbers
    again. ``transfer_to``: extra L' columns for the depth-transfer matrix, which is computed when the sweep
    varies n_steps. A sweep cancelled before its measurements keeps its members, unmeasured (NaN).
    ``cuda_graphs``: members trained one by one here replay their steps from CUDA graphs (see ``train``).
    """
    if key not in VARY_KEYS:
        raise ConfigError(f"cannot sweep {echo(key)}; a sweep varies one of: {', '.join(VARY_KEYS)}")
    configs = [base.replace(**{key: v}) for v in values]
    ds = data if isinstance(data, Dataset) else make_dataset(base, data)
    say = progress or (lambda frac, text: None)
    t0 = time.perf_counter()
    notes: list[str] = []
    why = batch_reason(configs) if batched and len(configs) > 1 else "batching off"
    results: list[TrainResult]
    if why is None:
        say(0.0, f"training {len(configs)} members as one batch")

        def on_step(step: int, snaps: object) -> None:
            say(0.8 * step / max(base.train_steps, 1), f"batched training: step {step} of {base.train_steps}")

        if pool is not None:  # (two or more members always make two or more lanes)
            results = pool.train_batched(
                configs, ds, log_every=log_every, cancel=cancel, progress=lambda step: on_step(step, None)
            )
        else:
            results = train_batched(configs, data=ds, log_every=log_every, cancel=cancel, progress=on_step)
        walls = [time.perf_counter() - t0] * len(configs)
    elif pool is not None:  # side by side, one member per worker of the executor
        if batched and len(configs) > 1:
            notes.append(f"trained side by side, one member per worker: {why}")

        def finished(k: int, n: int) -> None:
            say(0.8 * k / n, f"member {k} of {n} finished")

        results = pool.train_members(configs, ds, log_every=log_every, cancel=cancel, progress=finished)
        walls = [r.metrics.get("elapsed_s", float("nan")) for r in results]
    else:
        if batched and len(configs) > 1:
            notes.append(f"trained one after another: {why}")
        results = []
        walls = []
        for i, c in enumerate(configs):
            say(0.8 * i / len(configs), f"training member {i + 1} of {len(configs)} ({key}={values[i]})")
            t = time.perf_counter()
            try:
                results.append(train(c, data=ds, log_every=log_every, cancel=cancel, cuda_graphs=cuda_graphs))
            except Exception as e:  # TrainingDiverged carries the last finite state
                last = getattr(e, "result", None)
                if last is None:
                    raise
                results.append(last)
            walls.append(time.perf_counter() - t)
    measures = _measured(
        results,
        ds,
        key,
        seed=base.seed,
        transfer_to=transfer_to,
        cancel=cancel,
        pool=pool,
        say=lambda frac, text: say(0.8 + 0.2 * frac, text),
    )
    if measures is None:
        notes.append("stopped before its members were measured")
        measures = Measures.none([r.model for r in results])
    members = [
        Member(
            v,
            r,
            walls[i],
            len(configs) if why is None else 1,
            measures.disc_error[i],
            measures.residual_ratio[i],
            measures.weight_drift[i],
        )
        for i, (v, r) in enumerate(zip(values, results))
    ]
    say(1.0, "done")
    return SweepResult(
        base,
        key,
        list(values),
        members,
        ds,
        time.perf_counter() - t0,
        why is None,
        measures.transfer,
        notes,
        measures.convergence,
        measures.convergence_note,
        measures.grids,
    )


def _measured(
    results: list[TrainResult],
    ds: Dataset,
    key: str,
    *,
    seed: int,
    transfer_to: list[int] | None,
    cancel: Flag | None,
    pool: Pool | None,
    say: Callable[[float, str], None],
) -> Measures | None:
    """The members' :class:`Measures`, made by a worker of ``pool`` or here; None if cancelled first."""
    if cancel is not None and cancel.is_set():
        return None
    if pool is not None:
        measured: Measures | None = pool.measure(
            "sweep",
            ds,
            models=[r.model for r in results],
            key=key,
            seed=seed,
            transfer_to=list(transfer_to or []),
            cancel=cancel,
            progress=say,
        )
        return measured
    out: dict[str, object] = {}
    for frac, text in stepwise(measure_members(results, ds, key, seed=seed, transfer_to=transfer_to), cancel, out):
        say(frac, text)
    return cast("Measures | None", out.get("value"))  # what measure_members returns
