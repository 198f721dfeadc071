"""Saving and loading runs: weights as safetensors with the config beside them. Never a pickle.

A run directory holds ``config.json``, ``metrics.json``, ``history.csv``,
``model.safetensors`` (the weights; its metadata carries the config and the
number of classes, so the file alone is enough) and ``trajectories.npz``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..core.config import Config
from ..core.errors import CheckpointError, FlowvizError, echo
from ..core.model import FlowModel
from ..core.safejson import load_json

__all__ = ["save_weights", "load_weights", "weights_bytes", "model_from_bytes", "save_run", "load_run", "tensors_of",
           "metadata_of", "config_from_bytes"]

FORMAT = "flowviz-run-1"
MAX_WEIGHTS_BYTES = 64 * 1024 * 1024


def tensors_of(model: FlowModel) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def metadata_of(model: FlowModel) -> dict[str, str]:
    return {"format": FORMAT, "config": json.dumps(model.config.to_dict()), "n_classes": str(model.n_classes)}


def weights_bytes(model: FlowModel) -> bytes:
    """The model as safetensors bytes (config and class count in the metadata)."""
    from safetensors.torch import save

    return save(tensors_of(model), metadata=metadata_of(model))


def save_weights(model: FlowModel, path) -> None:
    Path(path).write_bytes(weights_bytes(model))


def model_from_bytes(raw: bytes, *, expect_config: Config | None = None, server: bool = False) -> FlowModel:
    """Rebuild a model from safetensors bytes, checking that the file is ours and its shapes fit.

    ``expect_config``: if given, the file's field family and shape keys must match it.
    ``server``: the stored config must keep the server's limits (checked before any weight is allocated).
    Raises CheckpointError with a clear message otherwise.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    if len(raw) > MAX_WEIGHTS_BYTES:
        raise CheckpointError(f"weights file is too large ({len(raw) // 1_000_000} MB); flowviz runs are far smaller")
    if len(raw) < 8 or raw[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05") or raw[:2] == b"PK":
        raise CheckpointError("this is not a safetensors file (it looks like a pickle or zip archive); "
                              "flowviz only loads safetensors files it wrote")
    header_len = int.from_bytes(raw[:8], "little")
    if header_len <= 0 or header_len > len(raw) - 8:
        raise CheckpointError("not a valid safetensors file (its header length does not fit); is it truncated?")
    meta = _metadata(raw[8:8 + header_len])
    try:
        tensors = load(raw)
    except (ValueError, SafetensorError) as e:
        raise CheckpointError(f"not a valid safetensors file ({echo(str(e), 80)}); is it truncated?") from None
    try:
        config = Config.from_json(meta["config"])
        if server:
            config.check_server_limits()
        n_classes = int(meta["n_classes"]) if len(meta["n_classes"]) < 4 else 0
    except KeyError as e:
        raise CheckpointError(f"the run's stored metadata has no {e} entry") from None
    except (ValueError, FlowvizError) as e:
        raise CheckpointError(f"the run's stored config is not valid: {e}") from None
    if expect_config is not None:
        for key in ("field", "width", "lift", "time_mode", "n_steps", "knots", "mlp_depth", "time_input"):
            if getattr(config, key) != getattr(expect_config, key):
                raise CheckpointError(f"the run has {key}={getattr(config, key)!r} but "
                                      f"{getattr(expect_config, key)!r} was expected")
    if not 2 <= n_classes <= 8:
        raise CheckpointError(f"the run has {n_classes} classes; 2 to 8 are allowed")
    model = FlowModel(config, n_classes)
    expected = model.state_dict()
    if set(tensors) != set(expected):
        missing = sorted(set(expected) - set(tensors))[:3]
        extra = sorted(set(tensors) - set(expected))[:3]
        raise CheckpointError(f"the weights do not fit a {config.field} field: missing {missing}, unexpected {extra}")
    for k, v in tensors.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise CheckpointError(f"weight {k!r} has shape {tuple(v.shape)}, expected {tuple(expected[k].shape)}")
        if not torch.isfinite(v).all():
            raise CheckpointError(f"weight {k!r} contains NaN or infinite values")
    model.load_state_dict(tensors)
    model.train(False)
    return model


def _metadata(header: bytes) -> dict[str, str]:
    """The flowviz metadata of a safetensors header, its types checked: a JSON object whose ``__metadata__``
    maps text to text (the safetensors format) and names our format."""
    try:
        head = load_json(header, what="the safetensors header", max_depth=4, max_chars=MAX_WEIGHTS_BYTES)
    except FlowvizError as e:
        raise CheckpointError(f"not a valid safetensors file: {e}") from None
    if not isinstance(head, dict):
        raise CheckpointError(f"not a valid safetensors file: its header is a JSON {type(head).__name__}, not an "
                              f"object of tensors")
    meta = head.get("__metadata__") or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise CheckpointError("not a valid safetensors file: its __metadata__ is not a map of text to text")
    if meta.get("format") != FORMAT:
        raise CheckpointError("this safetensors file was not written by flowviz (no flowviz metadata)")
    return meta


def config_from_bytes(raw: bytes) -> Config:
    """The config of an imported ``config.json`` (a bare config, or metrics.json's ``{"config": {...}}``).

    Size, nesting depth and number lengths are bounded before parsing, and types checked after: a list, a
    string or a deeply nested file is refused with a ConfigError saying what is wrong.
    """
    from ..core.errors import ConfigError

    if len(raw) > 100_000:
        raise ConfigError("a config file is a few hundred bytes; this one is too large")
    try:
        doc = load_json(raw, what="the file", max_chars=100_000)
    except FlowvizError as e:
        raise ConfigError(str(e)) from None
    if not isinstance(doc, dict):
        raise ConfigError(f"a config file holds a JSON object of key: value; this one holds a {type(doc).__name__}")
    if "config" in doc and isinstance(doc["config"], dict):  # metrics.json: the config beside the results
        doc = doc["config"]
    return Config.from_dict(doc)


def load_weights(path) -> FlowModel:
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"no weights file at {p}")
    with open(p, "rb") as fh:
        raw = fh.read(MAX_WEIGHTS_BYTES + 1)
    return model_from_bytes(raw)


def save_run(result, out_dir) -> Path:
    """Write a trained run to a directory (see the module docstring)."""
    from .export import history_csv, trajectories_npz

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(result.config.to_json() + "\n")
    (out / "metrics.json").write_text(json.dumps(result.metrics, indent=2) + "\n")
    (out / "history.csv").write_bytes(history_csv(result.history))
    save_weights(result.model, out / "model.safetensors")
    (out / "trajectories.npz").write_bytes(trajectories_npz(result.model, result.data))
    return out


def load_run(run_dir):
    """(model, dataset) of a saved run directory; the data come from trajectories.npz (x_0 and labels)."""
    from ..core.data import Dataset

    d = Path(run_dir)
    if not d.is_dir():
        raise CheckpointError(f"no run directory at {d}")
    model = load_weights(d / "model.safetensors")
    try:
        with np.load(d / "trajectories.npz", allow_pickle=False) as z:
            x0, y, n_train = z["x"][0][:, :2], z["y"], int(z["n_train"])
    except (OSError, KeyError, ValueError) as e:
        raise CheckpointError(f"trajectories.npz in {d} is missing or not ours: {e}") from None
    ds = Dataset(x0[:n_train], y[:n_train], x0[n_train:], y[n_train:], model.n_classes)
    return model, ds
