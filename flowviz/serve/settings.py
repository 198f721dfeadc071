"""The server's settings: every ``FLOWVIZ_*`` environment variable, read in one place.

:meth:`Settings.from_env` is the only reader of these variables in flowviz.serve and flowviz.ui; the server
reads them once (its :class:`~flowviz.serve.runs.registry.Registry` holds the object) and passes values down.
flowviz.core reads none. Each field names its variable, its default and what it does: the README's table
of settings is tested against these fields (tests/unit/test_settings.py).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

__all__ = ["Settings"]


def _setting(env: str, default, what: str, parse=None, shown: str | None = None):
    return field(default=default, metadata={"env": env, "what": what, "parse": parse, "shown": shown})


def _shown(value) -> str:
    """A default as the README's table writes it."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return f"`{value}`" if isinstance(value, str) else str(value)


def _flag(text: str) -> bool:
    return text.strip() not in ("0", "", "false", "no", "off")


@dataclass(frozen=True)
class Settings:
    """Settings of a server (and of the CLI's pool), from the environment; defaults fit a 2-core, 24 GB machine
    serving a lecture."""

    workers: int = _setting(
        "FLOWVIZ_WORKERS", 0, "training processes (the one bound on concurrent trainings and jobs)", shown="CPU count"
    )
    worker_mode: str = _setting(
        "FLOWVIZ_WORKER_MODE", "process", "`thread` trains inside the server process (debugging)"
    )
    executor: str = _setting(
        "FLOWVIZ_EXECUTOR",
        "",
        "where runs and sweeps train, by name (`process`, `thread`, `ray`: a Ray cluster at `RAY_ADDRESS`, see below)",
        shown="`FLOWVIZ_WORKER_MODE`",
    )
    client_sessions: int = _setting(
        "FLOWVIZ_CLIENT_SESSIONS",
        400,
        "pages open at once from one client address (a hall behind one NAT is one address; 0: no bound)",
    )
    client_queued: int = _setting(
        "FLOWVIZ_CLIENT_QUEUED",
        200,
        "runs of one client address waiting for a worker; "
        "past it a new run is refused with a plain message (0: no bound)",
    )
    client_reruns: float = _setting(
        "FLOWVIZ_CLIENT_RERUNS",
        30.0,
        "page script runs a second from one client "
        "address (a burst of twice that); past it a page waits its turn, at most 2 s "
        "(0: no bound)",
    )
    script_seconds: float = _setting(
        "FLOWVIZ_SCRIPT_SECONDS",
        4.0,
        "seconds of page-script run time a second (wall clock: about that many runs at once) shared equally among "
        "the client addresses using it; past its share a client's page waits its turn, at most 10 s (0: no bound)",
    )
    view_workers: int = _setting(
        "FLOWVIZ_VIEW_WORKERS",
        1,
        "processes beside the training ones that compute a "
        "page's views of a run's weights (a click's probe, a snapshot's instruments)",
    )
    server_threads: int = _setting(
        "FLOWVIZ_SERVER_THREADS", 1, "torch threads of the server's own work (views), in process mode"
    )
    cuda_graphs: bool = _setting(
        "FLOWVIZ_CUDA_GRAPHS",
        False,
        "1: on a CUDA GPU, replay each training step from a "
        "CUDA graph (off until measured; passed to each run's training as "
        "`train(..., cuda_graphs=True)`, `flowviz.training.graphs`)",
        _flag,
    )
    max_run_seconds: float = _setting(
        "FLOWVIZ_MAX_RUN_SECONDS",
        600.0,
        "a run estimated to take longer (on one CPU thread) is refused before it starts, with the keys that drive it",
    )
    max_run_mb: float = _setting(
        "FLOWVIZ_MAX_RUN_MB", 4096.0, "a run estimated to need more memory at its peak is refused the same way"
    )
    worker_mb: float = _setting(
        "FLOWVIZ_WORKER_MB",
        6144.0,
        "each worker process's memory cap above a fresh "
        "worker (address space; 0: none): a run over it ends as an error, the last "
        "state kept",
    )
    long_run_s: float = _setting(
        "FLOWVIZ_LONG_RUN_S",
        30.0,
        "runs estimated longer than this never take the last free worker: it stays for short runs",
    )
    unwatched_s: float = _setting(
        "FLOWVIZ_UNWATCHED_S",
        120.0,
        "a run or a sweep no page has looked at for this long is cancelled (its tasks on the workers too)",
    )
    cache_dir: str = _setting(
        "FLOWVIZ_CACHE_DIR", "", "disk cache of finished runs (`off` disables it)", shown="`~/.cache/flowviz`"
    )
    cache_entries: int = _setting("FLOWVIZ_CACHE_ENTRIES", 256, "runs kept on disk, least recently used out")
    warm: bool = _setting("FLOWVIZ_WARM", True, "load and analyse prebuilt scenarios at server start", _flag)
    room_limit: int = _setting(
        "FLOWVIZ_ROOMS",
        20,
        "rooms open at once (a lecturer's page followed read-only at `/room/CODE`); one more is refused with a message",
    )
    room_followers: int = _setting(
        "FLOWVIZ_ROOM_FOLLOWERS",
        300,
        "followers of one room on one server; one more gets a message instead of the stream",
    )
    room_idle_s: float = _setting(
        "FLOWVIZ_ROOM_IDLE_S", 1800.0, "a room whose lecturer's page has given no sign of life for this long ends"
    )
    malloc_tuning: bool = _setting(
        "FLOWVIZ_MALLOPT", True, "0: leave glibc's malloc thresholds alone (workers, server, CLI)", _flag
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings in ``environ`` (the process environment by default); a malformed value keeps its
        default (a server must start), as an unset one does."""
        env = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            raw = env.get(f.metadata["env"])
            if raw is None or not raw.strip():
                continue
            parse = f.metadata["parse"] or type(f.default)
            try:
                values[f.name] = parse(raw.strip())
            except ValueError:
                continue
        return cls(**values)

    @classmethod
    def table(cls) -> list[tuple[str, str, str]]:
        """(variable, default, what) per setting: the README's table."""
        return [(f.metadata["env"], f.metadata["shown"] or _shown(f.default), f.metadata["what"]) for f in fields(cls)]

    def worker_count(self) -> int:
        """Training processes: ``workers``, or the CPU count."""
        return self.workers if self.workers > 0 else (os.cpu_count() or 1)
