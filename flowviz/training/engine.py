"""One training step, shared by every training loop: a single run, a batched sweep, a CUDA-graph replay.

An :class:`Engine` holds the members' parameters (one member for a run, several for a batched sweep), one
optimiser over all of them, a backup of each member's weights before its last step, the generator of the
mini-batches and the training points. :meth:`Engine.step` draws a mini-batch, computes every member's loss,
stops each member whose loss is not finite (:meth:`Engine.restore`: its weights go back to the backup) and
takes one optimiser step for the others. :meth:`Engine.run` drives the steps: cancelling between them, a
:class:`Mark` every ``log_every`` steps, at a divergence and at the end; the callers turn marks into snapshots.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from ..core.config import Config
from ..core.solvers import Flag
from ..core.threads import cpu_threads, threads_that_pay

__all__ = ["Engine", "Mark", "OPTIMIZERS", "make_optimizer", "cpu_threads", "step_settings", "threads_that_pay"]

OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}

# losses(xb (b, 2), yb (b,), gen) -> one scalar loss tensor per member
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Generator], list[torch.Tensor]]


def make_optimizer(config: Config, params: list[torch.Tensor], **options: Any) -> torch.optim.Optimizer | None:
    """The config's optimiser over ``params`` (None when there are none); ``options`` go to its constructor.

    On a CPU torch's fused update: one kernel for all tensors instead of the multi-tensor update's dozen calls
    (figures in bench/README.md); the weights of torch's default loop up to
    rounding, the same bits on every run (tests/unit/test_engine.py), and a batched sweep's members still match their
    runs alone (tests/unit/test_sweep.py). Elsewhere, or where a caller chooses ``foreach`` or asks for a
    ``capturable`` optimiser (CUDA graphs), the multi-tensor update."""
    if not params:
        return None
    if "foreach" in options or "capturable" in options or any(p.device.type != "cpu" for p in params):
        options.setdefault("foreach", True)
    else:
        options.setdefault("fused", True)
    opt: torch.optim.Optimizer = OPTIMIZERS[config.optimizer](
        params, lr=config.lr, weight_decay=config.weight_decay, **options
    )
    return opt


@contextmanager
def step_settings(device: torch.device, rows: int, width: int) -> Iterator[None]:
    """While training: denormals flushed, and on a CPU the threads that pay for ``rows`` points of ``width``."""
    torch.set_flush_denormal(True)  # tiny gradients near convergence are denormals: 10x slower arithmetic
    try:
        with threads_that_pay(rows, width, device):
            yield
    finally:
        torch.set_flush_denormal(False)  # the thread's default again (hypothesis and numpy expect IEEE subnormals)


@dataclass(frozen=True)
class Mark:
    """A moment to snapshot: after ``step`` steps, for the members ``members``.

    ``diverged``: the non-finite loss that stopped the (one) member at step ``step + 1``.
    """

    step: int
    members: tuple[int, ...]
    done: bool = False
    cancelled: bool = False
    diverged: float | None = None


class Engine:
    """The members' parameters, their optimiser, backups, mini-batch generator and training points.

    ``params``: one list of trainable tensors per member; ``opt``: one optimiser over all of them (Adam and SGD
    act element by element, so members do not interact); ``losses(xb, yb, gen)``: the members' losses on a
    mini-batch; ``x`` (n, 2), ``y`` (n,): the training points; ``batch_size``: 0 or >= n for full batches;
    ``seed``: seeds ``gen`` (mini-batches and viscous noise).
    """

    def __init__(
        self,
        params: list[list[torch.Tensor]],
        opt: torch.optim.Optimizer | None,
        losses: LossFn,
        *,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        seed: int,
    ) -> None:
        self.params, self.opt, self.losses = params, opt, losses
        self.x, self.y, self.batch_size = x, y, batch_size
        self.gen = torch.Generator(device=x.device).manual_seed(seed + 3)
        self.backup = [[p.detach().clone() for p in ps] for ps in params]  # each member's weights before its step
        self.live = tuple(range(len(params)))  # the members still training

    def state(self) -> tuple[torch.Tensor, dict[str, Any]]:
        """(the mini-batch generator's state, a CPU copy of the optimiser's state): what a resumed run needs."""
        opt = self.opt.state_dict() if self.opt is not None else {}
        return self.gen.get_state(), _cpu_copy(opt)

    def load(self, generator: torch.Tensor, optimizer: dict[str, Any]) -> None:
        """Go on from :meth:`state` (the parameters already hold the weights of that moment)."""
        self.gen.set_state(generator)
        if self.opt is not None and optimizer:
            self.opt.load_state_dict(optimizer)

    def draw(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next mini-batch (xb (b, 2), yb (b,)): ``batch_size`` points drawn without replacement, or all."""
        n, bs = len(self.x), self.batch_size
        if bs and bs < n:
            idx = torch.randperm(n, generator=self.gen, device=self.x.device)[:bs]
            return self.x[idx], self.y[idx]
        return self.x, self.y

    def restore(self, member: int) -> None:
        """Stop ``member`` with its backed-up weights (those before its last step: the last with a finite loss)."""
        with torch.no_grad():
            torch._foreach_copy_(self.params[member], self.backup[member])
        self.live = tuple(i for i in self.live if i != member)

    def step(self) -> list[tuple[int, float]]:
        """One training step of every live member; returns (member, loss) of those stopped by a non-finite loss."""
        losses = self.losses(*self.draw(), self.gen)
        if len(losses) == 1:
            values = [losses[0].item()]
        else:
            values = torch.stack([lo.detach() for lo in losses]).tolist()
        stopped = [(i, values[i]) for i in self.live if not math.isfinite(values[i])]
        for i, _ in stopped:
            self.restore(i)
        if self.live:
            self._update(losses)
        return stopped

    def _update(self, losses: list[torch.Tensor]) -> None:
        """Back up the live members' weights, then one optimiser step on the sum of their losses."""
        with torch.no_grad():
            for i in self.live:
                torch._foreach_copy_(self.backup[i], self.params[i])
        assert self.opt is not None  # live members have parameters, so an optimiser
        self.opt.zero_grad(set_to_none=True)
        # the sum's gradient in each member's weights is that of its own loss
        total = losses[0] if len(losses) == 1 else torch.stack([losses[i] for i in self.live]).sum()
        total.backward()  # type: ignore[no-untyped-call]  # torch's Tensor.backward is untyped
        for i in range(len(self.params)):
            if i not in self.live:  # stopped members keep their weights: no gradient, no decay
                for p in self.params[i]:
                    p.grad = None
        self.opt.step()

    def run(
        self,
        total_steps: int,
        *,
        log_every: int,
        cancel: Flag | None = None,
        first: int = 0,
        until: int | None = None,
        after: Callable[[int], None] | None = None,
    ) -> Iterator[Mark]:
        """Steps ``first`` + 1 .. ``total_steps``, marking every ``log_every``-th (not the last), each divergence
        and the end.

        ``cancel``: anything with ``is_set()``, checked before each step; when set, the live members are marked
        cancelled at the step before and the run ends. ``until``: end after that step as if cancelled then (a
        paused run's single steps). ``after(step)``: called after each step that leaves a member training.
        """
        step = first
        for step in range(first + 1, total_steps + 1):
            if cancel is not None and cancel.is_set():
                yield Mark(step - 1, self.live, done=True, cancelled=True)
                return
            for i, value in self.step():
                yield Mark(step - 1, (i,), done=True, diverged=value)
            if not self.live:
                return
            if after is not None:
                after(step)
            if until is not None and step >= until and step != total_steps:
                yield Mark(step, self.live, done=True, cancelled=True)
                return
            if step % log_every == 0 and step != total_steps:
                yield Mark(step, self.live)
        yield Mark(step, self.live, done=True)


def _cpu_copy(obj: Any) -> Any:
    """``obj`` (nested dicts and lists of tensors and numbers) with every tensor copied to the CPU: the same
    structure."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, dict):
        return {k: _cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu_copy(v) for v in obj)
    return obj
