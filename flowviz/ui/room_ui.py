"""The lecturer's side of a room: "Open a room" in the sidebar (code, link, QR code), and what the page shows
published to the room as it changes.

page.py calls :func:`panel` once per page run (sidebar) and :func:`publish` where the views are drawn (each
views run, also while a run trains). The figures published are the very ones the page draws: ``figcache``
tells :func:`_seen` of each figure it hands to this session's page; the side-by-side figure is built here. A
background thread turns each into JSON once (stored by content hash in ``flowviz.serve.rooms``) and writes the
room's state: config and link, view, instrument, layer frame k, training step, probe, the scenario's text.
The layer frame the lecturer scrubs or plays lives in the browser: a small script on the lecturer's page
(:func:`_bridge`) posts it to ``/room/CODE/frame`` with the room's secret token, and a sign of life to
``/room/CODE/alive``.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from dataclasses import dataclass, field

import streamlit as st

from ..core.presets import preset_info
from ..plots.notation import typeset
from ..serve.rooms import CODE_RE, RoomError, RoomStore, store_for
from . import figcache, links
from .notices import notice
from .shared import registry

log = logging.getLogger("flowviz.ui")

ROOM_KEY = "room"  # session key of this page's Room (the room it drives)
LINK_USED = "room_link_used"  # room=open of the link has been acted on
DEBOUNCE_S = 0.05  # figures of one views run are published together
SETTLE_S = 1.0  # a views run that draws no figure through figcache (Dictionary, a sweep) is published after this
SIDE_BY_SIDE = "Side by side"


def store() -> RoomStore:
    return store_for(registry().settings)


@dataclass
class Room:
    """A room this session drives: its code, its secret token, and the views run being published."""

    code: str
    token: str
    figures: list = field(default_factory=list)  # figures drawn in the current views run, in order
    shown: list = field(default_factory=list)  # the figures of the last views run of the same run and view
    base: dict = field(default_factory=dict)  # the state of the current views run, without its figures
    mark: tuple = ()  # (run key, view): k is reset when it changes
    side: tuple | None = None  # (views, compared views, labels, probe paths) to build the side-by-side figure


# ---------------------------------------------------------------------------------------------- publishing
class _Publisher:
    """One thread: the latest pending state of each room is published once its views run has settled."""

    def __init__(self):
        self.cond = threading.Condition()
        self.pending: dict[str, tuple[float, Room, dict, list, tuple | None]] = {}
        self.json: dict[int, tuple[object, str]] = {}  # id(fig) -> (fig, hash): each figure serialised once
        self.sides: dict[tuple, tuple[tuple, object]] = {}
        self.thread: threading.Thread | None = None

    def submit(self, room: Room, base: dict, figures: list, side, delay: float = DEBOUNCE_S) -> None:
        with self.cond:
            self.pending[room.code] = (time.monotonic() + delay, room, base, list(figures), side)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._loop, name="flowviz-rooms", daemon=True)
                self.thread.start()
            self.cond.notify()

    def _loop(self):
        while True:
            with self.cond:
                while not self.pending:
                    self.cond.wait()
                code, (t, room, base, figs, side) = min(self.pending.items(), key=lambda kv: kv[1][0])
                wait = t - time.monotonic()
                if wait > 0:
                    self.cond.wait(wait)
                    continue
                del self.pending[code]
            try:
                self._publish(room, base, figs, side)
            except RoomError:
                pass  # the room ended meanwhile
            except Exception:
                log.exception("room %s: publishing failed", code)

    def _hash(self, s: RoomStore, fig) -> str:
        hit = self.json.get(id(fig))
        if hit is not None and hit[0] is fig:
            return hit[1]
        h = s.put_figure(fig.to_json().encode())
        self.json[id(fig)] = (fig, h)
        while len(self.json) > 64:
            self.json.pop(next(iter(self.json)))
        return h

    def _side(self, side):
        """The side-by-side figure of (views, compared views, labels, probe paths, present), built once."""
        from ..plots.sweep import side_by_side
        from .views.lecture import style

        v, w, labels, paths, present = side
        key = (id(v), id(w), labels, present, None if paths is None else tuple(id(p) for p in paths))
        hit = self.sides.get(key)
        if hit is not None and hit[0][0] is v and hit[0][1] is w:
            return hit[1]
        fig = style(side_by_side(v, w, labels, probe_paths=paths), present)
        self.sides = {key: ((v, w), fig)}
        return fig

    def _publish(self, room: Room, base: dict, figs: list, side) -> None:
        s = store()
        if side is not None:
            figs = [self._side(side)] + figs
        state = dict(base, figures=[self._hash(s, f) for f in figs])
        s.publish(room.code, room.token, state, merge=True)  # k stays as the lecturer's page last posted it


_publisher = _Publisher()


def _current() -> Room | None:
    try:
        return st.session_state.get(ROOM_KEY)
    except Exception:  # no session (a test calling figcache directly)
        return None


def _seen(fig) -> None:
    """figcache's observer: a figure handed to this session's page joins its room's current views run."""
    room = _current()
    if room is None or not room.mark:
        return
    if any(f is fig for f in room.figures):
        return
    room.figures.append(fig)
    # a view redrawn (live training) keeps its other figures until their new ones come: no flicker
    figs = room.figures + room.shown[len(room.figures) :]
    _publisher.submit(room, _state(room), figs, room.side)


figcache.OBSERVERS.append(_seen)


def _state(room: Room) -> dict:
    """The room's state now: the base of the views run with the instrument and k as the page has them."""
    base = dict(room.base)
    if base.get("view") == "Instruments":
        base["instrument"] = st.session_state.get("instrument")
    return base


def _step_of(run) -> tuple[int | None, int | None]:
    """The training step shown and the run's length. (The page shows the latest snapshot; a training-step
    slider, where the page has one, takes its place here.)"""
    snap = run.latest if run is not None else None
    return (snap.step if snap is not None else None), (run.config.train_steps if run is not None else None)


def _text(state) -> tuple[str | None, str]:
    if not state.scenario:
        return None, ""
    info = preset_info(state.scenario)
    text = typeset(info["description"], latex=False).replace("**", "").replace("`", "")  # shown as plain text
    return typeset(info["title"], latex=False), text


def publish(state, run, views, view: str, compared=None) -> None:
    """A views run of the page begins: the room (if this page drives one) shows ``view`` of ``run`` from now
    on; the figures the page draws in this run follow (``_seen``)."""
    room = _current()
    if room is None:
        return
    try:
        s = store()
        rec = s.read(room.code)
        if s.ended(rec):
            del st.session_state[ROOM_KEY]
            return
        mark = (run.key if run is not None else None, view)
        step, steps = _step_of(run)
        title, text = _text(state)
        # the explorer's own page: the config shown, every control at hand (no hidden groups, no projector mode)
        link = links.link_of(
            run.config if run is not None else state.config,
            {**state.flags, "room": room.code, "hide": frozenset(), "present": False},
        )
        name = links.view_of(view, st.session_state.get("instrument") if view == "Instruments" else None)
        link.pop("view", None)
        if name is not None:  # the explorer opens on the view shown (view=: links.VIEWS)
            link["view"] = name
        room.base = {
            "title": title,
            "text": text,
            "view": view,
            "instrument": None,
            "step": step,
            "train_steps": steps,
            "probe": list(state.probe) if state.probe is not None else None,
            "scenario": state.scenario,
            "present": state.present,
            "link": link,
            "status": None
            if run is None
            else (f"{run.status}" + (" (live view)" if views is not None and views.live else "")),
        }
        if mark != room.mark:  # another run or view: its picture opens on its first frame
            room.base["k"] = None
            room.shown = []
        else:
            room.shown = room.figures + room.shown[len(room.figures) :]
        room.mark, room.figures = mark, []
        room.side = None
        if view == SIDE_BY_SIDE and compared is not None and views is not None:
            w = compared.views()
            if w is not None:
                room.side = _side_args(state, run, compared, views, w)
        _publisher.submit(room, _state(room), room.shown, room.side, DEBOUNCE_S if room.side is not None else SETTLE_S)
        s.alive(room.code, room.token)
    except RoomError:
        st.session_state.pop(ROOM_KEY, None)
    except Exception:  # a room must never take the page down
        log.exception("room publish failed")


def _side_args(state, run, cmp_run, v, w):
    from .views.instruments import probe_path

    changes = links.compare_changes(state.scenario)
    right = ", ".join(f"{k} = {val}" for k, val in changes.items())
    left = ", ".join(f"{k} = {getattr(run.config, k)}" for k in changes)
    paths = (probe_path(state, run), probe_path(state, cmp_run)) if state.probe is not None else None
    return v, w, (left, right), paths, state.present


# ---------------------------------------------------------------------------------------------- the panel
def _open(state) -> None:
    try:
        code, token = store().open()
    except RoomError as e:
        notice(str(e), "error", st.sidebar)
        return
    st.session_state[ROOM_KEY] = Room(code, token)
    st.session_state["room_show_qr"] = True
    st.rerun()


def _close() -> None:
    room = st.session_state.pop(ROOM_KEY, None)
    if room is not None:
        try:
            store().close(room.code, room.token)
        except RoomError:
            pass


def room_url(code: str) -> str:
    """The room's address on the server the lecturer's browser uses."""
    base = (st.context.url or "").rstrip("/")
    if base.count("/") > 2:  # a page path: the room is on the app's own root
        base = "/".join(base.split("/")[:3])
    return f"{base}/room/{code}"


@functools.lru_cache(maxsize=16)
def qr_png(text: str, scale: int) -> bytes:
    import io

    import segno

    buf = io.BytesIO()
    segno.make(text, error="m").save(buf, kind="png", scale=scale, border=2)
    return buf.getvalue()


def _qr_closed():
    st.session_state["room_show_qr"] = False


@st.dialog("Follow this page on your own screen", width="large", on_dismiss=_qr_closed)
def _qr_dialog(code: str, url: str) -> None:
    st.markdown(
        f"<div style='text-align:center;font-size:3.2em;font-weight:700;letter-spacing:.12em'>{code}</div>",
        unsafe_allow_html=True,
    )
    import base64

    png = base64.b64encode(qr_png(url, 12)).decode()
    st.html(
        f"<img alt='QR code of {url}' src='data:image/png;base64,{png}' style='display:block;margin:0 auto;"
        "width:min(100%, 58vh);image-rendering:pixelated'>"
    )
    st.markdown(link_html(url), unsafe_allow_html=True)


def link_html(url: str) -> str:
    """The room's link, large, breaking only after a "/" where the screen is narrow (a phone): the code and the
    address each stay whole."""
    import html

    parts = url.split("/")
    spans = "/<wbr>".join(f"<span style='white-space:nowrap'>{html.escape(p)}</span>" for p in parts)
    return f"<div style='text-align:center;font-size:min(1.4em, 5vw);overflow-wrap:normal'>{spans}</div>"


def panel(state) -> None:
    """The sidebar's room box: "Open a room", or the open room's code, link, QR code and "Close room"; a
    page opened from a room has "Back to the room"."""
    ss = st.session_state
    flag = state.flags.get("room")
    room = ss.get(ROOM_KEY)
    if room is None and flag == "open" and not ss.get(LINK_USED):
        ss[LINK_USED] = True
        _open(state)
    if state.flags.get("k") is not None:
        st.sidebar.html(_open_frame(int(state.flags["k"])), unsafe_allow_javascript=True)
    box = st.sidebar.expander("Room: the hall follows this page", expanded=room is not None)
    if flag and flag != "open" and room is None:
        box.link_button(f"Back to the room {flag}", f"/room/{flag}", width="stretch")
    if room is None:
        if box.button(
            "Open a room",
            key="room_open",
            width="stretch",
            help="students open the room's link (or scan its QR code) and see this page's picture live",
        ):
            _open(state)
        return
    url = room_url(room.code)
    box.markdown(f"Room **{room.code}** · [{url}]({url})")
    box.image(qr_png(url, 8), width="stretch")
    c1, c2 = box.columns(2)
    if c1.button("Large QR", key="room_qr", width="stretch"):
        ss["room_show_qr"] = True
    if ss.get("room_show_qr"):  # open until dismissed (a full rerun that did not draw it would close it)
        _qr_dialog(room.code, url)
    if c2.button("Close room", key="room_close", width="stretch"):
        _close()
        st.rerun()
    box.caption(
        f"Followers see what this page shows; the room ends when closed or after "
        f"{store().limits.idle_s / 60:.0f} minutes without this page."
    )
    st.sidebar.html(_bridge(room), unsafe_allow_javascript=True)


def _bridge(room: Room) -> str:
    """The lecturer's page's script: the layer frame shown (slider or play) and a sign of life, posted to
    the room with its token. It stops when its marker leaves the page (the room closed)."""
    cfg = json.dumps({"code": room.code, "token": room.token})
    assert CODE_RE.fullmatch(room.code)
    return f"""<div id="flowviz-room-{room.code}" style="display:none"></div><script>
(function () {{
  const cfg = {cfg};
  const marker = () => document.getElementById("flowviz-room-" + cfg.code);
  if (window.__flowvizRoom && window.__flowvizRoom.code === cfg.code) return;
  if (window.__flowvizRoom) clearInterval(window.__flowvizRoom.timer);
  let sent = null, queued = null, inflight = false, lastAlive = Date.now();
  function post(path, body) {{
    return fetch("/room/" + cfg.code + "/" + path, {{method: "POST", headers: {{"X-Room-Token": cfg.token,
      "Content-Type": "application/json"}}, body: JSON.stringify(body)}});
  }}
  async function flush() {{
    if (inflight || queued === null || queued === sent) return;
    inflight = true;
    const k = queued;
    try {{ await post("frame", {{k: k}}); sent = k; }} catch (e) {{}}
    inflight = false;
    if (queued !== sent) flush();
  }}
  function frame(name) {{ if (/^[0-9]+$/.test(String(name))) {{ queued = Number(name); flush(); }} }}
  function attach() {{
    document.querySelectorAll(".js-plotly-plot").forEach((gd) => {{
      if (gd.__flowvizRoom === cfg.code || typeof gd.on !== "function") return;
      gd.__flowvizRoom = cfg.code;
      gd.on("plotly_sliderchange", (e) => {{ try {{ frame(e.step.args[0][0]); }} catch (x) {{}} }});
      gd.on("plotly_animatingframe", (e) => frame(e.name));
    }});
  }}
  const timer = setInterval(() => {{
    if (!marker()) {{ clearInterval(timer); window.__flowvizRoom = null; return; }}
    attach();
    if (Date.now() - lastAlive > 60000) {{ lastAlive = Date.now(); post("alive", {{}}).catch(() => {{}}); }}
  }}, 300);
  window.__flowvizRoom = {{code: cfg.code, timer: timer}};
}})();
</script>"""


def _open_frame(k: int) -> str:
    """A page opened with k=N (Explore from here): each animated figure drawn in its first minute opens on
    frame N."""
    return f"""<div id="flowviz-open-k" style="display:none"></div><script>
(function () {{
  if (window.__flowvizK) return;
  window.__flowvizK = true;
  const name = "{int(k)}", t0 = Date.now();
  const timer = setInterval(() => {{
    if (Date.now() - t0 > 60000) {{ clearInterval(timer); return; }}
    document.querySelectorAll(".js-plotly-plot").forEach((gd) => {{
      const td = gd._transitionData;
      if (gd.__flowvizK || !td || !td._frameHash || !td._frameHash[name] || !window.Plotly && !gd.on) return;
      gd.__flowvizK = true;
      const P = window.Plotly || (gd._context && gd._context._Plotly);
      const sl = (gd.layout.sliders || [])[0];
      const i = sl && sl.steps ? sl.steps.findIndex((s) => s.args && s.args[0] && String(s.args[0][0]) === name) : -1;
      gd.emit && gd.emit("flowviz_open_frame", name);
      document.body.dataset.flowvizK = name;
      if (P) {{
        P.animate(gd, [name], {{mode: "immediate", frame: {{duration: 0, redraw: true}}, transition: {{duration: 0}}}});
        if (i >= 0) P.relayout(gd, {{"sliders[0].active": i}});
      }}
    }});
  }}, 250);
}})();
</script>"""
