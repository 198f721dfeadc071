"""Train several runs that differ only in their discretisation as one batched computation.

The members of a depth sweep (L = 1, 2, ..., 64 at fixed T; T at fixed L; time
modes; smoothness penalties) share data, field family, width and optimiser.
Their Euler chains run in one time loop (``fastpath.pack_lanes``: lanes of the
deepest member's length, one batched product per block), their losses are
summed (each member's gradient is that of its own loss) and one optimiser
steps all parameters (Adam and SGD act element by element, so this is the
same as one optimiser per member). Each member therefore follows exactly the
trajectory it would follow alone; tests check this.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from ..core.config import Config
from ..core.data import Dataset, Points, make_dataset
from ..core.fastpath import FAST_ACTIVATIONS, euler_lanes, fold_weights, pack_lanes
from ..core.model import FlowModel, build_model
from ..core.solvers import Flag
from .engine import Engine, make_optimizer, step_settings
from .train import Snapshot, TrainResult, data_tensors, diverged_message, penalties, resolve_device

__all__ = ["BATCH_KEYS", "batch_reason", "lane_groups", "train_batched"]

# keys that may differ between members of one batch (they change the chain's length or weights, not its shape)
BATCH_KEYS = ("n_steps", "horizon", "partition", "partition_ratio", "time_mode", "knots", "smoothness")


def batch_reason(configs: list[Config]) -> str | None:
    """Why these configs cannot train as one batch, or None when they can."""
    if not configs:
        return "no configs"
    c0 = configs[0]
    for c in configs:
        if c.field != "two_layer" or c.scheme != "euler" or c.activation not in FAST_ACTIVATIONS:
            return "only Euler steps of the two-layer field are batched (the hand-written chain)"
        if c.viscosity > 0 or c.kinetic > 0:
            return "viscosity and the kinetic penalty need the recorded path (plain autograd)"
        other = {k: getattr(c, k) for k in Config.keys() if k not in BATCH_KEYS}
        if other != {k: getattr(c0, k) for k in Config.keys() if k not in BATCH_KEYS}:
            return "members differ in more than their discretisation: " + ", ".join(
                sorted(k for k in other if other[k] != getattr(c0, k))
            )
    return None


def lane_groups(configs: list[Config], n: int) -> list[list[int]]:
    """The members split into at most ``n`` groups of whole lanes (``pack_lanes``), lanes dealt round-robin.

    Members are independent models (one joint optimiser acts element by element), so each group can train as
    its own batch, in its own process, with the same numbers: a sweep L = 1..64 is two lanes of 64 blocks,
    one per core.
    """
    plan = pack_lanes([c.n_steps for c in configs])
    lanes = [[m for m, slot in enumerate(plan.slots) if slot[0] == lane] for lane in range(plan.lanes)]
    groups: list[list[int]] = [[] for _ in range(max(1, min(n, len(lanes))))]
    for j, lane in enumerate(lanes):
        groups[j % len(groups)].extend(lane)
    return [sorted(g) for g in groups if g]


class _Batch:
    """The members' models and their joint forward pass."""

    def __init__(self, models: list[FlowModel]):
        self.models = models
        self.plan = pack_lanes([m.L for m in models])

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Every member's logits at points x (n, 2): shape (M, n, C)."""
        folded: list[tuple[torch.Tensor, torch.Tensor]] = []
        base: str | None = None
        for m in self.models:
            W1, b1, W2, b2 = m.stage_params()
            W1a, W2a, base = fold_weights(W1, b1, W2, b2, m.s, m.config.activation)
            folded.append((W1a, W2a))
        assert base is not None  # a batch has members
        xs = euler_lanes(self.models[0].lift(x), folded, base, self.plan)  # (M, n, d)
        # all heads in one product (each is f(x_L) = W x_L + b of its own member)
        Wh = torch.stack([m.head_W for m in self.models])  # (M, C, d)
        bh = torch.stack([m.head_b for m in self.models])  # (M, C)
        return torch.baddbmm(bh[:, None, :], xs, Wh.transpose(1, 2))

    def losses(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Every member's mean cross-entropy on (x, y): shape (M,)."""
        z = self.logits(x)
        M, n, C = z.shape
        return F.cross_entropy(z.reshape(M * n, C), y.repeat(M), reduction="none").view(M, n).mean(1)

    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> list[tuple[float, float]]:
        """(cross-entropy, accuracy) of each member, as ``train.evaluate`` computes them."""
        if len(x) == 0:
            return [(math.nan, math.nan)] * len(self.models)
        with torch.no_grad():
            out = []
            for z in self.logits(x):
                p = torch.softmax(z, -1).clamp_min(1e-12)
                out.append((float(F.nll_loss(p.log(), y)), float((p.argmax(1) == y).float().mean())))
        return out


def train_batched(
    configs: list[Config],
    *,
    data: Dataset | Points | None = None,
    log_every: int = 10,
    cancel: Flag | None = None,
    progress: Callable[[int, list[Snapshot | None]], None] | None = None,
) -> list[TrainResult]:
    """Train every config to the end as one batched computation; one TrainResult per config, in order.

    A member whose loss diverges keeps its last finite weights and stops (its result has ``error``
    set); the others go on. ``progress(step, snapshots)`` is called every ``log_every`` steps.
    """
    why = batch_reason(configs)
    if why:
        raise ValueError(f"these configs cannot be batched: {why}")
    c0 = configs[0]
    dev = resolve_device(c0.device)
    ds = data if isinstance(data, Dataset) else make_dataset(c0, data)
    models = [build_model(c, ds.n_classes).to(dev) for c in configs]
    batch = _Batch(models)
    xtr, ytr, xte, yte = data_tensors(ds, dev)
    params: list[list[torch.Tensor]] = [[p for p in m.parameters() if p.requires_grad] for m in models]
    # one optimiser for all members' tensors: the same update as each run alone (make_optimizer)
    opt = make_optimizer(c0, [p for ps in params for p in ps])

    def losses(xb: torch.Tensor, yb: torch.Tensor, gen: torch.Generator) -> list[torch.Tensor]:
        out = batch.losses(xb, yb).unbind(0)
        return [lo + penalties(m) if m.config.smoothness > 0 else lo for lo, m in zip(out, models)]

    # the same seed, hence the same mini-batches, as each run alone
    engine = Engine(params, opt, losses, x=xtr, y=ytr, batch_size=c0.batch_size, seed=c0.seed)
    histories: list[list[dict[str, Any]]] = [[] for _ in models]
    errors: list[str | None] = [None] * len(models)
    last: list[Snapshot | None] = [None] * len(models)
    t0 = time.perf_counter()
    for m in models:
        m.train()
    with step_settings(dev, c0.batch_size or len(xtr), c0.width):
        for mark in engine.run(c0.train_steps, log_every=log_every, cancel=cancel):
            for m in models:
                m.train(False)
            ev_tr, ev_te = batch.evaluate(xtr, ytr), batch.evaluate(xte, yte)
            for m in models:
                m.train()
            el = time.perf_counter() - t0
            out: list[Snapshot | None] = [None] * len(models)
            for i in mark.members:
                if mark.diverged is not None:
                    errors[i] = diverged_message(configs[i], mark.step + 1, mark.diverged)
                s = Snapshot.at(
                    mark, total_steps=c0.train_steps, train=ev_tr[i], test=ev_te[i], elapsed=el, error=errors[i]
                )
                histories[i].append(s.record())
                last[i] = out[i] = s
            if progress is not None:
                progress(mark.step, out)
    results = []
    for i, m in enumerate(models):
        m.train(False)
        final = last[i]
        assert final is not None  # every member's end is marked
        metrics = final.metrics(device=str(dev), batched=len(models))
        results.append(TrainResult(configs[i], m, ds, histories[i], metrics, errors[i]))
    return results
