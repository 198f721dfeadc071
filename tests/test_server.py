"""The server's start-up: app.py declares an st.App whose lifespan loads flowviz and starts a training process
before the first visitor; training processes that re-import the main module get nothing from it."""

import asyncio
import runpy
import sys

import streamlit as st
from tiny import ROOT


def test_app_py_declares_the_server_and_gives_worker_processes_nothing():
    served = runpy.run_path(str(ROOT / "app.py"), run_name="app")  # what `streamlit run` (uvicorn) imports
    assert isinstance(served["app"], st.App)
    assert served["app"].script_path.resolve() == (ROOT / "app.py").resolve()
    from flowviz.ui.server import lifespan

    assert served["lifespan"] is lifespan
    worker = runpy.run_path(str(ROOT / "app.py"), run_name="__mp_main__")  # a training process
    assert not {"app", "main", "st", "lifespan"} & set(worker)


def test_streamlit_finds_the_app_in_app_py():
    from streamlit.web.server.app_discovery import discover_asgi_app

    found = discover_asgi_app(ROOT / "app.py")
    assert found.is_asgi_app and found.import_string == "app:app"


def test_the_lifespan_loads_the_page_and_starts_a_training_process():
    from flowviz.ui import server

    async def enter():
        async with server.lifespan(None):
            return server.registry()

    reg = asyncio.run(enter())
    assert "flowviz.ui.page" in sys.modules
    from flowviz.ui.page import registry

    assert registry() is reg  # the page uses the registry the start-up made
    if reg.mode == "process":  # a worker process is already waiting for the first run
        assert reg.ready(timeout=0) and reg.executor.idle() + reg.executor.busy() >= 1
