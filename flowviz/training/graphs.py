"""The training loop with each step replayed from a CUDA graph (opt-in: FLOWVIZ_CUDA_GRAPHS=1).

At flowviz's sizes a training step on a GPU is a few hundred small kernels (two to four per block each way,
the optimiser's updates), so the GPU mostly waits for Python to launch them. Forward, backward and optimiser
step are captured once as a CUDA graph (torch.cuda.graphs) and replayed each step: one launch. The steps are
the same as ``train._loop``'s, with two differences of bookkeeping: the loss is read after the replay (the
update is already done), so a non-finite loss restores the weights from two buffers back, which are the weights
``_loop`` keeps in that case; and mini-batches are copied into fixed input tensors before each replay.

Off by default until measured on a GPU (bench/cuda_graphs.py, bench/gpu_check.sh).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F

WARMUP_STEPS = 3  # eager steps on a side stream before the capture, as torch.cuda.graphs asks


def graphs_apply(model, device: torch.device) -> bool:
    """True when this run's steps are replayed from a CUDA graph: FLOWVIZ_CUDA_GRAPHS=1, a CUDA device, and a
    step with no host synchronisation or random numbers inside (the hand-written chain; no viscous noise)."""
    return (os.environ.get("FLOWVIZ_CUDA_GRAPHS", "0") == "1" and device.type == "cuda"
            and model.fast_path_applies(training=True) and model.config.viscosity == 0)


@contextmanager
def _side_stream():
    """Eager warm-up steps run on a side stream before a capture (what torch.cuda.graphs asks)."""
    side = torch.cuda.Stream()
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


def graph_loop(config, model, opt, params: list, backup: list, gen, xtr, ytr, snap: Callable, cancel,
               log_every: int, penalty: Callable | None, diverged: Callable[[int, float], str]) -> Iterator:
    """Snapshots of training ``model`` as ``train._loop`` yields them, each step one graph replay.

    ``penalty(model, xb)``: the extra loss terms (or None); ``diverged(step, loss)``: the message for a
    non-finite loss. ``opt`` must be capturable (Adam(capturable=True), or SGD).
    """
    n, bs = len(xtr), config.batch_size
    mini = bool(bs and bs < n)
    xb = xtr[:bs].clone() if mini else xtr  # fixed inputs: a replay reads these addresses
    yb = ytr[:bs].clone() if mini else ytr
    prev = [b.clone() for b in backup]  # the weights before the last step, restored on a non-finite loss

    def draw():
        if mini:
            idx = torch.randperm(n, generator=gen, device=xtr.device)[:bs]
            xb.copy_(xtr[idx])
            yb.copy_(ytr[idx])

    def loss_fn():
        loss = F.cross_entropy(model(xb), yb)
        return loss + penalty(model, xb) if penalty is not None else loss

    def restore(step, value):
        with torch.no_grad():
            torch._foreach_copy_(params, prev)
        return snap(step - 1, done=True, error=diverged(step, value))

    def train_step():  # what one replay does (grads are None at the capture: the zeroing records nothing)
        opt.zero_grad(set_to_none=False)
        loss = loss_fn()
        loss.backward()
        opt.step()
        return loss

    step, pending = 0, []
    with _side_stream():  # eager warm-up steps (real steps), as _loop does them
        for step in range(1, min(WARMUP_STEPS, config.train_steps) + 1):
            if cancel is not None and cancel.is_set():
                pending.append(snap(step - 1, done=True, cancelled=True))
                break
            draw()
            loss = loss_fn()
            value = loss.item()
            if not math.isfinite(value):
                with torch.no_grad():
                    torch._foreach_copy_(params, backup)
                pending.append(snap(step - 1, done=True, error=diverged(step, value)))
                break
            with torch.no_grad():
                torch._foreach_copy_(prev, backup)
                torch._foreach_copy_(backup, params)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step % log_every == 0 and step != config.train_steps:
                pending.append(snap(step))
    yield from pending
    if pending and pending[-1].done:
        return
    if step >= config.train_steps:
        yield snap(step, done=True)
        return
    opt.zero_grad(set_to_none=True)
    replay, static_loss = _capture(train_step)
    first = step + 1
    for step in range(first, config.train_steps + 1):
        if cancel is not None and cancel.is_set():
            yield snap(step - 1, done=True, cancelled=True)
            return
        draw()
        prev, backup = backup, prev  # prev: the weights one step back; backup: the weights now
        with torch.no_grad():
            torch._foreach_copy_(backup, params)
        replay()
        value = static_loss.item()
        if not math.isfinite(value):  # this loss is of the weights in backup: keep the ones before them
            yield restore(step, value)
            return
        if step % log_every == 0 and step != config.train_steps:
            yield snap(step)
    yield snap(step, done=True)
