"""The server's start-up and shutdown (Streamlit's ``lifespan`` hook of the ``st.App`` in app.py).

``streamlit run app.py`` finds the ``st.App`` in app.py and runs its ``lifespan`` before the first visitor
can connect: the run registry is made and its first training process started (which imports torch on its own
core meanwhile), the page's modules are imported, and prebuilt scenarios are loaded from the disk cache.
Without this, the first visitor waited for all of it. Nothing in flowviz.ui imports this module.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from .shared import registry, shut_down

log = logging.getLogger("flowviz.ui")


def start_up() -> None:
    """Make the registry first (its training process starts importing torch at once, in parallel), then
    import what the page needs, so that the first visitor waits for neither."""
    reg = registry()
    # st.cache_data checks its settings at import, and warns that no session runtime exists yet: expected here
    quiet = logging.getLogger("streamlit.runtime.caching.cache_data_api")
    level, quiet.level = quiet.level, logging.ERROR
    try:
        from . import page  # noqa: F401  (its modules: torch, plotly, streamlit's widgets)
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
