"""The local executor: a bounded pool of worker processes on this machine.

Training in a thread of the server process shares one interpreter lock with everything the server does
(building views and figures, answering browsers): a watched run trained several times slower there
(bench/streaming.py). Each worker here is a separate process with one torch thread, started once and reused,
talking over a pipe in the bytes of ``flowviz.serve.work.protocol``. A worker that dies mid-task is noticed (end
of file on its pipe) and replaced; the task's caller gets WorkerDied and keeps its last state.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import threading
import time

from .executor import Executor, Lease
from .protocol import CANCEL, WorkerDied

__all__ = ["ProcessPool"]

log = logging.getLogger("flowviz.serve.work.pool")
_open: set[int] = set()  # the pools of this process not shut down yet
_open_lock = threading.Lock()


class _Worker(Lease):
    """One worker process and its pipe; lent as a Lease."""

    def __init__(self, ctx, threads: int, limit_mb: float):
        from .worker import main

        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=main, args=(child, threads, limit_mb), daemon=True, name="flowviz-worker")
        self.proc.start()
        child.close()

    def alive(self) -> bool:
        return self.proc.is_alive()

    def send(self, raw: bytes) -> None:
        try:
            self.conn.send_bytes(raw)
        except (OSError, ValueError):
            raise WorkerDied("the training process stopped unexpectedly") from None

    def receive(self, timeout: float) -> bytes | None:
        try:
            if not self.conn.poll(timeout):
                if not self.alive():
                    raise WorkerDied("the training process stopped unexpectedly")
                return None
            return self.conn.recv_bytes()
        except (EOFError, OSError):
            raise WorkerDied("the training process stopped unexpectedly") from None

    def cancel(self) -> None:
        try:
            self.conn.send_bytes(CANCEL)
        except (OSError, ValueError):  # gone already: receive says so
            pass

    def pid(self) -> int | None:
        return self.proc.pid

    def stop(self, timeout: float = 2.0):
        try:
            self.conn.close()
        finally:
            self.proc.join(timeout)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join(1.0)


class ProcessPool(Executor):
    """``size`` worker processes (``threads`` torch threads each, address space capped ``limit_mb`` above
    what a fresh worker maps; 0: no cap), started on demand and reused."""

    def __init__(self, size: int, threads: int = 1, limit_mb: float = 0.0):
        method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        self._ctx = mp.get_context(method)
        if method == "forkserver":
            # torch._dynamo: torch.optim imports it on the first optimiser (seconds); once, in the server
            self._ctx.set_forkserver_preload(
                [
                    "flowviz.serve.work.forkserver_init",
                    "flowviz.serve.work.worker",
                    "flowviz.training.train",
                    "torch._dynamo",
                ]
            )
        super().__init__(size)
        self.threads, self.limit_mb = threads, limit_mb
        with _open_lock:
            _open.add(id(self))
        self._free: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._cond = threading.Condition()
        self._started = 0
        self._closed = False  # shut down: no worker starts again
        self.replaced = 0  # workers that died (or were given back mid-task) and were replaced

    def _new(self) -> _Worker:
        return _Worker(self._ctx, self.threads, self.limit_mb)

    def lend(self, cancel=None, *, wait: bool = True) -> _Worker | None:
        with self._cond:
            while True:
                if self._closed:
                    raise WorkerDied("the training processes have been shut down (the server is stopping)")
                if cancel is not None and cancel.is_set():
                    return None
                if self._free:
                    w = self._free.pop()
                    self._busy.add(w)
                    log.info("workers busy: %d of %d", len(self._busy), self.size)
                    return w
                if self._started < self.size:
                    self._started += 1
                    break
                if not wait:
                    return None
                self._cond.wait(0.2)
        try:
            w = self._new()
        except Exception:
            with self._cond:
                self._started -= 1
            raise
        with self._cond:
            self._busy.add(w)
            log.info("workers busy: %d of %d", len(self._busy), self.size)
        return w

    def reclaim(self, lease: Lease, healthy: bool) -> None:
        assert isinstance(lease, _Worker)
        with self._cond:
            self._busy.discard(lease)
            keep = healthy and lease.alive()
            if keep:
                self._free.append(lease)
            else:
                self._started -= 1
                self.replaced += 1
            self._cond.notify()
        if not keep:  # a task cut short is mid-computation: it would not notice its pipe close; end it now,
            lease.stop(timeout=0.1)  # outside the lock (a new worker may start meanwhile)

    def busy(self) -> int:
        with self._cond:
            return len(self._busy)

    def idle(self) -> int:
        """Workers started and waiting for a task."""
        with self._cond:
            return len(self._free)

    def busy_pids(self) -> list[int]:
        with self._cond:
            return [w.proc.pid for w in self._busy]

    def pids(self) -> list[int]:
        """Process ids of every worker, busy or idle."""
        with self._cond:
            return [w.proc.pid for w in list(self._busy) + self._free]

    def prestart(self, n: int = 1) -> threading.Thread:
        def work():
            for _ in range(n):
                with self._cond:
                    if self._closed or self._started >= self.size:
                        return
                    self._started += 1
                try:
                    w = self._new()
                except Exception:
                    if id(self) in _open and not self._closed:  # (one shut down meanwhile stopped the forkserver)
                        log.exception("could not start a worker process")
                    with self._cond:
                        self._started -= 1
                    return
                with self._cond:
                    if id(self) not in _open:  # shut down while it started
                        w.stop()
                        return
                    self._free.append(w)
                    self._cond.notify()

        t = threading.Thread(target=work, name="flowviz-prestart", daemon=True)
        t.start()
        return t

    def shutdown(self, timeout: float = 2.0) -> None:
        """End every worker, idle and busy, within about ``timeout`` s (a busy one that does not stop by then is
        killed), then the forkserver and the resource tracker that multiprocessing started for them."""
        with self._cond:
            workers, self._free = self._free + list(self._busy), []
            self._busy.clear()
            self._started = 0
            self._closed = True
            self._cond.notify_all()  # a task waiting for a worker learns now
        for w in workers:
            w.cancel()
            w.conn.close()  # end of file: an idle worker returns at once, a busy one after its step
        deadline = time.monotonic() + timeout
        for w in workers:
            w.proc.join(max(0.0, deadline - time.monotonic()))
        for w in workers:
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join(1.0)
        with _open_lock:
            last = id(self) in _open and len(_open) == 1
            _open.discard(id(self))
        if last:  # no other pool of this process needs them
            stop_helper_processes()


def stop_helper_processes() -> None:
    """Stop multiprocessing's forkserver and resource tracker of this process, if they run (they would outlive
    a server that exits on a signal). Python offers no public call for this; its own tests use these.

    The forkserver is killed first: it only forks workers, and with torch preloaded its own exit at end of file
    could wait on torch's threads (seen here: a shutdown that never returned).
    """
    import os
    import signal
    from multiprocessing import forkserver, resource_tracker

    pid = getattr(forkserver._forkserver, "_forkserver_pid", None)
    if pid:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    for stop in (forkserver._forkserver._stop, resource_tracker._resource_tracker._stop):
        try:
            stop()
        except Exception:  # not running, or already stopping
            log.debug("stopping a multiprocessing helper failed", exc_info=True)
