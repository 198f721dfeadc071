"""A bounded pool of training processes.

Training in a thread of the server process shares one interpreter lock with everything the server does
(building views and figures, answering browsers): measured, a watched run trained at a quarter of its
speed. Each worker here is a separate process with one torch thread, started once and reused.

Messages are bytes, never pickles: a JSON header, and where needed a safetensors payload (the points of
the data set going in, the weights of each snapshot coming out). A worker that dies mid-run is noticed
(end of file on its pipe) and replaced; the run reports an error and can be retried.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import threading
from collections.abc import Iterator

import numpy as np

from ..core.config import Config
from ..core.data import Dataset
from ..training.train import Snapshot

__all__ = ["WorkerPool", "WorkerDied", "encode", "decode"]

log = logging.getLogger("flowviz.serve.workers")


class WorkerDied(RuntimeError):
    """The worker process stopped in the middle of a run."""


def encode(header: dict, tensors: dict | None = None) -> bytes:
    """JSON header (length-prefixed) + optional safetensors payload of numpy arrays."""
    from safetensors.numpy import save

    head = json.dumps(header).encode()
    body = save({k: np.ascontiguousarray(v) for k, v in tensors.items()}) if tensors else b""
    return len(head).to_bytes(4, "little") + head + body


def decode(raw: bytes) -> tuple[dict, dict]:
    from safetensors.numpy import load

    n = int.from_bytes(raw[:4], "little")
    header = json.loads(raw[4:4 + n])
    body = raw[4 + n:]
    return header, (load(body) if body else {})


class _PipeCancel:
    """cancel.is_set() for train_iter: a 'cancel' message on the pipe, checked between steps."""

    def __init__(self, conn):
        self.conn, self.flag = conn, False

    def is_set(self) -> bool:
        while not self.flag and self.conn.poll():
            if self.conn.recv_bytes() == b"cancel":
                self.flag = True
        return self.flag


def _worker_main(conn, threads: int) -> None:  # pragma: no cover - runs in the child process
    import torch

    from ..training.train import train_iter
    from .process import tune_malloc

    tune_malloc()
    torch.set_num_threads(threads)
    while True:
        try:
            raw = conn.recv_bytes()
        except (EOFError, OSError):
            return
        if raw == b"cancel":  # arrived after its run had ended
            continue
        header, arrays = decode(raw)
        if "configs" in header:
            _serve_batched(conn, header, arrays)
            continue
        try:
            cfg = Config.from_dict(header["config"])
            ds = Dataset(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"],
                         int(header["n_classes"]))
            for s in train_iter(cfg, data=ds, log_every=int(header["log_every"]), cancel=_PipeCancel(conn),
                                keep_state=True):
                head = {k: getattr(s, k) for k in ("step", "total_steps", "loss", "train_accuracy", "test_accuracy",
                                                   "test_loss", "elapsed", "steps_per_second", "done", "cancelled",
                                                   "error")}
                conn.send_bytes(encode(head, {k: v.numpy() for k, v in s.state.items()}))
        except Exception as e:  # report, keep serving
            conn.send_bytes(encode({"fatal": f"{type(e).__name__}: {e}"}))


def _serve_batched(conn, header: dict, arrays: dict) -> None:  # pragma: no cover - runs in the child process
    """One group of a batched sweep: progress messages while it trains, then every member's result."""
    from ..training.batch import train_batched

    try:
        cfgs = [Config.from_dict(d) for d in header["configs"]]
        ds = Dataset(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"],
                     int(header["n_classes"]))

        def progress(step, snaps):
            conn.send_bytes(encode({"progress": step}))

        results = train_batched(cfgs, data=ds, log_every=int(header["log_every"]), cancel=_PipeCancel(conn),
                                progress=progress)
        head = {"results": [{"history": r.history, "metrics": r.metrics, "error": r.error} for r in results]}
        conn.send_bytes(encode(head, {f"{i}/{k}": v.detach().cpu().numpy() for i, r in enumerate(results)
                                      for k, v in r.model.state_dict().items()}))
    except Exception as e:  # report, keep serving
        conn.send_bytes(encode({"fatal": f"{type(e).__name__}: {e}"}))


def _data_arrays(data: Dataset) -> dict:
    return {"x_train": data.x_train, "y_train": data.y_train, "x_test": data.x_test, "y_test": data.y_test}


class _Worker:
    def __init__(self, ctx, threads: int):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, threads), daemon=True, name="flowviz-worker")
        self.proc.start()
        child.close()

    def alive(self) -> bool:
        return self.proc.is_alive()

    def stop(self):
        try:
            self.conn.close()
        finally:
            self.proc.join(2)
            if self.proc.is_alive():
                self.proc.kill()


def _next_message(w: _Worker, timeout: float) -> tuple[dict, dict] | None:
    """The next message from a busy worker, or None if none came within ``timeout`` s; WorkerDied if it died."""
    if not w.conn.poll(timeout):
        if not w.alive():
            raise WorkerDied("the training process stopped unexpectedly")
        return None
    try:
        return decode(w.conn.recv_bytes())
    except (EOFError, OSError):
        raise WorkerDied("the training process stopped unexpectedly") from None


class WorkerPool:
    """``size`` worker processes (one torch thread each); ``train`` borrows one for a run."""

    def __init__(self, size: int, threads: int = 1):
        method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        self._ctx = mp.get_context(method)
        if method == "forkserver":
            # torch._dynamo: torch.optim imports it on the first optimiser (1.4 s here); once, in the server
            self._ctx.set_forkserver_preload(["flowviz.serve.workers", "flowviz.training.train", "torch._dynamo"])
        self.size, self.threads = size, threads
        self._free: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._cond = threading.Condition()
        self._started = 0
        self.replaced = 0  # workers that died and were replaced

    def _take(self, cancel, *, wait: bool = True) -> _Worker | None:
        """A free worker, or a new one while fewer than ``size`` run; else wait (or, without ``wait``, None)."""
        with self._cond:
            while True:
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
            w = _Worker(self._ctx, self.threads)
        except Exception:
            with self._cond:
                self._started -= 1
            raise
        with self._cond:
            self._busy.add(w)
            log.info("workers busy: %d of %d", len(self._busy), self.size)
        return w

    def _give(self, w: _Worker, healthy: bool):
        with self._cond:
            self._busy.discard(w)
            if healthy and w.alive():
                self._free.append(w)
            else:
                self._started -= 1
                self.replaced += 1
                w.stop()
            self._cond.notify()

    def train(self, config: Config, data: Dataset, *, log_every: int, cancel=None,
              started=None) -> Iterator[Snapshot]:
        """Snapshots of ``config`` trained in a worker; ``started()`` is called once a worker has the run.

        Raises WorkerDied if the process stops mid-run.
        """
        w = self._take(cancel)
        if w is None:
            yield Snapshot(0, config.train_steps, float("nan"), float("nan"), float("nan"), float("nan"), 0.0, 0.0,
                           None, done=True, cancelled=True)
            return
        healthy = False
        try:
            if started is not None:
                started()
            w.conn.send_bytes(encode({"config": config.to_dict(), "n_classes": data.n_classes,
                                      "log_every": log_every}, _data_arrays(data)))
            sent_cancel = False
            while True:
                if cancel is not None and cancel.is_set() and not sent_cancel:
                    w.conn.send_bytes(b"cancel")
                    sent_cancel = True
                msg = _next_message(w, 0.05)
                if msg is None:
                    continue
                head, arrays = msg
                if "fatal" in head:
                    healthy = True
                    raise RuntimeError(head["fatal"])
                import torch

                state = {k: torch.from_numpy(v) for k, v in arrays.items()}
                snap = Snapshot(head["step"], head["total_steps"], head["loss"], head["train_accuracy"],
                                head["test_accuracy"], head["test_loss"], head["elapsed"], head["steps_per_second"],
                                state, done=head["done"], cancelled=head["cancelled"], error=head["error"])
                yield snap
                if snap.done:
                    healthy = True
                    return
        finally:
            self._give(w, healthy)

    def _take_upto(self, k: int, cancel) -> list[_Worker]:
        """At least one worker (waiting for it) and up to ``k`` (those free or startable now): a caller never
        waits while holding workers, so two sweeps cannot deadlock each other."""
        first = self._take(cancel)
        if first is None:
            return []
        got = [first]
        while len(got) < k:
            try:
                w = self._take(None, wait=False)
            except Exception:  # a process that would not start: go on with those we have
                log.exception("could not start another worker process")
                break
            if w is None:
                break
            got.append(w)
        return got

    def train_batched(self, configs: list[Config], data: Dataset, *, log_every: int = 25, cancel=None,
                      progress=None) -> list:
        """``batch.train_batched`` with the members' lanes spread over the free workers (one group each).

        The same numbers as one batch in one process (members are independent); ``progress(step)`` reports
        the slowest group's step. Raises WorkerDied if a process stops mid-run.
        """
        import torch

        from ..core.model import build_model
        from ..training.batch import lane_groups
        from ..training.train import TrainResult

        workers = self._take_upto(len(lane_groups(configs, self.size)), cancel)
        if not workers:  # cancelled while waiting: every member ends cancelled at step 0, as in one process
            from ..training.batch import train_batched

            return train_batched(configs, data=data, log_every=log_every, cancel=cancel)
        groups = lane_groups(configs, len(workers))
        for w in workers[len(groups):]:
            self._give(w, True)
        workers = workers[:len(groups)]
        healthy = {id(w): False for w in workers}
        out: dict[int, tuple] = {}
        try:
            for w, g in zip(workers, groups):
                w.conn.send_bytes(encode({"configs": [configs[i].to_dict() for i in g], "n_classes": data.n_classes,
                                          "log_every": log_every}, _data_arrays(data)))
            steps = {id(w): 0 for w in workers}
            pending = dict(zip((id(w) for w in workers), zip(workers, groups)))
            sent_cancel = False
            while pending:
                if cancel is not None and cancel.is_set() and not sent_cancel:
                    for w, _ in pending.values():
                        w.conn.send_bytes(b"cancel")
                    sent_cancel = True
                for key, (w, g) in list(pending.items()):
                    msg = _next_message(w, 0.02)
                    if msg is None:
                        continue
                    head, arrays = msg
                    if "fatal" in head:
                        healthy[key] = True
                        raise RuntimeError(head["fatal"])
                    if "progress" in head:
                        steps[key] = int(head["progress"])
                        if progress is not None:
                            progress(min(steps.values()))
                        continue
                    healthy[key] = True
                    for j, (i, res) in enumerate(zip(g, head["results"])):
                        state = {k.split("/", 1)[1]: torch.from_numpy(v) for k, v in arrays.items()
                                 if k.split("/", 1)[0] == str(j)}
                        out[i] = (state, res)
                    del pending[key]
        finally:
            for w in workers:
                self._give(w, healthy[id(w)])
        results = []
        for i, cfg in enumerate(configs):
            state, res = out[i]
            model = build_model(cfg, data.n_classes)
            model.load_state_dict(state)
            model.train(False)
            results.append(TrainResult(cfg, model, data, res["history"], res["metrics"], res["error"]))
        return results

    def prestart(self, n: int = 1) -> threading.Thread:
        """Start up to ``n`` idle workers in the background, so the first run does not wait for one."""

        def work():
            for _ in range(n):
                with self._cond:
                    if self._started >= self.size:
                        return
                    self._started += 1
                try:
                    w = _Worker(self._ctx, self.threads)
                except Exception:
                    log.exception("could not start a worker process")
                    with self._cond:
                        self._started -= 1
                    return
                with self._cond:
                    self._free.append(w)
                    self._cond.notify()

        t = threading.Thread(target=work, name="flowviz-prestart", daemon=True)
        t.start()
        return t

    def busy_pids(self) -> list[int]:
        """Process ids of the workers training right now (tests kill one to simulate a crash)."""
        with self._cond:
            return [w.proc.pid for w in self._busy]

    def shutdown(self):
        with self._cond:
            free, self._free = self._free, []
        for w in free:
            w.stop()


def default_mode() -> str:
    """``process`` (default) or ``thread``: FLOWVIZ_WORKER_MODE."""
    m = os.environ.get("FLOWVIZ_WORKER_MODE", "process").strip().lower()
    return m if m in ("process", "thread") else "process"
