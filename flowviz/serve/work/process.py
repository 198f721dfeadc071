"""Process-wide settings of flowviz's long-lived processes: the training workers, the server and the CLI.

``import flowviz`` changes nothing process-wide; the programs that train for a long time call
:func:`tune_malloc` once at start-up.
"""

from __future__ import annotations

import ctypes
import os
import sys


def tune_malloc(threshold: int = 4 * 2**20, enabled: bool | None = None) -> None:
    """Give tensors of 4 MB and more back to the OS when freed (Linux, glibc).

    glibc raises its mmap threshold after every large free (up to 32 MB); from then on big tensors come from
    the heap, whose fragments are not returned, and a long run's resident memory grows by about one
    activation per step (the largest rk4 run: tens of GB against under one with a fixed threshold;
    bench/memory.py).
    FLOWVIZ_MALLOPT=0 leaves malloc alone (``enabled``: that setting, read from the environment if not given).
    """
    if enabled is None:
        from ..settings import Settings

        enabled = Settings.from_env().malloc_tuning
    if not sys.platform.startswith("linux") or not enabled:
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, threshold)  # M_MMAP_THRESHOLD; setting it also stops the adjusting
        libc.mallopt(-1, 64 * 2**20)  # M_TRIM_THRESHOLD: keep the heap's top, or every step would fault it back in
    except (OSError, AttributeError):
        pass


def address_space_mb() -> float:
    """This process's mapped address space now (Linux), in MB; 0 where it cannot be read."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


def limit_memory(extra_mb: float) -> None:
    """Cap this process's address space at what it maps now plus ``extra_mb`` (0: no cap).

    A task that asks for more gets a MemoryError (torch: "can't allocate memory") in its own process: the
    task ends as an error and the machine is spared. RLIMIT_AS counts mapped, not resident, memory; the
    baseline taken here (torch and its libraries, mapped already) keeps the extra for the task itself.
    """
    if extra_mb <= 0 or not sys.platform.startswith("linux"):
        return
    import resource

    cap = int((address_space_mb() + extra_mb) * 2**20)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
