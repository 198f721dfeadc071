"""Measurements of trained models, made by a worker and not by the server: a sweep's (diagnostics of every member,
the depth-transfer matrix, the order on one field, the decision grids), coarse-to-fine training, and the views of
one sweep member for the side-by-side.

``MEASURES`` names them; each is a generator ``(runs, data, header, cancel)`` that yields (fraction, text) as it
goes and returns its result. The server half, :func:`measure`, asks a worker for one; the worker half,
:func:`measure_task`, runs it and streams ``progress`` replies. The models go out as their configs and weights
(tags ``0 .. n-1``, ``work.weights``), the result comes back as JSON and arrays (``protocol.pack`` / ``unpack``,
whitelisted types only), a trained run inside it as its config, history and weights (tagged with its field's
name): nothing is pickled either way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Generator, Iterator

from ...core.config import Config
from ...core.data import Dataset
from ...training.train import TrainResult
from .protocol import TaskFailed, dataset_from, encode, pack, request, unpack
from .weights import model_arrays, model_from

__all__ = ["MEASURES", "measure", "measure_task", "measure_request", "measure_result"]


def _sweep(runs: list[TrainResult], data: Dataset, header: dict, cancel) -> Generator:
    from ...training.sweep import measure_members

    return (
        yield from measure_members(
            runs,
            data,
            header["key"],
            seed=int(header["seed"]),
            transfer_to=[int(v) for v in header.get("transfer_to") or []],
        )
    )


def _coarse_to_fine(runs: list[TrainResult], data: Dataset, header: dict, cancel) -> Generator:
    from ...training.refine import coarse_to_fine

    yield 0.0, "training coarse to fine"
    return coarse_to_fine(
        Config.from_dict(header["config"]),
        L_start=int(header["L_start"]),
        L_end=int(header["L_end"]),
        data=data,
        cancel=cancel,
    )


def _views(runs: list[TrainResult], data: Dataset, header: dict, cancel) -> Generator:
    from ...training.analysis import analyse

    yield 0.0, "drawing the member's pictures"
    return analyse(runs[0].model, data, with_reference=False)


# name -> generator(runs, data, request header, cancel): yields (fraction, text), returns the result object
MEASURES: dict[str, Callable[..., Generator]] = {"sweep": _sweep, "coarse_to_fine": _coarse_to_fine, "views": _views}


def measure_request(what: str, data: Dataset, models=(), **params) -> bytes:
    """The ``measure`` task ``what`` of ``models`` (their configs, and their weights tagged ``0 .. n-1``) on
    ``data``; ``params``: what that measurement reads (JSON values, or Configs)."""
    if what not in MEASURES:
        raise ValueError(f"unknown measurement {what!r}; valid: {', '.join(MEASURES)}")
    weights = {k: v for i, m in enumerate(models) for k, v in model_arrays(m, i).items()}
    return request("measure", data, what=what, runs=[m.config for m in models], extra=weights, **params)


def measure_task(header: dict, arrays: dict, cancel) -> Iterator[bytes]:
    """A worker's ``measure`` task: ``progress`` replies, then the ``result`` (``value``: the packed result, its
    trained runs under ``runs``). A cancelled measurement ends with a ``fatal`` reply (nothing to keep)."""
    from ...training.sweep import stepwise

    what = MEASURES.get(header.get("what"))
    if what is None:
        raise ValueError(f"unknown measurement {header.get('what')!r}; valid: {', '.join(MEASURES)}")
    ds = dataset_from(header, arrays)
    runs = []
    for i, d in enumerate(header.get("runs") or []):
        cfg = Config.from_dict(d)
        runs.append(TrainResult(cfg, model_from(cfg, ds.n_classes, arrays, i), ds))
    out: dict = {}
    for frac, text in stepwise(what(runs, ds, header, cancel), cancel, out):
        yield encode({"kind": "progress", "progress": float(frac), "text": text})
    if "value" not in out:
        raise RuntimeError("cancelled")
    value, trained = _without_runs(out["value"])
    back: dict = {}
    head = {"kind": "result", "value": pack(value, back), "runs": {}}
    for name, r in trained.items():
        head["runs"][name] = {
            "config": r.config.to_dict(),
            "history": r.history,
            "metrics": r.metrics,
            "error": r.error,
        }
        back.update(model_arrays(r.model, name))
    yield encode(head, back)


def _without_runs(value):
    """(``value`` with its TrainResult fields set to None, {field: TrainResult}): a model is sent as weights."""
    if not dataclasses.is_dataclass(value):
        return value, {}
    runs = {
        f.name: getattr(value, f.name)
        for f in dataclasses.fields(value)
        if isinstance(getattr(value, f.name), TrainResult)
    }
    return dataclasses.replace(value, **{k: None for k in runs}), runs


def measure_result(head: dict, arrays: dict, data: Dataset):
    """The result object of a ``measure`` reply (its trained runs rebuilt on ``data``)."""
    value = unpack(head["value"], arrays)
    runs = {}
    for name, r in (head.get("runs") or {}).items():
        cfg = Config.from_dict(r["config"])
        runs[name] = TrainResult(
            cfg, model_from(cfg, data.n_classes, arrays, name), data, r["history"], r["metrics"], r["error"]
        )
    return dataclasses.replace(value, **runs) if runs else value


def measure(
    executor,
    what: str,
    data: Dataset,
    *,
    models=(),
    cancel=None,
    progress: Callable[[float, str], None] | None = None,
    long: bool = False,
    **params,
):
    """The measurement ``what`` (MEASURES) of ``models`` on ``data`` with ``params``, made by a worker of
    ``executor`` (in the lane of ``long`` tasks if set): its result object, or None when ``cancel`` was
    set first (the worker's task is stopped too). ``progress(fraction, text)`` as it goes."""

    def said(head: dict, arrays: dict) -> None:
        if progress is not None and head.get("kind") == "progress":
            progress(head["progress"], head.get("text", ""))

    try:
        head, arrays = executor.call(measure_request(what, data, models, **params), cancel, on_reply=said, long=long)
    except TaskFailed:
        if cancel is not None and cancel.is_set():
            return None
        raise
    return measure_result(head, arrays, data)
