"""Training: the inverse problem of finding v that carries the samples to their labels.

``train_iter`` is a generator that publishes a :class:`Snapshot` every
``log_every`` steps and stops between steps when ``cancel`` is set;
``train`` runs it to the end and returns a :class:`TrainResult`.
"""

from __future__ import annotations

import math
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
from .graphs import graph_loop, graphs_apply

__all__ = ["Snapshot", "TrainResult", "train", "train_iter", "resolve_device", "evaluate", "penalties"]


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

    def record(self) -> dict:
        """The history row of this snapshot."""
        return {"step": self.step, "loss": self.loss, "train_accuracy": self.train_accuracy,
                "test_accuracy": self.test_accuracy, "test_loss": self.test_loss, "elapsed": self.elapsed}


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
    p = model.predict_proba(x).clamp_min(1e-12)
    return float(F.nll_loss(p.log(), y)), float((p.argmax(1) == y).float().mean())


def cpu_threads(n_points: int, width: int) -> int:
    """Torch threads that pay at this size: below ~10^6 hidden activations per step the ops are
    too small to split, and a second thread only adds synchronisation (see bench/train_scaling.py)."""
    return 1 if n_points * width < 1_000_000 else torch.get_num_threads()


def train_iter(config: Config, *, data=None, log_every: int = 10, cancel=None,
               keep_state: bool = False, model: FlowModel | None = None) -> Iterator[Snapshot]:
    """Train, yielding a Snapshot every ``log_every`` steps and a last one with ``done`` set.

    ``cancel``: anything with ``is_set()`` (a threading.Event), checked between steps.
    A NaN or inf loss restores the last finite weights and ends with ``error`` set.
    ``model`` (optional) is trained in place, for callers that want to hold it.
    """
    dev = resolve_device(config.device)
    ds = data if isinstance(data, Dataset) else make_dataset(config, data)
    if model is None and dev.type == "cpu":  # (train() checks before it builds the model)
        guard(config, len(ds.x_train), log_every=log_every)
    model = (model or build_model(config, ds.n_classes)).to(dev)
    xtr, ytr = torch.as_tensor(ds.x_train, device=dev), torch.as_tensor(ds.y_train, device=dev)
    xte, yte = torch.as_tensor(ds.x_test, device=dev), torch.as_tensor(ds.y_test, device=dev)
    params = [p for p in model.parameters() if p.requires_grad]
    graphed = bool(params) and graphs_apply(model, dev)
    opt_cls = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[config.optimizer]
    kw = {"capturable": True} if graphed and config.optimizer == "adam" else {}
    opt = opt_cls(params, lr=config.lr, weight_decay=config.weight_decay, **kw) if params else None
    gen = torch.Generator(device=dev).manual_seed(config.seed + 3)  # mini-batches and viscous noise
    backup = [p.detach().clone() for p in params]
    n, bs = len(xtr), config.batch_size
    t0 = time.perf_counter()

    def snap(step, **kw):
        model.train(False)
        tr_loss, tr_acc = evaluate(model, xtr, ytr)
        te_loss, te_acc = evaluate(model, xte, yte)
        model.train()
        el = time.perf_counter() - t0
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()} if keep_state else None
        return Snapshot(step, config.train_steps, tr_loss, tr_acc, te_acc, te_loss, el,
                        step / el if el > 0 else 0.0, state, **kw)

    model.train()
    torch.set_flush_denormal(True)  # tiny gradients near convergence are denormals: 10x slower arithmetic
    saved_threads = torch.get_num_threads()
    if dev.type == "cpu":
        torch.set_num_threads(cpu_threads(bs or n, config.width))
    try:
        if graphed:  # each step one CUDA graph replay (flowviz.training.graphs)
            penalty = (lambda m, xb: penalties(m, None)) if config.smoothness > 0 else None
            yield from graph_loop(config, model, opt, params, backup, gen, xtr, ytr, snap, cancel, log_every,
                                  penalty, lambda step, value: diverged_message(config, step, value))
        else:
            yield from _loop(config, model, opt, params, backup, gen, xtr, ytr, snap, cancel, log_every)
    finally:
        torch.set_num_threads(saved_threads)
        torch.set_flush_denormal(False)  # the thread's default again (hypothesis and numpy expect IEEE subnormals)


def diverged_message(config: Config, step: int, value: float) -> str:
    """What a run says when its loss at ``step`` became ``value`` (NaN or inf)."""
    return (f"training diverged at step {step}: the loss became {value}. The last finite state is kept; "
            f"try a smaller learning rate (lr={config.lr}) or a smaller step size (T/L = "
            f"{config.horizon / config.n_steps:.3g}).")


def _loop(config, model, opt, params, backup, gen, xtr, ytr, snap, cancel, log_every):
    noisy = config.viscosity > 0
    need_pen = config.smoothness > 0 or config.kinetic > 0
    n, bs = len(xtr), config.batch_size
    step = 0
    for step in range(1, config.train_steps + 1):
        if cancel is not None and cancel.is_set():
            yield snap(step - 1, done=True, cancelled=True)
            return
        if bs and bs < n:
            idx = torch.randperm(n, generator=gen, device=xtr.device)[:bs]
            xb, yb = xtr[idx], ytr[idx]
        else:
            xb, yb = xtr, ytr
        loss = F.cross_entropy(model(xb, noise_gen=gen if noisy else None), yb)
        if need_pen:
            loss = loss + penalties(model, model.lift(xb) if config.kinetic > 0 else None)
        last_loss = loss.item()
        if not math.isfinite(last_loss):
            with torch.no_grad():
                for p, b in zip(params, backup):
                    p.copy_(b)
            yield snap(step - 1, done=True, error=diverged_message(config, step, last_loss))
            return
        with torch.no_grad():
            torch._foreach_copy_(backup, params)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % log_every == 0 and step != config.train_steps:
            yield snap(step)
    yield snap(step, done=True)


def train(config: Config, *, data=None, log_every: int = 10, progress: Callable[[Snapshot], None] | None = None,
          cancel=None) -> TrainResult:
    """Train ``config`` to the end (blocking) and return the result.

    ``data``: the points for ``dataset=csv`` (as returned by ``load_csv``) or a ready Dataset.
    Raises TrainingDiverged (with ``.result`` at the last finite state) if the loss blows up.
    """
    dev = resolve_device(config.device)
    ds = data if isinstance(data, Dataset) else make_dataset(config, data)
    if dev.type == "cpu":  # the estimate is of one CPU thread: refuse what cannot fit, warn over a server's budget
        guard(config, len(ds.x_train), log_every=log_every)
    model = build_model(config, ds.n_classes).to(dev)
    history: list[dict] = []
    last = None
    for last in train_iter(config, data=ds, log_every=log_every, cancel=cancel, model=model):
        history.append(last.record())
        if progress is not None:
            progress(last)
    model.train(False)
    metrics = {"train_accuracy": last.train_accuracy, "test_accuracy": last.test_accuracy,
               "train_loss": last.loss, "test_loss": last.test_loss, "steps": last.step,
               "elapsed_s": last.elapsed, "steps_per_second": last.steps_per_second, "device": str(dev)}
    result = TrainResult(config, model, ds, history, metrics, last.error)
    if last.error:
        raise TrainingDiverged(last.error, result)
    return result

