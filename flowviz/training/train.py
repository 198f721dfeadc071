"""Training: the inverse problem of finding v that carries the samples to their labels.

``train_iter`` is a generator that publishes a :class:`Snapshot` every
``log_every`` steps and stops between steps when ``cancel`` is set;
``train`` runs it to the end and returns a :class:`TrainResult`; ``resume`` goes on from one, exactly as if
the run had not stopped (the mini-batch generator and the optimiser's state travel in ``TrainState``).
A run keeps its weights at the steps of ``core.cost.checkpoint_steps`` (``TrainResult.checkpoints``,
``TrainResult.at``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from ..core.config import Config
from ..core.cost import checkpoint_count, checkpoint_steps, guard, thin_steps
from ..core.data import Dataset, Points, make_dataset
from ..core.errors import ConfigError, TrainingDiverged
from ..core.model import FlowModel, build_model
from ..core.solvers import Flag
from .engine import Engine, Mark, cpu_threads, make_optimizer, step_settings
from .graphs import GraphEngine, graphs_apply

__all__ = [
    "Snapshot",
    "TrainResult",
    "TrainState",
    "train",
    "train_iter",
    "resume",
    "resolve_device",
    "evaluate",
    "penalties",
    "run_metrics",
    "cpu_threads",
    "state_bytes",
]

StateDict = dict[str, torch.Tensor]  # a model's weights by name
Metrics = dict[str, Any]  # JSON-like: numbers, and text such as the device


@dataclass(frozen=True)
class TrainState:
    """What a run needs to go on exactly: ``step`` optimiser steps done, the mini-batch generator's state
    (a uint8 tensor), the optimiser's state dict (CPU tensors), the wall seconds ``elapsed`` so far."""

    step: int
    generator: torch.Tensor
    optimizer: dict[str, Any]
    elapsed: float = 0.0

    def flat(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """(JSON-able header, named tensors): the optimiser's tensors as ``opt/<param>/<name>``, the generator
        as ``gen``; safetensors and JSON hold them (never a pickle)."""
        tensors = {"gen": self.generator}
        state: dict[str, dict[str, Any]] = {}
        for i, st in self.optimizer.get("state", {}).items():
            state[str(i)] = {}
            for k, v in st.items():
                if isinstance(v, torch.Tensor):
                    tensors[f"opt/{i}/{k}"] = v.contiguous()
                else:
                    state[str(i)][k] = v
        head = {
            "step": self.step,
            "elapsed": self.elapsed,
            "state": state,
            "param_groups": self.optimizer.get("param_groups", []),
        }
        return head, tensors

    @classmethod
    def from_flat(cls, head: dict[str, Any], tensors: dict[str, Any]) -> TrainState:
        """The state :meth:`flat` wrote (tensors as torch tensors or numpy arrays)."""
        t = {k: torch.as_tensor(v) for k, v in tensors.items()}
        state: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in head.get("state", {}).items()}
        for name, v in t.items():
            if name.startswith("opt/"):
                _, i, k = name.split("/", 2)
                state.setdefault(int(i), {})[k] = v
        groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in head.get("param_groups", [])]
        return cls(
            step=int(head["step"]),
            generator=t["gen"].to(torch.uint8),
            optimizer={"state": state, "param_groups": groups} if groups else {},
            elapsed=float(head.get("elapsed", 0.0)),
        )


def state_bytes(model: torch.nn.Module) -> int:
    """Bytes of one copy of ``model``'s weights (a checkpoint)."""
    return sum(v.numel() * v.element_size() for v in model.state_dict().values())


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
    state: StateDict | None = None
    done: bool = False
    cancelled: bool = False
    error: str | None = None
    kept: dict[int, StateDict] | None = None  # step -> CPU weights of the checkpoints made since the previous snapshot
    train_state: TrainState | None = None  # on the last snapshot: what ``resume`` needs to go on

    @classmethod
    def at(
        cls,
        mark: Mark,
        *,
        total_steps: int,
        train: tuple[float, float],
        test: tuple[float, float],
        elapsed: float,
        state: StateDict | None = None,
        error: str | None = None,
        kept: dict[int, StateDict] | None = None,
        train_state: TrainState | None = None,
    ) -> Snapshot:
        """The snapshot at an engine's ``mark``; ``train``, ``test``: (cross-entropy, accuracy) from ``evaluate``."""
        return cls(
            step=mark.step,
            total_steps=total_steps,
            loss=train[0],
            train_accuracy=train[1],
            test_accuracy=test[1],
            test_loss=test[0],
            elapsed=elapsed,
            steps_per_second=mark.step / elapsed if elapsed > 0 else 0.0,
            state=state,
            done=mark.done,
            cancelled=mark.cancelled,
            error=error,
            kept=kept,
            train_state=train_state,
        )

    def record(self) -> dict[str, float]:
        """The history row of this snapshot."""
        return {
            "step": self.step,
            "loss": self.loss,
            "train_accuracy": self.train_accuracy,
            "test_accuracy": self.test_accuracy,
            "test_loss": self.test_loss,
            "elapsed": self.elapsed,
        }

    def metrics(self, *, steps: int | None = None, elapsed: float | None = None, **extra: Any) -> Metrics:
        """``run_metrics`` of the run whose last snapshot this is (``steps``, ``elapsed``: the run's, if other)."""
        return run_metrics(
            train=(self.loss, self.train_accuracy),
            test=(self.test_loss, self.test_accuracy),
            steps=self.step if steps is None else steps,
            elapsed=self.elapsed if elapsed is None else elapsed,
            **extra,
        )


def run_metrics(
    *, train: tuple[float, float], test: tuple[float, float], steps: int, elapsed: float | None = None, **extra: Any
) -> Metrics:
    """A run's final metrics, as stored, exported and shown.

    ``train``, ``test``: (cross-entropy, accuracy) as ``evaluate`` returns them; ``elapsed``: the wall seconds
    of the run (adds ``elapsed_s`` and ``steps_per_second``); ``extra``: further keys (``device``, ``batched``).
    """
    m: Metrics = {
        "train_accuracy": train[1],
        "test_accuracy": test[1],
        "train_loss": train[0],
        "test_loss": test[0],
        "steps": steps,
    }
    if elapsed is not None:
        m.update(elapsed_s=elapsed, steps_per_second=steps / elapsed if elapsed > 0 else 0.0)
    return m | extra


@dataclass
class TrainResult:
    """A trained run: the model, its data, the history rows and the final metrics; the weights kept at its
    checkpoints (``kept``: step -> CPU state dict) and what :func:`resume` needs (``train_state``)."""

    config: Config
    model: FlowModel
    data: Dataset
    history: list[dict[str, float]] = field(default_factory=list)
    metrics: Metrics = field(default_factory=dict)
    error: str | None = None
    kept: dict[int, StateDict] = field(default_factory=dict, repr=False)
    train_state: TrainState | None = field(default=None, repr=False)

    @property
    def checkpoints(self) -> list[int]:
        """The training steps whose weights are kept, sorted."""
        return sorted(self.kept)

    def at(self, step: int) -> TrainResult:
        """The run as it was at the last kept step <= ``step``: its model, metrics and history up to there (a
        TrainResult of ``train_steps`` = that step, which every flowviz.plots figure takes). ConfigError if no
        step is kept at or before ``step``."""
        before = [s for s in self.checkpoints if s <= step]
        if not before:
            raise ConfigError(
                f"no weights are kept at or before step {step}; kept: "
                f"{', '.join(map(str, self.checkpoints[:8])) or 'none'}"
            )
        s = before[-1]
        config = self.config.replace(train_steps=s)
        model = build_model(config, self.data.n_classes)
        model.load_state_dict(self.kept[s])
        model = model.to(next(iter(self.model.state_dict().values())).device).train(False)
        dev = next(iter(model.state_dict().values())).device
        xtr, ytr, xte, yte = data_tensors(self.data, dev)
        metrics = run_metrics(
            train=evaluate(model, xtr, ytr),
            test=evaluate(model, xte, yte),
            steps=s,
            device=self.metrics.get("device", str(dev)),
        )
        return TrainResult(
            config,
            model,
            self.data,
            [r for r in self.history if r["step"] <= s],
            metrics,
            None,
            {k: v for k, v in self.kept.items() if k <= s},
            None,
        )


def resolve_device(name: str) -> torch.device:
    """auto: cuda, then mps, then cpu. A forced device that is missing is a ConfigError."""
    cuda, mps = (
        torch.cuda.is_available(),
        bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
    )
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


def evaluate_both(
    model: FlowModel, x_both: torch.Tensor, y_train: torch.Tensor, y_test: torch.Tensor
) -> tuple[tuple[float, float], tuple[float, float]]:
    """:func:`evaluate` on the training and the test points in one pass over ``x_both`` (n + m, 2), the
    training points first: one chain of kernels per snapshot instead of two (u(0, .) of a point does not depend
    on the points evaluated with it, the Monte-Carlo paths included: see FlowModel._mc_samples)."""
    p = model.predict_proba(x_both)
    n = len(y_train)
    return _scores(p[:n], y_train), _scores(p[n:], y_test)


def train_iter(
    config: Config,
    *,
    data: Dataset | Points | None = None,
    log_every: int = 10,
    cancel: Flag | None = None,
    keep_state: bool = False,
    model: FlowModel | None = None,
    cuda_graphs: bool = False,
    start: TrainState | None = None,
    until: int | None = None,
    checkpoints: bool = True,
) -> Iterator[Snapshot]:
    """Train, yielding a Snapshot every ``log_every`` steps and a last one with ``done`` set.

    ``cancel``: anything with ``is_set()`` (a threading.Event), checked between steps.
    A NaN or inf loss restores the last finite weights and ends with ``error`` set.
    ``model`` (optional) is trained in place, for callers that want to hold it.
    ``cuda_graphs``: on a CUDA device, replay each step from a CUDA graph where it applies
    (``flowviz.training.graphs``; a server sets it from its FLOWVIZ_CUDA_GRAPHS setting).
    ``start``: go on from this state (``model`` must hold the weights of that moment) to ``config.train_steps``.
    ``until``: stop after that step as if cancelled then (a paused run's single steps).
    ``checkpoints``: each snapshot carries (``kept``) the weights of the checkpoint steps passed since the one
    before (``core.cost.checkpoint_steps`` of ``config.train_steps``; the step a run stops at too); the last
    snapshot carries the ``train_state`` to resume from.
    """
    dev = resolve_device(config.device)
    ds = data if isinstance(data, Dataset) else make_dataset(config, data)
    if model is None and dev.type == "cpu":  # (train() checks before it builds the model)
        guard(config, len(ds.x_train), log_every=log_every)
    model = (model or build_model(config, ds.n_classes)).to(dev)
    xtr, ytr, xte, yte = data_tensors(ds, dev)
    params: list[torch.Tensor] = [p for p in model.parameters() if p.requires_grad]
    graphed = bool(params) and graphs_apply(model, dev, cuda_graphs)  # each step one CUDA graph replay (graphs.py)
    opt = make_optimizer(config, params, **({"capturable": True} if graphed and config.optimizer == "adam" else {}))
    noisy, kinetic = config.viscosity > 0, config.kinetic > 0
    need_pen = config.smoothness > 0 or kinetic

    # (the graphed runs have no noise and no kinetic term: graphs_apply)
    def losses(xb: torch.Tensor, yb: torch.Tensor, gen: torch.Generator) -> list[torch.Tensor]:
        loss = F.cross_entropy(model(xb, noise_gen=gen if noisy else None), yb)
        return [loss + penalties(model, model.lift(xb) if kinetic else None) if need_pen else loss]

    engine = (GraphEngine if graphed else Engine)(
        [params], opt, losses, x=xtr, y=ytr, batch_size=config.batch_size, seed=config.seed
    )
    first, elapsed0 = (0, 0.0) if start is None else (start.step, start.elapsed)
    if start is not None:
        engine.load(start.generator, start.optimizer)
    wanted = set(checkpoint_steps(config.train_steps, state_bytes(model))) if checkpoints else set()
    pending: dict[int, StateDict] = {}

    def weights() -> StateDict:
        return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}

    def keep(step: int) -> None:
        if step in wanted:
            pending[step] = weights()

    if start is None:
        keep(0)
    x_both = torch.cat([xtr, xte])  # each snapshot evaluates train and test points in one pass
    t0 = time.perf_counter()
    model.train()
    with step_settings(dev, config.batch_size or len(xtr), config.width):
        for mark in engine.run(
            config.train_steps,
            log_every=log_every,
            cancel=cancel,
            first=first,
            until=until,
            after=keep if checkpoints else None,
        ):
            model.train(False)
            tr, te = evaluate_both(model, x_both, ytr, yte)
            model.train()
            state = weights() if keep_state else None
            error = None if mark.diverged is None else diverged_message(config, mark.step + 1, mark.diverged)
            elapsed = elapsed0 + time.perf_counter() - t0
            resume_from = None
            if mark.done:
                if checkpoints and mark.step not in pending:  # where it stopped (cancelled, paused, diverged)
                    pending[mark.step] = state if state is not None else weights()
                if mark.diverged is None:
                    resume_from = TrainState(mark.step, *engine.state(), elapsed=elapsed)
            kept, pending = (pending or None), {}
            yield Snapshot.at(
                mark,
                total_steps=config.train_steps,
                train=tr,
                test=te,
                elapsed=elapsed,
                state=state,
                error=error,
                kept=kept,
                train_state=resume_from,
            )


def data_tensors(ds: Dataset, device: torch.device) -> tuple[torch.Tensor, ...]:
    """(x_train (n, 2), y_train (n,), x_test (m, 2), y_test (m,)) of ``ds`` on ``device``."""
    return tuple(torch.as_tensor(a, device=device) for a in (ds.x_train, ds.y_train, ds.x_test, ds.y_test))


def diverged_message(config: Config, step: int, value: float) -> str:
    """What a run says when its loss at ``step`` became ``value`` (NaN or inf)."""
    return (
        f"training diverged at step {step}: the loss became {value}. The last finite state is kept; "
        f"try a smaller learning rate (lr={config.lr}) or a smaller step size (T/L = "
        f"{config.horizon / config.n_steps:.3g})."
    )


def train(
    config: Config,
    *,
    data: Dataset | Points | None = None,
    log_every: int = 10,
    progress: Callable[[Snapshot], None] | None = None,
    cancel: Flag | None = None,
    cuda_graphs: bool = False,
) -> TrainResult:
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
    return _drive(
        config, ds, model, dev, log_every=log_every, progress=progress, cancel=cancel, cuda_graphs=cuda_graphs
    )


def _drive(
    config: Config,
    ds: Dataset,
    model: FlowModel,
    dev: torch.device,
    *,
    log_every: int,
    progress: Callable[[Snapshot], None] | None,
    cancel: Flag | None,
    cuda_graphs: bool,
    start: TrainState | None = None,
    history: list[dict[str, float]] | None = None,
    kept: dict[int, StateDict] | None = None,
) -> TrainResult:
    """Run ``train_iter`` to its end and collect the TrainResult (``history``, ``kept``: those before ``start``)."""
    history, kept = list(history or []), dict(kept or {})
    last = None
    for last in train_iter(
        config, data=ds, log_every=log_every, cancel=cancel, model=model, cuda_graphs=cuda_graphs, start=start
    ):
        history.append(last.record())
        kept.update(last.kept or {})
        if progress is not None:
            progress(last)
    assert last is not None  # train_iter ends with a snapshot
    model.train(False)
    n = checkpoint_count(state_bytes(model))
    kept = {s: kept[s] for s in thin_steps(kept, n)} if len(kept) > n else kept
    result = TrainResult(config, model, ds, history, last.metrics(device=str(dev)), last.error, kept, last.train_state)
    if last.error:
        raise TrainingDiverged(last.error, result)
    return result


def resume(
    result: TrainResult,
    *,
    steps: int | None = None,
    log_every: int = 10,
    progress: Callable[[Snapshot], None] | None = None,
    cancel: Flag | None = None,
    cuda_graphs: bool = False,
) -> TrainResult:
    """Go on training a finished or paused (cancelled) run for ``steps`` more optimiser steps (default: up to
    its config's ``train_steps``), exactly as if it had never stopped: seeded on the CPU,
    ``resume(train(cfg with train_steps=a), steps=b)`` has the weights, bit for bit, of
    ``train(cfg with train_steps=a + b)``, mini-batch draws and snapshots included. The result's config has
    ``train_steps`` = the steps done; its history and checkpoints continue those of ``result`` (which is not
    changed). ConfigError for a run without its optimiser state (a diverged, rewound or imported one)."""
    ts = result.train_state
    if ts is None:
        raise ConfigError(
            "this run cannot be resumed: it keeps no optimiser state (a diverged run, one rewound "
            "with at(), or one loaded from weights alone); train it again instead"
        )
    if steps is not None and steps < 0:
        raise ConfigError(f"steps={steps}: resume needs a number of steps >= 0")
    total = ts.step + steps if steps is not None else max(ts.step, result.config.train_steps)
    config = result.config.replace(train_steps=total)
    dev = resolve_device(config.device)
    ds = result.data
    if dev.type == "cpu":
        guard(config, len(ds.x_train), log_every=log_every)
    model = build_model(config, ds.n_classes).to(dev)
    model.load_state_dict(result.model.state_dict())
    return _drive(
        config,
        ds,
        model,
        dev,
        log_every=log_every,
        progress=progress,
        cancel=cancel,
        cuda_graphs=cuda_graphs,
        start=ts,
        history=result.history,
        kept=result.kept,
    )
