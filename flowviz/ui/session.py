"""The session running this script: its id and its client's address, and its admission (the client's bounds)."""

from __future__ import annotations

import threading

from ..serve.fair import waited
from .shared import registry

__all__ = ["session_id", "client_address", "admit", "pace", "settle"]

_began = threading.local()  # .t: when the admitted script run of this thread began


def session_id() -> str:
    """The id of the browser session running this script (the key of its one training job)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else "no-session"


def _loopback(ip: str) -> bool:
    """A connection from this machine: 127.0.0.0/8, ::1, or 127.x as an IPv4-mapped IPv6 address (a server
    listening on both families sees a local IPv4 client so)."""
    import ipaddress

    try:
        a = ipaddress.ip_address(ip.split("%")[0])
    except ValueError:
        return False
    mapped = getattr(a, "ipv4_mapped", None)
    return a.is_loopback or (mapped is not None and mapped.is_loopback)


def client_address() -> str:
    """The address this session's page connects from (Streamlit's ``st.context.ip_address``). A local
    connection (None or a loopback address there) is keyed by the first address of its X-Forwarded-For header
    (a reverse proxy on this machine says whom it forwards), else "local"; a session without a browser (a
    test's) is "local" too."""
    import streamlit as st

    try:
        ip = st.context.ip_address
        if ip and not _loopback(ip):
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
    _began.t = time.monotonic()
    waited(reset=True)
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
    _began.t = time.monotonic()
    waited(reset=True)


def settle(*, fragment: bool = False) -> None:
    """The script run admitted on this thread ends (with ``fragment``: a fragment's body ends, which ends the
    run only when the fragment reran alone): its time, less what it spent waiting for a worker, is charged to
    its client (its share of the server's script time: flowviz.serve.fair.Admission)."""
    import time

    from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

    from ..serve.fair import current_client

    if fragment:
        ctx = get_script_run_ctx()
        if ctx is None or not ctx.fragment_ids_this_run:  # inside a whole page's run: that run is charged
            return
    began, _began.t = getattr(_began, "t", None), None
    if began is not None:
        registry().admission.charge(current_client(), time.monotonic() - began - waited(reset=True))
