"""The server's budget per run: a run estimated over it is refused before it starts, in plain words that name
its cost and the config keys that drive it (FLOWVIZ_MAX_RUN_SECONDS, FLOWVIZ_MAX_RUN_MB). The library and
the CLI only warn; limits belong to the server.
"""

from __future__ import annotations

from ..core.config import Config
from ..core.cost import estimate
from ..core.errors import ConfigError
from .settings import Settings

__all__ = ["OverBudget", "check", "duration"]


class OverBudget(ConfigError):
    """A run (or a sweep) over the server's budget; the message names the cost and the keys that drive it."""


def duration(seconds: float) -> str:
    """Seconds as a person reads them: "45 s", "12 min", "2 h 10 min"."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


def check(
    configs: list[Config],
    n_train: int | None,
    settings: Settings,
    *,
    what: str = "This run",
    analysis_only: bool = False,
    live: bool = False,
):
    """The estimated costs of ``configs`` (a run, a scenario's pair or a sweep's members, trained one after the
    other); OverBudget if their total time or memory is over ``settings``' budget (flowviz.core.cost's estimate).
    ``analysis_only``: count only the final pictures' time (an imported run is not trained again); ``live``: the
    runs' training workers make live views as they train (a page watches them)."""
    costs = [estimate(c, n_train, live=live) for c in configs]
    mb = sum(c.peak_mb for c in costs)
    seconds = sum(c.part("analysis") if analysis_only else c.seconds for c in costs)
    over = []
    if seconds > settings.max_run_seconds:
        over.append(f"{duration(settings.max_run_seconds)} of training")
    if mb > settings.max_run_mb:
        over.append(f"{settings.max_run_mb / 1024:.1f} GB of memory")
    if not over:
        return costs
    drivers = list(dict.fromkeys(k for c in costs for k in c.drivers))
    what_costs = (
        costs[0].describe()
        if len(costs) == 1 and not analysis_only
        else f"about {duration(seconds)} and {mb / 1024:.1f} GB in all, driven by {', '.join(costs[0].drivers)}"
    )
    raise OverBudget(
        f"{what} was not started: it would take {what_costs}, over this server's limit of "
        f"{' and '.join(over)} per run. Make {_listed(drivers[:3]) or 'the run'} smaller."
    )


def _listed(keys: list[str]) -> str:
    return keys[0] if len(keys) == 1 else ", ".join(keys[:-1]) + (" or " + keys[-1] if keys else "")
