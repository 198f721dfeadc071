"""Where a client's raw values enter Streamlit before flowviz sees them, and how each is kept from the page.

Streamlit reads a chart's selection (the websocket's widget state, JSON text) and the page's query string
before any of flowviz's code runs, and two of its readers fail on hostile input:

- ``PlotlyChartSelectionSerde.deserialize`` runs ``json.loads`` and indexes the result: text that is not JSON,
  JSON that is not an object, a "selection" that is not an object, or nesting 10,000 deep (RecursionError)
  raise inside Streamlit's callback dispatch, before the script, and the sender's page shows an error.
  :func:`read_selection` replaces it: what it cannot read, or what nests deeper than ``MAX_DEPTH``, becomes an
  empty selection marked ``malformed`` (a reason), which ``core.points.parse_selection`` turns into a notice.
- A widget state sent as ``json_value`` is parsed by ``unpack_widget_state_value`` before any deserializer;
  unreadable JSON there now reads as no value (the widget's default) instead of raising.
- ``sanitize_query_string`` drops a query string of more than 1,000 parameters (or 512 Ki characters) whole,
  with a line in the server's log only. :func:`keep_known` keeps the link's flowviz keys (config keys and
  link flags, the last value of each) and adds ``DROPPED=n``, which ``links.parse_link`` names in a notice.

:func:`install` puts the three in place once per process (the page's modules are imported at server start-up,
before the first visitor's query string is read).
"""

from __future__ import annotations

import json
import logging
from urllib import parse

from .links import DROPPED

__all__ = ["MAX_DEPTH", "MAX_EVENT_CHARS", "DROPPED", "read_selection", "keep_known", "install"]

log = logging.getLogger("flowviz.ui")

MAX_DEPTH = 12  # a selection event nests 5 deep ({selection: {points: [{customdata: [..]}]}})
MAX_EVENT_CHARS = 4_000_000  # a box over every point of the densest click plane takes about 400 kB
MAX_LINK_CHARS = 1_000_000  # beyond this a dropped query string is not parsed again


def _depth(obj, limit: int) -> int:
    """How deep containers nest in ``obj`` (iteratively; stops counting past ``limit``)."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if isinstance(o, (dict, list)):
            deepest = max(deepest, d)
            if deepest > limit:
                return deepest
            stack.extend((v, d + 1) for v in (o.values() if isinstance(o, dict) else o))
    return deepest


def _empty(reason: str | None = None):
    from streamlit.elements.plotly_chart import PlotlySelectionState, PlotlyState

    state = {"selection": PlotlySelectionState({"points": [], "point_indices": [], "box": [], "lasso": []})}
    if reason:
        state["malformed"] = reason
    return PlotlyState(state)


def read_selection(ui_value):
    """A plotly chart's selection as Streamlit sends it (JSON text, or None) -> Streamlit's PlotlyState; never
    raises: what cannot be read is an empty selection with a ``malformed`` reason."""
    if ui_value is None:
        return _empty()
    if not isinstance(ui_value, str):
        return _empty("it is not a selection event.")
    if len(ui_value) > MAX_EVENT_CHARS:
        return _empty(f"it is {len(ui_value)} characters long; at most {MAX_EVENT_CHARS}.")
    try:
        parsed = json.loads(ui_value)
    except RecursionError:
        return _empty("it is nested too deep.")
    except ValueError:
        return _empty("it is not JSON.")
    if not isinstance(parsed, dict):
        return _empty("it is not an object.")
    if _depth(parsed, MAX_DEPTH) > MAX_DEPTH:
        return _empty("it is nested too deep.")
    if "selection" not in parsed:
        return _empty()
    if not isinstance(parsed["selection"], dict):
        return _empty("its selection is not an object.")
    from streamlit.elements.plotly_chart import PlotlySelectionState, PlotlyState

    parsed["selection"] = PlotlySelectionState(parsed["selection"])
    return PlotlyState(parsed)


def keep_known(query_string: str, sanitized: str, known) -> str:
    """A query string Streamlit dropped (``sanitized`` empty, ``query_string`` not) -> its parameters whose
    key is in ``known`` (the last value of each) and ``DROPPED=n``, n the parameters it had; else ``sanitized``."""
    if sanitized or not query_string:
        return sanitized
    n = query_string.count("&") + 1
    if len(query_string) > MAX_LINK_CHARS:
        return parse.urlencode({DROPPED: "too_long"})
    kept: dict[str, str] = {}
    for k, v in parse.parse_qsl(query_string, keep_blank_values=True):
        if k in known:
            kept.pop(k, None)
            kept[k] = v
    kept[DROPPED] = str(n)
    return parse.urlencode(kept)


def _known() -> set[str]:
    from ..core.config import Config
    from .links import FLAGS

    return set(Config.keys()) | set(FLAGS)


_INSTALLED = False


def install() -> None:
    """Put the guards in place (once per process; see the module's docstring)."""
    global _INSTALLED
    if _INSTALLED:
        return
    import streamlit.runtime.app_session as app_session
    import streamlit.runtime.state.session_state as session_state
    from streamlit.elements.plotly_chart import PlotlyChartSelectionSerde

    PlotlyChartSelectionSerde.deserialize = lambda self, ui_value: read_selection(ui_value)

    unpack = session_state.unpack_widget_state_value

    def unpack_or_none(widget_state):
        try:
            return unpack(widget_state)
        except (ValueError, RecursionError):  # json_value text that is not JSON, or nested too deep
            log.warning("a widget state that is not JSON was read as no value")
            return None

    session_state.unpack_widget_state_value = unpack_or_none

    sanitize = app_session.sanitize_query_string
    app_session.sanitize_query_string = lambda qs: keep_known(qs, sanitize(qs), _known())
    _INSTALLED = True
