"""The wire protocol between the server and its training workers: bytes that can cross a machine.

A message is a JSON header (length-prefixed) and, where needed, a safetensors payload of numpy arrays:
the points of the data set going in, the weights of each snapshot coming out. Nothing is ever pickled, so a
worker on another machine (or a message replayed by an attacker) can at worst send wrong numbers.

Requests carry ``task`` (a name in ``flowviz.serve.work.worker.TASKS``); replies are one of
``snapshot`` (a run's progress, weights attached), ``progress`` (a step count), ``views`` and ``instrument``
(a trained run's final views, each instrument's data), ``result`` (a task's answer) or ``fatal`` (the task
failed; the worker keeps serving). A model's weights travel as arrays ``w/<tag>/<name>`` (``work.weights``).
"""

from __future__ import annotations

import json

import numpy as np

from ...core.config import Config
from ...core.data import Dataset
from ...training.train import Snapshot

__all__ = [
    "WorkerDied",
    "TaskFailed",
    "CANCEL",
    "encode",
    "decode",
    "request",
    "dataset_from",
    "snapshot_message",
    "snapshot_from",
    "result_from",
    "fatal_message",
    "SNAPSHOT_FIELDS",
    "resume_arrays",
    "train_state_from",
]

CANCEL = b"cancel"  # the one message that is not encoded: stop the task in hand, between two steps

# the scalar fields of a Snapshot, in the order of its constructor (the weights travel as arrays)
SNAPSHOT_FIELDS = (
    "step",
    "total_steps",
    "loss",
    "train_accuracy",
    "test_accuracy",
    "test_loss",
    "elapsed",
    "steps_per_second",
    "done",
    "cancelled",
    "error",
)


class WorkerDied(RuntimeError):
    """The worker stopped in the middle of a task (killed, out of memory, its machine gone)."""


class TaskFailed(RuntimeError):
    """A task ended with a ``fatal`` reply: its text names the exception; the worker itself is fine."""


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
    header = json.loads(raw[4 : 4 + n])
    body = raw[4 + n :]
    return header, (load(body) if body else {})


def request(task: str, data: Dataset, *, extra: dict | None = None, **header) -> bytes:
    """A task for a worker on ``data`` (its points travel as arrays, with ``extra`` arrays; configs as their
    dicts)."""
    for k, v in list(header.items()):
        if isinstance(v, Config):
            header[k] = v.to_dict()
        elif isinstance(v, (list, tuple)) and v and isinstance(v[0], Config):
            header[k] = [c.to_dict() for c in v]
    arrays = {"x_train": data.x_train, "y_train": data.y_train, "x_test": data.x_test, "y_test": data.y_test}
    return encode(dict(header, task=task, n_classes=data.n_classes), arrays | (extra or {}))


def dataset_from(header: dict, arrays: dict) -> Dataset:
    """The data set a request carries."""
    return Dataset(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], int(header["n_classes"]))


def snapshot_message(s: Snapshot) -> bytes:
    """A snapshot: its scalars in the header; its weights, its checkpoints (``step/<step>/<name>``) and the resume
    state (``resume/<name>``, its header under ``resume``) as arrays."""
    head = dict({k: getattr(s, k) for k in SNAPSHOT_FIELDS}, kind="snapshot")
    arrays = {k: v.numpy() for k, v in (s.state or {}).items()}
    for step, state in (s.kept or {}).items():
        arrays.update({f"step/{step}/{k}": v.numpy() for k, v in state.items()})
    if s.train_state is not None:
        head["resume"], tensors = s.train_state.flat()
        arrays.update({f"resume/{k}": v.numpy() for k, v in tensors.items()})
    return encode(head, arrays)


def resume_arrays(train_state, weights: dict) -> tuple[dict, dict]:
    """(header entries, arrays) of a request that goes on from ``train_state`` with ``weights`` (name -> tensor)."""
    from .weights import state_arrays

    head, tensors = train_state.flat()
    arrays = state_arrays(weights)
    arrays.update({f"resume/{k}": v.numpy() for k, v in tensors.items()})
    return {"resume": head}, arrays


def train_state_from(head: dict, arrays: dict):
    """The TrainState a message carries (header ``resume``, arrays ``resume/<name>``), or None."""
    from ...training.train import TrainState

    if not isinstance(head.get("resume"), dict):
        return None
    return TrainState.from_flat(head["resume"], {k[7:]: v for k, v in arrays.items() if k.startswith("resume/")})


def snapshot_from(head: dict, arrays: dict) -> Snapshot:
    import torch

    state, kept = {}, {}
    for k, v in arrays.items():
        if k.startswith("step/"):
            _, step, name = k.split("/", 2)
            kept.setdefault(int(step), {})[name] = torch.from_numpy(v)
        elif not k.startswith("resume/"):
            state[k] = torch.from_numpy(v)
    return Snapshot(
        **{k: head[k] for k in SNAPSHOT_FIELDS},
        state=state,
        kept=kept or None,
        train_state=train_state_from(head, arrays),
    )


def fatal_message(e: BaseException) -> bytes:
    """The task failed with ``e``; the text names the exception (a GPU out-of-memory error is recognised by it)."""
    return encode({"kind": "fatal", "fatal": f"{type(e).__name__}: {e}"})


def result_from(config: Config, data: Dataset, snaps: list[Snapshot]):
    """The ``TrainResult`` of a run streamed from a worker: its history, its last weights, its metrics."""
    from ...core.model import build_model
    from ...training.train import TrainResult
    from .weights import state_model

    last = snaps[-1]
    model = (
        state_model(config, data.n_classes, last.state)
        if last.state is not None
        else build_model(config, data.n_classes)
    )
    model.train(False)
    return TrainResult(config, model, data, [s.record() for s in snaps], last.metrics(), last.error)


# ------------------------------------------------------------------ result objects (views) as JSON + arrays
def _result_type(name: str):
    """The result type ``module:Class`` a message may rebuild: the data set, or a dataclass that a module of
    ``flowviz.training`` defines (the views and their parts); nothing else is ever constructed from a message."""
    import dataclasses
    import importlib

    module, _, cls = name.partition(":")
    if name == "Dataset":
        return Dataset
    if not module.startswith("flowviz.training.") or not cls.isidentifier():
        raise KeyError(name)
    try:
        t = getattr(importlib.import_module(module), cls, None)
    except ImportError:
        raise KeyError(name) from None
    if not (isinstance(t, type) and dataclasses.is_dataclass(t) and t.__module__ == module):
        raise KeyError(name)
    return t


def _type_name(obj) -> str | None:
    import dataclasses

    t = type(obj)
    if t is Dataset:
        return "Dataset"
    if dataclasses.is_dataclass(obj) and t.__module__.startswith("flowviz.training."):
        return f"{t.__module__}:{t.__name__}"
    return None


def pack(obj, arrays: dict, path: str = "v"):
    """A JSON tree for ``obj`` (dataclasses of ``_types``, Config, dicts, lists, numbers, text), its numpy
    arrays moved into ``arrays`` under their paths."""
    import dataclasses

    if isinstance(obj, np.ndarray):
        arrays[path] = obj
        return {"@a": path}
    if isinstance(obj, Config):
        return {"@config": obj.to_dict()}
    if _type_name(obj) is not None:
        return {
            "@dc": _type_name(obj),
            "f": {f.name: pack(getattr(obj, f.name), arrays, f"{path}.{f.name}") for f in dataclasses.fields(obj)},
        }
    if isinstance(obj, dict):
        return {"@d": {str(k): pack(v, arrays, f"{path}[{k}]") for k, v in obj.items()}}
    if isinstance(obj, (list, tuple)):
        return {"@t" if isinstance(obj, tuple) else "@l": [pack(v, arrays, f"{path}[{i}]") for i, v in enumerate(obj)]}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot send a {type(obj).__name__} in a message")


def unpack(tree, arrays: dict):
    """The object :func:`pack` described (only whitelisted types are built)."""
    if not isinstance(tree, dict):
        return tree
    if "@a" in tree:
        return arrays[tree["@a"]]
    if "@config" in tree:
        return Config.from_dict(tree["@config"])
    if "@dc" in tree:
        cls = _result_type(tree["@dc"])  # KeyError for any other name
        return cls(**{k: unpack(v, arrays) for k, v in tree["f"].items()})
    if "@d" in tree:
        return {k: unpack(v, arrays) for k, v in tree["@d"].items()}
    if "@t" in tree:
        return tuple(unpack(v, arrays) for v in tree["@t"])
    return [unpack(v, arrays) for v in tree["@l"]]
