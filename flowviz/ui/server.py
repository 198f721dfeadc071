"""What the server process holds for all sessions, and what it does once at start-up.

``streamlit run app.py`` finds the ``st.App`` in app.py and runs its ``lifespan`` before the first visitor
can connect: the page's modules are imported (torch, plotly: about 1.5 s here), the run registry is made and
its first training process started (which imports torch on its own core meanwhile), and prebuilt scenarios
are loaded from the disk cache. Without this, the first visitor waited for all of it.
"""

from __future__ import annotations

import logging
import threading
from contextlib import asynccontextmanager

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
# page: 45 % of the server's CPU); a full collection once a minute keeps closed sessions' cycles from piling up
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
            from ..serve.process import tune_malloc
            from ..serve.runs import Registry
            from ..serve.settings import Settings

            settings = Settings.from_env()  # the one reading of FLOWVIZ_* in this server
            tune_malloc(enabled=settings.malloc_tuning)  # the server trains too in thread mode, and analyses runs
            _server_logging()
            _registry = Registry(settings=settings)
            threading.Thread(target=_collect_garbage, args=(GC_EVERY_S,), name="flowviz-gc", daemon=True).start()
            if settings.warm:
                _registry.warm([c for name in preset_names() for c in preset_configs(name)])
        return _registry


def session_id() -> str:
    """The id of the browser session running this script (the key of its one training job)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else "no-session"


def client_address() -> str:
    """The address this session's page connects from (Streamlit's ``st.context.ip_address``). A local
    connection (None there) is keyed by the first address of its X-Forwarded-For header (a reverse proxy on this
    machine says whom it forwards), else "local"; a session without a browser (a test's) is "local" too."""
    import streamlit as st

    try:
        ip = st.context.ip_address
        if ip:
            return ip
        forwarded = (st.context.headers or {}).get("X-Forwarded-For") or ""
    except Exception:  # no session context: nobody's address
        return "local"
    return forwarded.split(",")[0].strip()[:64] or "local"


def admit() -> bool:
    """The page's first act: count this script run against its client's bounds (flowviz.serve.fair.Admission:
    its pages, its reruns a second) and mark the thread with its client, whose runs the queue then serves in
    turn. False (a plain message shown) when the client has too many pages open; a page over its reruns waits
    for its turn first."""
    import time

    import streamlit as st

    why, delay = registry().admission.enter(session_id(), client_address())
    if why:
        st.error(why)
        return False
    if delay > 0:
        time.sleep(delay)
    return True


def pace() -> None:
    """A fragment's own rerun (its refresh every fraction of a second, without the page around it) counts
    against its client's reruns a second like a page's (:func:`admit`): a client's many pages refreshing at
    once wait their turn instead of taking the server's time from other clients' pages."""
    import time

    from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is None or not ctx.fragment_ids_this_run:  # a whole page's run: admit() counted it
        return
    _, delay = registry().admission.enter(session_id(), client_address())
    if delay > 0:
        time.sleep(delay)


def waiting_text(reg, run) -> str:
    """What a page waiting for a worker says: its place in the queue, the estimated wait and its own cost."""
    from ..serve.budget import duration

    place, wait = reg.queue_place(run)
    text = f"Waiting for a free worker: place {place} in the queue"
    text += f", about {duration(wait)} to wait." if wait is not None else "."
    if run.cost is not None:
        text += f" This run will take {run.cost.describe()}."
    return text


def start_up() -> None:
    """Make the registry first (its training process starts importing torch at once, in parallel), then
    import what the page needs, so that the first visitor waits for neither."""
    import importlib

    importlib.import_module("flowviz.serve.runs")
    reg = registry()
    # st.cache_data checks its settings at import, and warns that no session runtime exists yet: expected here
    quiet = logging.getLogger("streamlit.runtime.caching.cache_data_api")
    level, quiet.level = quiet.level, logging.ERROR
    try:
        importlib.import_module("flowviz.ui.page")
    finally:
        quiet.setLevel(level)
    started = reg.ready(timeout=60)
    log.info("flowviz is ready%s", "" if started else " (the first training process is still starting)")


@asynccontextmanager
async def lifespan(app):
    """Streamlit's start-up hook (``st.App(..., lifespan=lifespan)``): the health check answers once the
    page's modules are loaded and a training process is waiting for the first run."""
    import asyncio

    await asyncio.to_thread(start_up)
    yield
    await asyncio.to_thread(shut_down)


def shut_down() -> None:
    """The server is stopping (SIGTERM, SIGINT): cancel every run, end the workers, the forkserver and the
    resource tracker, within a few seconds whatever trains."""
    global _registry
    with _lock:
        reg, _registry = _registry, None
    if reg is not None:
        log.info("flowviz is stopping: cancelling runs and ending the training processes")
        reg.shutdown()
