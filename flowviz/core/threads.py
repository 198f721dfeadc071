"""The torch threads that pay for a piece of CPU work, and a context that uses them while inside.

Small work on two threads is not only no faster: on a busy machine each small op waits for the other thread
(several times slower; figures in bench/README.md). Training, analysis and the reference solutions pick threads
here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["cpu_threads", "threads_that_pay"]


def cpu_threads(n_points: int, width: int) -> int:
    """Torch threads that pay at this size: below ~10^6 hidden activations per step the ops are
    too small to split, and a second thread only adds synchronisation (see bench/train_scaling.py)."""
    return 1 if n_points * width < 1_000_000 else torch.get_num_threads()


@contextmanager
def threads_that_pay(rows: int, width: int, device: torch.device | None = None) -> Iterator[None]:
    """While inside: on a CPU, the torch threads that pay for ``rows`` points of ``width`` (:func:`cpu_threads`).
    The setting is the process's (torch has no per-thread one): servers run their own work on one thread anyway."""
    saved = torch.get_num_threads()
    if device is None or device.type == "cpu":
        torch.set_num_threads(cpu_threads(rows, width))
    try:
        yield
    finally:
        torch.set_num_threads(saved)
