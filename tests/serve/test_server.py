"""The server's start-up: app.py declares an st.App whose lifespan loads flowviz and starts a training process
before the first visitor; training processes that re-import the main module get nothing from it."""

import asyncio
import os
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
    from flowviz.ui import server, shared
    from flowviz.ui.page import registry

    async def serve():
        async with server.lifespan(None):
            reg = shared.registry()
            assert "flowviz.ui.page" in sys.modules
            assert registry() is reg  # the page uses the registry the start-up made
            if reg.mode == "process":  # a worker process is already waiting for the first run
                assert reg.ready(timeout=0) and reg.executor.idle() + reg.executor.busy() >= 1
            return reg, reg.executor.pids() if reg.mode == "process" else []

    reg, pids = asyncio.run(serve())
    # the server stopped: its workers are gone, and a later start-up makes a fresh registry
    assert all(not os.path.exists(f"/proc/{p}") or _zombie(p) for p in pids) and registry() is not reg
    registry().shutdown()


def _zombie(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
