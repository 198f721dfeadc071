"""Training on a Ray cluster: the :class:`~flowviz.serve.work.executor.Executor` whose workers are Ray tasks.

Chosen with ``FLOWVIZ_EXECUTOR=ray`` (the server) or ``--executor ray`` (the command line); Ray's own
``RAY_ADDRESS`` names the cluster (unset: a local one is started). Nothing here is imported, and Ray is not
started, unless it is chosen.

A lease is one Ray task that runs :func:`flowviz.serve.work.worker.handle`, the same handler a local worker
process runs, and streams its replies back as a Ray generator. What crosses the cluster is flowviz's own
messages, bytes of a JSON header and a safetensors payload (:mod:`flowviz.serve.work.protocol`): nothing a user
sent is ever unpickled, and Ray pickles only those bytes. A task asks for one CPU, and one GPU when its config
trains on CUDA, so a mixed cluster places it right. Cancelling sets a flag in a small Ray actor that the task
reads between steps (at most every 0.2 s), so a cancelled run ends as a local one does: its last snapshot
comes back, marked cancelled. Results come back through the executor: Ray workers write no files.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator

from .executor import Lease
from .protocol import WorkerDied, decode
from .slots import SlotExecutor

__all__ = ["RayExecutor", "ray_started"]

log = logging.getLogger("flowviz.serve.work.ray_executor")

_init_lock = threading.Lock()


def ray_started(num_cpus: int | None = None):
    """The ``ray`` module, connected: to ``RAY_ADDRESS`` if set, else to a local cluster started here."""
    # Ray's APIs start a local cluster when called unconnected ("auto-init"): a thread that gives a lease back
    # after ray.shutdown() started one in the test process, which then exited when that cluster's GCS went away.
    # Off here; the lease's calls below also check the connection first (the flag is read at Ray's import).
    os.environ.setdefault("RAY_ENABLE_AUTO_CONNECT", "0")
    try:
        import ray
    except ImportError:
        from ...core.errors import FlowvizError

        raise FlowvizError(
            "the Ray executor needs the ray extra: pip install -r requirements-ray.txt (or pip install 'flowviz[ray]')"
        ) from None
    with _init_lock:
        if not ray.is_initialized():
            address = os.environ.get("RAY_ADDRESS") or None
            kw = {} if address else {"num_cpus": num_cpus, "include_dashboard": False}
            ray.init(address=address, log_to_driver=False, **kw)
    return ray


# ------------------------------------------------------------------ on a Ray worker
class _Flags:
    """A Ray actor: which tasks are asked to stop, and which process runs each (tests kill one)."""

    def __init__(self):
        self.cancelled: set[str] = set()
        self.pids: dict[str, int] = {}

    def cancel(self, key: str) -> None:
        self.cancelled.add(key)

    def is_cancelled(self, key: str) -> bool:
        return key in self.cancelled

    def started(self, key: str, pid: int) -> None:
        self.pids[key] = pid

    def pid(self, key: str) -> int | None:
        return self.pids.get(key)

    def forget(self, key: str) -> None:
        self.cancelled.discard(key)
        self.pids.pop(key, None)


class _ActorCancel:
    """cancel.is_set() for a task on the cluster: the flag in the actor, read at most every ``every`` s."""

    def __init__(self, flags, key: str, every: float = 0.2):
        self.flags, self.key, self.every = flags, key, every
        self._next, self._set = 0.0, False

    def is_set(self) -> bool:
        if not self._set and time.monotonic() >= self._next:
            import ray

            self._set = bool(ray.get(self.flags.is_cancelled.remote(self.key)))
            self._next = time.monotonic() + self.every
        return self._set


def _task(raw: bytes, key: str, flags) -> Iterator[bytes]:
    """A lease's task: the local worker's handler, its replies streamed back (runs in a Ray worker)."""
    import torch

    from .process import tune_malloc
    from .worker import handle

    tune_malloc()
    torch.set_num_threads(1)
    flags.started.remote(key, os.getpid())
    yield from handle(raw, _ActorCancel(flags, key))


# ------------------------------------------------------------------ on the server
class _RayLease(Lease):
    def __init__(self, executor: RayExecutor):
        self._ex = executor
        self._gen = None
        self.key = uuid.uuid4().hex
        self._closing = threading.Lock()
        self._closed = False

    def send(self, raw: bytes) -> None:
        head, _ = decode(raw)
        gpus = 1 if _wants_gpu(head, self._ex.ray) else 0
        task = self._ex.task.options(num_gpus=gpus) if gpus else self._ex.task
        self._gen = task.remote(raw, self.key, self._ex.flags)

    def receive(self, timeout: float) -> bytes | None:
        ray = self._ex.ray
        if not ray.is_initialized():  # this process left the cluster (ray.shutdown): nothing more can come
            raise WorkerDied("the connection to the Ray cluster was closed")
        try:
            ready, _ = ray.wait([self._gen], timeout=timeout)
            if not ready:
                return None
            return ray.get(next(self._gen))
        except SystemExit:  # ray.shutdown() in another thread while this one waited: Ray ends the wait this way
            raise WorkerDied("the connection to the Ray cluster was closed") from None
        except StopIteration:
            raise WorkerDied("the training task ended without its last reply") from None
        except ray.exceptions.RayTaskError as e:  # the handler reports failures itself; this is Ray's own
            raise WorkerDied(f"the training task failed on the cluster ({type(e.cause).__name__})") from None
        except ray.exceptions.RayError as e:  # its worker process or node was lost
            raise WorkerDied(f"the training process stopped unexpectedly ({type(e).__name__})") from None

    def _connected(self) -> bool:
        """Still on the cluster: after ray.shutdown() a lease's calls are no-ops, never a new local cluster."""
        return self._ex.ray.is_initialized()

    def cancel(self) -> None:
        if self._connected():
            self._ex.flags.cancel.remote(self.key)

    def pid(self) -> int | None:
        return self._ex.ray.get(self._ex.flags.pid.remote(self.key)) if self._connected() else None

    def close(self, unfinished: bool = True) -> None:
        """Once only: the thread that gives the lease back and a shutdown may both close it, and Ray 2.60 aborts
        the whole process when one streaming task is cancelled twice at once ("Tried to complete task that was
        not pending", seen in the test suite)."""
        with self._closing:
            if self._closed:
                return
            self._closed = True
        if not self._connected():  # the cluster's tasks of this process ended with its connection
            return
        if unfinished and self._gen is not None:
            self._ex.ray.cancel(self._gen)  # a task given back unfinished does not train on
        self._ex.flags.forget.remote(self.key)


class RayExecutor(SlotExecutor):
    """Up to ``size`` tasks at once on the Ray cluster (default: its CPU count): the server's one concurrency
    limit, as the local pool's size is; Ray places each task on a node with a free CPU (and GPU)."""

    def __init__(self, size: int | None = None, threads: int = 1, limit_mb: float = 0.0):
        ray = ray_started(num_cpus=size)  # a local cluster (no RAY_ADDRESS) of the executor's size
        self.ray = ray
        super().__init__(size or max(1, int(ray.cluster_resources().get("CPU", 1))))
        self.task = ray.remote(num_returns="streaming", max_retries=0, num_cpus=1)(_task)
        self.flags = ray.remote(num_cpus=0)(_Flags).remote()

    def new_lease(self) -> Lease:
        return _RayLease(self)

    def returned(self, lease: Lease, healthy: bool) -> None:
        lease.close(unfinished=not healthy)

    def busy_pids(self) -> list[int]:
        return [p for p in (lease.pid() for lease in self.leases()) if p is not None]

    def shutdown(self, timeout: float = 2.0) -> None:
        """Cancel this executor's tasks; the cluster stays (other replicas share it)."""
        for lease in self.leases():
            lease.close()


def _wants_gpu(head: dict, ray) -> bool:
    """device=cuda, or auto on a cluster that has GPUs: the task asks for one, so Ray places it on a GPU node."""
    devices = [c.get("device", "auto") for c in ([head["config"]] if "config" in head else head.get("configs", []))]
    if "cuda" in devices:
        return True
    return "auto" in devices and ray.cluster_resources().get("GPU", 0) > 0
