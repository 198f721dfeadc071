"""The wire protocol between the server and its training workers: bytes that can cross a machine.

A message is a JSON header (length-prefixed) and, where needed, a safetensors payload of numpy arrays:
the points of the data set going in, the weights of each snapshot coming out. Nothing is ever pickled, so a
worker on another machine (or a message replayed by an attacker) can at worst send wrong numbers.

Requests carry ``task`` (a name in ``flowviz.serve.worker_main.TASKS``); replies are one of
``snapshot`` (a run's progress, weights attached), ``progress`` (a step count), ``result`` (a task's answer)
or ``fatal`` (the task failed; the worker keeps serving).
"""

from __future__ import annotations

import json

import numpy as np

from ..core.config import Config
from ..core.data import Dataset
from ..training.train import Snapshot

__all__ = ["WorkerDied", "CANCEL", "encode", "decode", "request", "dataset_from", "snapshot_message",
           "snapshot_from", "fatal_message", "SNAPSHOT_FIELDS"]

CANCEL = b"cancel"  # the one message that is not encoded: stop the task in hand, between two steps

# the scalar fields of a Snapshot, in the order of its constructor (the weights travel as arrays)
SNAPSHOT_FIELDS = ("step", "total_steps", "loss", "train_accuracy", "test_accuracy", "test_loss", "elapsed",
                   "steps_per_second", "done", "cancelled", "error")


class WorkerDied(RuntimeError):
    """The worker stopped in the middle of a task (killed, out of memory, its machine gone)."""


def encode(header: dict, tensors: dict | None = None) -> bytes:
    """JSON header (length-prefixed) + optional safetensors payload of numpy arrays."""
    from safetensors.numpy import save

    head = json.dumps(header).encode()
    body = save({k: np.ascontiguousarray(v) for k, v in tensors.items()}) if tensors else b""
    return len(head).to_bytes(4, "little") + head + body


def decode(raw: bytes) -> tuple[dict, dict]:
    """(header, arrays) of an encoded message."""
    from safetensors.numpy import load

    n = int.from_bytes(raw[:4], "little")
    header = json.loads(raw[4:4 + n])
    body = raw[4 + n:]
    return header, (load(body) if body else {})


def request(task: str, data: Dataset, **header) -> bytes:
    """A task for a worker on ``data`` (its points travel as arrays; configs as their dicts)."""
    for k, v in list(header.items()):
        if isinstance(v, Config):
            header[k] = v.to_dict()
        elif isinstance(v, (list, tuple)) and v and isinstance(v[0], Config):
            header[k] = [c.to_dict() for c in v]
    arrays = {"x_train": data.x_train, "y_train": data.y_train, "x_test": data.x_test, "y_test": data.y_test}
    return encode(dict(header, task=task, n_classes=data.n_classes), arrays)


def dataset_from(header: dict, arrays: dict) -> Dataset:
    """The data set a request carries."""
    return Dataset(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"],
                   int(header["n_classes"]))


def snapshot_message(s: Snapshot) -> bytes:
    head = {k: getattr(s, k) for k in SNAPSHOT_FIELDS}
    return encode(dict(head, kind="snapshot"), {k: v.numpy() for k, v in (s.state or {}).items()})


def snapshot_from(head: dict, arrays: dict) -> Snapshot:
    import torch

    state = {k: torch.from_numpy(v) for k, v in arrays.items()}
    return Snapshot(**{k: head[k] for k in SNAPSHOT_FIELDS}, state=state)


def fatal_message(e: BaseException) -> bytes:
    """The task failed with ``e``; the text names the exception (a GPU out-of-memory error is recognised by it)."""
    return encode({"kind": "fatal", "fatal": f"{type(e).__name__}: {e}"})
