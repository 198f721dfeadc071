"""What a worker does with a request: the table of tasks (each one's worker half, in its own module), each
turning one request into a stream of replies.

The same handlers serve every executor: a worker process of the local pool (:func:`main`, reading its pipe),
a thread of the in-process executor, and a task on a Ray cluster. A handler gets the decoded request and a
``cancel`` flag (``is_set()``, checked between training steps) and yields encoded replies; an exception
becomes a ``fatal`` reply and the worker goes on serving.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from .instruments import instruments_task
from .measure import measure_task
from .protocol import CANCEL, decode, fatal_message
from .train import run_task
from .train_batched import batch_task
from .views import analyse_task, compute_task

__all__ = ["TASKS", "handle", "main"]


# task name -> handler(header, arrays, cancel) yielding encoded replies
TASKS: dict[str, Callable[[dict, dict, object], Iterator[bytes]]] = {
    "run": run_task,
    "batch": batch_task,
    "analyse": analyse_task,
    "instruments": instruments_task,
    "measure": measure_task,
    "compute": compute_task,
}


LIMIT_MB = 0.0  # this worker's memory cap above its start (main sets it); named in an over-cap error


def _over_memory_cap(e: BaseException) -> bool:
    """An allocation refused under the worker's memory cap (torch's CPU allocator, or Python's own)."""
    return isinstance(e, MemoryError) or (isinstance(e, RuntimeError) and "can't allocate memory" in str(e))


def handle(raw: bytes, cancel) -> Iterator[bytes]:
    """The replies to one request; a failure (an unknown task included) is one ``fatal`` reply."""
    try:
        header, arrays = decode(raw)
        task = TASKS.get(header.get("task"))
        if task is None:
            raise ValueError(f"unknown task {header.get('task')!r}; valid: {', '.join(TASKS)}")
        yield from task(header, arrays, cancel)
    except Exception as e:  # report, keep serving
        if _over_memory_cap(e):
            cap = f" of {LIMIT_MB:.0f} MB (FLOWVIZ_WORKER_MB)" if LIMIT_MB > 0 else ""
            e = MemoryError(
                f"the run needed more memory than a worker's limit{cap}; the last state is kept. "
                "Make the keys that drive its cost smaller"
            )
        yield fatal_message(e)


class _PipeCancel:
    """cancel.is_set() for a task: a CANCEL message on the pipe, checked between steps."""

    def __init__(self, conn):
        self.conn, self.flag = conn, False

    def is_set(self) -> bool:
        while not self.flag and self.conn.poll():
            if self.conn.recv_bytes() == CANCEL:
                self.flag = True
        return self.flag


def main(conn, threads: int, limit_mb: float = 0.0) -> None:  # pragma: no cover - runs in the child process
    """A worker process: start-up settings, then serve requests from ``conn`` until it closes."""
    import signal

    import torch

    from .process import limit_memory, tune_malloc

    global LIMIT_MB

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server ends its workers (forkserver_init: from their start)
    tune_malloc()
    limit_memory(limit_mb)
    LIMIT_MB = limit_mb
    torch.set_num_threads(threads)
    while True:
        try:
            raw = conn.recv_bytes()
        except (EOFError, OSError):
            return
        if raw == CANCEL:  # arrived after its task had ended
            continue
        try:
            for reply in handle(raw, _PipeCancel(conn)):
                conn.send_bytes(reply)
        except (EOFError, OSError):  # the pool closed its end (shut down, or the task cut short): nobody to tell
            return
