"""Training: the inverse problem of finding v that carries the samples to their labels.

``train_iter`` is a generator that publishes a :class:`Snapshot` every
``log_every`` steps and stops between steps when ``cancel`` is set;
``train`` runs it to the end and returns a :class:`TrainResult`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..core.config import Config
from ..core.cost import guard
from ..core.data import Dataset, make_dataset
from ..core.errors import ConfigError, TrainingDiverged
from ..core.model import FlowModel, build_model
from .engine import Engine, Mark, cpu_threads, make_optimizer, step_settings
from .graphs import GraphEngine, graphs_apply

__all__ = ["Snapshot", "TrainResult", "train", "train_iter", "resolve_device", "evaluate", "penalties",
           "run_metrics", "cpu_threads"]


@dataclass(frozen=True)
class Snapshot:
    """What training publishes every ``log_every`` steps. ``state`` is a CPU copy of the weights."""

    step: int
    total_steps: int
    loss: float
    train_accuracy: float
    test_accuracy: float
    test_loss: float
    elapsed: float
    steps_per_second: float
    state: dict | None = None
    done: bool = False
    cancelled: bool = False
    error: str | None = None

    @classmethod
    def at(cls, mark: Mark, *, total_steps: int, train: tuple[float, float], test: tuple[float, float],
           elapsed: float, state: dict | None = None, error: str | None = None) -> Snapshot:
        """The snapshot at an engine's ``mark``; ``train``, ``test``: (cross-entropy, accuracy) from ``evaluate``."""
        return cls(step=mark.step, total_steps=total_steps, loss=train[0], train_accuracy=train[1],
                   test_accuracy=test[1], test_loss=test[0], elapsed=elapsed,
                   steps_per_second=mark.step / elapsed if elapsed > 0 else 0.0, state=state,
                   done=mark.done, cancelled=mark.cancelled, error=error)

    def record(self) -> dict:
        """The history row of this snapshot."""
        return {"step": self.step, "loss": self.loss, "train_accuracy": self.train_accuracy,
                "test_accuracy": self.test_accuracy, "test_loss": self.test_loss, "elapsed": self.elapsed}

    def metrics(self, *, steps: int | None = None, elapsed: float | None = None, **extra) -> dict:
        """``run_metrics`` of the run whose last snapshot this is (``steps``, ``elapsed``: the run's, if other)."""
        return run_metrics(train=(self.loss, self.train_accuracy), test=(self.test_loss, self.test_accuracy),
                           steps=self.step if steps is None else steps,
                           elapsed=self.elapsed if elapsed is None else elapsed, **extra)


def run_metrics(*, train: tuple[float, float], test: tuple[float, float], steps: int,
                elapsed: float | None = None, **extra) -> dict:
    """A run's final metrics, as stored, exported and shown.

    ``train``, ``test``: (cross-entropy, accuracy) as ``evaluate`` returns them; ``elapsed``: the wall seconds
    of the run (adds ``elapsed_s`` and ``steps_per_second``); ``extra``: further keys (``device``, ``batched``).
    """
    m = {"train_accuracy": train[1], "test_accuracy": test[1], "train_loss": train[0], "test_loss": test[0],
         "steps": steps}
    if elapsed is not None:
        m.update(elapsed_s=elapsed, steps_per_second=steps / elapsed if elapsed > 0 else 0.0)
    return m | extra


@dataclass
class TrainResult:
    """A trained run: the model, its data, the history rows and the final metrics."""

    config: Config
    model: FlowModel
    data: Dataset
    history: list[dict] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    error: str | None = None


def resolve_device(name: str) -> torch.device:
    """auto: cuda, then mps, then cpu. A forced device that is missing is a ConfigError."""
    cuda, mps = torch.cuda.is_available(), bool(getattr(torch.backends, "mps", None)
                                                 and torch.backends.mps.is_available())
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if (name == "cuda" and not cuda) or (name == "mps" and not mps):
        raise ConfigError(f"device={name} was asked for but is not available here; use device=auto or cpu")
    return torch.device(name)


def penalties(model: FlowModel, x0: torch.Tensor | None = None) -> torch.Tensor:
    """smoothness * sum_k |theta_k - theta_(k-1)|^2 / s_k  +  kinetic * sum_k s_k mean |V_k|^2.

    The kinetic term uses the step's mean velocity (x_k - x_(k-1)) / s_k, which is V_k(x_(k-1)) for Euler.
    """
    c = model.config
    total = model.s.new_zeros(())
    if c.smoothness > 0 and c.n_steps > 1 and c.time_mode != "tied":
        for p in model.block_params():
            d = (p[1:] - p[:-1]).pow(2).flatten(1).sum(1)  # (L-1,)
            total = total + c.smoothness * (d / model.s[1:]).sum()
    if c.kinetic > 0 and x0 is not None:
        xs = model.flow(x0, record=True, training=model.training)  # (L+1, n, d)
        dx2 = (xs[1:] - xs[:-1]).pow(2).sum(-1).mean(-1)  # (L,)
        total = total + c.kinetic * (dx2 / model.s).sum()
    return total


def evaluate(model: FlowModel, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of the prediction map u(0, .) on points x (n, 2)."""
    if len(x) == 0:
        return float("nan"), float("nan")
    return _scores(model.predict_proba(x), y)


def _scores(p: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of probabilities p (n, classes) against labels y (n,)."""
    if len(y) == 0:
        return float("nan"), float("nan")
    p = p.clamp_min(1e-12)
    return float(F.nll_loss(p.log(), y)), float((p.argmax(1) == y).float().mean())


def evaluate_both(model: FlowModel, x_both: torch.Tensor, y_train: torch.Tensor,
                  y_test: torch.Tensor) -> tuple[tuple[float, float], tuple[float, float]]:
    """:func:`evaluate` on the training and the test points in one pass over ``x_both`` (n + m, 2), the
    training points first: one chain of kernels per snapshot instead of two (u(0, .) of a point does not depend
    on the points evaluated with it, the Monte-Carlo paths included: see FlowModel._mc_samples)."""
    p = model.predict_proba(x_both)
    n = len(y_train)
    return _scores(p[:n], y_train), _scores(p[n:], y_test)


def train_iter(config: Config, *, data=None, log_every: int = 10, cancel=None,
               keep_state: bool = False, model: FlowModel | None = None,
               cuda_graphs: bool = False) -> Iterator[Snapshot]:
    """Train, yielding a Snapshot every ``log_every`` steps and a last one with ``done`` set.

    ``cancel``: anything with ``is_set()`` (a threading.Event), checked between steps.
    A NaN or inf loss restores the last finite weights and ends with ``error`` set.
    ``model`` (optional) is trained in place, for callers that want to hold it.
    ``cuda_graphs``: on a CUDA device, replay each step from a CUDA graph where it applies
    (``flowviz.training.graphs``; a server sets it from its FLOWVIZ_CUDA_GRAPHS setting).
    """
    dev = resolve_device(config.device)
    ds = data if isinstance(data, Dataset) else make_dataset(config, data)
    if model is None and dev.type == "cpu":  # (train() checks before it builds the model)
        guard(config, len(ds.x_train), log_every=log_every)
    model = (model or build_model(config, ds.n_classes)).to(dev)
    xtr, ytr, xte, yte = data_tensors(ds, dev)
    params = [p for p in model.parameters() if p.requires_grad]
    graphed = bool(params) and graphs_apply(model, dev, cuda_graphs)  # each step one CUDA graph replay (graphs.py)
    opt = make_optimizer(config, params, **({"capturable": True} if graphed and config.optimizer == "adam" else {}))
    noisy, kinetic = config.viscosity > 0, config.kinetic > 0
    need_pen = config.smoothness > 0 or kinetic

    def losses(xb, yb, gen):  # (the graphed runs have no noise and no kinetic term: graphs_apply)
        loss = F.cross_entropy(model(xb, noise_gen=gen if noisy else None), yb)
        return [loss + penalties(model, model.lift(xb) if kinetic else None) if need_pen else loss]

    engine = (GraphEngine if graphed else Engine)([params], opt, losses, x=xtr, y=ytr,
                                                  batch_size=config.batch_size, seed=config.seed)
    x_both = torch.cat([xtr, xte])  # each snapshot evaluates train and test points in one pass
    t0 = time.perf_counter()
    model.train()
    with step_settings(dev, config.batch_size or len(xtr), config.width):
        for mark in engine.run(config.train_steps, log_every=log_every, cancel=cancel):
            model.train(False)
            tr, te = evaluate_both(model, x_both, ytr, yte)
            model.train()
            state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()} if keep_state else None
            error = None if mark.diverged is None else diverged_message(config, mark.step + 1, mark.diverged)
            yield Snapshot.at(mark, total_steps=config.train_steps, train=tr, test=te,
                              elapsed=time.perf_counter() - t0, state=state, error=error)


def data_tensors(ds: Dataset, device: torch.device) -> tuple[torch.Tensor, ...]:
    """(x_train (n, 2), y_train (n,), x_test (m, 2), y_test (m,)) of ``ds`` on ``device``."""
    return tuple(torch.as_tensor(a, device=device) for a in (ds.x_train, ds.y_train, ds.x_test, ds.y_test))


def diverged_message(config: Config, step: int, value: float) -> str:
    """What a run says when its loss at ``step`` became ``value`` (NaN or inf)."""
    return (f"training diverged at step {step}: the loss became {value}. The last finite state is kept; "
            f"try a smaller learning rate (lr={config.lr}) or a smaller step size (T/L = "
            f"{config.horizon / config.n_steps:.3g}).")


def train(config: Config, *, data=None, log_every: int = 10, progress: Callable[[Snapshot], None] | None = None,
          cancel=None, cuda_graphs: bool = False) -> TrainResult:
    """Train ``config`` to the end (blocking) and return the result.

    ``data``: the points for ``dataset=csv`` (as returned by ``load_csv``) or a ready Dataset.
    ``cuda_graphs``: see :func:`train_iter`.
    Raises TrainingDiverged (with ``.result`` at the last finite state) if the loss blows up.
    """
    dev = resolve_device(config.device)
    if dev.type == "cpu" and data is None:  # generated data: refused before they are made (their size is known)
        guard(config, log_every=log_every)
    ds = data if isinstance(data, Dataset) else make_dataset(config, data)
    if dev.type == "cpu" and data is not None:  # the estimate is of one CPU thread: refuse what cannot fit,
        guard(config, len(ds.x_train), log_every=log_every)  # warn over a server's budget
    model = build_model(config, ds.n_classes).to(dev)
    history: list[dict] = []
    last = None
    for last in train_iter(config, data=ds, log_every=log_every, cancel=cancel, model=model,
                           cuda_graphs=cuda_graphs):
        history.append(last.record())
        if progress is not None:
            progress(last)
    model.train(False)
    result = TrainResult(config, model, ds, history, last.metrics(device=str(dev)), last.error)
    if last.error:
        raise TrainingDiverged(last.error, result)
    return result

