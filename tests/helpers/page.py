"""The page in Streamlit's AppTest (the page tier): open it on a link, rerun it until its run has finished, read
its link, config and figures back."""

import json
import time

import tiny
from streamlit.testing.v1 import AppTest
from tiny import ROOT, link

from flowviz import Config

SMALL = link(tiny.SMALL.replace(train_steps=40))  # n_samples, n_steps, width, train_steps


def app(query=None) -> AppTest:
    """The page of app.py with ``query`` as its link (not yet run)."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    return at


def settle(at, timeout=60):
    """Rerun until the run has finished and the final (non-live) views are on the page."""
    t = time.time()
    while time.time() - t < timeout:
        at.run()
        assert not at.exception, at.exception
        live = any("Live view" in c.value for c in at.caption)
        finished = any(m.label == "status" and m.value in ("done", "cancelled") for m in at.metric) or any(
            c.value.endswith(("· done", "· cancelled")) for c in at.caption
        )  # presentation mode: one line
        if at.get("plotly_chart") and not live and finished:
            return at
        time.sleep(0.3)
    raise AssertionError("the run did not finish in time")


def link_of(at) -> dict:
    """The page's own link, as a visitor would copy it."""
    return {k: v[-1] if isinstance(v, list) else v for k, v in at.query_params.items()}


def config_of(at) -> Config:
    return Config.from_query({k: v for k, v in link_of(at).items() if k in Config.keys()})


def figures(at) -> list[dict]:
    """The plotly figures on the page, as JSON."""
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def instruments(at, sub):
    """The Instruments view, on its sub-view ``sub``."""
    at.radio(key="view").set_value("Instruments").run()
    at.radio(key="instrument").set_value(sub).run()
    assert not at.exception, at.exception
    return at
