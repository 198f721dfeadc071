"""A disk cache of finished runs, keyed by the full config: survives a server restart.

One safetensors file per run (``<config key>.safetensors``): the weights, and in
its metadata the config, the history and the metrics. Written atomically
(temporary file, then rename); a file that does not load is deleted and counts
as a miss. The cache keeps at most ``FLOWVIZ_CACHE_ENTRIES`` files (default
256), dropping the least recently used. Runs on uploaded CSV points are not
cached (their data are not in the config).

Where it lives and how many files it keeps come from ``settings`` (:class:`CacheSettings`: the server's
:class:`~flowviz.serve.settings.Settings` is one, read from ``FLOWVIZ_CACHE_DIR``, default ``~/.cache/flowviz``,
``off`` turns the cache off, and ``FLOWVIZ_CACHE_ENTRIES``); this module reads no environment.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Protocol

from ..core.config import Config
from ..core.errors import FlowvizError
from ..core.model import FlowModel

__all__ = ["CacheSettings", "cache_dir", "cache_path", "store", "load", "entries"]

log = logging.getLogger("flowviz.runfiles.cache")


class CacheSettings(Protocol):
    """Where the cache is (``""``: ``~/.cache/flowviz``; ``"off"``: no cache) and how many runs it keeps."""

    @property
    def cache_dir(self) -> str: ...

    @property
    def cache_entries(self) -> int: ...


def cache_dir(settings: CacheSettings) -> Path | None:
    """The cache directory, or None when the cache is off."""
    d = settings.cache_dir
    if d.lower() == "off":
        return None
    return Path(d) if d else Path.home() / ".cache" / "flowviz"


def cache_path(config: Config, settings: CacheSettings) -> Path | None:
    d = cache_dir(settings)
    return None if d is None or config.dataset == "csv" else d / f"{config.key()}.safetensors"


def store(
    config: Config,
    model: FlowModel,
    history: list[dict],
    metrics: dict,
    *,
    settings: CacheSettings,
    kept: dict | None = None,
    train_state=None,
) -> Path | None:
    """Write a finished run (with its checkpoints ``kept`` and resume state, see files.run_tensors); never
    raises (a full disk must not break training)."""
    from safetensors.torch import save

    from .files import run_tensors

    path = cache_path(config, settings)
    if path is None:
        return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors, meta = run_tensors(model, kept, train_state)
        meta = dict(meta, history=json.dumps(history), metrics=json.dumps(metrics, default=str))
        raw = save(tensors, metadata=meta)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
        os.replace(tmp, path)
        _trim(path.parent, max(1, settings.cache_entries))
        return path
    except OSError as e:
        log.warning("could not cache run %s: %s", config.key(), e)
        return None


def load(config: Config, *, settings: CacheSettings) -> tuple[FlowModel, list[dict], dict, dict, object] | None:
    """(model, history, metrics, checkpoints (step -> weights), resume state or None) of a cached run of exactly
    this config, or None."""
    from .files import checkpoints_from_bytes, model_from_bytes

    path = cache_path(config, settings)
    if path is None or not path.is_file():
        return None
    try:
        raw = path.read_bytes()
        model = model_from_bytes(raw, expect_config=config)
        if model.config != config:
            return None
        header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])["__metadata__"]
        history, metrics = json.loads(header["history"]), json.loads(header["metrics"])
        kept, state = checkpoints_from_bytes(raw, model)
        os.utime(path)  # recently used
        return model, history, metrics, kept, state
    except (OSError, FlowvizError, KeyError, ValueError) as e:
        log.warning("dropping unreadable cache entry %s: %s", path.name, e)
        path.unlink(missing_ok=True)
        return None


def entries(settings: CacheSettings) -> list[Path]:
    d = cache_dir(settings)
    return sorted(d.glob("*.safetensors")) if d is not None and d.is_dir() else []


def _trim(d: Path, keep: int) -> None:
    files = sorted(d.glob("*.safetensors"), key=lambda p: p.stat().st_mtime)
    for p in files[: max(0, len(files) - keep)]:
        p.unlink(missing_ok=True)
