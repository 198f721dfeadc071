"""The task ``instruments``: each instrument's data of a finished run's model (flowviz.training.prepared), one
``instrument`` reply as each is made; its server half (a function of the executor) and its worker half.

A run trained by a worker gets them from that worker right after its final views (``train``); this task
serves the runs whose weights did not come from a worker here (restored from the disk cache, imported) and
those whose instruments were left unmade (nobody watched them then).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from ...core.data import Dataset
from .protocol import encode, request, unpack
from .views import limits_of, model_of, packed, reestimate
from .weights import model_arrays

__all__ = ["instruments", "instrument_from", "instruments_task", "instrument_replies"]


# ------------------------------------------------------------------ server half
def instruments(
    executor,
    model,
    data: Dataset,
    *,
    extent,
    names=None,
    cancel=None,
    started: Callable[[], None] | None = None,
    made: Callable[[str, object, str | None], None] | None = None,
    wait: bool = True,
    limits: dict | None = None,
) -> tuple[dict, dict]:
    """(objects by name, messages by name) of the instruments of ``model`` on ``data`` over the box
    ``extent``, made by a worker of ``executor``; ``started()`` once a worker has the task, ``made(name, object,
    message)`` as each arrives. A task cancelled on its way returns those made before; without ``wait``,
    NoFreeWorker unless a worker is free now. ``limits``: ``budget_s``, ``stiffness`` and ``max_evals`` of the
    adaptive solves (what the final views measured), passed to the worker."""
    got: dict = {}
    errors: dict = {}

    def one(head, arrays):
        name, obj, error = instrument_from(head, arrays)
        (got if error is None else errors)[name] = obj if error is None else error
        if made is not None:
            made(name, obj, error)

    raw = request(
        "instruments",
        data,
        config=model.config,
        extent=[float(a) for a in extent],
        names=None if names is None else list(names),
        extra=model_arrays(model),
        **{k: v for k, v in (limits or {}).items() if v is not None},
    )
    executor.call(raw, cancel, started=started, on_reply=one, stops=True, wait=wait)
    return got, errors


def instrument_from(head: dict, arrays: dict) -> tuple[str, object, str | None]:
    """(name, data or None, the message why it does not fit or None) of an ``instrument`` reply."""
    return head["name"], unpack(head["data"], arrays), head["error"]


# ------------------------------------------------------------------ worker half
def instrument_replies(model, ds, header: dict, cancel) -> Iterator[bytes]:
    """One ``instrument`` reply per instrument of ``model`` over the box ``header["extent"]`` (``names``, default
    all that apply), ``cancel`` checked between them, within the adaptive solves' budget of ``header``
    (measured here first where the request carries ``budget_s`` but no ``stiffness``)."""
    from ...training.prepared import each

    if "budget_s" in header and "stiffness" not in header:  # not measured with the final pictures: measure now
        with limits_of({}, cancel):
            _, stiff, cap = reestimate(model, ds, header["budget_s"])
        if stiff is not None:
            header = dict(header, stiffness=[stiff.evals, stiff.eval_s, stiff.done], max_evals=cap)
    with limits_of(header, cancel):
        made = each(model, ds, header["extent"], names=header.get("names"), cancel=cancel)
        while (got := next(made, None)) is not None:
            name, obj, msg = got
            tree, out = packed(obj)
            yield encode({"kind": "instrument", "name": name, "data": tree, "error": msg}, out)


def instruments_task(header: dict, arrays: dict, cancel) -> Iterator[bytes]:
    """The instruments of the model a request carries, then the ``result``."""
    model, ds = model_of(header, arrays)
    yield from instrument_replies(model, ds, header, cancel)
    yield encode({"kind": "result", "cancelled": bool(cancel.is_set())})
