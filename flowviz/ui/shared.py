"""What the server process holds for all sessions: the run registry (its executor, its runs and jobs), made on
first use and released when the server stops."""

from __future__ import annotations

import gc
import logging
import threading

log = logging.getLogger("flowviz.ui")

_lock = threading.Lock()
_registry = None


def _server_logging():
    """flowviz's own messages (runs started, workers busy, faults) go to the server's stderr."""
    root = logging.getLogger("flowviz")
    if not root.handlers:
        h = logging.StreamHandler()
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(h)
        root.setLevel(logging.INFO)


# .streamlit/config.toml turns off Streamlit's gc.collect(2) after every script run (three a second per watching
# page: most of the server's CPU); a full collection once a minute keeps closed sessions' cycles from piling up
GC_EVERY_S = 60.0


def _collect_garbage(every: float) -> None:
    import gc
    import time

    while True:
        time.sleep(every)
        gc.collect()


def registry():
    """The run registry of this server process, shared by all sessions; made on first use.

    Prebuilt scenarios (``python -m flowviz prebuild``) are loaded and analysed in the background, unless
    FLOWVIZ_WARM=0.
    """
    global _registry
    with _lock:
        if _registry is None:
            from ..core.presets import preset_configs, preset_names
            from ..serve.runs.registry import Registry
            from ..serve.settings import Settings
            from ..serve.work.process import tune_malloc

            settings = Settings.from_env()  # the one reading of FLOWVIZ_* in this server
            tune_malloc(enabled=settings.malloc_tuning)  # the server trains too in thread mode, and analyses runs
            _server_logging()
            _registry = Registry(settings=settings)
            threading.Thread(target=_collect_garbage, args=(GC_EVERY_S,), name="flowviz-gc", daemon=True).start()
            if settings.warm:
                _registry.warm([c for name in preset_names() for c in preset_configs(name)])
        return _registry


def shut_down() -> None:
    """The server is stopping (SIGTERM, SIGINT): cancel every run, end the workers, the forkserver and the
    resource tracker, within a few seconds whatever trains. The process is expected to end next."""
    global _registry
    with _lock:
        reg, _registry = _registry, None
    if reg is not None:
        log.info("flowviz is stopping: cancelling runs and ending the training processes")
        reg.shutdown()
    # the process ends next, and its interpreter's last garbage collections would walk every object it holds
    # (torch's, plotly's and Streamlit's modules): on a busy machine that held the exit for seconds; frozen
    # objects are left to their reference counts
    gc.freeze()
