"""The task ``analyse`` (a trained model's views, and with ``metrics`` its losses and accuracies) and the task
``compute`` (one computation of a page on a run's weights: a click's probe, a snapshot's instrument), each
with its server half (a function of the executor) and its worker half (a handler of ``worker.TASKS``).

The heavy pictures of a run are made here and not in the server; a crash in native code ends a worker, never
the server.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ...core.config import Config
from ...core.data import Dataset
from .protocol import TaskFailed, dataset_from, encode, pack, request, unpack
from .weights import model_arrays, model_from

__all__ = ["analyse", "compute", "analyse_task", "compute_task", "views_reply", "views_from", "reestimate"]


# ------------------------------------------------------------------ server half
def analyse(
    executor,
    model,
    data: Dataset,
    *,
    history=None,
    live: bool = False,
    metrics: bool = False,
    cancel=None,
    budget_s: float | None = None,
    info: dict | None = None,
) -> tuple:
    """(FlowViews, metrics or None) of ``model`` on ``data``, made by a worker of ``executor``; TaskFailed once
    ``cancel`` is set (the worker stops between the analysis' stages, or is cut short after CANCEL_GRACE_S).

    ``budget_s``: the seconds the final pictures and instruments may take; the worker re-estimates them with
    the flow's stiffness measured first and budgets its adaptive solves (``info`` gets ``reestimate``,
    ``stiffness`` and ``max_evals``, to pass on to the instruments task)."""
    extra = {} if budget_s is None else {"budget_s": float(budget_s)}
    raw = request(
        "analyse",
        data,
        config=model.config,
        history=list(history or []),
        live=live,
        metrics=metrics,
        extra=model_arrays(model),
        **extra,
    )
    head, arrays = executor.call(raw, cancel)
    if head.get("cancelled"):
        raise TaskFailed("cancelled")
    views, got = views_from(head, arrays)
    if info is not None:
        info.update(got)
    return views, head.get("metrics")


def views_from(head: dict, arrays: dict) -> tuple:
    """(FlowViews or None, info) of a reply carrying views: ``info`` holds ``reestimate``, ``stiffness`` and
    ``max_evals`` where the worker measured them, ``error`` where the views could not be made, ``cancelled``
    where the task was stopped before them."""
    info = {k: head[k] for k in ("reestimate", "stiffness", "max_evals", "error", "cancelled") if k in head}
    return (unpack(head["views"], arrays) if "views" in head else None), info


def compute(executor, model, data: Dataset, what: str, *, args: dict | None = None, cancel=None, limits=None):
    """``what`` (a key of :func:`_computations`) on ``model``'s weights, made by a worker of ``executor``;
    TaskFailed with the worker's message where it failed, WorkerDied where the worker was lost."""
    raw = request(
        "compute",
        data,
        config=model.config,
        what=what,
        args=dict(args or {}),
        extra=model_arrays(model),
        **{k: v for k, v in (limits or {}).items() if v is not None},
    )
    head, arrays = executor.call(raw, cancel, stops=True)
    return unpack(head["data"], arrays)


# ------------------------------------------------------------------ worker half
def model_of(header: dict, arrays: dict):
    """(the model whose weights a request carries, the data set it carries)."""
    ds = dataset_from(header, arrays)
    return model_from(Config.from_dict(header["config"]), ds.n_classes, arrays), ds


def reestimate(model, ds, budget_s: float | None, memo: dict | None = None):
    """The run's cost re-estimated after training, with its flow's stiffness measured (flowviz.core.cost): the
    reference solved once on the final pictures' points within the evaluations that ``budget_s`` seconds
    allow each adaptive solve (None: the solvers' own budget), kept in ``memo`` for the pictures.
    Returns (Cost, Stiffness or None, that budget of evaluations or None)."""
    from ...core.cost import estimate, measure_stiffness, prior_eval_s, solve_budget
    from ...training.analysis import reference_points

    c, n = model.config, len(ds.x_train)
    if c.scheme == "plain" or c.viscosity > 0:  # no adaptive solve in its pictures or instruments
        return estimate(c, n), None, None
    cap = solve_budget(estimate(c, n), prior_eval_s(c), budget_s)
    stiff = measure_stiffness(model, reference_points(ds.x_train), probe_evals=cap, memo=memo)
    return estimate(c, n, stiffness=stiff), stiff, cap


def limits_of(header: dict, cancel, memo: dict | None = None):
    """The adaptive solves' limits of a task: its cancel flag, and the budget the request carries."""
    from ...core.solvers import solve_limits

    need = header.get("stiffness")
    return solve_limits(max_evals=header.get("max_evals"), cancel=cancel, needs=need[0] if need else None, memo=memo)


def views_reply(model, ds, header: dict, history: list, cancel, head: dict) -> Iterator[bytes]:
    """Yields the reply ``head`` with the views of ``model`` (the final ones, with ``budget_s`` in ``header``
    measured for stiffness first); returns (the views or None if cancelled, the header with the measured
    ``stiffness`` and ``max_evals`` added for the instruments)."""
    from ...training.analysis import analyse as analyse_model

    memo: dict = {}
    if not header.get("live") and "budget_s" in header:  # before the final pictures: how stiff is the flow?
        with limits_of({}, cancel):
            cost, stiff, cap = reestimate(model, ds, header["budget_s"], memo)
        head["reestimate"] = {
            "seconds": cost.seconds,
            "peak_mb": cost.peak_mb,
            "drivers": list(cost.drivers),
            "parts": [list(p) for p in cost.parts],
        }
        if stiff is not None:
            head["stiffness"] = [stiff.evals, stiff.eval_s, stiff.done]
            header = dict(header, stiffness=head["stiffness"], max_evals=cap)
        head["max_evals"] = header.get("max_evals")
    with limits_of(header, cancel, memo):
        views = analyse_model(model, ds, history=history, live=bool(header.get("live")), cancel=cancel)
    if views is None:  # cancelled between two stages: this worker is free again at once
        yield encode(dict(head, cancelled=True))
        return None, header
    out: dict = {}
    head["views"] = pack(views, out)
    yield encode(head, out)
    return views, header


def analyse_task(header: dict, arrays: dict, cancel) -> Iterator[bytes]:
    """The views of a trained model (its weights in the request), and with ``metrics`` its losses and
    accuracies on the data (an imported run)."""
    import torch

    from ...training.train import evaluate, run_metrics

    model, ds = model_of(header, arrays)
    head: dict = {"kind": "result"}
    if header.get("metrics"):
        tr = evaluate(model, torch.as_tensor(ds.x_train), torch.as_tensor(ds.y_train))
        te = evaluate(model, torch.as_tensor(ds.x_test), torch.as_tensor(ds.y_test))
        head["metrics"] = run_metrics(train=tr, test=te, steps=model.config.train_steps)
    yield from views_reply(model, ds, header, header.get("history") or [], cancel, head)


def _computations():
    """what -> compute(model, data, args): a page's computations on a run's weights (a click's probe, the
    instruments of a snapshot)."""
    from ...training.instruments import adjoint_data, flow_paths, probe_data
    from ...training.prepared import PREPARED
    from ...training.volume import volume_data

    table = {
        "probe_path": lambda m, d, a: flow_paths(m, np.asarray([a["probe"]], np.float32))[:, 0].cpu().numpy(),
        "probe_data": lambda m, d, a: probe_data(m, tuple(a["probe"])),
        "adjoint_live": lambda m, d, a: adjoint_data(m, d.x_train, d.y_train),
        "volume_exact": lambda m, d, a: volume_data(m, d, extent=tuple(a["extent"]), density="exact"),
    }
    table.update({n: (lambda m, d, a, n=n: PREPARED[n](m, d, tuple(a["extent"]))) for n in PREPARED})
    return table


def packed(obj) -> tuple:
    """(tree, arrays) of a result object for a reply; spectra as complex64 (safetensors has no complex128, and
    the figures draw float32)."""
    out: dict = {}
    tree = pack(obj, out)
    return tree, {k: v.astype(np.complex64) if np.iscomplexobj(v) else v for k, v in out.items()}


def compute_task(header: dict, arrays: dict, cancel) -> Iterator[bytes]:
    """One computation of :func:`_computations` on the weights a request carries: its ``result``."""
    table = _computations()
    what = header.get("what")
    if what not in table:
        raise ValueError(f"unknown computation {what!r}; valid: {', '.join(table)}")
    model, ds = model_of(header, arrays)
    with limits_of(header, cancel):
        obj = table[what](model, ds, header.get("args") or {})
    tree, out = packed(obj)
    yield encode({"kind": "result", "data": tree}, out)
