"""Each instrument's data of one trained model, by name: what a worker prepares once a run has finished.

The page (flowviz.ui.views.instruments) draws an instrument from these objects; a server hands the whole set to a
worker when a finished run is first shown (``flowviz.serve.work.worker``'s ``instruments`` task), so a click on
an instrument only builds the figure. The probe is not here: it depends on the point clicked, and one
characteristic costs milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

from ..core.config import Config
from ..core.data import Dataset
from ..core.errors import FlowvizError
from ..core.model import FlowModel
from ..core.solvers import Cancelled, Flag
from .instruments import adjoint_data, stability_data, transport_comparison
from .volume import volume_data

__all__ = ["PREPARED", "applies", "each", "prepare"]

# name -> compute(model, data, extent): extent is the box of the run's final views (x1 lo, x1 hi, x2 lo, x2 hi);
# in the order a worker makes them: the quick ones first (reference run: stability 0.12 s, volume 0.9 s, grid
# solver 1.5 s, adjoint with odeint_adjoint 2.3 s), each sent to the server as soon as it is made
PREPARED: dict[str, Callable[[FlowModel, Dataset, tuple[float, ...]], object]] = {
    "stability": lambda m, d, e: stability_data(m, d.x, d.y),
    "volume": lambda m, d, e: volume_data(m, d, extent=e),
    "grid": lambda m, d, e: transport_comparison(m, e),
    "adjoint": lambda m, d, e: adjoint_data(m, d.x_train, d.y_train, with_continuous=True),
}


def applies(name: str, config: Config) -> bool:
    """Whether instrument ``name`` has data for a run of ``config``: the grid solver works on the plane only (p = 0)."""
    return name in PREPARED and (name != "grid" or config.dim == 2)


def each(
    model: FlowModel,
    data: Dataset,
    extent: Sequence[float],
    *,
    names: Iterable[str] | None = None,
    cancel: Flag | None = None,
) -> Iterator[tuple[str, object, str | None]]:
    """(name, object, None) for each of the instruments ``names`` (default: all that apply), one after the other
    in the table's order (the quick ones first); ``cancel`` (``is_set()``) is checked between them, so a
    cancelled task ends after the one in hand. An instrument that does not fit the run (a ``FlowvizError``,
    e.g. the stability region of the plain net) gives (name, None, its message)."""
    box = tuple(float(a) for a in extent)
    for name in [n for n in (PREPARED if names is None else names) if applies(n, model.config)]:
        if cancel is not None and cancel.is_set():
            return
        try:
            yield name, PREPARED[name](model, data, box), None
        except Cancelled:  # an adaptive solve stopped between two evaluations: the task ends here
            return
        except FlowvizError as e:
            yield name, None, str(e)


def prepare(
    model: FlowModel,
    data: Dataset,
    extent: Sequence[float],
    *,
    names: Iterable[str] | None = None,
    cancel: Flag | None = None,
) -> tuple[dict[str, object], dict[str, str]]:
    """(objects by name, messages by name) of :func:`each`."""
    got: dict[str, object] = {}
    errors: dict[str, str] = {}
    for name, obj, msg in each(model, data, extent, names=names, cancel=cancel):
        if msg is None:
            got[name] = obj
        else:
            errors[name] = msg
    return got, errors
