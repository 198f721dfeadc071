"""Named configs: one JSON file each in assets/presets/ ({"title", "description", "config"})."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from .config import Config
from .errors import ConfigError

__all__ = ["PRESET_DIR", "preset", "preset_names", "preset_info"]

PRESET_DIR = Path(__file__).resolve().parent.parent / "assets" / "presets"


@cache
def _load_all() -> dict[str, dict]:
    out = {}
    for p in sorted(PRESET_DIR.glob("*.json")):
        info = json.loads(p.read_text())
        info["config"] = Config.from_dict(info.get("config", {}))
        out[p.stem] = info
    return out


def preset_names() -> list[str]:
    """Names of the presets, sorted."""
    return list(_load_all())


def preset_info(name: str) -> dict:
    """{"title", "description", "config": Config} of a preset."""
    all_ = _load_all()
    if name not in all_:
        raise ConfigError(f"unknown preset {name!r}; valid presets: {', '.join(all_)}")
    return all_[name]


def preset(name: str) -> Config:
    """The config of a named preset."""
    return preset_info(name)["config"]
