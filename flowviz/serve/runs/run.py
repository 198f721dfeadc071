"""One run: trained on a worker of the executor, its latest snapshot and views read by every page that shows it."""

from __future__ import annotations

import hashlib
import logging
import threading
import time

import numpy as np

from ...core.config import Config
from ...core.data import Dataset
from ...core.errors import FlowvizError
from ...core.lru import LRU
from ...runfiles import cache
from ...training.analysis import FlowViews, analyse
from ...training.prepared import PREPARED, applies
from ...training.train import Snapshot
from ..fair import current_client, waiting
from ..settings import Settings
from ..work.executor import Executor, NoFreeWorker
from ..work.protocol import TaskFailed, WorkerDied
from ..work.weights import state_model
from .status import RunStatus

__all__ = ["Run", "RunAt", "data_key"]

log = logging.getLogger("flowviz.serve.runs.run")
PICTURES_MIN_S = 30.0  # the final pictures and instruments of any admitted run may take this long at least


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


def _cancelled(e: BaseException) -> bool:
    """A worker task that was stopped (its cancel seen by the worker or the executor), not one that failed."""
    return isinstance(e, TaskFailed) and str(e).startswith(("Cancelled", "cancelled"))


def _cuda_out_of_memory(e: BaseException) -> bool:
    """A CUDA out-of-memory error, raised here or reported by a worker process."""
    import torch

    return isinstance(e, torch.cuda.OutOfMemoryError) or "CUDA out of memory" in str(e) or "OutOfMemoryError" in str(e)


class Run:
    """One training run, driven from a thread of the server, trained on a worker of ``executor``.
    Read ``status`` (a :class:`RunStatus`), ``latest``, ``history`` and ``views()``."""

    def __init__(
        self,
        config: Config,
        data: Dataset,
        executor: Executor | None,
        *,
        side=None,
        restored=None,
        settings: Settings | None = None,
        cost=None,
        client: str | None = None,
    ):
        self.config, self.data = config, data
        self.client = client or current_client()  # the address of the page that started it (flowviz.serve.fair)
        self._executor, self._settings = executor, settings or Settings()
        self._side = side  # () -> the view worker's executor: a kept step's views while the run trains
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
        self._final = False
        self.from_cache = restored is not None
        # nobody watches it (the registry sets this): its final pictures and instruments are not made
        self.unwatched = threading.Event()
        self._finishing = threading.Event()  # its training worker makes its final views and instruments now
        self._models: LRU = LRU(4)  # id(state) -> (state, the model in that state): see model()
        self._instruments: dict = {}  # name -> the instrument's data of the final state, made by a worker
        self._instrument_errors: dict = {}  # name -> why that instrument does not fit this run
        self._prep: threading.Thread | None = None  # the thread waiting for the instruments task
        self._prep_lock = threading.Lock()
        self._prep_queued = False  # the instruments task waits for a worker
        self._prep_failed = False  # it failed (not cancelled): the page says so, no retries
        self._told_busy = False  # the log said that no worker was free for its instruments
        self._limits: dict | None = None  # budget_s, stiffness, max_evals of its adaptive solves (after analyse)
        self.kept: dict[int, dict] = {}  # step -> CPU weights of the run's checkpoints (core.cost.checkpoint_steps)
        self.train_state = None  # what a paused (or finished) run goes on from (flowviz.training.train.TrainState)
        self._go_lock = threading.Lock()
        self._pausing = False  # pause() asked: the cancelled run keeps its state and can go on
        self._at_views: dict[int, FlowViews] = {}  # the views of kept steps shown (views_at), a few
        self.at_notice: dict[int, str] = {}  # kept step -> why its views could not be made
        self.owners: set[str] = set()  # the sessions that started it (the page adds itself)
        self.viewers: dict[str, float] = {}  # session -> when its page last showed this run
        if restored is not None:  # (model, history, metrics[, kept, train state]) of a finished run: no worker
            model, history, m = restored[:3]
            if len(restored) > 3:
                self.kept, self.train_state = dict(restored[3] or {}), restored[4]
            state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            self.history = list(history)
            self.latest = Snapshot(
                step=int(m.get("steps", config.train_steps)),
                total_steps=config.train_steps,
                loss=m["train_loss"],
                train_accuracy=m["train_accuracy"],
                test_accuracy=m["test_accuracy"],
                test_loss=m["test_loss"],
                elapsed=m.get("elapsed_s", 0.0),
                steps_per_second=m.get("steps_per_second", 0.0),
                state=state,
                done=True,
            )
            self.status = RunStatus.DONE
            self._thread = None
            return
        self._thread = threading.Thread(target=self._work, name=f"flowviz-run-{self.key[:8]}", daemon=True)
        self._thread.start()

    # -------------------------------------------------------------- worker
    def _work(self, start=None, until: int | None = None):
        if self.cancel.is_set():
            self.status = RunStatus.PAUSED if self._pausing else RunStatus.CANCELLED
            return
        try:
            self._train(self.config, start=start, until=until)
        except Exception as e:  # only a GPU out-of-memory error gets here
            if self.cancel.is_set():
                self.status = RunStatus.CANCELLED
                return
            log.warning("run %s: %s; training again on the CPU", self.key, e)
            self.notice = "The GPU ran out of memory for this run; it was trained again on the CPU."
            self.history, self.latest, self.kept = [], None, {}
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

    def _train(self, config: Config, start=None, until: int | None = None):
        """Train ``config`` on a worker, publishing snapshots as they come; from ``start`` (a TrainState, the
        latest snapshot holding its weights) if given, pausing after step ``until`` if given."""
        try:
            every = max(1, min(25, config.train_steps // 40 or 1))  # the same whether paused or not
            weights = self.latest.state if start is not None and self.latest is not None else None
            finish = {
                "budget_s": self._settings.max_run_seconds,
                "min_s": PICTURES_MIN_S,
                "names": [n for n in PREPARED if applies(n, self.config)],
            }
            self._finishing.set()  # (cleared when its final views come, or the task ends without them)
            try:
                for snap in self._executor.train(
                    config,
                    self.data,
                    log_every=every,
                    cancel=_Either(self.cancel, self.unwatched),
                    started=self._started,
                    long=self.long,
                    start=start,
                    weights=weights,
                    until=until,
                    client=self.client,
                    finish=finish,
                    history=list(self.history),
                    views_made=self._final_views,
                    instrument_made=self._made,
                    finish_failed=self._instruments_failed,
                    live_made=self._live_views,
                ):
                    if snap.state is None and snap.cancelled:  # cancelled before a worker took it
                        self.status = RunStatus.PAUSED if self._pausing else RunStatus.CANCELLED
                        return
                    self.history.append(snap.record())
                    if snap.kept:
                        self._keep(snap.kept)
                    self.latest = snap
                    if snap.done:  # its final views and instruments follow from the same worker
                        self._ended(snap, until)
            finally:
                self._finishing.clear()
            if not self._final and not self.unwatched.is_set():
                self.views(final=True)  # a run that did not train to its end: the full picture of its last state
        except FlowvizError as e:
            self.error, self.status = str(e), RunStatus.ERROR
        except Exception as e:  # never let a worker die silently; the page shows the message
            done = self.status == RunStatus.DONE  # trained: only its final pictures or instruments were lost
            if self.cancel.is_set() or (done and self.unwatched.is_set()):  # cancelled (the server stopping ends
                log.info("run %s cancelled: %s", self.key, e)  # its workers): whatever the timing, expected
                if not done:
                    self.status = RunStatus.CANCELLED
                return
            if done:
                log.error("run %s: its final pictures could not be made: %s", self.key, e)
                self.notice = f"The final pictures could not be made ({e}); the last live ones stay."
                return
            if isinstance(e, WorkerDied):
                log.error("run %s: %s", self.key, e)
                self.error, self.status = f"{e}; the last state is kept. Press Train to try again.", RunStatus.ERROR
                return
            if _cuda_out_of_memory(e):
                raise  # _work retries on the CPU
            log.exception("run %s failed", self.key)
            said = str(e) if isinstance(e, TaskFailed) else f"{type(e).__name__}: {e}"  # the worker names it
            self.error, self.status = f"training failed: {said}", RunStatus.ERROR

    def _ended(self, last: Snapshot, until: int | None) -> None:
        """The run's last snapshot came: its status, its state to go on from, its entry in the disk cache."""
        if last.train_state is not None:
            self.train_state = last.train_state
        if last.error:
            self.error, self.status = last.error, RunStatus.ERROR
        elif last.cancelled:
            paused = self._pausing or (until is not None and not self.cancel.is_set())
            self.status = RunStatus.PAUSED if paused else RunStatus.CANCELLED
        else:
            self.status = RunStatus.DONE
            self._store()
        if self.status != RunStatus.DONE:
            self._finishing.clear()  # the worker makes final pictures only of a run trained to its end

    def _final_views(self, views: FlowViews | None, info: dict) -> None:
        """The final views that the run's training worker made (or why it could not)."""
        try:
            if views is None and info.get("cancelled"):  # stopped before them: made when the run is next shown
                log.info("run %s: final views cancelled", self.key)
                return
            if views is None:
                log.error("run %s: final views failed: %s", self.key, info.get("error"))
                self.notice = f"The final pictures could not be made ({info.get('error')}); the last live ones stay."
                with self._lock:
                    self._final = True
                return
            self._reestimated(info, views)
            with self._lock:
                self._views = views
                self._final = True
        finally:
            self._finishing.clear()

    def _live_views(self, step: int, views: FlowViews) -> None:
        """Light views of a step, made by the run's training worker as it trains."""
        with self._lock:
            if not self._final:
                self._views = views

    def _instruments_failed(self, message: str) -> None:
        """The run's training worker could not make its instruments: the page computes what is missing itself,
        no instruments task is tried again."""
        log.error("run %s: the instruments' data could not be made: %s", self.key, message)
        self._prep_failed = True

    def _store(self):
        """Keep the finished run on disk (generated data only: uploaded points are not in the config)."""
        if self.config.dataset == "csv" or self.latest is None:
            return
        s = self.latest
        cache.store(
            self.config,
            self.model(),
            self.history,
            s.metrics(),
            settings=self._settings,
            kept=self.kept,
            train_state=self.train_state,
        )

    def _keep(self, new: dict) -> None:
        """Add checkpoints (step -> weights); over the budget (core.cost.checkpoint_count) the densest go."""
        from ...core.cost import checkpoint_count, thin_steps

        kept = {**self.kept, **new}
        one = sum(v.numel() * v.element_size() for v in next(iter(new.values())).values())
        n = checkpoint_count(one)
        self.kept = {k: kept[k] for k in thin_steps(kept, n)} if len(kept) > n else kept

    @property
    def checkpoints(self) -> list[int]:
        """The kept training steps, sorted."""
        return sorted(self.kept)

    # ---------------------------------------------------------- pause, resume, step
    def pause(self) -> bool:
        """Stop between two steps keeping the run and its optimiser state (``go`` goes on); False if it is not
        queued or training."""
        if RunStatus(self.status) not in (RunStatus.QUEUED, RunStatus.TRAINING):
            return False
        self._pausing = True
        self.cancel.set()
        return True

    def go(self, steps: int | None = None) -> bool:
        """Resume a paused run: ``steps`` more optimiser steps then pause again, or (None) to its end, exactly as
        if it had not paused. False if it is not paused."""
        with self._go_lock:
            if self.status != RunStatus.PAUSED:
                return False
            start = self.train_state if self.latest is not None and self.latest.state is not None else None
            if start is None:  # paused before its first step: from the beginning
                self.history, self.latest, self.kept = [], None, {}
            until = None if steps is None else (start.step if start else 0) + max(1, int(steps))
            if until is not None and until >= self.config.train_steps:
                until = None
            self.cancel, self._pausing, self._final = threading.Event(), False, False
            self.status, self.error = RunStatus.QUEUED, None
            self._thread = threading.Thread(
                target=self._work, args=(start, until), name=f"flowviz-run-{self.key[:8]}", daemon=True
            )
            self._thread.start()
            return True

    @property
    def paused(self) -> bool:
        return self.status == RunStatus.PAUSED

    def model(self, step: int | None = None):
        """The model in the run's latest state, or in its kept ``step``; None before it has weights. The one place
        a model is rebuilt from a run's state: once per state, kept for the pages, the workers' requests and
        the exports alike (read it, never train it)."""
        state = self.kept.get(step) if step is not None else (self.latest.state if self.latest is not None else None)
        if state is None:
            return None
        hit = self._models.get(id(state))
        if hit is not None and hit[0] is state:
            return hit[1]
        return self._models.put(id(state), (state, state_model(self.config, self.data.n_classes, state)))[1]

    # --------------------------------------------------------------- views
    @property
    def finished(self) -> bool:
        return RunStatus(self.status).finished

    def views(self, *, final: bool = False) -> FlowViews | None:
        """The views of the latest state: while training the live (light) ones its training worker made last
        (None before the first), once finished the full ones. Shared and cached."""
        snap = self.latest
        if snap is None or snap.state is None:
            return None
        final = final or self.finished  # a finished run (or one restored from the cache) shows the full picture
        if not final:
            return self._views
        if snap.done:  # its training worker makes them now: wait for those rather than ask another
            with waiting():
                while self._finishing.is_set() and not self.unwatched.is_set():
                    time.sleep(0.05)
        with self._lock:
            if self._final:
                return self._views
            model = self.model()
            if self._executor is None:  # a run restored without workers (the library's own use)
                v = analyse(model, self.data, history=list(self.history))
            else:  # the full pictures are heavy: a worker makes them
                try:  # not for nobody: the task stops when the run is left unwatched (made when next shown)
                    info: dict = {}
                    v, _ = self._executor.analyse(
                        model,
                        self.data,
                        history=list(self.history),
                        cancel=self.unwatched,
                        budget_s=self.budget_left(),
                        info=info,
                    )
                    self._reestimated(info, v)
                except (TaskFailed, WorkerDied) as e:
                    if self.unwatched.is_set() or _cancelled(e):  # not failed: made when next shown
                        log.info("run %s: final views not made: %s", self.key, e)
                        return self._views
                    log.error("run %s: final views failed: %s", self.key, e)
                    self.notice = f"The final pictures could not be made ({e}); the last live ones stay."
                    self._final = True
                    return self._views
            # (a run resumed meanwhile has a newer snapshot: these views are not its last)
            self._views = v
            self._final = self.latest is snap
            return v

    def limits(self) -> dict:
        """The budget of this run's adaptive solves (``budget_s``, ``stiffness``, ``max_evals``) for a worker."""
        return self._limits or {"budget_s": self.budget_left()}

    def budget_left(self) -> float:
        """Seconds the final pictures and instruments may take: the server's budget per run less the training's
        time, and never less than PICTURES_MIN_S."""
        spent = self.latest.elapsed if self.latest is not None else 0.0
        return max(self._settings.max_run_seconds - spent, PICTURES_MIN_S)

    def _reestimated(self, info: dict, views: FlowViews) -> None:
        """What the worker measured before the final pictures: the cost re-estimated with the flow's stiffness,
        and the budget of its adaptive solves (the instruments task gets the same)."""
        from ...core.cost import Cost

        if "reestimate" in info:
            r = info["reestimate"]
            self.cost = Cost(r["seconds"], r["peak_mb"], tuple(r["drivers"]), tuple(tuple(p) for p in r["parts"]))
        self._limits = {
            "budget_s": self.budget_left(),
            "stiffness": info.get("stiffness"),
            "max_evals": info.get("max_evals"),
        }
        if views is not None and views.diagnostics.stiff:
            self.notice = views.diagnostics.stiff[0].upper() + views.diagnostics.stiff[1:]

    def set_views(self, views: FlowViews) -> None:
        """Full views made elsewhere (an imported run's, by a worker)."""
        with self._lock:
            self._views, self._final = views, True

    # --------------------------------------------------------- instruments
    def prepare(self) -> None:
        """Have a worker make each instrument's data of the final state (flowviz.training.prepared), after the
        final views, in a thread of this run: the registry calls it whenever a finished run is shown (trained
        here, restored from the disk cache or imported alike). Only on a worker that is free then: trainings
        never wait for instruments (the page computes them itself if asked meanwhile). Nothing if they are
        made or on their way."""
        with self._prep_lock:
            if (
                not self.finished
                or self._executor is None
                or self.latest is None
                or self.latest.state is None
                or self._prep_failed
                or self._streaming()
                or self.instruments_made()
                or (self._prep is not None and self._prep.is_alive())
            ):
                return
            self._prep_queued = True
            self._prep = threading.Thread(target=self._prepare, name=f"flowviz-instruments-{self.key[:8]}", daemon=True)
            self._prep.start()

    def _streaming(self) -> bool:
        """The run's training worker is still on its final views and instruments."""
        return self._thread is not None and self._thread.is_alive() and RunStatus(self.status) == RunStatus.DONE

    def _missing(self) -> list[str]:
        done = self._instruments.keys() | self._instrument_errors.keys()
        return [n for n in PREPARED if applies(n, self.config) and n not in done]

    def _prepare(self):
        try:
            v = self.views(final=True)  # the first picture never waits for the instruments
            if v is None or v.live or self.unwatched.is_set():
                return
            self._executor.instruments(
                self.model(),
                self.data,
                extent=v.extent,
                names=self._missing(),
                cancel=self.unwatched,
                started=lambda: setattr(self, "_prep_queued", False),
                made=self._made,
                wait=False,
                limits=self.limits(),
            )
        except NoFreeWorker:  # every worker trains (or prepares): trainings go first; tried again when shown
            (log.debug if self._told_busy else log.info)("run %s: no free worker for its instruments now", self.key)
            self._told_busy = True  # (said once a run: every page's refresh tries again)
        except (TaskFailed, WorkerDied) as e:
            if not self.unwatched.is_set():
                log.error("run %s: the instruments' data could not be made: %s", self.key, e)
                self._prep_failed = True
        except Exception:  # the page says so
            if not (self.unwatched.is_set() or self.cancel.is_set()):
                log.exception("run %s: the instruments' data could not be made", self.key)
                self._prep_failed = True
        finally:
            self._prep_queued = False

    def _made(self, name: str, obj, message: str | None) -> None:
        """One instrument's data as the worker sends it (the page may take it at once)."""
        if message is None:
            self._instruments[name] = obj
        else:
            self._instrument_errors[name] = message

    def instruments_made(self) -> bool:
        """Every instrument that fits this run has its data (or its reason not to fit)."""
        return not self._missing()

    def preparing(self) -> bool:
        """The instruments task is on its way: its thread lives and it does not wait for a worker (the page
        waits for it then, instead of computing the same numbers in the server)."""
        return self._streaming() or (self._prep is not None and self._prep.is_alive() and not self._prep_queued)

    def instrument(self, name: str):
        """The data of instrument ``name`` (a key of flowviz.training.prepared.PREPARED) for the final state,
        made by a worker, or None while it is not. Raises FlowvizError with the worker's message where the
        instrument does not fit this run."""
        if name in self._instrument_errors:
            raise FlowvizError(self._instrument_errors[name])
        return self._instruments.get(name)

    def watched(self) -> None:
        """A page shows this run now: it is watched again, and once finished its instruments are prepared."""
        self.last_seen = time.time()
        self.unwatched.clear()
        if self.finished:
            self.prepare()

    def seen_by(self, session: str) -> None:
        """The page of ``session`` shows this run now."""
        self.viewers[session] = time.time()

    def watchers(self, within_s: float = 10.0) -> set[str]:
        """The sessions whose pages showed this run in the last ``within_s`` seconds (a training run's pages
        refresh every second)."""
        now = time.time()
        return {s for s, t in list(self.viewers.items()) if now - t <= within_s}

    def stop(self):
        """Cancel it (a paused run is cancelled at once: it keeps its last state, but cannot go on)."""
        self._pausing = False
        self.cancel.set()
        with self._go_lock:
            if self.status == RunStatus.PAUSED:
                self.status = RunStatus.CANCELLED

    # ------------------------------------------------------- the run at a kept step
    def kept_step(self, step: int) -> int | None:
        """The last kept step <= ``step`` (None if none)."""
        before = [s for s in self.kept if s <= step]
        return max(before) if before else None

    def at(self, step: int) -> RunAt | None:
        """The run as it was at the last kept step <= ``step``, or None when that is its latest state (or none)."""
        s = self.kept_step(step)
        if s is None or self.latest is None or s >= self.latest.step:
            return None
        return RunAt(self, s)

    def views_at(self, step: int) -> FlowViews | None:
        """The views of kept step ``step``, made by a worker: light ones while the run trains, else the full
        ones; a few are kept. None (and ``at_notice[step]`` says why) where no worker could make them."""
        with self._lock:
            hit = self._at_views.get(step)
        if hit is not None and (hit.live is False or not self.finished):
            return hit
        model = self.model(step)
        history = [r for r in self.history if r["step"] <= step]
        if self._executor is None:  # a run restored without workers (the library's own use)
            v = analyse(model, self.data, history=history)
        else:  # while the run trains its workers may all be busy: the view worker makes them
            try:
                ex = self._executor if self.finished or self._side is None else self._side()
                v, _ = ex.analyse(model, self.data, history=history, live=not self.finished, cancel=self.unwatched)
            except (TaskFailed, WorkerDied, FlowvizError) as e:
                log.info("run %s: the views of step %d: %s", self.key, step, e)
                self.at_notice[step] = f"The picture of training step {step} could not be made ({e})."
                return hit
        if v is None:
            return hit
        self.at_notice.pop(step, None)
        with self._lock:
            self._at_views[step] = v
            while len(self._at_views) > 8:
                self._at_views.pop(next(iter(self._at_views)))
        return v

    def stopping(self) -> None:
        """The server stops: this run is cancelled (and nobody watches it) before its worker is ended, so that
        the worker's end reads as the cancel it is."""
        self.cancel.set()
        self.unwatched.set()
        if not self.finished:
            self.status = RunStatus.CANCELLED

    def join(self, timeout: float | None = None):
        """Wait for the run's thread, then for its instruments task if one is on its way."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in (self._thread, self._prep):
            if t is not None:
                t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))


class RunAt:
    """A run as it was at one of its kept steps, read like a finished Run by the page's views and instruments:
    ``key``, ``config``, ``data``, ``history`` (up to the step), ``latest`` (a snapshot with the kept weights),
    ``views()``; its instruments are made on the page (``instrument`` is None)."""

    status = RunStatus.DONE
    finished = True
    error = None

    def __init__(self, run: Run, step: int):
        self.run, self.step = run, step
        self.key = f"{run.key}@{step}"
        self.config, self.data = run.config, run.data
        self.history = [r for r in run.history if r["step"] <= step]
        row = self.history[-1] if self.history and self.history[-1]["step"] == step else None
        nan = float("nan")
        self.latest = Snapshot(
            step=step,
            total_steps=run.config.train_steps,
            loss=row["loss"] if row else nan,
            train_accuracy=row["train_accuracy"] if row else nan,
            test_accuracy=row["test_accuracy"] if row else nan,
            test_loss=row["test_loss"] if row else nan,
            elapsed=row["elapsed"] if row else 0.0,
            steps_per_second=0.0,
            state=run.kept[step],
            done=True,
        )

    def views(self, *, final: bool = False) -> FlowViews | None:
        return self.run.views_at(self.step)

    @property
    def notice(self) -> str | None:
        """Why this step's views could not be made, if they could not."""
        return self.run.at_notice.get(self.step)

    def model(self):
        return self.run.model(self.step)

    def instrument(self, name: str):
        return None

    def preparing(self) -> bool:
        return False

    def limits(self) -> dict:
        """The run's limits (the view worker computes a kept step's instruments under them)."""
        return self.run.limits()


class _Either:
    """``is_set()`` of either of two flags (a run's task stops when it is cancelled or nobody watches it)."""

    def __init__(self, a: threading.Event, b: threading.Event):
        self.a, self.b = a, b

    def is_set(self) -> bool:
        return self.a.is_set() or self.b.is_set()
