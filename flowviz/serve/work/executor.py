"""Where the work is done: the ``Executor`` interface and the table of its implementations.

An executor lends workers. A :class:`Lease` is one worker held for one task: ``send`` a request (bytes of
``flowviz.serve.work.protocol``), ``receive`` its replies as they come, ``cancel`` it. A task :meth:`~Executor.take`s
a lease (in its lane, in its client's turn) and :meth:`~Executor.give`s it back; each implementation says how
it lends a worker and takes one back (:meth:`~Executor.lend`, :meth:`~Executor.reclaim`). A worker that is lost
mid-task raises ``WorkerDied`` from ``receive``: the caller keeps the last state it had. Only bytes cross a
lease (JSON + safetensors), so a worker may live in a thread, a process or on another machine; nothing assumes
shared memory.

On that one primitive the tasks are built, one module each with its server half and its worker half
(``work.train``, ``work.views``, ``work.instruments``, ``work.train_batched``, ``work.measure``); the executor's
methods of the same names call them. The executor's size is the server's one concurrency limit: a run, a job
or a lane group waits for a lease.

``EXECUTORS`` names the implementations: ``process`` (the local pool, ``work.pool``), ``thread`` (tasks in
threads of this process, ``work.inprocess``) and ``ray`` (a Ray cluster, ``work.ray_executor``).
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import Any

from ...core.config import Config
from ...core.data import Dataset
from ...training.train import Snapshot
from ..fair import FairQueue, current_client, waiting
from ..settings import Settings
from .protocol import TaskFailed, WorkerDied, decode

__all__ = ["Lease", "Executor", "EXECUTORS", "make_executor", "WorkerDied", "NoFreeWorker"]

log = logging.getLogger("flowviz.serve.work.executor")

# seconds a task that checks its cancel flag only between stages (an analysis) has to stop by itself before its
# worker is cut short (given back unhealthy: a process is ended and replaced)
CANCEL_GRACE_S = 1.0
# ... and a task that stops by itself (between training steps, between instruments, at every evaluation of an
# adaptive solve): a safety net for a computation between two such checks that runs long
STOP_GRACE_S = 5.0


class NoFreeWorker(TaskFailed):
    """No worker was free for a task that does not wait for one (the instruments: trainings go first)."""


class Lease(ABC):
    """One worker, held for one task."""

    @abstractmethod
    def send(self, raw: bytes) -> None:
        """Start the task ``raw`` (an encoded request)."""

    @abstractmethod
    def receive(self, timeout: float) -> bytes | None:
        """The next reply, or None if none came within ``timeout`` s. Raises WorkerDied if the worker is lost."""

    @abstractmethod
    def cancel(self) -> None:
        """Ask the task to stop between two steps (its last reply still comes)."""

    def pid(self) -> int | None:
        """The worker's process id where it has one of its own (tests kill it)."""
        return None


class Executor(ABC):
    """Lends up to ``size`` workers; trains runs and batched sweeps on them.

    Two lanes: a long task (by estimate) takes a worker through :meth:`take` with ``long`` set, and long tasks
    together hold at most ``size - 1`` workers, so one always stays for short runs (with one worker, none).
    """

    size: int
    stop_grace_s = STOP_GRACE_S  # (read by the tasks, which do not import this module)
    cuda_graphs: bool = False  # runs replay their steps from CUDA graphs (make_executor: Settings.cuda_graphs)

    def __init__(self, size: int):
        self.size = size
        self._long_slots = threading.BoundedSemaphore(max(1, size - 1))
        self._long_leases: set[int] = set()
        self._lanes_lock = threading.Lock()
        self._fair = FairQueue()

    @abstractmethod
    def lend(self, cancel=None, *, wait: bool = True) -> Lease | None:
        """A free worker (the implementation's own: no lanes, no turns); waits for one (or, without ``wait``,
        None when none is free). None if ``cancel`` is set while waiting."""

    @abstractmethod
    def reclaim(self, lease: Lease, healthy: bool) -> None:
        """Take a lent worker back; one that is not ``healthy`` (lost, or a task left unfinished) is replaced."""

    def busy(self) -> int:
        """Workers lent out now."""
        return 0

    def waiting(self) -> int:
        """Tasks waiting for a worker now."""
        return self._fair.waiting()

    def busy_pids(self) -> list[int]:
        """Process ids of the workers lent out now, where they have their own."""
        return []

    def prestart(self, n: int = 1) -> threading.Thread | None:
        """Start up to ``n`` workers in the background, so the first run does not wait for one."""
        return None

    @abstractmethod
    def shutdown(self, timeout: float = 2.0) -> None:
        """End every worker within about ``timeout`` s (tasks in hand are cut short)."""

    # ------------------------------------------------------------------ shared by every executor
    def take(self, cancel=None, *, long: bool = False, wait: bool = True, client: str | None = None) -> Lease | None:
        """A worker (:meth:`lend`) in the lane of a ``long`` or a short task; give it back with :meth:`give`. Waiting
        tasks are served round robin by ``client`` (default: the client of this thread's page), oldest first
        within a client (flowviz.serve.fair.FairQueue): one client's many tasks delay only each other."""
        if not wait:
            return self._take_now(cancel, long=long, wait=False)
        ticket = self._fair.enter(client or current_client(), long)
        served = False
        try:
            while True:
                if cancel is not None and cancel.is_set():
                    return None
                if self._fair.first(long_ok=self._long_slots._value > 0) == ticket:
                    lease = self._take_now(cancel, long=long, wait=False)
                    if lease is not None:
                        served = True
                        return lease
                self._fair.wait(0.05)
        finally:
            self._fair.leave(ticket, served=served)

    def _take_now(self, cancel=None, *, long: bool = False, wait: bool = True) -> Lease | None:
        if long:
            while not self._long_slots.acquire(timeout=0.2 if wait else 0):
                if not wait or (cancel is not None and cancel.is_set()):
                    return None
        try:
            lease = self.lend(cancel, wait=wait)
        except BaseException:
            if long:
                self._long_slots.release()
            raise
        if long:
            if lease is None:
                self._long_slots.release()
            else:
                with self._lanes_lock:
                    self._long_leases.add(id(lease))
        return lease

    def give(self, lease: Lease, healthy: bool) -> None:
        """Give back a worker from :meth:`take`."""
        with self._lanes_lock:
            long = id(lease) in self._long_leases
            self._long_leases.discard(id(lease))
        self.reclaim(lease, healthy)
        if long:
            self._long_slots.release()
        self._fair.poke()  # the next waiting task in turn takes it

    def stream(self, lease: Lease, raw: bytes, cancel=None, *, idle: bool = False, through: bool = False) -> Iterator:
        """Send ``raw`` on ``lease`` and yield its decoded replies (header, arrays) up to a ``result`` or (unless
        ``through``) a ``done`` snapshot; ``cancel`` (``is_set()``) is passed on once. A ``fatal`` reply raises
        TaskFailed. With ``idle``, None is yielded whenever no reply came for a moment (to poll several streams)."""
        lease.send(raw)
        sent_cancel = False
        while True:
            if cancel is not None and cancel.is_set() and not sent_cancel:
                lease.cancel()
                sent_cancel = True
            got = lease.receive(0.02 if idle else 0.05)
            if got is None:
                if idle:
                    yield None
                continue
            head, arrays = decode(got)
            if head.get("kind") == "fatal":
                raise TaskFailed(head["fatal"])
            yield head, arrays
            if head.get("kind") == "result" or (head.get("done") and not through):
                return

    def call(
        self,
        raw: bytes,
        cancel=None,
        *,
        started: Callable[[], None] | None = None,
        on_reply: Callable[[dict, dict], None] | None = None,
        stops: bool = False,
        wait: bool = True,
        long: bool = False,
    ) -> tuple[dict, dict]:
        """The ``result`` reply of one task (an analysis); ``started()`` once a worker has it, ``on_reply(header,
        arrays)`` for each reply before the result. A task that cannot stop between steps is cut short when
        ``cancel`` is set: its worker is given back as unhealthy (a process is ended and replaced); one that
        ``stops`` by itself between its steps is waited for, and its worker kept. Without ``wait`` it only takes a
        worker that is free now (NoFreeWorker otherwise). ``long``: in the lane of long tasks. The caller's
        thread is :func:`~flowviz.serve.fair.waiting` meanwhile."""
        with waiting():
            return self._call(raw, cancel, started=started, on_reply=on_reply, stops=stops, wait=wait, long=long)

    def _call(self, raw, cancel, *, started, on_reply, stops, wait, long) -> tuple[dict, dict]:
        lease = self.take(cancel, wait=wait, long=long)
        if lease is None:
            if not wait and not (cancel is not None and cancel.is_set()):
                raise NoFreeWorker("no worker is free now")
            raise TaskFailed("cancelled before a worker took it")
        if started is not None:
            started()
        healthy, asked = False, None
        try:
            for reply in self.stream(lease, raw, cancel, idle=True):  # None while no reply comes
                if reply is not None:
                    head, arrays = reply
                    if head.get("kind") == "result":
                        healthy = True
                        return head, arrays
                    if on_reply is not None:
                        on_reply(head, arrays)
                if cancel is not None and cancel.is_set() and asked is None:
                    asked = time.monotonic()
                # a task asked to stop has CANCEL_GRACE_S to answer (STOP_GRACE_S if it ``stops`` by itself), then
                # is cut short
                if asked is not None and time.monotonic() - asked > (STOP_GRACE_S if stops else CANCEL_GRACE_S):
                    raise TaskFailed("cancelled")
            raise TaskFailed("the task ended without a result")
        except TaskFailed:
            healthy = healthy or not (cancel is not None and cancel.is_set())
            raise
        finally:
            self.give(lease, healthy)

    def take_upto(self, k: int, cancel=None) -> list[Lease]:
        """At least one worker (waiting for it) and up to ``k`` (those free now), in the short lane (a long
        sweep spreads over the free workers and each group is short): a caller never waits while holding
        workers, so two sweeps cannot deadlock each other."""
        first = self.take(cancel)
        if first is None:
            return []
        got = [first]
        while len(got) < k:
            try:
                lease = self.take(None, wait=False)
            except Exception:  # a worker that would not start: go on with those we have
                log.exception("could not start another worker")
                break
            if lease is None:
                break
            got.append(lease)
        return got

    # ------------------------------------------------------------------ the tasks, one module each
    def train(self, config: Config, data: Dataset, **kw: Any) -> Iterator[Snapshot]:
        """A run's snapshots, trained by a worker (then its final views and instruments): ``work.train``."""
        from .train import train

        return train(self, config, data, **kw)

    def analyse(self, model, data: Dataset, **kw: Any) -> tuple:
        """(FlowViews, metrics or None) of ``model``, made by a worker: ``work.views.analyse``."""
        from .views import analyse

        return analyse(self, model, data, **kw)

    def compute(self, model, data: Dataset, what: str, **kw: Any):
        """One computation of a page on ``model``'s weights, made by a worker: ``work.views.compute``."""
        from .views import compute

        return compute(self, model, data, what, **kw)

    def instruments(self, model, data: Dataset, **kw: Any) -> tuple[dict, dict]:
        """The instruments' data of ``model``, made by a worker: ``work.instruments``."""
        from .instruments import instruments

        return instruments(self, model, data, **kw)

    def train_batched(self, configs: list[Config], data: Dataset, **kw: Any) -> list:
        """A batched sweep, its lane groups spread over the free workers: ``work.train_batched``."""
        from .train_batched import train_batched

        return train_batched(self, configs, data, **kw)

    def train_members(self, configs: list[Config], data: Dataset, **kw: Any) -> list:
        """Each config trained to its end by a worker of its own: ``work.train_batched.train_members``."""
        from .train_batched import train_members

        return train_members(self, configs, data, **kw)

    def measure(self, what: str, data: Dataset, **kw: Any):
        """A measurement of trained models (a sweep's, coarse to fine, a member's views), made by a worker:
        ``work.measure``."""
        from .measure import measure

        return measure(self, what, data, **kw)


# name -> "module:class", imported only when chosen (a distributed executor's library costs nothing unused);
# each class is made as cls(size, threads=..., limit_mb=...)
EXECUTORS: dict[str, str] = {
    "process": "flowviz.serve.work.pool:ProcessPool",
    "thread": "flowviz.serve.work.inprocess:ThreadExecutor",
    "ray": "flowviz.serve.work.ray_executor:RayExecutor",  # a Ray cluster (RAY_ADDRESS); the ray extra
}


CLUSTER_EXECUTORS = {"ray"}  # their size is, by default, their cluster's CPU count


def make_executor(settings: Settings, *, size: int | None = None, name: str | None = None) -> Executor:
    """The executor named by ``name``, else ``settings.executor``, else ``settings.worker_mode``."""
    chosen = (name or settings.executor or settings.worker_mode).strip().lower()
    if chosen not in EXECUTORS:
        log.warning("unknown executor %r (valid: %s); using the process pool", chosen, ", ".join(EXECUTORS))
        chosen = "process"
    module, cls = EXECUTORS[chosen].split(":")
    # a cluster knows its own size (its CPUs) unless FLOWVIZ_WORKERS says; a machine's pool defaults to its CPUs
    default = (settings.workers or None) if chosen in CLUSTER_EXECUTORS else settings.worker_count()
    executor = getattr(importlib.import_module(module), cls)(size or default, threads=1, limit_mb=settings.worker_mb)
    executor.cuda_graphs = settings.cuda_graphs  # passed down with each run: training reads no environment
    return executor
