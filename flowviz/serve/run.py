"""One run: trained on a worker of the executor, its latest snapshot and views read by every page that shows it."""

from __future__ import annotations

import hashlib
import logging
import threading
import time

import numpy as np

from ..core.config import Config
from ..core.data import Dataset
from ..core.errors import FlowvizError
from ..core.model import build_model
from ..training.analysis import FlowViews, analyse
from ..training.train import Snapshot
from . import cache
from .executor import Executor
from .protocol import TaskFailed, WorkerDied
from .settings import Settings
from .status import RunStatus

__all__ = ["Run", "data_key", "LIVE_EVERY_S", "FIRST_LIVE_ETA_S"]

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
                 settings: Settings | None = None, cost=None):
        self.config, self.data = config, data
        self._executor, self._settings = executor, settings or Settings()
        self.cost = cost  # the estimate (flowviz.core.cost.Cost) it was admitted with, or None
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

    @property
    def long(self) -> bool:
        """Estimated longer than the server's ``long_run_s``: trains in the long lane."""
        return self.cost is not None and self.cost.seconds > self._settings.long_run_s

    def remaining_s(self) -> float | None:
        """Seconds of training left: from its own speed once it trains, else its estimate; None if unknown."""
        if self.finished:
            return 0.0
        if self.latest is not None and self.latest.steps_per_second > 0:
            return _eta(self.latest)
        return None if self.cost is None else self.cost.seconds

    def _started(self):
        self.status = RunStatus.TRAINING

    def _train(self, config: Config):
        """Train ``config`` on a worker, publishing snapshots as they come."""
        try:
            every = max(1, min(25, config.train_steps // 40 or 1))
            for snap in self._executor.train(config, self.data, log_every=every, cancel=self.cancel,
                                             started=self._started, long=self.long):
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
            said = str(e) if isinstance(e, TaskFailed) else f"{type(e).__name__}: {e}"  # the worker names it
            self.error, self.status = f"training failed: {said}", RunStatus.ERROR

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
            if final and self._executor is not None:  # the full pictures are heavy: a worker makes them
                try:
                    v, _ = self._executor.analyse(model, self.data, history=list(self.history))
                except (TaskFailed, WorkerDied) as e:
                    log.error("run %s: final views failed: %s", self.key, e)
                    self.notice = f"The final pictures could not be made ({e}); the last live ones stay."
                    self._final = True
                    return self._views
            else:  # live views while training are light (subsampled, no reference solution)
                v = analyse(model, self.data, history=list(self.history), live=not final)
            self._views, self._views_step, self._views_time, self._final = v, snap.step, time.time(), final
            return v

    def set_views(self, views: FlowViews) -> None:
        """Full views made elsewhere (an imported run's, by a worker)."""
        with self._lock:
            self._views, self._final = views, True
            self._views_step = self.latest.step if self.latest is not None else -1

    def stop(self):
        self.cancel.set()

    def join(self, timeout: float | None = None):
        if self._thread is not None:
            self._thread.join(timeout)
