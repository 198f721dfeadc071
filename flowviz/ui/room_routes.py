"""The followers' side of a room: Starlette routes of the app's own ``st.App`` (no Streamlit session each).

- ``GET /room/CODE``: the follower page (assets/room.html), plain HTML with plotly.js served from here;
- ``GET /room/CODE/events``: the room's state as Server-Sent Events (``event: state``; ``event: end`` once the
  room has ended, and the stream closes);
- ``GET /room/CODE/state``: the same state once, as JSON;
- ``GET /room/CODE/fig/HASH``: a figure the room shows, its JSON by content hash (gzipped once when stored;
  ``ETag`` and ``Cache-Control: immutable``, so a second fetch costs nothing);
- ``GET /room/_assets/plotly-VERSION.min.js``: the installed plotly package's own plotly.js;
- ``POST /room/CODE/frame`` and ``/room/CODE/alive``: the lecturer's page only (the room's secret token in
  ``X-Room-Token``): the layer frame it shows, and its sign of life. Anything else sent is refused.

One poller per room and process watches the room's file (``flowviz.serve.rooms``: on the shared disk cache, so
any replica's followers follow a lecturer on another) and hands each new state, encoded once, to every stream.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import html
import json
import logging
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from ..core.lru import LRU
from ..serve.rooms import CODE_RE, HASH_RE, RoomError, RoomStore

log = logging.getLogger("flowviz.ui")

ASSETS = Path(__file__).resolve().parents[2] / "assets"
POLL_S = 0.1  # how often a room's file is looked at while it has followers here
PING_S = 15.0  # a comment on an idle stream, so proxies keep it and a gone follower is noticed
MAX_BODY = 256
KEEP_FIGS = 32  # gzipped figures kept in memory for the streams of this process


def _plotly_js() -> Path:
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


@functools.cache
def plotly_version() -> str:
    from plotly.offline import get_plotlyjs_version

    return get_plotlyjs_version()


@functools.cache
def _plotly_gz() -> bytes:
    return gzip.compress(_plotly_js().read_bytes(), 6, mtime=0)


def message_page(title: str, text: str, status: int) -> Response:
    """A plain page for a person (wrong code, ended room, limits): no script, no traceback."""
    body = (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><meta name='viewport' "
        f"content='width=device-width, initial-scale=1'><title>{html.escape(title)}</title><style>"
        f"body{{font:18px/1.5 system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;color:#222}}"
        f"</style></head><body>"
        f"<h1 style='font-size:1.4em'>{html.escape(title)}</h1><p>{html.escape(text)}</p>"
        f"<p><a href='/'>Open flowviz</a></p></body></html>"
    )
    return Response(
        body, status_code=status, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-store"}
    )


NO_ROOM = (
    "No such room",
    "There is no room with this code. Check the code on the lecturer's screen (six letters and digits) and try again.",
)
ENDED = ("This room has ended", "The lecturer has closed this room, or it was idle for too long.")


class _Watch:
    """The followers of one room in this process: one poller, each new state encoded once for all of them."""

    def __init__(self, hub: RoomHub, code: str):
        self.hub, self.code = hub, code
        self.listeners: set[asyncio.Event] = set()
        self.message: bytes | None = None  # the latest event, as sent
        self.rec: dict | None = None
        self.ended = False
        self.task: asyncio.Task | None = None

    def _load(self) -> bool:
        """Read the room if its file changed; True when there is a new message."""
        store = self.hub.store()
        rec = store.read(self.code)
        ended = store.ended(rec)
        if rec is None:
            self.ended = True
            self.message = b"event: end\ndata: {}\n\n"
            return True
        old = self.rec
        self.rec = rec
        if ended:
            self.ended = True
            self.message = b"event: end\ndata: " + json.dumps(store.public(rec)).encode() + b"\n\n"
            return True
        if old is not None and old.get("seq") == rec.get("seq"):
            return False
        for h in rec["state"].get("figures", ()):  # in memory before any follower hears of them: no disk per fetch
            if h not in self.hub.figs:
                gz = store.figure(self.code, h, rec)
                if gz is not None:
                    self.hub.keep(h, gz)
        self.message = (
            f"id: {rec['seq']}\nevent: state\ndata: ".encode()
            + json.dumps(store.public(rec), separators=(",", ":")).encode()
            + b"\n\n"
        )
        return True

    async def run(self):
        store, mark = self.hub.store(), None
        try:
            while self.listeners and not self.ended:
                now = store.mark(self.code)
                if now != mark or (self.rec is not None and store.ended(self.rec)):
                    mark = now
                    if await asyncio.to_thread(self._load):
                        for ev in list(self.listeners):
                            ev.set()
                await asyncio.sleep(POLL_S)
        finally:
            if self.hub.watches.get(self.code) is self:
                del self.hub.watches[self.code]
            for ev in list(self.listeners):
                ev.set()


class RoomHub:
    """This process's streams, per room; ``store`` gives the server's RoomStore."""

    def __init__(self, store):
        self.store = store
        self.watches: dict[str, _Watch] = {}
        self.figs: LRU[str, bytes] = LRU(KEEP_FIGS)  # gzipped figures served lately, by hash

    def keep(self, h: str, gz: bytes) -> None:
        self.figs.put(h, gz)

    def followers(self, code: str) -> int:
        w = self.watches.get(code)
        return len(w.listeners) if w is not None else 0

    async def stream(self, code: str, ev: asyncio.Event):
        w = self.watches.get(code)
        if w is None or w.ended:
            w = self.watches[code] = _Watch(self, code)
            await asyncio.to_thread(w._load)
        w.listeners.add(ev)
        if w.task is None:
            w.task = asyncio.get_running_loop().create_task(w.run())
        try:
            yield b"retry: 2000\n\n"
            sent = None
            while True:
                msg = w.message
                if msg is not None and msg is not sent:
                    sent = msg
                    yield msg
                if w.ended:
                    return
                ev.clear()
                if w.message is not sent:
                    continue
                try:
                    await asyncio.wait_for(ev.wait(), PING_S)
                except TimeoutError:
                    yield b": ping\n\n"
        finally:
            w.listeners.discard(ev)


def routes(store_of) -> list[Route]:
    """The room routes; ``store_of()`` gives the server's RoomStore (made on first use)."""
    hub = RoomHub(store_of)

    def room_or_none(code: str) -> tuple[RoomStore, dict | None]:
        store = store_of()
        return store, (store.read(code) if CODE_RE.fullmatch(code) else None)

    async def page(request: Request) -> Response:
        code = request.path_params["code"].upper()
        store, rec = await asyncio.to_thread(room_or_none, code)
        if rec is None:
            return message_page(*NO_ROOM, 404)
        if store.ended(rec):
            return message_page(*ENDED, 410)
        if hub.followers(code) >= store.limits.max_followers:
            return message_page(
                "This room is full",
                f"This room already has {store.limits.max_followers} "
                "followers on this server (its limit). Try again in a while.",
                503,
            )
        body = _follower_html().replace("__CODE__", code).replace("__PLOTLY__", plotly_version())
        return Response(body, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-store"})

    async def events(request: Request) -> Response:
        code = request.path_params["code"]
        store, rec = await asyncio.to_thread(room_or_none, code)
        if rec is None:
            return PlainTextResponse(NO_ROOM[1], 404)
        if store.ended(rec):
            return PlainTextResponse(ENDED[1], 410)
        if hub.followers(code) >= store.limits.max_followers:
            return PlainTextResponse(f"This room is full ({store.limits.max_followers} followers on this server).", 503)
        return StreamingResponse(
            hub.stream(code, asyncio.Event()),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def state(request: Request) -> Response:
        code = request.path_params["code"]
        store, rec = await asyncio.to_thread(room_or_none, code)
        if rec is None:
            return JSONResponse({"error": NO_ROOM[1]}, 404)
        return JSONResponse(
            store.public(rec), headers={"Cache-Control": "no-store"}, status_code=410 if store.ended(rec) else 200
        )

    async def figure(request: Request) -> Response:
        code, h = request.path_params["code"], request.path_params["hash"]
        if not HASH_RE.fullmatch(h):
            return PlainTextResponse("No such figure.", 404)
        etag = f'"{h}"'
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"ETag": etag})
        w = hub.watches.get(code)
        gz = None
        if w is not None and w.rec is not None and not w.ended and h in w.rec.get("figs", ()):
            gz = hub.figs.get(h)  # a hall fetching a new figure at once: no file read per follower
        if gz is None:
            store, rec = await asyncio.to_thread(room_or_none, code)
            gz = await asyncio.to_thread(store.figure, code, h, rec) if rec is not None else None
            if gz is not None:
                hub.keep(h, gz)
        if gz is None:
            return PlainTextResponse("No such figure.", 404)
        headers = {"ETag": etag, "Cache-Control": "public, max-age=31536000, immutable", "Vary": "Accept-Encoding"}
        if "gzip" in request.headers.get("accept-encoding", ""):
            return Response(gz, media_type="application/json", headers={**headers, "Content-Encoding": "gzip"})
        return Response(gzip.decompress(gz), media_type="application/json", headers=headers)

    async def plotly_js(request: Request) -> Response:
        if request.path_params["version"] != plotly_version():
            return PlainTextResponse("Not found.", 404)
        headers = {"Cache-Control": "public, max-age=31536000, immutable", "Vary": "Accept-Encoding"}
        if "gzip" in request.headers.get("accept-encoding", ""):
            gz = await asyncio.to_thread(_plotly_gz)
            return Response(gz, media_type="text/javascript", headers={**headers, "Content-Encoding": "gzip"})
        data = await asyncio.to_thread(_plotly_js().read_bytes)
        return Response(data, media_type="text/javascript", headers=headers)

    async def owner_post(request: Request, apply) -> Response:
        code = request.path_params["code"]
        token = request.headers.get("x-room-token", "")
        body = await request.body()
        if not token or len(body) > MAX_BODY or not CODE_RE.fullmatch(code):
            return PlainTextResponse("Refused: only the page that opened this room can change it.", 403)
        try:
            data = json.loads(body or b"{}")
            if not isinstance(data, dict):
                raise ValueError
            await asyncio.to_thread(apply, store_of(), code, token, data)
        except RoomError as e:  # (a FlowvizError is a ValueError: this comes first)
            return PlainTextResponse(f"Refused: {e}", 403)
        except (ValueError, TypeError):
            return PlainTextResponse("Refused: a bad request.", 400)
        return Response(status_code=204)

    def set_frame(store, code, token, data):
        k = data.get("k")
        if k is not None and (not isinstance(k, (int, str)) or not str(k).isdigit() or int(k) > 100_000):
            raise ValueError
        store.publish(code, token, {"k": None if k is None else int(k)}, merge=True)

    async def frame(request: Request) -> Response:
        return await owner_post(request, set_frame)

    async def alive(request: Request) -> Response:
        return await owner_post(request, lambda store, code, token, data: store.alive(code, token))

    return [
        Route("/room/_assets/plotly-{version}.min.js", plotly_js, methods=["GET"]),
        Route("/room/{code}", page, methods=["GET"]),
        Route("/room/{code}/events", events, methods=["GET"]),
        Route("/room/{code}/state", state, methods=["GET"]),
        Route("/room/{code}/fig/{hash}", figure, methods=["GET"]),
        Route("/room/{code}/frame", frame, methods=["POST"]),
        Route("/room/{code}/alive", alive, methods=["POST"]),
    ]


@functools.cache
def _follower_html() -> str:
    return (ASSETS / "room.html").read_text()


def app_routes() -> list[Route]:
    """The routes of app.py's st.App: the rooms of this server's run registry's settings."""

    @functools.cache
    def store():
        from ..serve.rooms import store_for
        from .shared import registry

        return store_for(registry().settings)

    return routes(store)
