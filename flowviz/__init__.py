"""flowviz: a residual network seen as a continuous flow (Li & Shi 2017).

Public surface (stable; used by the app, the command line and notebooks)::

    import flowviz
    cfg = flowviz.preset("moons")             # or flowviz.Config(dataset="rings", lift=1, ...)
    result = flowviz.train(cfg)               # blocking; result.model, result.history, result.metrics
    more = flowviz.resume(result, steps=100)  # 100 more steps, as if it had never stopped
    early = result.at(40)                     # the run at its last checkpoint <= 40 (result.checkpoints)
    xs = result.model.trajectory(x)           # (L+1, n, d) characteristics of points x (n, 2)
    p = result.model.predict_proba(x)         # (n, classes) = u(0, x)
    u = result.model.transported(z, k)        # u(t_k, z) for points z (n, d) of step k
    fine = result.model.with_steps(64)        # re-discretised (tied / continuous weights)
    conv = flowviz.convergence(result, scheme="rk4")  # order of convergence on this one field
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# Each public name is imported on first use (PEP 562), so that `import flowviz`, the command line's argument
# checks and `--help` need no torch (its import takes seconds).
_HOME = {
    ".core.config": ("CHOICES", "LIMITS", "Config"),
    ".core.data": ("DATASETS", "Dataset", "load_csv", "make_dataset"),
    ".core.errors": (
        "CheckpointError",
        "ConfigError",
        "DataError",
        "FlowvizError",
        "FlowvizWarning",
        "TrainingDiverged",
    ),
    ".core.fields": ("ACTIVATIONS", "FIELDS"),
    ".core.model": ("FlowModel", "build_model"),
    ".core.presets": ("preset", "preset_names"),
    ".core.solvers": ("STEPPERS",),
    ".core.transport": ("GridSolution", "solve_transport"),
    ".training.convergence": ("Convergence", "convergence"),
    ".training.train": ("Snapshot", "TrainResult", "TrainState", "resume", "train", "train_iter"),
}
_MODULE_OF = {name: module for module, names in _HOME.items() for name in names}

if TYPE_CHECKING:  # what type checkers and editors see
    from .core.config import CHOICES, LIMITS, Config
    from .core.data import DATASETS, Dataset, load_csv, make_dataset
    from .core.errors import CheckpointError, ConfigError, DataError, FlowvizError, FlowvizWarning, TrainingDiverged
    from .core.fields import ACTIVATIONS, FIELDS
    from .core.model import FlowModel, build_model
    from .core.presets import preset, preset_names
    from .core.solvers import STEPPERS
    from .core.transport import GridSolution, solve_transport
    from .training.convergence import Convergence, convergence
    from .training.train import Snapshot, TrainResult, TrainState, resume, train, train_iter


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'flowviz' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # imported once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [  # written out for static tools (a computed one is invisible to them); a test resolves every name
    "Config",
    "CHOICES",
    "LIMITS",
    "DATASETS",
    "FIELDS",
    "STEPPERS",
    "ACTIVATIONS",
    "Dataset",
    "make_dataset",
    "load_csv",
    "FlowModel",
    "build_model",
    "train",
    "train_iter",
    "resume",
    "Snapshot",
    "TrainResult",
    "TrainState",
    "preset",
    "preset_names",
    "solve_transport",
    "GridSolution",
    "convergence",
    "Convergence",
    "FlowvizError",
    "ConfigError",
    "DataError",
    "CheckpointError",
    "TrainingDiverged",
    "FlowvizWarning",
]
__version__ = "0.1.0"
