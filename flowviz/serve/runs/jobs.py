"""A longer computation of the page (a sweep, coarse-to-fine training), shared by the sessions that ask for it."""

from __future__ import annotations

import logging
import threading
import time

from ...core.errors import FlowvizError
from ..fair import current_client
from ..work.executor import Executor
from .status import RunStatus

__all__ = ["Job"]

log = logging.getLogger("flowviz.serve.runs.jobs")


class Job:
    """``fn(progress, cancel)`` in a thread of the server, its result shared by key.

    ``progress(frac, text)`` updates what the page shows. A job whose ``fn`` computes in this process
    (``holds_worker``) first takes a worker from ``executor`` and keeps it while it runs, so that the
    executor stays the one bound on concurrent work; one that trains through the executor (a batched
    sweep) takes its workers there itself.
    """

    def __init__(self, key: str, fn, executor: Executor, *, holds_worker: bool = True):
        self.key, self._fn, self._executor, self._holds = key, fn, executor, holds_worker
        self.status = RunStatus.QUEUED
        self.fraction, self.text = 0.0, "waiting for a free worker"
        self.result = None
        self.error: str | None = None
        self.cancel = threading.Event()
        self.started = time.time()
        self.last_seen = time.time()
        self.cache: dict = {}  # derived views, shared by the sessions that watch this job
        self.client = current_client()  # whose job it is (the executor's round robin, flowviz.serve.fair)
        self._thread = threading.Thread(target=self._work, name=f"flowviz-job-{key[:8]}", daemon=True)
        self._thread.start()

    def _progress(self, frac: float, text: str):
        self.fraction, self.text = float(frac), text

    def _work(self):
        lease = self._executor.take(self.cancel, long=True, client=self.client) if self._holds else None
        if self.cancel.is_set() or (self._holds and lease is None):
            self.status = RunStatus.CANCELLED
            if lease is not None:
                self._executor.give(lease, True)
            return
        self.status = RunStatus.TRAINING
        try:
            self.result = self._fn(self._progress, self.cancel)
            self.status = RunStatus.CANCELLED if self.cancel.is_set() else RunStatus.DONE
        except FlowvizError as e:
            self.error, self.status = str(e), RunStatus.ERROR
        except Exception as e:
            if self.cancel.is_set():  # cancelled (the server stopping ends its workers): expected, no error
                log.info("job %s cancelled: %s", self.key, e)
                self.status = RunStatus.CANCELLED
                return
            log.exception("job %s failed", self.key)
            self.error, self.status = f"failed: {type(e).__name__}: {e}", RunStatus.ERROR
        finally:
            if lease is not None:
                self._executor.give(lease, True)

    @property
    def finished(self) -> bool:
        return self.status.finished

    def stop(self):
        self.cancel.set()

    def join(self, timeout: float | None = None):
        self._thread.join(timeout)
