"""Process-wide settings of flowviz's long-lived processes: the training workers, the server and the CLI.

``import flowviz`` changes nothing process-wide; the programs that train for a long time call
:func:`tune_malloc` once at start-up.
"""

from __future__ import annotations

import ctypes
import os
import sys


def tune_malloc(threshold: int = 4 * 2**20) -> None:
    """Give tensors of 4 MB and more back to the OS when freed (Linux, glibc).

    glibc raises its mmap threshold after every large free (up to 32 MB); from then on big tensors come from
    the heap, whose fragments are not returned, and a long run's resident memory grows by about one
    activation per step (measured: the largest rk4 run peaked at 22.9 GB, 0.5 GB with a fixed threshold).
    FLOWVIZ_MALLOPT=0 leaves malloc alone.
    """
    if not sys.platform.startswith("linux") or os.environ.get("FLOWVIZ_MALLOPT", "1") == "0":
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, threshold)  # M_MMAP_THRESHOLD; setting it also stops the adjusting
        libc.mallopt(-1, 64 * 2**20)  # M_TRIM_THRESHOLD: keep the heap's top, or every step would fault it back in
    except (OSError, AttributeError):
        pass
