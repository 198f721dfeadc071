"""Training on a Ray cluster: the same runs and batched sweeps as the local pool, on many machines.

Chosen with ``FLOWVIZ_EXECUTOR=ray`` (the server) or ``--executor ray`` (the command line); Ray's own
``RAY_ADDRESS`` names the cluster (unset: a local one is started). Nothing here is imported, and Ray is
not started, unless it is chosen.

Each run is one Ray task that streams its snapshots back as a generator (``num_returns="streaming"``).
What crosses the cluster is flowviz's own messages, bytes of a JSON header and a safetensors payload
(:mod:`flowviz.serve.protocol`), so nothing a user sent is ever unpickled; Ray pickles only those bytes
objects. A task asks for one CPU, and one GPU when its config trains on CUDA, so a mixed cluster places
it right. Results come back through the executor: Ray workers never write the disk cache.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator

log = logging.getLogger("flowviz.serve.ray")

_init_lock = threading.Lock()


def ray_started(num_cpus: int | None = None):
    """The ``ray`` module, connected: to ``RAY_ADDRESS`` if set, else to a local cluster started here."""
    try:
        import ray
    except ImportError:
        from ..core.errors import FlowvizError

        raise FlowvizError("the Ray executor needs the ray extra: pip install -r requirements-ray.txt "
                           "(or pip install 'flowviz[ray]')") from None

    with _init_lock:
        if not ray.is_initialized():
            address = os.environ.get("RAY_ADDRESS") or None
            kw = {} if address else {"num_cpus": num_cpus, "include_dashboard": False}
            ray.init(address=address, log_to_driver=False, **kw)
    return ray


# ------------------------------------------------------------------ on a Ray worker
def _run_stream(payload: bytes) -> Iterator[bytes]:
    """One run: a message per snapshot (a task body; runs in a Ray worker process)."""
    from ..training.train import train_iter
    from .protocol import dataset_of, decode, encode, snapshot_message

    _one_thread()
    try:
        header, arrays = decode(payload)
        cfg, ds = _config_of(header), dataset_of(header, arrays)
        for s in train_iter(cfg, data=ds, log_every=int(header["log_every"]), keep_state=True):
            yield snapshot_message(s, pid=os.getpid())
    except Exception as e:  # reported as the pool's workers report it
        yield encode({"fatal": f"{type(e).__name__}: {e}"})


def _batched_stream(payload: bytes) -> Iterator[bytes]:
    """One lane group of a batched sweep: progress messages while it trains, then every member's result.

    The batch trains in a thread of the task so that its progress can stream; a cancelled task sets the
    batch's cancel flag on its way out, so nothing trains on in the reused worker process.
    """
    import queue

    from ..training.batch import train_batched
    from .protocol import batched_results_message, dataset_of, decode, encode

    _one_thread()
    header, arrays = decode(payload)
    out: queue.Queue = queue.Queue()
    stop = threading.Event()

    def work():
        try:
            cfgs = [_config_of({"config": d}) for d in header["configs"]]
            res = train_batched(cfgs, data=dataset_of(header, arrays), log_every=int(header["log_every"]),
                                cancel=stop, progress=lambda step, snaps: out.put(("progress", step)))
            out.put(("done", res))
        except Exception as e:
            out.put(("fatal", f"{type(e).__name__}: {e}"))

    threading.Thread(target=work, name="flowviz-batch", daemon=True).start()
    try:
        while True:
            kind, value = out.get()
            if kind == "progress":
                yield encode({"progress": value, "pid": os.getpid()})
            elif kind == "done":
                yield batched_results_message(value)
                return
            else:
                yield encode({"fatal": value})
                return
    finally:
        stop.set()


def _member(payload: bytes) -> bytes:
    """One member of a sweep that cannot be batched, trained to the end as ``flowviz.train`` does."""
    from ..core.errors import TrainingDiverged
    from ..training.train import train
    from .protocol import batched_results_message, dataset_of, decode

    _one_thread()
    header, arrays = decode(payload)
    cfg = _config_of(header)
    try:
        r = train(cfg, data=dataset_of(header, arrays), log_every=int(header["log_every"]))
    except TrainingDiverged as e:  # the last finite state, as the local sweep keeps it
        r = e.result
    return batched_results_message([r])


def _config_of(header: dict):
    from ..core.config import Config

    return Config.from_dict(header["config"])


def _one_thread():
    import torch

    torch.set_num_threads(1)


# ------------------------------------------------------------------ on the server
class RayExecutor:
    """Runs and batched sweeps as Ray tasks; the same calls and messages as the local process pool.

    ``size`` is the cluster's CPU count (the bound on concurrent trainings, which Ray's scheduler keeps:
    each task holds one CPU). A task whose worker dies mid-run raises :class:`WorkerDied`, as a dead local
    worker does, and the run keeps its last snapshot.
    """

    def __init__(self, num_cpus: int | None = None):
        ray = ray_started(num_cpus)
        self._ray = ray
        self._remote = {
            "run": ray.remote(num_returns="streaming", max_retries=0, num_cpus=1)(_run_stream),
            "batch": ray.remote(num_returns="streaming", max_retries=0, num_cpus=1)(_batched_stream),
            "member": ray.remote(max_retries=0, num_cpus=1)(_member),
        }
        self._pids: dict[int, int] = {}  # id(task) -> pid of the Ray worker running it (last message's)
        self._lock = threading.Lock()
        self._running = 0  # runs whose first snapshot has arrived and whose last has not

    @property
    def size(self) -> int:
        return max(1, int(self._ray.cluster_resources().get("CPU", 1)))

    def _options(self, kind: str, config) -> object:
        gpus = 1 if _wants_gpu(config, self._ray) else 0
        return self._remote[kind].options(num_gpus=gpus) if gpus else self._remote[kind]

    # -- one run
    def train(self, config, data, *, log_every: int, cancel=None, started=None) -> Iterator:
        """Snapshots of ``config`` trained in a Ray task. Raises WorkerDied if its worker dies mid-run."""
        from .protocol import run_message, snapshot_of

        gen = self._options("run", config).remote(run_message(config, data, log_every))
        if started is not None:
            started()
        last = None
        try:
            first = True
            for head, arrays in self._messages(gen, cancel):
                if first:  # it trains now (Ray may have queued it for a free CPU): counted as the pool counts
                    first = False
                    self._busy(+1)
                snap = snapshot_of(head, arrays)
                last = snap
                yield snap
                if snap.done:
                    return
            yield _cancelled(config, last)  # cancelled: the last state stays, as a cancelled local run's does
        finally:
            with self._lock:
                self._pids.pop(id(gen), None)
            if not first:
                self._busy(-1)

    def _busy(self, change: int) -> None:
        with self._lock:
            self._running += change
            if change > 0:  # the line bench/load.py reads, in the local pool's words
                log.info("workers busy: %d of %d", self._running, self.size)

    def _messages(self, gen, cancel) -> Iterator[tuple[dict, dict]]:
        """Decoded messages of a streaming task until it ends, or until ``cancel`` is set (then the task is
        cancelled and this returns within about 0.1 s). Raises WorkerDied / RuntimeError for failures."""
        from .protocol import decode
        from .workers import WorkerDied

        ray = self._ray
        while True:
            if cancel is not None and cancel.is_set():
                ray.cancel(gen)
                return
            ready, _ = ray.wait([gen], timeout=0.1)
            if not ready:
                continue
            try:
                ref = next(gen)
            except StopIteration:
                return
            try:
                head, arrays = decode(ray.get(ref))
            except ray.exceptions.TaskCancelledError:
                return
            except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                    ray.exceptions.RayActorError) as e:
                raise WorkerDied(f"the training process stopped unexpectedly ({type(e).__name__})") from None
            except ray.exceptions.RayTaskError as e:
                raise RuntimeError(str(e.cause)) from None
            if "fatal" in head:
                raise RuntimeError(head["fatal"])
            if "pid" in head:
                with self._lock:
                    self._pids[id(gen)] = int(head["pid"])
            yield head, arrays

    # -- a batched sweep
    def train_batched(self, configs: list, data, *, log_every: int = 25, cancel=None, progress=None) -> list:
        """``batch.train_batched`` with the members' lanes spread over the cluster (one task per group):
        the same numbers as one batch in one process."""
        from ..training.batch import lane_groups, train_batched
        from .protocol import batch_message, results_of

        groups = lane_groups(configs, self.size)
        gens = [self._options("batch", configs[g[0]]).remote(batch_message([configs[i] for i in g], data,
                                                                            log_every)) for g in groups]
        steps = [0] * len(gens)
        out: dict[int, object] = {}
        done = threading.Event()
        errors: list[BaseException] = []

        def follow(j, gen):
            try:
                for head, arrays in self._messages(gen, _Either(cancel, done)):
                    if "progress" in head:
                        steps[j] = int(head["progress"])
                        if progress is not None:
                            progress(min(steps))
                        continue
                    for i, r in zip(groups[j], results_of(head, arrays, [configs[i] for i in groups[j]], data)):
                        out[i] = r
            except BaseException as e:  # the first failure cancels the other groups
                errors.append(e)
                done.set()

        threads = [threading.Thread(target=follow, args=(j, g), daemon=True) for j, g in enumerate(gens)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        if len(out) < len(configs):  # cancelled: every member ends cancelled at step 0, as in one process
            return train_batched(configs, data=data, log_every=log_every, cancel=_Set())
        return [out[i] for i in range(len(configs))]

    # -- members that cannot be batched
    def train_members(self, configs: list, data, *, log_every: int = 25, cancel=None, progress=None) -> list:
        """Each config trained to the end by ``flowviz.train`` in its own task, all submitted at once and
        spread over the cluster; ``progress(done, total)`` as members finish. Diverged members keep their
        last finite state."""
        from .protocol import member_message, results_of

        ray = self._ray
        refs = [self._options("member", c).remote(member_message(c, data, log_every)) for c in configs]
        index = {r: i for i, r in enumerate(refs)}
        out: dict[int, object] = {}
        pending = list(refs)
        while pending:
            if cancel is not None and cancel.is_set():
                for r in pending:
                    ray.cancel(r)
                raise _cancelled_error()
            ready, pending = ray.wait(pending, num_returns=1, timeout=0.2)
            for ref in ready:
                i = index[ref]
                head, arrays = _decode_result(ray, ref)
                out[i] = results_of(head, arrays, [configs[i]], data)[0]
                if progress is not None:
                    progress(len(out), len(configs))
        return [out[i] for i in range(len(configs))]

    # -- the rest of the pool's interface
    def prestart(self, n: int = 1):
        return None  # the cluster's workers are Ray's to start

    def busy_pids(self) -> list[int]:
        """Process ids of the Ray workers running this executor's runs (tests kill one)."""
        with self._lock:
            return list(self._pids.values())

    def shutdown(self):
        """Leave the cluster alone (other servers share it); a local cluster ends with this process."""


class _Either:
    """is_set() of either flag."""

    def __init__(self, a, b):
        self.a, self.b = a, b

    def is_set(self) -> bool:
        return bool((self.a is not None and self.a.is_set()) or self.b.is_set())


class _Set:
    def is_set(self) -> bool:
        return True


def _cancelled(config, last):
    """The final snapshot of a run cancelled on the cluster: the last state received, marked cancelled."""
    import dataclasses

    from ..training.train import Snapshot

    if last is None:
        return Snapshot(0, config.train_steps, float("nan"), float("nan"), float("nan"), float("nan"), 0.0, 0.0,
                        None, done=True, cancelled=True)
    return dataclasses.replace(last, done=True, cancelled=True)


def _cancelled_error():
    from ..core.errors import FlowvizError

    return FlowvizError("the sweep was cancelled")


def _decode_result(ray, ref):
    from .protocol import decode
    from .workers import WorkerDied

    try:
        return decode(ray.get(ref))
    except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError) as e:
        raise WorkerDied(f"the training process stopped unexpectedly ({type(e).__name__})") from None
    except ray.exceptions.RayTaskError as e:
        raise RuntimeError(str(e.cause)) from None


def _wants_gpu(config, ray) -> bool:
    """device=cuda, or auto on a cluster that has GPUs: the task asks for one, so Ray places it on a GPU node."""
    if config.device == "cuda":
        return True
    return config.device == "auto" and ray.cluster_resources().get("GPU", 0) > 0
