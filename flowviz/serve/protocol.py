"""flowviz's messages between the server and its training processes, local or on a cluster.

Each message is bytes: a length-prefixed JSON header and, where arrays travel (the points going in, the
weights coming out), a safetensors payload. Never a pickle, so a message can cross a machine and nothing
a user sent is ever unpickled.
"""

from __future__ import annotations

import json

import numpy as np

from ..core.config import Config
from ..core.data import Dataset

SNAPSHOT_KEYS = ("step", "total_steps", "loss", "train_accuracy", "test_accuracy", "test_loss", "elapsed",
                 "steps_per_second", "done", "cancelled", "error")


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


# ------------------------------------------------------------------ going out: work
def data_arrays(data: Dataset) -> dict:
    return {"x_train": data.x_train, "y_train": data.y_train, "x_test": data.x_test, "y_test": data.y_test}


def dataset_of(header: dict, arrays: dict) -> Dataset:
    return Dataset(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"],
                   int(header["n_classes"]))


def run_message(config: Config, data: Dataset, log_every: int) -> bytes:
    """Train one run, a snapshot every ``log_every`` steps."""
    return encode({"config": config.to_dict(), "n_classes": data.n_classes, "log_every": log_every},
                  data_arrays(data))


member_message = run_message  # a sweep member trained to the end: the same request, one result back


def batch_message(configs: list[Config], data: Dataset, log_every: int) -> bytes:
    """Train a lane group of a batched sweep."""
    return encode({"configs": [c.to_dict() for c in configs], "n_classes": data.n_classes,
                   "log_every": log_every}, data_arrays(data))


# ------------------------------------------------------------------ coming back: snapshots and results
def snapshot_message(s, **extra) -> bytes:
    """A :class:`~flowviz.training.train.Snapshot` with its weights."""
    head = {k: getattr(s, k) for k in SNAPSHOT_KEYS} | extra
    return encode(head, {k: v.numpy() for k, v in s.state.items()})


def snapshot_of(head: dict, arrays: dict):
    import torch

    from ..training.train import Snapshot

    state = {k: torch.from_numpy(v) for k, v in arrays.items()}
    return Snapshot(**{k: head[k] for k in SNAPSHOT_KEYS}, state=state)


def batched_results_message(results: list) -> bytes:
    """Finished members (``TrainResult``): history, metrics, error, and the weights of each."""
    head = {"results": [{"history": r.history, "metrics": r.metrics, "error": r.error} for r in results]}
    return encode(head, {f"{i}/{k}": v.detach().cpu().numpy() for i, r in enumerate(results)
                         for k, v in r.model.state_dict().items()})


def results_of(head: dict, arrays: dict, configs: list[Config], data: Dataset) -> list:
    """The ``TrainResult`` of each member of a results message."""
    import torch

    from ..core.model import build_model
    from ..training.train import TrainResult

    out = []
    for j, (cfg, res) in enumerate(zip(configs, head["results"])):
        state = {k.split("/", 1)[1]: torch.from_numpy(v) for k, v in arrays.items() if k.split("/", 1)[0] == str(j)}
        model = build_model(cfg, data.n_classes)
        model.load_state_dict(state)
        model.train(False)
        out.append(TrainResult(cfg, model, data, res["history"], res["metrics"], res["error"]))
    return out
