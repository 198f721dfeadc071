"""Executors whose workers are started per lease (a thread, a Ray task): ``size`` slots, counted here."""

from __future__ import annotations

import logging
import threading
from abc import abstractmethod

from .executor import Executor, Lease

__all__ = ["SlotExecutor"]

log = logging.getLogger("flowviz.serve.work.executor")


class SlotExecutor(Executor):
    """An executor whose workers are started per lease (a thread, a Ray task): ``size`` slots, counted here.

    Subclasses say how a lease is made (:meth:`new_lease`) and what giving one back does (:meth:`returned`).
    """

    def __init__(self, size: int):
        super().__init__(size)
        self._slots = threading.BoundedSemaphore(size)
        self._busy: set[Lease] = set()
        self._lock = threading.Lock()

    @abstractmethod
    def new_lease(self) -> Lease:
        """A lease for a slot just taken."""

    def returned(self, lease: Lease, healthy: bool) -> None:
        """What giving ``lease`` back does to its task (by default: nothing)."""

    def lend(self, cancel=None, *, wait: bool = True) -> Lease | None:
        while True:
            if cancel is not None and cancel.is_set():
                return None
            if self._slots.acquire(timeout=0.2) if wait else self._slots.acquire(blocking=False):
                break
            if not wait:
                return None
        lease = self.new_lease()
        with self._lock:
            self._busy.add(lease)
            log.info("workers busy: %d of %d", len(self._busy), self.size)  # the line bench/load.py reads
        return lease

    def reclaim(self, lease: Lease, healthy: bool) -> None:
        self.returned(lease, healthy)
        with self._lock:
            self._busy.discard(lease)
        self._slots.release()

    def busy(self) -> int:
        with self._lock:
            return len(self._busy)

    def leases(self) -> list[Lease]:
        """The leases lent out now."""
        with self._lock:
            return list(self._busy)
