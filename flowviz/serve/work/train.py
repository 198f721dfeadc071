"""The task ``run``: one training run, its server half (:func:`train`, a function of the executor) and its
worker half (:func:`run_task`).

One trip per run: the worker that trains a run goes on, where the request asks it to ``finish``, to make the
run's final views and then each instrument's data from the weights it holds, streaming each as it is ready
(``views`` and ``instrument`` replies, then the ``result``); the weights never travel back to a worker for them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from ...core.config import Config
from ...core.cost import FIRST_LIVE_ETA_S, LIVE_EVERY_S, live_period
from ...core.data import Dataset
from ...core.solvers import Cancelled
from ...training.train import Snapshot, train_iter
from .instruments import instrument_from, instrument_replies
from .protocol import (
    TaskFailed,
    dataset_from,
    encode,
    pack,
    request,
    resume_arrays,
    snapshot_from,
    snapshot_message,
    train_state_from,
    unpack,
)
from .views import views_from, views_reply
from .weights import model_from, state_model

__all__ = ["train", "run_task"]


# ------------------------------------------------------------------ server half
def train(
    executor,
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
    finish: dict | None = None,
    history: list | None = None,
    views_made: Callable[[object, dict], None] | None = None,
    instrument_made: Callable[[str, object, str | None], None] | None = None,
    finish_failed: Callable[[str], None] | None = None,
    live_made: Callable[[int, object], None] | None = None,
) -> Iterator[Snapshot]:
    """Snapshots of ``config`` trained by a worker of ``executor`` (in the lane of ``long`` runs if set);
    ``started()`` is called once a worker has the run. ``start`` (a TrainState) with ``weights``: go on from a
    paused run; ``until``: pause after that step; ``client``: whose run it is (the queue's round robin).

    ``finish`` (``budget_s``: the seconds a run's training and final pictures may take together, ``min_s``: the
    pictures' least, ``names``: the instruments): a run that trains to its end goes on in the same worker to
    its final views, ``views_made(views or None, info)`` (``info``: ``reestimate``, ``stiffness``,
    ``max_evals``, or ``error``), and instruments, ``instrument_made(name, data, message)``, after the last
    snapshot; ``history``: the rows before ``start``. With ``live_made``, the worker makes light views as it
    trains (:func:`flowviz.core.cost.live_period`), each given to ``live_made(step, views)``. Cancelled
    then (``cancel``), or once another task waits for a worker (trainings go first), the worker stops between
    two instruments.

    Raises WorkerDied if the worker is lost mid-run, TaskFailed with the worker's message if the run failed
    there; a failure after its last snapshot is given to ``views_made`` as an ``error`` before the views came,
    to ``finish_failed(message)`` after.
    """
    lease = executor.take(cancel, long=long, client=client)
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
    healthy, done, asked, views, yielded = False, False, None, False, False
    try:
        if started is not None:
            started()
        head0, extra = resume_arrays(start, weights) if start is not None else ({}, {})
        if finish is not None:
            head0.update(finish=dict(finish), history=list(history or []))
        if live_made is not None:
            head0.update(live_every_s=LIVE_EVERY_S, history=list(history or []))
        raw = request(
            "run",
            data,
            config=config,
            log_every=log_every,
            cuda_graphs=executor.cuda_graphs,
            until=until,
            extra=extra,
            **head0,
        )
        for reply in executor.stream(lease, raw, cancel, idle=finish is not None, through=finish is not None):
            if views and not yielded and executor.waiting():  # trainings go first: the instruments stop after the
                lease.cancel()  # one in hand (those missing are made on a free worker when the run is shown)
                yielded = True
            if reply is None:  # (after the last snapshot, a finish asked to stop has the executor's stop_grace_s)
                if done and (yielded or (cancel is not None and cancel.is_set())):
                    asked = asked or time.monotonic()
                    if time.monotonic() - asked > executor.stop_grace_s:
                        raise TaskFailed("cancelled")
                continue
            head, arrays = reply
            kind = head.get("kind")
            if kind == "snapshot":
                snap = snapshot_from(head, arrays)
                done = snap.done
                healthy = done and finish is None
                yield snap
            elif kind == "live" and live_made is not None:
                live_made(int(head["step"]), unpack(head["views"], arrays))
            elif kind == "views":
                views = True
                if views_made is not None:
                    views_made(*views_from(head, arrays))
            elif kind == "instrument" and instrument_made is not None:
                instrument_made(*instrument_from(head, arrays))
            elif kind == "result":
                healthy = True
    except TaskFailed as e:
        stopped = yielded or (cancel is not None and cancel.is_set())
        healthy = not stopped  # the task failed, the worker is fine (one cut short is replaced)
        if not done:
            raise
        if stopped:
            pass
        elif not views and views_made is not None:
            views_made(None, {"error": str(e)})
        elif views and finish_failed is not None:
            finish_failed(str(e))
    finally:
        executor.give(lease, healthy)


# ------------------------------------------------------------------ worker half
def run_task(header: dict, arrays: dict, cancel) -> Iterator[bytes]:
    """One training run: a snapshot (with its weights and checkpoints) every ``log_every`` steps, the last one
    ``done`` with the state to resume from. With ``resume`` (and the weights) it goes on from a paused run's
    state; ``until`` stops it after that step. With ``finish``: see :func:`train`; then the ``result``."""
    cfg = Config.from_dict(header["config"])
    ds, start = dataset_from(header, arrays), train_state_from(header, arrays)
    model = model_from(cfg, ds.n_classes, arrays).train(True) if start is not None else None
    until = header.get("until")
    history, last = list(header.get("history") or []), None
    live = _Live(cfg, ds, header.get("live_every_s"), cancel)
    for s in train_iter(
        cfg,
        data=ds,
        log_every=int(header["log_every"]),
        cancel=cancel,
        keep_state=True,
        cuda_graphs=bool(header.get("cuda_graphs")),
        model=model,
        start=start,
        until=None if until is None else int(until),
    ):
        history.append(s.record())
        last = s
        yield snapshot_message(s)
        yield from live.after(s, history)
    finish = header.get("finish")
    if finish is None:
        return
    if last is not None and last.done and not last.cancelled and not last.error and last.state is not None:
        yield from _finish(cfg, ds, last, history, finish, cancel)
    yield encode({"kind": "result", "cancelled": bool(cancel.is_set())})


def _finish(cfg: Config, ds: Dataset, last: Snapshot, history: list, finish: dict, cancel) -> Iterator[bytes]:
    """The final views of the run that just trained, then its instruments, from the weights of its last
    snapshot: the same numbers as a worker given those weights in a message."""
    model = state_model(cfg, ds.n_classes, last.state)
    header: dict = {"budget_s": max(float(finish["budget_s"]) - last.elapsed, float(finish["min_s"]))}
    try:
        views, header = yield from views_reply(model, ds, header, history, cancel, {"kind": "views"})
    except Cancelled:  # stopped (a limit's check saw the cancel): not a failure, made when the run is next shown
        yield encode({"kind": "views", "cancelled": True})
        return
    except Exception as e:  # the run stays trained: the page says why its final pictures are missing
        yield encode({"kind": "views", "error": f"{type(e).__name__}: {e}"})
        return
    if views is None or cancel.is_set():
        return
    limits = {k: header[k] for k in ("stiffness", "max_evals") if header.get(k) is not None}
    yield from instrument_replies(
        model, ds, dict(limits, budget_s=header["budget_s"], extent=views.extent, names=finish.get("names")), cancel
    )


class _Live:
    """The light views of a run as it trains, made by its training worker from a snapshot's weights: at most
    every ``every_s`` seconds and LIVE_SHARE of the time (:func:`flowviz.core.cost.live_period`); none for a
    snapshot that ends the run, nor a first one for a run about to end (its full views come next)."""

    def __init__(self, cfg: Config, ds: Dataset, every_s: float | None, cancel):
        self.cfg, self.ds, self.every_s, self.cancel = cfg, ds, every_s, cancel
        self.next, self.made = 0.0, False

    def after(self, s: Snapshot, history: list) -> Iterator[bytes]:
        from ...training.analysis import analyse

        if not self.every_s or s.done or s.state is None or time.monotonic() < self.next:
            return
        left = (s.total_steps - s.step) / s.steps_per_second if s.steps_per_second > 0 else float("inf")
        if not self.made and left < FIRST_LIVE_ETA_S:
            return
        t = time.monotonic()
        model = state_model(self.cfg, self.ds.n_classes, s.state)
        views = analyse(model, self.ds, history=history, live=True, cancel=self.cancel)
        self.next = t + live_period(time.monotonic() - t, float(self.every_s))
        if views is None:
            return
        self.made = True
        out: dict = {}
        yield encode({"kind": "live", "step": s.step, "views": pack(views, out)}, out)
