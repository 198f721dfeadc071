"""Named scenarios: one JSON file each in assets/presets/.

Each file holds ``title``, ``description`` (two or three plain sentences on what
to look at), ``config`` (the run), and optionally ``view`` (the view that shows
the point), ``compare`` (config changes for a second run shown side by side) and
``order`` (its place in the list), ``side_figures`` (figures shown for both runs) and ``instrument`` (the
sub-view of the Instruments view that shows the point).
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from .assets import ASSETS
from .config import Config
from .errors import ConfigError

__all__ = ["PRESET_DIR", "preset", "preset_names", "preset_info", "preset_configs"]

PRESET_DIR = ASSETS / "presets"


@cache
def _load_all() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for p in PRESET_DIR.glob("*.json"):
        info = json.loads(p.read_text())
        cfg = Config.from_dict(info.get("config", {}))
        info["config"] = cfg
        info["compare"] = cfg.replace(**info["compare"]) if info.get("compare") else None
        info.setdefault("view", "Characteristics")
        info.setdefault("order", 99)
        info.setdefault("instrument", None)
        info.setdefault("side_figures", [])  # figures (plots.FIGURES names) shown for both runs under the pair
        info["name"] = p.stem
        out[p.stem] = info
    return dict(sorted(out.items(), key=lambda kv: (kv[1]["order"], kv[0])))


def preset_names() -> list[str]:
    """Names of the presets, in their curated order."""
    return list(_load_all())


def preset_info(name: str) -> dict[str, Any]:
    """{"title", "description", "config": Config, "compare": Config | None, "view", "order", "side_figures",
    "name"}."""
    all_ = _load_all()
    if name not in all_:
        raise ConfigError(f"unknown preset {name!r}; valid presets: {', '.join(all_)}")
    return all_[name]


def preset(name: str) -> Config:
    """The config of a named preset."""
    cfg: Config = preset_info(name)["config"]
    return cfg


def preset_configs(name: str) -> list[Config]:
    """The runs a preset shows: its config, and the compared one if any."""
    info = preset_info(name)
    return [info["config"]] + ([info["compare"]] if info["compare"] is not None else [])
