"""The in-process executor: each task in a thread of the server (debugging; FLOWVIZ_WORKER_MODE=thread).

It runs the same task handlers as a worker process (``flowviz.serve.work.worker``) and passes the same bytes,
so what works here works across a pipe or a cluster.
"""

from __future__ import annotations

import queue
import threading

from .executor import Lease
from .protocol import WorkerDied
from .slots import SlotExecutor

__all__ = ["ThreadExecutor"]


class _ThreadLease(Lease):
    """A task run by ``worker.handle`` in a thread of this process; replies through a queue."""

    def __init__(self):
        self._replies: queue.SimpleQueue = queue.SimpleQueue()
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None

    def send(self, raw: bytes) -> None:
        from .worker import handle

        self._cancel.clear()

        def work():
            for reply in handle(raw, self._cancel):
                self._replies.put(reply)

        t = threading.Thread(target=work, name="flowviz-task", daemon=True)
        t.start()
        self._thread = t  # (set once started: shutdown may join it from another thread)

    def receive(self, timeout: float) -> bytes | None:
        try:
            return self._replies.get(timeout=timeout)
        except queue.Empty:
            if self._thread is not None and not self._thread.is_alive() and self._replies.empty():
                raise WorkerDied("the training thread stopped unexpectedly") from None
            return None

    def cancel(self) -> None:
        self._cancel.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)


class ThreadExecutor(SlotExecutor):
    """``size`` tasks at once, each in a thread of this process (debugging; shares the server's interpreter)."""

    def __init__(self, size: int, threads: int = 1, limit_mb: float = 0.0):
        super().__init__(size)

    def new_lease(self) -> Lease:
        return _ThreadLease()

    def returned(self, lease: Lease, healthy: bool) -> None:
        lease.cancel()  # a task given back unfinished stops at its next step

    def shutdown(self, timeout: float = 2.0) -> None:
        busy = self.leases()
        for lease in busy:
            lease.cancel()
        for lease in busy:  # a thread cannot be killed: it stops at its next step
            lease.join(timeout)
