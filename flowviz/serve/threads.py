"""The in-process executor: each task in a thread of the server (debugging; FLOWVIZ_WORKER_MODE=thread).

It runs the same task handlers as a worker process (``flowviz.serve.worker_main``) and passes the same bytes,
so what works here works across a pipe or a cluster.
"""

from __future__ import annotations

import queue
import threading

from .executor import Executor, Lease
from .protocol import WorkerDied

__all__ = ["ThreadExecutor"]


class _ThreadLease(Lease):
    """A task run by ``worker_main.handle`` in a thread of this process; replies through a queue."""

    def __init__(self):
        self._replies: queue.SimpleQueue = queue.SimpleQueue()
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None

    def send(self, raw: bytes) -> None:
        from .worker_main import handle

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


class ThreadExecutor(Executor):
    """``size`` tasks at once, each in a thread of this process (debugging; shares the server's interpreter)."""

    def __init__(self, size: int, threads: int = 1, limit_mb: float = 0.0):
        super().__init__(size)
        self._slots = threading.BoundedSemaphore(size)
        self._busy: set[_ThreadLease] = set()
        self._lock = threading.Lock()

    def acquire(self, cancel=None, *, wait: bool = True) -> Lease | None:
        while True:
            if cancel is not None and cancel.is_set():
                return None
            if self._slots.acquire(timeout=0.2) if wait else self._slots.acquire(blocking=False):
                break
            if not wait:
                return None
        lease = _ThreadLease()
        with self._lock:
            self._busy.add(lease)
        return lease

    def release(self, lease: Lease, healthy: bool) -> None:
        lease.cancel()  # a task given back unfinished stops at its next step
        with self._lock:
            self._busy.discard(lease)
        self._slots.release()

    def busy(self) -> int:
        with self._lock:
            return len(self._busy)

    def shutdown(self, timeout: float = 2.0) -> None:
        with self._lock:
            busy = list(self._busy)
        for lease in busy:
            lease.cancel()
        for lease in busy:  # a thread cannot be killed: it stops at its next step
            lease.join(timeout)
