"""Coarse-to-fine training: train at L, double the partition, go on (Haber and Ruthotto's multilevel idea).

:func:`refine` carries a model to the partition with twice the steps that refines its own (the same field for
per-step weights carried piecewise constant in t; tied and continuous weights re-discretised as they are);
:func:`coarse_to_fine` trains level by level and compares with training at the finest L from scratch.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from ..core.config import Config
from ..core.data import Dataset, Points, make_dataset
from ..core.errors import ConfigError
from ..core.model import FlowModel, build_model
from ..core.solvers import Flag
from .train import Snapshot, TrainResult, evaluate, train, train_iter

__all__ = ["REFINE_KINDS", "refine", "refined_config", "coarse_levels", "coarse_to_fine", "CoarseToFine"]

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
        P: np.ndarray = np.eye(len(om))[k]
        return P
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
    history: list[dict[str, float]]
    jumps: list[dict[str, float]]
    result: TrainResult
    wall_s: float
    cost: int
    scratch: TrainResult | None
    scratch_wall_s: float
    scratch_cost: int


def coarse_levels(L_start: int, L_end: int) -> list[int]:
    """The depths coarse to fine trains at: L_start, doubled while <= L_end; ConfigError unless
    1 <= L_start <= L_end <= 256."""
    if L_start < 1 or L_end < L_start or L_end > 256:
        raise ConfigError(f"coarse to fine needs 1 <= L_start <= L_end <= 256; got {L_start}, {L_end}")
    levels = [L_start]
    while levels[-1] * 2 <= L_end:
        levels.append(levels[-1] * 2)
    return levels


def coarse_to_fine(
    config: Config,
    *,
    L_start: int,
    L_end: int,
    steps_per_level: int | None = None,
    data: Dataset | Points | None = None,
    log_every: int = 10,
    compare: bool = True,
    cancel: Flag | None = None,
    kind: str = "constant",
) -> CoarseToFine:
    """Train at L_start, double until L_end (each level ``steps_per_level`` optimiser steps).

    ``kind``: how per-step weights are carried to the finer partition (:func:`refine`).
    With ``compare``, also train at L_end from scratch for the same total number of optimiser steps.
    """
    levels = coarse_levels(L_start, L_end)
    spl = steps_per_level or config.train_steps
    ds = data if isinstance(data, Dataset) else make_dataset(config, data)
    dev_model: FlowModel | None = None
    history: list[dict[str, float]] = []
    jumps: list[dict[str, float]] = []
    t0 = time.perf_counter()
    done = 0
    last: Snapshot | None = None
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
            jumps.append(
                {
                    "L": L // 2,
                    "loss_before": before["loss"],
                    "loss_after": loss,
                    "accuracy_before": before["train_accuracy"],
                    "accuracy_after": acc,
                }
            )
        for last in train_iter(cfg, data=ds, log_every=log_every, model=dev_model, cancel=cancel):
            history.append(
                {
                    "level": li,
                    "L": L,
                    "step": done + last.step,
                    "loss": last.loss,
                    "train_accuracy": last.train_accuracy,
                    "test_accuracy": last.test_accuracy,
                }
            )
        assert last is not None  # train_iter yields at least its last snapshot
        done += last.step
        if last.error or last.cancelled:
            break
    wall = time.perf_counter() - t0
    assert dev_model is not None and last is not None  # there is at least one level
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
