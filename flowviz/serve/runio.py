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
           "metadata_of", "config_from_bytes", "classes_mismatch"]

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
    if config.dataset != "csv" and n_classes != config.classes:
        raise CheckpointError(classes_mismatch(n_classes, config.classes, f"dataset={config.dataset}"))
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


def classes_mismatch(head: int, data: int, source: str) -> str:
    """The message for a head of ``head`` classes on data of ``data`` classes (``source``: where they come from)."""
    return f"expected {data} classes (its data: {source}), found {head} in the run's head"


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


MAX_NPZ_BYTES = 512 * 2**20  # one array of a run's trajectories.npz, decompressed (20,000 points, L = 1024: 330 MB)


def _npz_array(z, name: str, ndim: int, kinds: str, max_bytes: int = MAX_NPZ_BYTES) -> np.ndarray:
    """Member ``name`` of an open npz, its .npy header read first: CheckpointError unless it has ``ndim``
    dimensions, a dtype of one of ``kinds`` (numpy kind letters) and at most ``max_bytes`` (nothing larger is
    decompressed)."""
    fmt = np.lib.format
    try:
        with z.zip.open(f"{name}.npy") as fh:
            version = fmt.read_magic(fh)
            read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, _, dtype = read(fh)
    except KeyError:
        raise CheckpointError(f"trajectories.npz has no array {name!r}") from None
    size = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if len(shape) != ndim or dtype.kind not in kinds or dtype.hasobject:
        raise CheckpointError(f"trajectories.npz: {name!r} is a {len(shape)}-d {dtype} array; flowviz writes a "
                              f"{ndim}-d array of kind {kinds!r}")
    if size > max_bytes:
        raise CheckpointError(f"trajectories.npz: {name!r} would take {size / 2**20:,.0f} MB; at most "
                              f"{max_bytes // 2**20} MB are read")
    return z[name]


def load_run(run_dir):
    """(model, dataset) of a saved run directory; the data come from trajectories.npz (x_0 and labels).

    The npz is checked before and after reading: no pickles, each array's header (shape, dtype, size) before it
    is decompressed, then x_0 finite and within a dataset's bounds, labels of the model's classes,
    1 <= n_train <= n. CheckpointError, one line, otherwise."""
    import zipfile

    from ..core.data import Dataset
    from ..core.points import DATA_LIMIT, check_points

    d = Path(run_dir)
    if not d.is_dir():
        raise CheckpointError(f"no run directory at {d}")
    model = load_weights(d / "model.safetensors")
    path = d / "trajectories.npz"
    try:
        with open(path, "rb") as fh:
            if fh.read(4) != b"PK\x03\x04":
                raise CheckpointError(f"trajectories.npz in {d} is not an npz (zip) file")
        with np.load(path, allow_pickle=False) as z:
            x, y = _npz_array(z, "x", 3, "f"), _npz_array(z, "y", 1, "iu")
            n_train = _npz_array(z, "n_train", 0, "iu")
    except CheckpointError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"trajectories.npz in {d} is missing or not ours: {echo(str(e), 80)}") from None
    n = len(y)
    if x.shape[0] < 1 or x.shape[1] != n or x.shape[2] < 2 or n < 2:
        raise CheckpointError(f"trajectories.npz: x has shape {x.shape} for {n} labels; flowviz writes "
                              f"(L+1, n, d) with n = the number of labels, d >= 2")
    if not 1 <= int(n_train) <= n:
        raise CheckpointError(f"trajectories.npz: n_train={int(n_train)}; it must lie in 1..{n} (the points)")
    if y.min() < 0 or y.max() >= model.n_classes:
        raise CheckpointError(f"trajectories.npz: labels from {int(y.min())} to {int(y.max())}; the run's head has "
                              f"{model.n_classes} classes (0..{model.n_classes - 1})")
    try:
        x0 = check_points(x[0][:, :2], limit=DATA_LIMIT, what="trajectories.npz: the points'").astype(np.float32)
    except FlowvizError as e:
        raise CheckpointError(str(e)) from None
    y, n_train = y.astype(np.int64), int(n_train)
    ds = Dataset(x0[:n_train], y[:n_train], x0[n_train:], y[n_train:], model.n_classes)
    return model, ds
