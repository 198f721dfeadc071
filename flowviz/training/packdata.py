"""What the lecture pack shows of one trained run, as numbers: the views, each instrument's data, the probe at
the scenario's point, and the decision function F = u(0, ·) at each training checkpoint (where the run keeps
them). flowviz.plots.pack draws them; no plotting here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.data import Dataset
from ..core.errors import FlowvizError
from ..core.model import FlowModel, build_model
from .analysis import FlowViews, Surfaces, analyse, transported_surfaces
from .instruments import ProbeData, probe_data
from .prepared import PREPARED, applies

__all__ = ["PackData", "TrainingFrames", "pack_data", "probe_point", "training_frames"]


@dataclass(frozen=True)
class TrainingFrames:
    """F = u(0, ·) of the model at each kept training step: steps (m,), x1 (res,), x2 (res,), u (m, res, res, C);
    loss (m,) the training loss of the history row at that step (nan where the history has none)."""

    steps: np.ndarray
    x1: np.ndarray
    x2: np.ndarray
    u: np.ndarray
    loss: np.ndarray


@dataclass
class PackData:
    """One run's pack: its views, instruments by name (``notes`` says why one is missing), the probe and its
    start point, and the training frames (None where the run keeps no checkpoints)."""

    views: FlowViews
    instruments: dict[str, object] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    probe: ProbeData | None = None
    probe_at: tuple[float, float] | None = None
    training: TrainingFrames | None = None


def probe_point(model: FlowModel, data: Dataset, given: Sequence[float] | None = None) -> tuple[float, float]:
    """The probe's start point: ``given`` (a scenario's own point) if any, else the training point whose class
    the network is least sure of (the smallest top probability; its path passes near the boundary)."""
    if given is not None:
        return float(given[0]), float(given[1])
    p = model.predict_proba(data.x_train)
    i = int(np.argmin(p.max(1)))
    return float(data.x_train[i, 0]), float(data.x_train[i, 1])


def _checkpoint_models(result: Any, n_classes: int) -> Iterator[tuple[int, FlowModel]]:
    """(step, model) of each checkpoint a result keeps (``result.checkpoints``): items with ``step`` and
    ``state`` (a state dict), or steps that ``result.at(step)`` turns into a model or a result. ``result``: a
    TrainResult, or a run record of that shape."""
    for cp in getattr(result, "checkpoints", None) or ():
        given: Any = getattr(cp, "step", cp if not isinstance(cp, dict) else cp.get("step"))
        step = int(given)
        state = getattr(cp, "state", None) if not isinstance(cp, dict) else cp.get("state")
        if state is not None:
            m = build_model(result.config, n_classes)
            m.load_state_dict(state)
        elif hasattr(result, "at"):
            m = result.at(step)
            m = getattr(m, "model", m)
        else:
            continue
        yield step, m.train(False)


def training_frames(result: Any, extent: Sequence[float], *, res: int = 60) -> TrainingFrames | None:
    """F = u(0, ·) on a res x res grid of ``extent`` at each of ``result``'s checkpoints, or None without any."""
    steps: list[int] = []
    us: list[np.ndarray] = []
    s: Surfaces | None = None
    for step, m in _checkpoint_models(result, result.data.n_classes):
        s = transported_surfaces(m, extent, res=res, ks=np.array([0]))
        steps.append(step)
        us.append(s.u[0])
    if s is None:
        return None
    order = np.argsort(steps)
    kept = np.asarray(steps)[order]
    x1, x2 = s.x1, s.x2
    loss_at = {int(r["step"]): float(r["loss"]) for r in getattr(result, "history", None) or () if "loss" in r}
    loss = np.array([loss_at.get(int(s), np.nan) for s in kept], np.float32)
    return TrainingFrames(
        kept,
        np.asarray(x1, np.float32),
        np.asarray(x2, np.float32),
        np.stack([us[i] for i in order]).astype(np.float32),
        loss,
    )


def pack_data(
    model: FlowModel,
    data: Dataset,
    *,
    history: list[dict[str, float]] | None = None,
    views: FlowViews | None = None,
    instruments: dict[str, object] | None = None,
    compute_missing: bool = True,
    probe_at: Sequence[float] | None = None,
    result: Any = None,
) -> PackData:
    """Everything a pack page draws for ``model`` trained on ``data``. ``views`` and ``instruments`` made
    elsewhere (a server's run) are used as they are; the rest is computed here unless ``compute_missing`` is
    off (then ``notes`` names what is missing). ``result``: a TrainResult whose checkpoints give the training
    frames."""
    model.train(False)
    views = views if views is not None else analyse(model, data, history=history)
    assert views is not None  # analyse returns None only when cancelled
    have: dict[str, object] = dict(instruments or {})
    notes: dict[str, str] = {}
    for name in PREPARED:
        if not applies(name, model.config):
            notes[name] = (
                "the grid solver works on the plane: this run is lifted (p > 0)"
                if name == "grid"
                else "does not apply to this run"
            )
            continue
        if have.get(name) is not None:
            continue
        if not compute_missing:
            notes[name] = "not prepared yet on the server: download the pack again in a moment"
            continue
        try:
            have[name] = PREPARED[name](model, data, tuple(float(a) for a in views.extent))
        except FlowvizError as e:
            notes[name] = str(e)
    at = probe_point(model, data, probe_at)
    try:
        pr = probe_data(model, at)
    except FlowvizError as e:
        pr, notes["probe"] = None, str(e)
    frames = training_frames(result, views.extent) if result is not None else None
    return PackData(views, {k: v for k, v in have.items() if v is not None}, notes, pr, at, frames)
