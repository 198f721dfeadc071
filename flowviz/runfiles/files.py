"""Saving and loading runs: weights as safetensors with the config beside them. Never a pickle.

A run directory holds ``config.json``, ``metrics.json``, ``history.csv``,
``model.safetensors`` (the weights; its metadata carries the config and the
number of classes, so the file alone is enough) and ``trajectories.npz``.

``model.safetensors`` (and the disk cache's files) also hold the run's checkpoints, tensors named
``step/<step>/<name>``, and the state :func:`flowviz.resume` goes on from, tensors ``resume/...`` with their
header in the metadata's ``resume`` entry; a file over MAX_WEIGHTS_BYTES drops the resume state, then
checkpoints (the first and last stay).
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

__all__ = [
    "save_weights",
    "load_weights",
    "weights_bytes",
    "model_from_bytes",
    "save_run",
    "load_run",
    "tensors_of",
    "metadata_of",
    "config_from_bytes",
    "classes_mismatch",
    "run_tensors",
    "checkpoints_from_bytes",
    "load_result",
]

FORMAT = "flowviz-run-1"
MAX_WEIGHTS_BYTES = 64 * 1024 * 1024


def tensors_of(model: FlowModel) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def metadata_of(model: FlowModel) -> dict[str, str]:
    return {"format": FORMAT, "config": json.dumps(model.config.to_dict()), "n_classes": str(model.n_classes)}


def run_tensors(model: FlowModel, kept: dict | None = None, train_state=None) -> tuple[dict, dict[str, str]]:
    """(tensors, metadata) of a run: the model's weights, each checkpoint's as ``step/<step>/<name>``, the resume
    state as ``resume/<name>`` (its header in the metadata), within MAX_WEIGHTS_BYTES (see the module text)."""
    from ..core.cost import thin_steps

    t, meta = tensors_of(model), metadata_of(model)
    size = sum(v.numel() * v.element_size() for v in t.values())
    one = size or 1
    kept = dict(kept or {})
    extra = {}
    if train_state is not None:
        head, ts = train_state.flat()
        extra = {f"resume/{k}": v.detach().cpu().contiguous() for k, v in ts.items()}
        if size + len(kept) * one + sum(v.numel() * v.element_size() for v in extra.values()) <= MAX_WEIGHTS_BYTES:
            meta["resume"] = json.dumps(head)
        else:
            extra = {}
    size += sum(v.numel() * v.element_size() for v in extra.values())
    steps = thin_steps(kept, max(2, int((MAX_WEIGHTS_BYTES - size) // one))) if kept else []
    if kept and size + len(steps) * one > MAX_WEIGHTS_BYTES:
        steps = []
    for s in steps:
        t.update({f"step/{s}/{k}": v.detach().cpu().contiguous() for k, v in kept[s].items()})
    return t | extra, meta


def weights_bytes(model: FlowModel, kept: dict | None = None, train_state=None) -> bytes:
    """The model as safetensors bytes (config and class count in the metadata), with the run's checkpoints
    ``kept`` (step -> weights) and its resume state if given."""
    from safetensors.torch import save

    tensors, meta = run_tensors(model, kept, train_state)
    return save(tensors, metadata=meta)


def save_weights(model: FlowModel, path, kept: dict | None = None, train_state=None) -> None:
    Path(path).write_bytes(weights_bytes(model, kept, train_state))


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
        raise CheckpointError(
            "this is not a safetensors file (it looks like a pickle or zip archive); "
            "flowviz only loads safetensors files it wrote"
        )
    header_len = int.from_bytes(raw[:8], "little")
    if header_len <= 0 or header_len > len(raw) - 8:
        raise CheckpointError("not a valid safetensors file (its header length does not fit); is it truncated?")
    meta = _metadata(raw[8 : 8 + header_len])
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
                raise CheckpointError(
                    f"the run has {key}={getattr(config, key)!r} but {getattr(expect_config, key)!r} was expected"
                )
    if not 2 <= n_classes <= 8:
        raise CheckpointError(f"the run has {n_classes} classes; 2 to 8 are allowed")
    if config.dataset != "csv" and n_classes != config.classes:
        raise CheckpointError(classes_mismatch(n_classes, config.classes, f"dataset={config.dataset}"))
    model = FlowModel(config, n_classes)
    expected = model.state_dict()
    tensors = {k: v for k, v in tensors.items() if not k.startswith(("step/", "resume/"))}  # checkpoints_from_bytes
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


def checkpoints_from_bytes(raw: bytes, model: FlowModel) -> tuple[dict, object]:
    """(kept: step -> weights, the resume TrainState or None) that a file written by :func:`weights_bytes` holds
    beside ``model`` (read from the same bytes by :func:`model_from_bytes`); each checkpoint must have the
    model's tensors, shapes and finite values, else CheckpointError."""
    from safetensors.torch import load

    from ..training.train import TrainState

    meta = _metadata(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    tensors = load(raw)
    expected = model.state_dict()
    kept: dict[int, dict] = {}
    for name, v in tensors.items():
        if name.startswith("step/"):
            _, step, key = name.split("/", 2)
            if not step.isdigit() or key not in expected or tuple(v.shape) != tuple(expected[key].shape):
                raise CheckpointError(f"checkpoint tensor {echo(name, 60)} does not fit the model")
            if not torch.isfinite(v).all():
                raise CheckpointError(f"checkpoint tensor {echo(name, 60)} contains NaN or infinite values")
            kept.setdefault(int(step), {})[key] = v
    for step, state in kept.items():
        if set(state) != set(expected):
            raise CheckpointError(f"the checkpoint of step {step} lacks some of the model's weights")
    state = None
    if "resume" in meta:
        try:
            head = load_json(meta["resume"].encode(), what="the resume state", max_depth=6, max_chars=1_000_000)
            state = TrainState.from_flat(head, {k[7:]: v for k, v in tensors.items() if k.startswith("resume/")})
        except (FlowvizError, KeyError, ValueError, TypeError, AttributeError) as e:
            raise CheckpointError(f"the run's resume state is not valid: {echo(str(e), 80)}") from None
    return kept, state


def _metadata(header: bytes) -> dict[str, str]:
    """The flowviz metadata of a safetensors header, its types checked: a JSON object whose ``__metadata__``
    maps text to text (the safetensors format) and names our format."""
    try:
        head = load_json(header, what="the safetensors header", max_depth=4, max_chars=MAX_WEIGHTS_BYTES)
    except FlowvizError as e:
        raise CheckpointError(f"not a valid safetensors file: {e}") from None
    if not isinstance(head, dict):
        raise CheckpointError(
            f"not a valid safetensors file: its header is a JSON {type(head).__name__}, not an object of tensors"
        )
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
    save_weights(
        result.model, out / "model.safetensors", getattr(result, "kept", None), getattr(result, "train_state", None)
    )
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
        raise CheckpointError(
            f"trajectories.npz: {name!r} is a {len(shape)}-d {dtype} array; flowviz writes a "
            f"{ndim}-d array of kind {kinds!r}"
        )
    if size > max_bytes:
        raise CheckpointError(
            f"trajectories.npz: {name!r} would take {size / 2**20:,.0f} MB; at most {max_bytes // 2**20} MB are read"
        )
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
        raise CheckpointError(
            f"trajectories.npz: x has shape {x.shape} for {n} labels; flowviz writes "
            f"(L+1, n, d) with n = the number of labels, d >= 2"
        )
    if not 1 <= int(n_train) <= n:
        raise CheckpointError(f"trajectories.npz: n_train={int(n_train)}; it must lie in 1..{n} (the points)")
    if y.min() < 0 or y.max() >= model.n_classes:
        raise CheckpointError(
            f"trajectories.npz: labels from {int(y.min())} to {int(y.max())}; the run's head has "
            f"{model.n_classes} classes (0..{model.n_classes - 1})"
        )
    try:
        x0 = check_points(x[0][:, :2], limit=DATA_LIMIT, what="trajectories.npz: the points'").astype(np.float32)
    except FlowvizError as e:
        raise CheckpointError(str(e)) from None
    y, n_train = y.astype(np.int64), int(n_train)
    ds = Dataset(x0[:n_train], y[:n_train], x0[n_train:], y[n_train:], model.n_classes)
    return model, ds


def load_result(run_dir):
    """The TrainResult of a saved run directory: model, data, history, metrics, checkpoints and resume state
    (so ``result.at(step)`` and ``flowviz.resume`` work on it)."""
    import csv
    import io

    from ..training.train import TrainResult

    model, ds = load_run(run_dir)
    d = Path(run_dir)
    raw = (d / "model.safetensors").read_bytes()
    kept, state = checkpoints_from_bytes(raw, model)
    try:
        metrics = load_json((d / "metrics.json").read_bytes(), what="metrics.json")
        history = [
            {k: (int(v) if k == "step" else float(v)) for k, v in r.items()}
            for r in csv.DictReader(io.StringIO((d / "history.csv").read_text()))
        ]
    except (OSError, ValueError, FlowvizError) as e:
        raise CheckpointError(f"metrics.json or history.csv in {d} is missing or not ours: {e}") from None
    return TrainResult(
        model.config, model, ds, history, metrics if isinstance(metrics, dict) else {}, None, kept, state
    )
