"""Where training runs: the ``Executor`` interface, the in-process implementation, and the table of them.

An executor lends workers. A :class:`Lease` is one worker held for one task: ``send`` a request (bytes of
``flowviz.serve.work.protocol``), ``receive`` its replies as they come, ``cancel`` it, and give it back with
``release``. A worker that is lost mid-task raises ``WorkerDied`` from ``receive``: the caller keeps the last
state it had. Only bytes cross a lease (JSON + safetensors), so a worker may live in a thread, a process or on
another machine; nothing assumes shared memory.

On top of that one primitive, every executor offers the same two things the server needs: :meth:`train`
(a run's snapshots as they come) and :meth:`train_batched` (a batched sweep, its lane groups spread over the
free workers). The executor's size is the server's one concurrency limit: a run, a job or a lane group
waits for a lease.

``EXECUTORS`` names the implementations: ``process`` (the local pool, ``flowviz.serve.work.pool``) and ``thread``
(tasks in threads of this process). A distributed one is one more entry.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator

from ...core.config import Config
from ...core.data import Dataset
from ...training.train import Snapshot
from ..fair import FairQueue, current_client
from ..settings import Settings
from .measure import measured
from .protocol import TaskFailed, WorkerDied, decode, request, result_from, resume_arrays, snapshot_from, with_weights

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
    measure = measured  # a measurement made by a worker (flowviz.serve.work.measure: a sweep's, coarse to fine, views)
    cuda_graphs: bool = False  # runs replay their steps from CUDA graphs (make_executor: Settings.cuda_graphs)

    def __init__(self, size: int):
        self.size = size
        self._long_slots = threading.BoundedSemaphore(max(1, size - 1))
        self._long_leases: set[int] = set()
        self._lanes_lock = threading.Lock()
        self._fair = FairQueue()

    @abstractmethod
    def acquire(self, cancel=None, *, wait: bool = True) -> Lease | None:
        """A free worker; waits for one (or, without ``wait``, None when none is free). None if ``cancel`` is
        set while waiting."""

    @abstractmethod
    def release(self, lease: Lease, healthy: bool) -> None:
        """Give a worker back; one that is not ``healthy`` (lost, or a task left unfinished) is replaced."""

    def busy(self) -> int:
        """Workers lent out now."""
        return 0

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
        """:meth:`acquire` in the lane of a ``long`` or a short task; give it back with :meth:`give`. Waiting
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
            lease = self.acquire(cancel, wait=wait)
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
        self.release(lease, healthy)
        if long:
            self._long_slots.release()
        self._fair.poke()  # the next waiting task in turn takes it

    def stream(self, lease: Lease, raw: bytes, cancel=None, *, idle: bool = False) -> Iterator:
        """Send ``raw`` on ``lease`` and yield its decoded replies (header, arrays) up to a ``result`` or a
        ``done`` snapshot; ``cancel`` (``is_set()``) is passed on once. A ``fatal`` reply raises RuntimeError.
        With ``idle``, None is yielded whenever no reply came for a moment (to poll several streams)."""
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
            if head.get("kind") == "result" or head.get("done"):
                return

    def train(
        self,
        config: Config,
        data: Dataset,
        *,
        log_every: int,
        cancel=None,
        started: Callable[[], None] | None = None,
        long: bool = False,
        start=None,
        weights=None,
        until: int | None = None,
        client: str | None = None,
    ) -> Iterator[Snapshot]:
        """Snapshots of ``config`` trained by a worker (in the lane of ``long`` runs if set); ``started()`` is
        called once a worker has the run. ``start`` (a TrainState) with ``weights``: go on from a paused run;
        ``until``: pause after that step; ``client``: whose run it is (the queue's round robin).

        Raises WorkerDied if the worker is lost mid-run, RuntimeError with the worker's message if the run
        failed there.
        """
        lease = self.take(cancel, long=long, client=client)
        if lease is None:
            nan = float("nan")  # cancelled before a worker took it: nothing trained, nothing measured
            yield Snapshot(
                step=0,
                total_steps=config.train_steps,
                loss=nan,
                train_accuracy=nan,
                test_accuracy=nan,
                test_loss=nan,
                elapsed=0.0,
                steps_per_second=0.0,
                done=True,
                cancelled=True,
            )
            return
        healthy = False
        try:
            if started is not None:
                started()
            head0, extra = resume_arrays(start, weights) if start is not None else ({}, {})
            raw = request(
                "run",
                data,
                config=config,
                log_every=log_every,
                cuda_graphs=self.cuda_graphs,
                until=until,
                extra=extra,
                **head0,
            )
            for head, arrays in self.stream(lease, raw, cancel):
                snap = snapshot_from(head, arrays)
                healthy = snap.done
                yield snap
        except TaskFailed:
            healthy = True  # the task failed, the worker is fine
            raise
        finally:
            self.give(lease, healthy)

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
        worker that is free now (NoFreeWorker otherwise). ``long``: in the lane of long tasks."""
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

    def analyse(
        self,
        model,
        data: Dataset,
        *,
        history=None,
        live: bool = False,
        metrics: bool = False,
        cancel=None,
        budget_s: float | None = None,
        info: dict | None = None,
    ) -> tuple:
        """(FlowViews, metrics or None) of ``model`` on ``data``, made by a worker; TaskFailed once ``cancel`` is
        set (the worker stops between the analysis' stages, or is cut short after CANCEL_GRACE_S).

        ``budget_s``: the seconds the final pictures and instruments may take; the worker re-estimates them with
        the flow's stiffness measured first and budgets its adaptive solves (``info`` gets ``reestimate``,
        ``stiffness`` and ``max_evals``, to pass on to :meth:`instruments`)."""
        from .protocol import unpack

        extra = {} if budget_s is None else {"budget_s": float(budget_s)}
        raw = request(
            "analyse", data, config=model.config, history=list(history or []), live=live, metrics=metrics, **extra
        )
        head, arrays = self.call(with_weights(raw, model), cancel)
        if head.get("cancelled"):
            raise TaskFailed("cancelled")
        if info is not None:
            info.update({k: head[k] for k in ("reestimate", "stiffness", "max_evals") if k in head})
        return unpack(head["views"], arrays), head.get("metrics")

    def instruments(
        self,
        model,
        data: Dataset,
        *,
        extent,
        names=None,
        cancel=None,
        started: Callable[[], None] | None = None,
        made: Callable[[str, object, str | None], None] | None = None,
        wait: bool = True,
        limits: dict | None = None,
    ) -> tuple[dict, dict]:
        """(objects by name, messages by name) of the instruments of ``model`` on ``data`` over the box
        ``extent`` (flowviz.training.prepared), made by a worker; ``started()`` once a worker has the task,
        ``made(name, object, message)`` as each arrives. A task cancelled on its way returns those made before;
        without ``wait``, NoFreeWorker unless a worker is free now. ``limits``: ``budget_s``, ``stiffness`` and
        ``max_evals`` of the adaptive solves (what :meth:`analyse` measured), passed to the worker."""
        from .protocol import unpack

        got, errors = {}, {}

        def one(head, arrays):
            obj = unpack(head["data"], arrays)
            (got if head["error"] is None else errors)[head["name"]] = obj if head["error"] is None else head["error"]
            if made is not None:
                made(head["name"], obj, head["error"])

        raw = request(
            "instruments",
            data,
            config=model.config,
            extent=[float(a) for a in extent],
            names=None if names is None else list(names),
            **{k: v for k, v in (limits or {}).items() if v is not None},
        )
        self.call(with_weights(raw, model), cancel, started=started, on_reply=one, stops=True, wait=wait)
        return got, errors

    def compute(
        self, model, data: Dataset, what: str, *, args: dict | None = None, cancel=None, limits: dict | None = None
    ):
        """``what`` (a key of ``worker_main._views``: a click's probe, a snapshot's instrument) on ``model``'s
        weights, made by a worker; TaskFailed with the worker's message where it failed, WorkerDied where the
        worker was lost (its process crashed)."""
        from .protocol import unpack

        raw = request(
            "compute",
            data,
            config=model.config,
            what=what,
            args=dict(args or {}),
            **{k: v for k, v in (limits or {}).items() if v is not None},
        )
        head, arrays = self.call(with_weights(raw, model), cancel, stops=True)
        return unpack(head["data"], arrays)

    def acquire_upto(self, k: int, cancel=None) -> list[Lease]:
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

    def train_batched(
        self,
        configs: list[Config],
        data: Dataset,
        *,
        log_every: int = 25,
        cancel=None,
        progress: Callable[[int], None] | None = None,
    ) -> list:
        """``batch.train_batched`` with the members' lanes spread over the free workers (one group each).

        The same numbers as one batch in one process (members are independent); ``progress(step)`` reports
        the slowest group's step. Raises WorkerDied if a worker is lost mid-run.
        """
        from ...core.model import build_model
        from ...training.batch import lane_groups
        from ...training.train import TrainResult

        leases = self.acquire_upto(len(lane_groups(configs, self.size)), cancel)
        if not leases:  # cancelled while waiting: every member ends cancelled at step 0, as in one process
            from ...training.batch import train_batched

            return train_batched(configs, data=data, log_every=log_every, cancel=cancel)
        groups = lane_groups(configs, len(leases))
        for lease in leases[len(groups) :]:
            self.give(lease, True)
        leases = leases[: len(groups)]
        streams = [
            self.stream(
                lease, request("batch", data, configs=[configs[i] for i in g], log_every=log_every), cancel, idle=True
            )
            for lease, g in zip(leases, groups)
        ]
        steps, done, out = [0] * len(leases), [False] * len(leases), {}
        try:
            for i, head, arrays in _merged(streams):
                if head["kind"] == "progress":
                    steps[i] = int(head["progress"])
                    if progress is not None:
                        progress(min(steps))
                    continue
                done[i] = True
                for j, (m, res) in enumerate(zip(groups[i], head["results"])):
                    out[m] = ({k.split("/", 1)[1]: v for k, v in arrays.items() if k.split("/", 1)[0] == str(j)}, res)
        except TaskFailed:
            done = [True] * len(leases)  # the task failed in the worker; the workers are fine
            raise
        finally:
            for lease, ok in zip(leases, done):
                self.give(lease, ok)
        import torch

        results = []
        for i, cfg in enumerate(configs):
            state, res = out[i]
            model = build_model(cfg, data.n_classes)
            model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
            model.train(False)
            results.append(TrainResult(cfg, model, data, res["history"], res["metrics"], res["error"]))
        return results

    def train_members(
        self,
        configs: list[Config],
        data: Dataset,
        *,
        log_every: int = 25,
        cancel=None,
        progress: Callable[[int, int], None] | None = None,
    ) -> list:
        """Each config trained to the end by a worker of its own, as many at once as the executor lends (the
        members of a sweep that cannot be batched): the same numbers as ``flowviz.train`` one by one.

        ``progress(finished, total)`` as members finish. A member that diverged keeps its last finite state
        and says so in its ``error``, as the one-by-one sweep keeps it. Raises WorkerDied if a worker is lost.
        """
        from concurrent.futures import ThreadPoolExecutor

        finished = [0]
        lock = threading.Lock()

        def one(cfg: Config):
            snaps = list(self.train(cfg, data, log_every=log_every, cancel=cancel))
            with lock:
                finished[0] += 1
                if progress is not None:
                    progress(finished[0], len(configs))
            return result_from(cfg, data, snaps)

        with ThreadPoolExecutor(
            max_workers=max(1, min(self.size, len(configs))), thread_name_prefix="flowviz-member"
        ) as threads:
            return list(threads.map(one, configs))


def _merged(streams: list) -> Iterator[tuple[int, dict, dict]]:
    """(index, header, arrays) of several lease streams, interleaved as their replies come."""
    live = dict(enumerate(streams))
    while live:
        for i, s in list(live.items()):
            try:
                got = next(s)
            except StopIteration:
                del live[i]
                continue
            if got is not None:
                yield i, *got


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
