"""Runs trained outside the page's script run, shared by config.

Settings come from one :class:`~flowviz.serve.settings.Settings` object, read once when the registry is made.
Finished runs are kept in memory, least recently used first out, up to ``keep`` (32).

A :class:`Run` trains on a worker of the registry's executor (``flowviz.serve.executor``: the local process
pool by default) and publishes its latest snapshot; the page polls it, so moving a slider or switching a tab
never touches training. The :class:`Registry` keys runs by their config (and the CSV data, if any): two
sessions asking for the same config share one run; the executor's size is the one bound on what trains at
once (runs and jobs wait for a worker), and finished runs are kept in a bounded least-recently-used table.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import threading
import time
from collections import OrderedDict

import numpy as np

from ..core.config import Config
from ..core.data import Dataset, make_dataset
from ..core.errors import FlowvizError
from ..core.model import build_model
from ..training.analysis import FlowViews, analyse
from ..training.train import Snapshot
from . import cache
from .executor import Executor, make_executor
from .jobs import Job
from .protocol import WorkerDied
from .settings import Settings
from .status import RunStatus

__all__ = ["Run", "Job", "Registry", "RunStatus", "data_key"]

log = logging.getLogger("flowviz.serve.runs")
LIVE_EVERY_S = 1.0  # live views are rebuilt at most this often while training
FIRST_LIVE_ETA_S = 1.0  # no first live view for a run this close to its end (its full views come next)


def _eta(snap: Snapshot) -> float:
    """Seconds of training left, from the snapshot's own speed (infinite before there is one)."""
    if snap.steps_per_second <= 0:
        return float("inf")
    return (snap.total_steps - snap.step) / snap.steps_per_second


def data_key(data: Dataset | None) -> str:
    """A short hash of user data (empty for generated datasets)."""
    if data is None:
        return ""
    h = hashlib.sha256()
    for a in (data.x_train, data.y_train, data.x_test, data.y_test):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:12]


def _out_of_memory(e: BaseException) -> bool:
    """A CUDA out-of-memory error, raised here or reported by a worker process."""
    import torch

    return isinstance(e, torch.cuda.OutOfMemoryError) or "CUDA out of memory" in str(e) or \
        "OutOfMemoryError" in str(e)


class Run:
    """One training run, driven from a thread of the server, trained on a worker of ``executor``.
    Read ``status`` (a :class:`RunStatus`), ``latest``, ``history`` and ``views()``."""

    def __init__(self, config: Config, data: Dataset, executor: Executor | None, *, restored=None,
                 settings: Settings | None = None):
        self.config, self.data = config, data
        self._executor, self._settings = executor, settings
        self.key = config.key() + data_key(data if config.dataset == "csv" else None)
        self.status = RunStatus.QUEUED
        self.error: str | None = None
        self.notice: str | None = None  # something the page should say (a CPU retry after a GPU ran out of memory)
        self.latest: Snapshot | None = None
        self.history: list[dict] = []
        self.cancel = threading.Event()
        self.started = time.time()
        self.last_seen = time.time()
        self._lock = threading.Lock()
        self._views: FlowViews | None = None
        self._views_step = -1
        self._views_time = 0.0
        self._final = False
        self.from_cache = restored is not None
        if restored is not None:  # (model, history, metrics) of a finished run: no worker needed
            model, history, m = restored
            state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            self.history = list(history)
            self.latest = Snapshot(int(m.get("steps", config.train_steps)), config.train_steps, m["train_loss"],
                                   m["train_accuracy"], m["test_accuracy"], m["test_loss"], m.get("elapsed_s", 0.0),
                                   m.get("steps_per_second", 0.0), state, done=True)
            self.status = RunStatus.DONE
            self._thread = None
            return
        self._thread = threading.Thread(target=self._work, name=f"flowviz-run-{self.key[:8]}", daemon=True)
        self._thread.start()

    # -------------------------------------------------------------- worker
    def _work(self):
        if self.cancel.is_set():
            self.status = RunStatus.CANCELLED
            return
        try:
            self._train(self.config)
        except Exception as e:  # only a GPU out-of-memory error gets here
            log.warning("run %s: %s; training again on the CPU", self.key, e)
            self.notice = "The GPU ran out of memory for this run; it was trained again on the CPU."
            self.history, self.latest = [], None
            try:
                self._train(self.config.replace(device="cpu"))
            except Exception as e2:
                log.exception("run %s failed on the CPU too", self.key)
                self.error, self.status = f"training failed: {type(e2).__name__}: {e2}", RunStatus.ERROR

    def _started(self):
        self.status = RunStatus.TRAINING

    def _train(self, config: Config):
        """Train ``config`` on a worker, publishing snapshots as they come."""
        try:
            every = max(1, min(25, config.train_steps // 40 or 1))
            for snap in self._executor.train(config, self.data, log_every=every, cancel=self.cancel,
                                             started=self._started):
                if snap.state is None and snap.cancelled:  # cancelled before a worker took it
                    self.status = RunStatus.CANCELLED
                    return
                self.history.append(snap.record())
                self.latest = snap
            if self.latest is not None and self.latest.error:
                self.error, self.status = self.latest.error, RunStatus.ERROR
            elif self.latest is not None and self.latest.cancelled:
                self.status = RunStatus.CANCELLED
            else:
                self.status = RunStatus.DONE
                self._store()
            self.views(final=True)  # the full picture, once, in the worker
        except FlowvizError as e:
            self.error, self.status = str(e), RunStatus.ERROR
        except WorkerDied as e:
            log.error("run %s: %s", self.key, e)
            self.error, self.status = f"{e}; the last state is kept. Press Train to try again.", RunStatus.ERROR
        except Exception as e:  # never let a worker die silently; the page shows the message
            if _out_of_memory(e):
                raise  # _work retries on the CPU
            log.exception("run %s failed", self.key)
            self.error, self.status = f"training failed: {type(e).__name__}: {e}", RunStatus.ERROR

    def _store(self):
        """Keep the finished run on disk (generated data only: uploaded points are not in the config)."""
        if self.config.dataset == "csv" or self.latest is None:
            return
        s = self.latest
        model = build_model(self.config, self.data.n_classes)
        model.load_state_dict(s.state)
        cache.store(self.config, model, self.history, s.metrics(), settings=self._settings)

    # --------------------------------------------------------------- views
    @property
    def finished(self) -> bool:
        return RunStatus(self.status).finished

    def views(self, *, final: bool = False) -> FlowViews | None:
        """The views of the latest state: live (light) while training, full once finished. Shared and cached."""
        snap = self.latest
        if snap is None or snap.state is None:
            return None
        final = final or self.finished  # a finished run (or one restored from the cache) shows the full picture
        with self._lock:
            if self._final or (self._views_step == snap.step and self._views is not None and not final):
                return self._views
            if not final and self._views is not None and time.time() - self._views_time < LIVE_EVERY_S:
                return self._views
            if not final and (snap.done or (self._views is None and _eta(snap) < FIRST_LIVE_ETA_S)):
                return self._views  # the full picture is about to come: a live one now would only delay it
            model = build_model(self.config, self.data.n_classes)
            model.load_state_dict(snap.state)
            v = analyse(model, self.data, history=list(self.history), live=not final)
            self._views, self._views_step, self._views_time, self._final = v, snap.step, time.time(), final
            return v

    def stop(self):
        self.cancel.set()

    def join(self, timeout: float | None = None):
        if self._thread is not None:
            self._thread.join(timeout)


class Registry:
    """Runs keyed by config; one executor bounds what trains at once; finished runs kept least-recently-used.

    ``settings`` (read from the environment when not given) hold the defaults of ``max_workers`` (the
    executor's size), ``mode`` (the executor's name in ``EXECUTORS``) and ``unwatched_s``.
    """

    def __init__(self, max_workers: int | None = None, keep: int = 32, mode: str | None = None,
                 prestart: bool = True, unwatched_s: float | None = None, settings: Settings | None = None):
        self.settings = settings or Settings.from_env()
        self.mode = mode or self.settings.executor or self.settings.worker_mode
        self.executor = make_executor(self.settings, size=max_workers, name=self.mode)
        self.max_workers = self.executor.size
        self.pool = self.executor  # the name the sweep and the tests use
        # a run that no page has asked about for this long is cancelled (a closed tab must not hold a worker)
        self.unwatched_s = float(unwatched_s if unwatched_s is not None else self.settings.unwatched_s)
        self.cancelled_unwatched = 0
        self._stop = threading.Event()
        threading.Thread(target=self._reap, name="flowviz-reaper", daemon=True).start()
        self._prestart = self.executor.prestart(1) if prestart else None
        if self.mode != "thread":
            # the cores belong to the training processes (and, on one machine, the browsers): the server's own
            # torch work (views of a run) uses one thread. With two, its threads spun against busy cores:
            # the full views of the reference run took 2.4 s instead of 0.4 s (FLOWVIZ_SERVER_THREADS).
            import torch

            torch.set_num_threads(max(1, self.settings.server_threads))
        self.keep = keep
        self._runs: OrderedDict[str, Run] = OrderedDict()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self.started = 0  # runs actually started (for tests and the load benchmark)
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
                idle = [r for r in self._runs.values()
                        if not r.finished and not r.cancel.is_set() and now - r.last_seen > self.unwatched_s]
            for r in idle:
                log.info("cancelling run %s: nobody has watched it for %.0f s", r.key, now - r.last_seen)
                r.cancel.set()
                self.cancelled_unwatched += 1

    def shutdown(self, timeout: float = 5.0):
        """Cancel every run and wait for the workers (a thread killed inside torch aborts the process)."""
        self._stop.set()
        with self._lock:
            runs = list(self._runs.values()) + list(self._jobs.values())
        for r in runs:
            r.cancel.set()
        for r in runs:
            r.join(timeout)
        self.executor.shutdown()

    def get(self, key: str) -> Run | None:
        with self._lock:
            run = self._runs.get(key)
            if run is not None:
                self._runs.move_to_end(key)
                run.last_seen = time.time()
            return run

    def start(self, config: Config, data: Dataset | None = None, *, restart: bool = False) -> Run:
        """The run for this config: an existing live or finished one, or a new one.
        A key beyond its server limit (LIMITS) is a ConfigError: the library may go beyond, a server not."""
        config.check_server_limits()
        ds = data if data is not None else make_dataset(config)
        key = config.key() + data_key(ds if config.dataset == "csv" else None)
        with self._lock:
            run = self._runs.get(key)
            if run is not None and not restart and RunStatus(run.status).reusable:
                self._runs.move_to_end(key)
                return run
            cached = None if restart or config.dataset == "csv" else cache.load(config, settings=self.settings)
            run = Run(config, ds, self.executor, restored=cached, settings=self.settings)
            self.started += cached is None
            log.info("run %s %s (runs started: %d)", run.key, "from the disk cache" if cached else "started",
                     self.started)
            self._runs[key] = run
            self._runs.move_to_end(key)
            self._evict()
            return run

    def warm(self, configs: list[Config]) -> threading.Thread:
        """In the background, load the cached runs of these configs and compute their views, so a prebuilt
        scenario is on screen as soon as it is chosen. Configs that are not cached are skipped."""

        def work():
            for cfg in configs:
                try:
                    path = cache.cache_path(cfg, self.settings)
                    if path is not None and path.is_file():
                        run = self.start(cfg)
                        if run.from_cache:
                            run.views(final=True)
                except Exception:  # warming is a courtesy: never fatal
                    log.exception("warming %s failed", cfg.key())

        t = threading.Thread(target=work, name="flowviz-warm", daemon=True)
        t.start()
        return t

    def adopt(self, model, data: Dataset, *, key_suffix: str = "") -> Run:
        """A finished run made from imported weights, evaluated on ``data``; its key includes ``key_suffix``.
        A run beyond the server's limits (LIMITS) is refused with a ConfigError."""
        import torch

        model.config.check_server_limits()

        from ..training.train import evaluate, run_metrics

        dev = model.device
        tr = evaluate(model, torch.as_tensor(data.x_train, device=dev), torch.as_tensor(data.y_train, device=dev))
        te = evaluate(model, torch.as_tensor(data.x_test, device=dev), torch.as_tensor(data.y_test, device=dev))
        metrics = run_metrics(train=tr, test=te, steps=model.config.train_steps)
        run = Run(model.config, data, self.executor, restored=(model, [], metrics))
        run.key = f"{run.key}-import-{key_suffix}"
        with self._lock:
            self._runs[run.key] = run
            self._evict()
        return run

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
        with self._lock:
            return self._jobs.get(key)

    def _evict(self):
        finished = [k for k, r in self._runs.items() if r.finished]
        while len(self._runs) > self.keep and finished:
            self._runs.pop(finished.pop(0), None)

    def queued_before(self, run: Run) -> int:
        """How many runs started earlier are still waiting for a worker."""
        with self._lock:
            return sum(1 for r in self._runs.values() if RunStatus(r.status).waiting and r.started < run.started)

    def active(self) -> int:
        with self._lock:
            return sum(1 for r in self._runs.values() if RunStatus(r.status).active)


