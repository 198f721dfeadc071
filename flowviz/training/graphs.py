"""The training engine with each step replayed from a CUDA graph (opt-in: ``train(..., cuda_graphs=True)``; a server
sets it from its setting FLOWVIZ_CUDA_GRAPHS=1, read by ``flowviz.serve.settings``: training reads no environment).

At flowviz's sizes a training step on a GPU is a few hundred small kernels (two to four per block each way,
the optimiser's updates), so the GPU mostly waits for Python to launch them. Forward, backward and optimiser
step are captured once as a CUDA graph (torch.cuda.graphs) and replayed each step: one launch. The steps are
``Engine.step``'s, with two differences of bookkeeping: the loss is read after the replay (the update is
already done), so a non-finite loss restores the weights from two buffers back, which are the weights
``Engine.step`` keeps in that case; and mini-batches are copied into fixed input tensors before each replay.

Off by default until measured on a GPU (bench/cuda_graphs.py, bench/gpu_check.sh).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from ..core.model import FlowModel
from .engine import Engine, LossFn

WARMUP_STEPS = 3  # eager steps on a side stream before the capture, as torch.cuda.graphs asks


def graphs_apply(model: FlowModel, device: torch.device, enabled: bool = False) -> bool:
    """True when this run's steps are replayed from a CUDA graph: ``enabled`` (the caller's ``cuda_graphs``), a
    CUDA device, and a step with no host synchronisation or random numbers inside (the hand-written chain; no
    viscous noise)."""
    return enabled and device.type == "cuda" and model.fast_path_applies(training=True) and model.config.viscosity == 0


@contextmanager
def _side_stream() -> Iterator[None]:
    """Eager warm-up steps run on a side stream before a capture (what torch.cuda.graphs asks)."""
    side = torch.cuda.Stream()  # type: ignore[no-untyped-call]  # torch's Stream constructor is untyped
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        yield
    torch.cuda.current_stream().wait_stream(side)


def _capture(fn: Callable[[], torch.Tensor]) -> tuple[Callable[[], None], torch.Tensor]:
    """Record ``fn`` (forward, backward, optimiser step) as a CUDA graph: (replay, the loss tensor it writes)."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):  # recorded, not run
        out = fn()
    return graph.replay, out


class GraphEngine(Engine):
    """The engine of one run, each step after the first ``WARMUP_STEPS`` one replay of a captured CUDA graph.

    The optimiser must be capturable (Adam(capturable=True), or SGD). A replay's loss is read after its update:
    a non-finite one restores the weights from one step further back, which are the weights ``Engine.step``
    keeps in that case.
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
        super().__init__(params, opt, losses, x=x, y=y, batch_size=batch_size, seed=seed)
        mini = bool(batch_size and batch_size < len(x))
        self.xb = x[:batch_size].clone() if mini else x  # fixed inputs: a replay reads these addresses
        self.yb = y[:batch_size].clone() if mini else y
        self.prev = [b.clone() for b in self.backup[0]]  # the weights one step before the backup
        self.taken = 0
        self.replay: Callable[[], None] | None = None
        self.static_loss: torch.Tensor | None = None

    def draw(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next mini-batch, copied into the fixed inputs."""
        xb, yb = super().draw()
        if xb is not self.x:
            self.xb.copy_(xb)
            self.yb.copy_(yb)
        return self.xb, self.yb

    def _graph_step(self) -> torch.Tensor:  # what one replay does (grads are None at the capture: no zeroing)
        assert self.opt is not None  # a graphed run has parameters
        self.opt.zero_grad(set_to_none=False)
        (loss,) = self.losses(self.xb, self.yb, self.gen)
        loss.backward()  # type: ignore[no-untyped-call]  # torch's Tensor.backward is untyped
        self.opt.step()
        return loss

    def step(self) -> list[tuple[int, float]]:
        self.taken += 1
        if self.taken <= WARMUP_STEPS:  # eager warm-up steps (real steps)
            with _side_stream():
                return super().step()
        if self.replay is None:
            assert self.opt is not None
            self.opt.zero_grad(set_to_none=True)
            self.replay, self.static_loss = _capture(self._graph_step)
        self.draw()
        self.prev, self.backup[0] = self.backup[0], self.prev  # prev: the weights one step back
        with torch.no_grad():
            torch._foreach_copy_(self.backup[0], self.params[0])
        self.replay()
        assert self.static_loss is not None  # captured with the replay
        value = self.static_loss.item()
        if math.isfinite(value):
            return []
        # this loss is of the weights just backed up, already updated: keep the ones before them
        self.prev, self.backup[0] = self.backup[0], self.prev
        self.restore(0)
        return [(0, value)]
