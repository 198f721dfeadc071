"""A model's state as message arrays and back, with one key convention: ``w/<tag>/<name>``.

``tag`` names the model within its message (``0`` for a request's one model, ``0 .. n-1`` for several, a
result's field name for a trained run inside a result), ``name`` is the state dict's key. Checkpoints and the
resume state of a snapshot keep their own groups (``step/<step>/<name>``, ``resume/<name>``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ...core.config import Config
from ...core.model import FlowModel, build_model

__all__ = ["state_arrays", "state_from", "model_arrays", "model_from", "state_model"]


def state_arrays(state: Mapping, tag: str | int = 0) -> dict[str, np.ndarray]:
    """The arrays ``w/<tag>/<name>`` of a state dict (tensors on any device)."""
    return {f"w/{tag}/{k}": v.detach().cpu().numpy() for k, v in state.items()}


def model_arrays(model: FlowModel, tag: str | int = 0) -> dict[str, np.ndarray]:
    """The arrays ``w/<tag>/<name>`` of ``model``'s weights."""
    return state_arrays(model.state_dict(), tag)


def state_from(arrays: Mapping[str, np.ndarray], tag: str | int = 0) -> dict:
    """The state dict (CPU tensors) that ``arrays`` hold under ``w/<tag>/``."""
    import torch

    prefix = f"w/{tag}/"
    return {k[len(prefix) :]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith(prefix)}


def state_model(config: Config, n_classes: int, state: Mapping) -> FlowModel:
    """The model of ``config`` with the weights ``state``, for evaluation."""
    model = build_model(config, n_classes)
    model.load_state_dict(state)
    return model.train(False)


def model_from(config: Config, n_classes: int, arrays: Mapping[str, np.ndarray], tag: str | int = 0) -> FlowModel:
    """The model of ``config`` with the weights that ``arrays`` hold under ``w/<tag>/``, for evaluation."""
    return state_model(config, n_classes, state_from(arrays, tag))
