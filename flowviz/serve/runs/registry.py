"""Runs trained outside the page's script run, shared by config.

Settings come from one :class:`~flowviz.serve.settings.Settings` object, read once when the registry is made.
Finished runs are kept in memory, least recently used first out, up to ``keep`` (32).

A :class:`Run` trains on a worker of the registry's executor (``flowviz.serve.work.executor``: the local process
pool by default) and publishes its latest snapshot; the page polls it, so moving a slider or switching a tab
never touches training. The :class:`Registry` keys runs by their config (and the CSV data, if any): two
sessions asking for the same config share one run; the executor's size is the one bound on what trains at
once (runs and jobs wait for a worker), and finished runs are kept in a bounded least-recently-used table.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections import OrderedDict

from ...core.config import Config
from ...core.data import Dataset, make_dataset
from ...core.errors import FlowvizError
from ...runfiles import cache
from .. import budget
from ..fair import Admission, current_client
from ..settings import Settings
from ..work.executor import make_executor
from .jobs import Job
from .run import Run, data_key
from .status import RunStatus

__all__ = ["Run", "Job", "Registry", "RunStatus", "data_key"]

log = logging.getLogger("flowviz.serve.runs.registry")


class Registry:
    """Runs keyed by config; one executor bounds what trains at once; finished runs kept least-recently-used.

    ``settings`` (read from the environment when not given) hold the defaults of ``max_workers`` (the
    executor's size), ``mode`` (the executor's name in ``EXECUTORS``) and ``unwatched_s``.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        keep: int = 32,
        mode: str | None = None,
        prestart: bool = True,
        unwatched_s: float | None = None,
        settings: Settings | None = None,
    ):
        self.settings = settings or Settings.from_env()
        self.mode = mode or self.settings.executor or self.settings.worker_mode
        self.executor = make_executor(self.settings, size=max_workers, name=self.mode)
        self.max_workers = self.executor.size
        # a run that no page has asked about for this long is cancelled (a closed tab must not hold a worker)
        self.unwatched_s = float(unwatched_s if unwatched_s is not None else self.settings.unwatched_s)
        self.cancelled_unwatched = 0
        self._stop = threading.Event()
        self._prestart = self.executor.prestart(1) if prestart else None
        if self.mode != "thread":
            # the cores belong to the training processes (and, on one machine, the browsers): the server's own
            # torch work (views of a run) uses one thread: with two, its threads spin against busy cores
            # (FLOWVIZ_SERVER_THREADS; figures in bench/README.md).
            import torch

            torch.set_num_threads(max(1, self.settings.server_threads))
        self.keep = keep
        self._runs: OrderedDict[str, Run] = OrderedDict()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._claims: dict[str, set[str]] = {}  # session -> the keys of the one job it holds
        self._side = None  # the view worker(s): a page's computations on a run's weights (made on first use)
        self.admission = Admission(
            self.settings.client_sessions, self.settings.client_reruns, seconds=self.settings.script_seconds
        )
        self.replaced = 0  # runs and jobs cancelled because their session started another
        self.started = 0  # runs actually started (for tests and the load benchmark)
        threading.Thread(target=self._reap, name="flowviz-reaper", daemon=True).start()  # (all fields set)
        atexit.register(self.shutdown)

    def ready(self, timeout: float | None = None) -> bool:
        """Wait until the first training process has started (at most ``timeout`` s); True if it has."""
        if self._prestart is not None:
            self._prestart.join(timeout)
            return not self._prestart.is_alive()
        return True

    def _reap(self):
        while not self._stop.wait(min(5.0, max(0.1, self.unwatched_s / 4))):
            now = time.time()
            with self._lock:
                left = [
                    r for r in self._runs.values() if not r.unwatched.is_set() and now - r.last_seen > self.unwatched_s
                ]
                jobs = [
                    j
                    for j in self._jobs.values()  # a sweep nobody asks about: its tasks on the workers stop too
                    if not j.finished and not j.cancel.is_set() and now - j.last_seen > self.unwatched_s
                ]
            for r in left:
                r.unwatched.set()  # its final pictures and instruments tasks stop: they are made again when it is shown
                if not r.finished and not r.cancel.is_set():
                    log.info("cancelling run %s: nobody has watched it for %.0f s", r.key, now - r.last_seen)
                    r.cancel.set()
                    self.cancelled_unwatched += 1
            for j in jobs:
                log.info("cancelling job %s: nobody has watched it for %.0f s", j.key, now - j.last_seen)
                j.cancel.set()
                self.cancelled_unwatched += 1

    def shutdown(self, timeout: float = 2.0):
        """Cancel every run and job, end the workers (killed after ``timeout`` s if busy) and wait briefly for
        the threads that drove them: the whole takes about ``timeout`` + 1 s, whatever trains."""
        if self._stop.is_set():
            return
        self._stop.set()
        with self._lock:
            runs = list(self._runs.values()) + list(self._jobs.values())
        for r in runs:  # every run and job marked cancelled before any worker is ended
            if isinstance(r, Run):
                r.stopping()
            else:
                r.cancel.set()
        self.executor.shutdown(timeout)
        if self._side is not None:
            self._side.shutdown(timeout)
        deadline = time.monotonic() + 1.0
        for r in runs:
            r.join(max(0.0, deadline - time.monotonic()))

    def side(self):
        """The view worker(s), started on first use: the executor of a page's computations on a run's weights."""
        with self._lock:
            if self._stop.is_set():
                raise FlowvizError("The server is stopping.")
            if self._side is None:
                self._side = make_executor(
                    self.settings,
                    size=max(1, self.settings.view_workers),
                    name="thread" if self.mode == "thread" else "process",
                )
            return self._side

    def compute(self, run: Run, what: str, **args):
        """``what`` (a click's probe, an instrument of a snapshot: ``work.views.compute``) on ``run``'s latest
        weights, made by the view worker: a process of its own beside the training ones (they may all be
        busy), so a crash in native code ends that process, never the server; the next call starts another.
        Raises FlowvizError with a plain message where it failed or its worker died."""
        from ..work.protocol import TaskFailed, WorkerDied

        snap = run.latest
        if snap is None or snap.state is None:
            raise FlowvizError("This run has no weights yet.")
        side = self.side()
        try:
            return side.compute(run.model(), run.data, what, args=args, limits=run.limits())
        except WorkerDied:
            log.warning("run %s: the worker computing %s for a page died", run.key, what)
            raise FlowvizError(
                "This could not be computed: its worker process stopped unexpectedly. The server "
                "and the other pages are not affected."
            ) from None
        except TaskFailed as e:  # the worker's message: "ConfigError: why", said without the class name
            name, _, why = str(e).partition(": ")
            raise FlowvizError(f"This could not be computed: {why if name.endswith('Error') and why else e}") from None

    def get(self, key: str) -> Run | None:
        with self._lock:
            run = self._runs.get(key)
            if run is not None:
                self._runs.move_to_end(key)
                run.watched()  # and a finished run's instruments are prepared by a worker
            return run

    def start(self, config: Config, data: Dataset | None = None, *, restart: bool = False) -> Run:
        """The run for this config: an existing live or finished one, or a new one.

        Raises OverBudget (a ConfigError naming the cost and the keys that drive it) for a new run estimated
        over the server's budget; a key beyond its server limit (LIMITS) is a ConfigError too. Once the registry
        is shut down, a new run is refused (FlowvizError): its workers are gone.
        """
        config.check_server_limits()
        ds = data if data is not None else make_dataset(config)
        key = config.key() + data_key(ds if config.dataset == "csv" else None)
        with self._lock:
            run = self._runs.get(key)
            if run is not None and not restart and RunStatus(run.status).reusable:
                self._runs.move_to_end(key)
                return run
            if self._stop.is_set():  # (under the lock: shutdown() marks every run it finds here unwatched)
                raise FlowvizError("The server is stopping: no new run is started.")
            cached = None if restart or config.dataset == "csv" else cache.load(config, settings=self.settings)
            costs = None if cached else budget.check([config], len(ds.x_train), self.settings, live=True)
            client = current_client()
            if (
                cached is None
                and self.settings.client_queued > 0
                and sum(
                    1
                    for r in self._runs.values()
                    if r.client == client and RunStatus(r.status).waiting and not r.cancel.is_set()
                )
                >= self.settings.client_queued
            ):
                raise FlowvizError(
                    f"{self.settings.client_queued} runs from your address are already waiting for "
                    "a worker (FLOWVIZ_CLIENT_QUEUED): this one was not started. Try again when "
                    "some have begun."
                )
            run = Run(
                config,
                ds,
                self.executor,
                side=self.side,
                restored=cached,
                settings=self.settings,
                cost=costs[0] if costs else None,
                client=client,
            )
            self.started += cached is None
            log.info(
                "run %s %s for %s (runs started: %d)",
                run.key,
                "from the disk cache" if cached else "started",
                client,
                self.started,
            )
            self._runs[key] = run
            self._runs.move_to_end(key)
            self._evict()
            return run

    def warm(self, configs: list[Config]) -> threading.Thread:
        """In the background, load the cached runs of these configs and compute their views, so a prebuilt
        scenario is on screen as soon as it is chosen. Configs that are not cached are skipped."""

        def work():
            for cfg in configs:
                if self._stop.is_set():  # the server is stopping: its workers are going
                    return
                try:
                    path = cache.cache_path(cfg, self.settings)
                    if path is not None and path.is_file():
                        run = self.start(cfg)
                        if run.from_cache:
                            run.views(final=True)
                except Exception:  # warming is a courtesy: never fatal
                    if self._stop.is_set():
                        return
                    log.exception("warming %s failed", cfg.key())

        t = threading.Thread(target=work, name="flowviz-warm", daemon=True)
        t.start()
        return t

    def adopt(self, model, data: Dataset, *, key_suffix: str = "") -> Run:
        """A finished run made from imported weights, evaluated and analysed on ``data`` by a worker (an import
        can be as heavy as the largest run: its cost is checked against the budget first, a key beyond the
        server's limits (LIMITS) is refused); its key includes ``key_suffix``."""
        model.config.check_server_limits()
        budget.check([model.config], len(data.x_train), self.settings, what="Analysing this run", analysis_only=True)
        views, metrics = self.executor.analyse(model, data, metrics=True)
        run = Run(
            model.config, data, self.executor, side=self.side, restored=(model, [], metrics), settings=self.settings
        )
        run.set_views(views)
        run.key = f"{run.key}-import-{key_suffix}"
        with self._lock:
            self._runs[run.key] = run
            self._evict()
        return run

    def own_copy(self, run: Run, session: str) -> Run:
        """A new run of ``run``'s config and data, for ``session`` alone (a window that may not stop a run others
        watch): its key is the run's with the session's mark, so that Stop or Pause there touch only it."""
        with self._lock:
            if self._stop.is_set():
                raise FlowvizError("The server is stopping: no new run is started.")
            costs = budget.check([run.config], len(run.data.x_train), self.settings, live=True)
            copy = Run(
                run.config,
                run.data,
                self.executor,
                side=self.side,
                settings=self.settings,
                cost=costs[0] if costs else None,
            )
            copy.key = f"{run.key.split('~')[0]}~{session[:8]}"
            copy.owners.add(session)
            self.started += 1
            self._runs[copy.key] = copy
            self._evict()
            return copy

    def job(self, key: str, fn, *, restart: bool = False, holds_worker: bool = True) -> Job:
        """The job for this key (live or finished), or a new one running ``fn`` (see :class:`Job` for
        ``holds_worker``)."""
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and not restart and job.status.reusable:
                self._jobs.move_to_end(key)
                return job
            job = Job(key, fn, self.executor, holds_worker=holds_worker)
            self._jobs[key] = job
            done = [k for k, j in self._jobs.items() if j.finished]
            while len(self._jobs) > max(4, self.keep // 4) and done:
                self._jobs.pop(done.pop(0), None)
            return job

    def get_job(self, key: str) -> Job | None:
        """The job of ``key``, if any; asking counts as watching it (see ``unwatched_s``)."""
        with self._lock:
            job = self._jobs.get(key)
            if job is not None:
                job.last_seen = time.time()
            return job

    def _evict(self):
        finished = [k for k, r in self._runs.items() if r.finished]
        while len(self._runs) > self.keep and finished:
            self._runs.pop(finished.pop(0)).unwatched.set()  # dropped: its instruments task stops

    def check_budget(self, configs: list[Config], data: Dataset, *, what: str = "This run") -> None:
        """OverBudget if ``configs`` trained one after the other are over the server's budget."""
        budget.check(configs, len(data.x_train), self.settings, what=what)

    def claim(self, session: str, keys) -> None:
        """``session`` now holds the runs or jobs of ``keys`` (a run, a scenario's pair, a sweep) and nothing
        else: what it held before and no other session holds is cancelled if it is still going."""
        keys = {k for k in keys if k}
        with self._lock:
            dropped = self._claims.get(session, set()) - keys
            self._claims[session] = keys
            held = set().union(*self._claims.values())
            gone = [
                w
                for k in dropped - held
                for w in (self._runs.get(k), self._jobs.get(k))
                if w is not None and not w.finished
            ]
            for k in dropped - held:  # nobody holds these runs now: their final pictures and instruments stop
                if k in self._runs:
                    self._runs[k].unwatched.set()
        for w in gone:
            log.info("cancelling %s: its session started something else", w.key)
            w.cancel.set()
            self.replaced += 1

    def queue_place(self, run: Run) -> tuple[int, float | None]:
        """(place in the queue from 1, estimated seconds until a worker takes it, or None if unknown).

        The estimate plays the queue forward: each worker is free when its run's time left is over, and each
        run ahead takes the first free worker for its estimated time.
        """
        import heapq

        with self._lock:
            ahead = _ahead(run, [r for r in self._runs.values() if RunStatus(r.status).waiting and r is not run])
            busy = [r.remaining_s() for r in self._runs.values() if RunStatus(r.status).active]
            busy += [None for j in self._jobs.values() if j.status.active]  # a job's time left is unknown
        free = busy + [0.0] * max(0, self.max_workers - len(busy))
        times = [r.remaining_s() for r in ahead]
        if None in free or None in times or not free:
            return len(ahead) + 1, None
        heapq.heapify(free)
        for t in times:
            heapq.heapreplace(free, free[0] + t)
        return len(ahead) + 1, free[0]

    def queued_before(self, run: Run) -> int:
        """How many waiting runs a worker takes before this one (round robin by client, oldest first in each)."""
        with self._lock:
            return len(_ahead(run, [r for r in self._runs.values() if RunStatus(r.status).waiting and r is not run]))

    def active(self) -> int:
        with self._lock:
            return sum(1 for r in self._runs.values() if RunStatus(r.status).active)


def _ahead(run: Run, waiting: list[Run]) -> list[Run]:
    """The waiting runs a worker takes before ``run`` when the queue is served round robin by client: the k - 1
    older ones of its own client (it is its client's k-th) and the k oldest of every other client."""
    mine = sorted((r for r in waiting if r.client == run.client), key=lambda r: r.started)
    k = sum(1 for r in mine if r.started < run.started) + 1
    by_client: dict[str, list[Run]] = {}
    for r in sorted((r for r in waiting if r.client != run.client), key=lambda r: r.started):
        by_client.setdefault(r.client, []).append(r)
    return mine[: k - 1] + [r for rs in by_client.values() for r in rs[:k]]
