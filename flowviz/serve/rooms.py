"""Rooms: a lecturer's page published read-only to followers, kept where every replica reads it.

A room is one small JSON file ``<cache dir>/rooms/<CODE>.json`` (written atomically: a temporary file, then
``os.replace``), so N replicas sharing the disk cache (``FLOWVIZ_CACHE_DIR``) serve the same rooms: the
lecturer's replica writes it, any replica's followers read it (their streams watch its modification time).
The figures a room shows are stored once each, gzipped, by content hash: ``rooms/figs/<hash>.json.gz``.

Only the holder of a room's secret token (the session that opened it) can change it: the file keeps the
token's SHA-256, never the token. A room ends when its owner closes it or after ``idle_s`` seconds without a
sign of its owner. The limits (rooms open at once, followers per room) are the server's settings.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import FlowvizError
from .settings import Settings

__all__ = ["RoomError", "Limits", "RoomStore", "CODE_RE", "store_for"]

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read off a projector
CODE_LEN = 6
CODE_RE = re.compile(f"[{CODE_ALPHABET}]{{{CODE_LEN}}}")
HASH_RE = re.compile(r"[0-9a-f]{32}")
KEEP_FIGS = 64  # figure hashes a room remembers (followers may still be fetching the previous ones)
ENDED_KEEP_S = 600.0  # an ended room's file stays this long, so late followers read "this room has ended"
ALIVE_EVERY_S = 20.0  # the owner's sign of life is written at most this often


class RoomError(FlowvizError):
    """A room operation refused: its message is plain text for the page."""


@dataclass(frozen=True)
class Limits:
    max_rooms: int = 20
    max_followers: int = 300
    idle_s: float = 1800.0

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(max(1, settings.room_limit), max(1, settings.room_followers), max(1.0, settings.room_idle_s))


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RoomStore:
    """The rooms under ``root`` (``<root>/<CODE>.json`` and ``<root>/figs/``)."""

    def __init__(self, root: Path, limits: Limits | None = None):
        self.root, self.limits = Path(root), limits or Limits()
        self.figs = self.root / "figs"
        self._lock = threading.Lock()  # one writer at a time in this process (a room is written by one replica)

    # ------------------------------------------------------------------ files
    def path(self, code: str) -> Path | None:
        return self.root / f"{code}.json" if CODE_RE.fullmatch(code or "") else None

    def read(self, code: str) -> dict | None:
        """The room's whole record (its owner's digest included), or None for no such room."""
        p = self.path(code)
        if p is None:
            return None
        try:
            return json.loads(p.read_bytes())
        except (OSError, ValueError):
            return None

    def mark(self, code: str) -> tuple[int, int] | None:
        """What changes when the room's file is rewritten: (mtime in ns, size), or None without the file."""
        p = self.path(code)
        try:
            st = p.stat() if p is not None else None
        except OSError:
            return None
        return None if st is None else (st.st_mtime_ns, st.st_size)

    def ended(self, rec: dict | None, now: float | None = None) -> bool:
        """Closed by its owner, or idle for longer than the limit."""
        if rec is None:
            return True
        now = time.time() if now is None else now
        return rec.get("closed") is not None or now - float(rec.get("alive", 0)) > self.limits.idle_s

    def _write(self, rec: dict) -> None:
        _write_atomic(self.root / f"{rec['code']}.json", json.dumps(rec, separators=(",", ":")).encode())

    def _owned(self, code: str, token: str) -> dict:
        rec = self.read(code)
        if rec is None or not isinstance(token, str) or not hmac.compare_digest(rec.get("owner", ""), _digest(token)):
            raise RoomError("Only the page that opened this room can change it.")
        if self.ended(rec):
            raise RoomError("This room has ended.")
        return rec

    # ------------------------------------------------------------------ the owner's side
    def open_rooms(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return [
            p.stem for p in self.root.glob("*.json") if CODE_RE.fullmatch(p.stem) and not self.ended(self.read(p.stem))
        ]

    def open(self, state: dict | None = None) -> tuple[str, str]:
        """A new room: (code, secret token). Refused beyond ``max_rooms`` rooms open at once."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.figs.mkdir(exist_ok=True)
        with self._lock:
            self.sweep()
            if len(self.open_rooms()) >= self.limits.max_rooms:
                raise RoomError(
                    f"This server already has {self.limits.max_rooms} rooms open (its limit). Close a "
                    "room, or try again when one has ended."
                )
            for _ in range(100):
                code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LEN))
                try:  # claim the name: a replica opening the same code at the same time gets the next one
                    os.close(os.open(self.root / f"{code}.json", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                    break
                except FileExistsError:
                    continue
            token, now = secrets.token_urlsafe(24), time.time()
            self._write(
                {
                    "code": code,
                    "owner": _digest(token),
                    "opened": now,
                    "alive": now,
                    "closed": None,
                    "seq": 0,
                    "state": dict(state or {}),
                    "figs": [],
                }
            )
        return code, token

    def publish(self, code: str, token: str, state: dict, *, merge: bool = False) -> int:
        """Set the room's state (``merge``: update some of its keys); its new sequence number. The figures it
        names (``state["figures"]``, hashes from :meth:`put_figure`) become fetchable through this room."""
        with self._lock:
            rec = self._owned(code, token)
            new = {**rec["state"], **state} if merge else dict(state)
            rec["alive"] = time.time()
            if new == rec["state"]:
                return rec["seq"]
            figs = [h for h in new.get("figures", ()) if HASH_RE.fullmatch(str(h))]
            rec["figs"] = (figs + [h for h in rec["figs"] if h not in figs])[:KEEP_FIGS]
            rec["seq"], rec["state"], rec["published"] = rec["seq"] + 1, new, rec["alive"]
            self._write(rec)
            return rec["seq"]

    def alive(self, code: str, token: str) -> None:
        """The owner is still there (written at most every ``ALIVE_EVERY_S``)."""
        with self._lock:
            rec = self._owned(code, token)
            if time.time() - rec["alive"] >= ALIVE_EVERY_S:
                rec["alive"] = time.time()
                self._write(rec)

    def close(self, code: str, token: str) -> None:
        with self._lock:
            rec = self._owned(code, token)
            rec["closed"] = time.time()
            self._write(rec)

    # ------------------------------------------------------------------ figures
    def put_figure(self, fig_json: bytes) -> str:
        """Store a figure's JSON once (gzipped) under its content hash; the hash."""
        h = hashlib.sha256(fig_json).hexdigest()[:32]
        p = self.figs / f"{h}.json.gz"
        if not p.exists():
            self.figs.mkdir(parents=True, exist_ok=True)
            _write_atomic(p, gzip.compress(fig_json, 6, mtime=0))
        else:
            os.utime(p)
        return h

    def figure(self, code: str, h: str, rec: dict | None = None) -> bytes | None:
        """The gzipped JSON of figure ``h`` if room ``code`` (open) shows or showed it recently, else None."""
        rec = rec if rec is not None else self.read(code)
        if rec is None or self.ended(rec) or h not in rec.get("figs", ()):
            return None
        try:
            return (self.figs / f"{h}.json.gz").read_bytes()
        except OSError:
            return None

    # ------------------------------------------------------------------ followers' view
    def public(self, rec: dict) -> dict:
        """What a follower may see of a room: its code, sequence number, state, when that state was published
        (Unix time) and whether the room has ended."""
        return {
            "code": rec["code"],
            "seq": rec["seq"],
            "state": rec["state"],
            "ended": self.ended(rec),
            "published": rec.get("published", rec["opened"]),
            "idle_s": self.limits.idle_s,
        }

    def sweep(self) -> None:
        """Delete rooms ended long ago and figures no open room names (older than the idle limit)."""
        if not self.root.is_dir():
            return
        now, keep = time.time(), set()
        for p in self.root.glob("*.json"):
            rec = self.read(p.stem)
            if rec is None:
                if now - p.stat().st_mtime > 60:  # a name claimed and never written
                    p.unlink(missing_ok=True)
                continue
            if not self.ended(rec, now):
                keep.update(rec.get("figs", ()))
            elif (
                now - max(float(rec.get("closed") or 0), float(rec.get("alive", 0)) + self.limits.idle_s) > ENDED_KEEP_S
            ):
                p.unlink(missing_ok=True)
        for f in self.figs.glob("*.json.gz") if self.figs.is_dir() else ():
            if f.name[:32] not in keep and now - f.stat().st_mtime > self.limits.idle_s:
                f.unlink(missing_ok=True)


_stores: dict = {}
_stores_lock = threading.Lock()


def store_for(settings: Settings) -> RoomStore:
    """The rooms of a server: under its disk cache (shared by replicas), or a private folder of this process
    when the disk cache is off (one server only)."""
    from ..runfiles.cache import cache_dir

    d = cache_dir(settings)
    with _stores_lock:
        key = (str(d), settings.room_limit, settings.room_followers, settings.room_idle_s)
        if key not in _stores:
            root = d / "rooms" if d is not None else Path(tempfile.mkdtemp(prefix="flowviz-rooms-"))
            _stores[key] = RoomStore(root, Limits.of(settings))
        return _stores[key]
