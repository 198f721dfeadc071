"""Depth and step-size sweeps: what changes when the partition gets finer (paper, section 4, item 3).

A sweep varies one key of a base config (L at fixed T, T at fixed L, the
scheme, the time dependence or the smoothness penalty) and trains every member
on the same data with the same seed. Members that differ only in their
discretisation train as one batched computation (``flowviz.training.batch``); the rest
train one after another. Each member is then measured: its discretisation
error |x_L - x(T)| against its own field's dopri5 solution, the residual ratio
|s_k V_k| / |x| of section 3.3 and the weight drift between adjacent blocks.

Also here: the depth-transfer matrix (train at L, evaluate at L') and
coarse-to-fine training (train at L, double the partition by interpolating the
weights in t, go on; Haber and Ruthotto's multilevel idea).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ..core.config import Config
from ..core.data import Dataset, make_dataset
from ..core.errors import ConfigError, echo
from ..core.model import FlowModel, build_model
from .analysis import plane_grid, residual_ratio, weight_drift
from .batch import batch_reason, train_batched
from .convergence import Convergence, one_field_order
from .train import TrainResult, evaluate, train, train_iter

__all__ = ["VARY_KEYS", "MAX_MEMBERS", "Member", "Transfer", "SweepResult", "parse_vary", "run_sweep",
           "member_diagnostics", "depth_transfer", "refine", "refined_config", "coarse_to_fine", "CoarseToFine"]

VARY_KEYS = ("n_steps", "horizon", "scheme", "time_mode", "smoothness")
MAX_MEMBERS = 12


def parse_vary(text: str, base: Config | None = None) -> tuple[str, list]:
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


def member_diagnostics(model: FlowModel, x: np.ndarray, *, max_points: int = 200,
                       seed: int = 0) -> tuple[float, np.ndarray, np.ndarray]:
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

    def record(self, key: str) -> dict:
        """The member's row of sweep.json."""
        m = self.result.metrics

        def num(v):
            return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else v

        return {key: self.value, "n_steps": self.config.n_steps, "horizon": self.config.horizon,
                "step_size": self.step_size, "train_accuracy": num(m["train_accuracy"]),
                "test_accuracy": num(m["test_accuracy"]), "train_loss": num(m["train_loss"]),
                "test_loss": num(m["test_loss"]), "wall_s": self.wall_s, "batched": self.batched,
                "disc_error": num(self.disc_error),
                "residual_ratio": num(float(self.residual_ratio.mean())),
                "weight_drift": num(float(self.weight_drift.mean())) if len(self.weight_drift) else 0.0,
                "error": self.result.error}


@dataclass
class Transfer:
    """Accuracy of each member trained at L (rows) evaluated at L' (columns); NaN where undefined."""

    trained: list[int]
    evaluated: list[int]
    accuracy: np.ndarray  # (len(trained), len(evaluated))
    time_modes: list[str]

    def to_dict(self) -> dict:
        acc = [[None if not math.isfinite(v) else round(float(v), 4) for v in row] for row in self.accuracy]
        return {"trained": self.trained, "evaluated": self.evaluated, "accuracy": acc, "time_modes": self.time_modes}


@dataclass
class SweepResult:
    """A finished sweep: its members in the order of ``values``, the data, timings and the transfer matrix."""

    base: Config
    key: str
    values: list
    members: list[Member]
    data: Dataset
    wall_s: float
    batched: bool
    transfer: Transfer | None = None
    notes: list[str] = field(default_factory=list)
    convergence: Convergence | None = None  # the order on ONE field (depth sweeps of tied / continuous weights)
    convergence_note: str = ""  # why there is none, or which member's field it is

    def records(self) -> list[dict]:
        return [m.record(self.key) for m in self.members]

    def decision_grids(self, res: int = 60) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """F = u(0, .) of every member on one grid over the data: x1 (res,), x2 (res,), u (M, res, res, C)."""
        x1, x2, pts = plane_grid(self.data.extent(), res)
        u = np.stack([m.model.predict_proba(pts).reshape(res, res, -1) for m in self.members])
        return x1, x2, u.astype(np.float32)

    def to_json(self) -> str:
        return json.dumps({"key": self.key, "values": self.values, "base": self.base.to_dict(),
                           "wall_s": self.wall_s, "batched": self.batched, "members": self.records(),
                           "transfer": self.transfer.to_dict() if self.transfer else None,
                           "convergence": self.convergence.to_dict() if self.convergence else None,
                           "convergence_note": self.convergence_note, "notes": self.notes}, indent=2)


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


def run_sweep(base: Config, key: str, values: list, *, data=None, batched: bool = True, log_every: int = 25,
              progress: Callable[[float, str], None] | None = None, cancel=None,
              transfer_to: list[int] | None = None, pool=None) -> SweepResult:
    """Train one member per value of ``key`` (other keys from ``base``) and measure each.

    ``batched``: train members that differ only in their discretisation as one batch (they give the
    same numbers as one by one). ``pool`` (an executor of ``flowviz.serve``: the local pool or Ray): spread
    the batch's lanes over its workers, one group of lanes each, or the members that cannot be batched, one
    each (the same numbers again). ``transfer_to``: extra L'
    columns for the depth-transfer matrix, which is computed when the sweep varies n_steps.
    """
    if key not in VARY_KEYS:
        raise ConfigError(f"cannot sweep {echo(key)}; a sweep varies one of: {', '.join(VARY_KEYS)}")
    configs = [base.replace(**{key: v}) for v in values]
    ds = data if isinstance(data, Dataset) else make_dataset(base, data)
    say = progress or (lambda frac, text: None)
    t0 = time.perf_counter()
    notes = []
    why = batch_reason(configs) if batched and len(configs) > 1 else "batching off"
    results: list[TrainResult]
    if why is None:
        say(0.0, f"training {len(configs)} members as one batch")

        def on_step(step, snaps):
            say(0.8 * step / max(base.train_steps, 1), f"batched training: step {step} of {base.train_steps}")

        if pool is not None and pool.size > 1:  # (two or more members always make two or more lanes)
            results = pool.train_batched(configs, ds, log_every=log_every, cancel=cancel,
                                         progress=lambda step: on_step(step, None))
        else:
            results = train_batched(configs, data=ds, log_every=log_every, cancel=cancel, progress=on_step)
        walls = [time.perf_counter() - t0] * len(configs)
    elif pool is not None:  # side by side, one member per worker of the executor
        if batched and len(configs) > 1:
            notes.append(f"trained side by side, one member per worker: {why}")

        def finished(k, n):
            say(0.8 * k / n, f"member {k} of {n} finished")

        results = pool.train_members(configs, ds, log_every=log_every, cancel=cancel, progress=finished)
        walls = [r.metrics.get("elapsed_s", float("nan")) for r in results]
    else:
        if batched and len(configs) > 1:
            notes.append(f"trained one after another: {why}")
        results, walls = [], []
        for i, c in enumerate(configs):
            say(0.8 * i / len(configs), f"training member {i + 1} of {len(configs)} ({key}={values[i]})")
            t = time.perf_counter()
            try:
                results.append(train(c, data=ds, log_every=log_every, cancel=cancel))
            except Exception as e:  # TrainingDiverged carries the last finite state
                if getattr(e, "result", None) is None:
                    raise
                results.append(e.result)
            walls.append(time.perf_counter() - t)
    members = []
    for i, (v, r) in enumerate(zip(values, results)):
        say(0.8 + 0.15 * i / len(values), f"measuring member {i + 1} of {len(values)}")
        err, ratio, drift = member_diagnostics(r.model, ds.x_train, seed=base.seed)
        members.append(Member(v, r, walls[i], len(configs) if why is None else 1, err, ratio, drift))
    transfer, conv, conv_note = None, None, ""
    if key == "n_steps":
        say(0.95, "depth transfer")
        cols = sorted(set(values) | set(transfer_to or []))
        transfer = depth_transfer([m.model for m in members], ds, cols)
        say(0.97, "order of convergence on one field")
        conv, conv_note = one_field_order(members[-1])
    say(1.0, "done")
    return SweepResult(base, key, list(values), members, ds, time.perf_counter() - t0, why is None, transfer, notes,
                       conv, conv_note)


# ---------------------------------------------------------------- coarse to fine
REFINE_KINDS = ("constant", "linear")


def _prolongation(old_times: np.ndarray, new_times: np.ndarray, kind: str = "constant") -> np.ndarray:
    """(L', L) matrix taking per-step weights on the old partition to the new one.

    ``constant``: the per-step field is piecewise constant in t (block k on (t_(k-1), t_k]), so each
    new block takes the weights of the old block its midpoint lies in: the field v(t, x) is unchanged
    and only the steps shrink. ``linear``: weights interpolated linearly between the old blocks'
    midpoints (a smoother field, but a different one).
    """
    om = (old_times[1:] + old_times[:-1]) / 2
    nm = (new_times[1:] + new_times[:-1]) / 2
    if kind == "constant":
        k = np.clip(np.searchsorted(old_times[1:], nm, side="left"), 0, len(om) - 1)
        return np.eye(len(om))[k]
    if kind == "linear":
        return np.stack([np.interp(nm, om, np.eye(len(om))[j]) for j in range(len(om))], 1)
    raise ConfigError(f"unknown refinement {kind!r}; valid: {', '.join(REFINE_KINDS)}")


def refined_config(config: Config) -> Config:
    """The config of the partition with twice the steps that refines ``config``'s: every old t_k is a new t_(2k).

    Uniform: L -> 2L. Geometric with ratio r: 2L steps with ratio sqrt(r), since
    t_k = T (r^k - 1) / (r^L - 1) = T (sqrt(r)^(2k) - 1) / (sqrt(r)^(2L) - 1): each old step splits into two
    with the ratio sqrt(r). (2L steps with the same ratio r would not contain the old points.)
    """
    if config.partition == "geometric" and config.partition_ratio != 1.0:
        return config.replace(n_steps=2 * config.n_steps, partition_ratio=math.sqrt(config.partition_ratio))
    return config.replace(n_steps=2 * config.n_steps)


def refine(model: FlowModel, kind: str = "constant") -> FlowModel:
    """The same flow on a partition with twice the steps that refines the old one (:func:`refined_config`).

    Tied and continuous weights are already functions of t: the model is re-discretised as is.
    Per-step weights are carried over by ``kind`` (see :func:`_prolongation`); with ``constant`` (the default)
    every new block lies inside one old block, so the field v(t, x) is exactly unchanged and the first
    evaluation at 2L differs from the last at L only by the smaller steps. (A geometric partition therefore
    gets the ratio sqrt(r); ``linear`` changes the field by design.)
    """
    cfg = refined_config(model.config)
    if model.config.time_mode != "per_step":
        return model.rediscretised(n_steps=cfg.n_steps, partition_ratio=cfg.partition_ratio)
    fine = build_model(cfg, model.n_classes).to(model.device)
    M = torch.as_tensor(_prolongation(model.times, fine.times, kind), dtype=torch.float32, device=model.device)
    with torch.no_grad():
        for name in model.field.names:
            getattr(fine.field, name).copy_(torch.tensordot(M, getattr(model.field, name), dims=1))
        fine.head_W.copy_(model.head_W)
        fine.head_b.copy_(model.head_b)
    fine.train(False)
    return fine


@dataclass
class CoarseToFine:
    """Coarse-to-fine training against training at the finest L from scratch.

    ``history``: rows with level, L, cumulative step and the train loss; ``jumps``: per doubling
    (L, loss before at L, loss right after at 2L). Cost in block evaluations: sum of steps x L.
    """

    levels: list[int]
    history: list[dict]
    jumps: list[dict]
    result: TrainResult
    wall_s: float
    cost: int
    scratch: TrainResult | None
    scratch_wall_s: float
    scratch_cost: int


def coarse_to_fine(config: Config, *, L_start: int, L_end: int, steps_per_level: int | None = None,
                   data=None, log_every: int = 10, compare: bool = True, cancel=None,
                   kind: str = "constant") -> CoarseToFine:
    """Train at L_start, double until L_end (each level ``steps_per_level`` optimiser steps).

    ``kind``: how per-step weights are carried to the finer partition (:func:`refine`).
    With ``compare``, also train at L_end from scratch for the same total number of optimiser steps.
    """
    if L_start < 1 or L_end < L_start or L_end > 256:
        raise ConfigError(f"coarse to fine needs 1 <= L_start <= L_end <= 256; got {L_start}, {L_end}")
    levels = [L_start]
    while levels[-1] * 2 <= L_end:
        levels.append(levels[-1] * 2)
    spl = steps_per_level or config.train_steps
    ds = data if isinstance(data, Dataset) else make_dataset(config, data)
    dev_model = None
    history, jumps = [], []
    t0 = time.perf_counter()
    done = 0
    last = None
    for li, L in enumerate(levels):
        if dev_model is None:
            cfg = config.replace(n_steps=L, train_steps=spl)
            dev_model = build_model(cfg, ds.n_classes)
        else:
            before = history[-1]
            dev_model = refine(dev_model, kind)
            cfg = dev_model.config.replace(train_steps=spl)
            x = torch.as_tensor(ds.x_train, device=dev_model.device)
            y = torch.as_tensor(ds.y_train, device=dev_model.device)
            loss, acc = evaluate(dev_model, x, y)
            jumps.append({"L": L // 2, "loss_before": before["loss"], "loss_after": loss,
                          "accuracy_before": before["train_accuracy"], "accuracy_after": acc})
        for last in train_iter(cfg, data=ds, log_every=log_every, model=dev_model, cancel=cancel):
            history.append({"level": li, "L": L, "step": done + last.step, "loss": last.loss,
                            "train_accuracy": last.train_accuracy, "test_accuracy": last.test_accuracy})
        done += last.step
        if last.error or last.cancelled:
            break
    wall = time.perf_counter() - t0
    dev_model.train(False)
    final_cfg = dev_model.config.replace(train_steps=done)  # (a refined geometric partition has ratio r^(1/2^j))
    result = TrainResult(final_cfg, dev_model, ds, history, last.metrics(steps=done, elapsed=wall), last.error)
    cost = sum(spl * L for L in levels)
    scratch, s_wall, s_cost = None, 0.0, 0
    if compare:
        sc = final_cfg.replace(train_steps=spl * len(levels))  # the same finest partition, from scratch
        t = time.perf_counter()
        try:
            scratch = train(sc, data=ds, log_every=log_every, cancel=cancel)
        except Exception as e:
            scratch = getattr(e, "result", None)
            if scratch is None:
                raise
        s_wall, s_cost = time.perf_counter() - t, sc.train_steps * sc.n_steps
    return CoarseToFine(levels, history, jumps, result, wall, cost, scratch, s_wall, s_cost)
