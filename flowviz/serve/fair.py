"""Fairness across clients: the tasks waiting for a worker are served round robin by client address, and each
client's sessions, waiting runs and script reruns are bounded (flowviz.serve.settings).

A client is the address a session connects from (the page finds it: ``flowviz.ui.session.client_address``);
one classroom behind one NAT is one client, so the bounds are set for a hall of 200 (README, "Settings").
"""

from __future__ import annotations

import itertools
import threading
import time
from contextlib import contextmanager

__all__ = ["FairQueue", "Admission", "current_client", "waiting", "waited", "UNKNOWN"]

UNKNOWN = "unknown"  # the client of a task whose address nobody knows (the CLI, a test, a notebook)
_local = threading.local()


def current_client() -> str:
    """The client of this thread's page (set by :meth:`Admission.enter`), else UNKNOWN."""
    return getattr(_local, "client", None) or UNKNOWN


@contextmanager
def waiting():
    """This thread waits for a worker's answer (a page's run waiting for its pictures): not the server's script
    time, so not charged to its client (:meth:`Admission.charge`; :func:`waited`)."""
    t = time.monotonic()
    try:
        yield
    finally:
        _local.waited = getattr(_local, "waited", 0.0) + time.monotonic() - t


def waited(reset: bool = False) -> float:
    """Seconds this thread spent :func:`waiting` since the last reset."""
    w = getattr(_local, "waited", 0.0)
    if reset:
        _local.waited = 0.0
    return w


class FairQueue:
    """Tickets of tasks waiting for a worker; the one to go next is the oldest ticket of the client served least
    recently (round robin over the clients waiting: a client with many tickets waits for its own)."""

    def __init__(self):
        self._cond = threading.Condition()
        self._tickets: dict[int, tuple[str, bool]] = {}  # ticket -> (client, long)
        self._served: dict[str, int] = {}  # client -> the number of the grant it had last
        self._next = itertools.count()
        self._grants = itertools.count(1)

    def enter(self, client: str, long: bool = False) -> int:
        with self._cond:
            t = next(self._next)
            self._tickets[t] = (client or UNKNOWN, long)
            return t

    def leave(self, ticket: int, *, served: bool = False) -> None:
        with self._cond:
            client, _ = self._tickets.pop(ticket, (None, False))
            if served and client is not None:
                self._served[client] = next(self._grants)
                if len(self._served) > 4096:  # forget the clients served longest ago
                    for c, _ in sorted(self._served.items(), key=lambda kv: kv[1])[:1024]:
                        del self._served[c]
            self._cond.notify_all()

    def first(self, long_ok: bool = True) -> int | None:
        """The ticket whose turn it is (long ones only where ``long_ok``: a long lane slot is free)."""
        with self._cond:
            ok = [(self._served.get(c, 0), t) for t, (c, long) in self._tickets.items() if long_ok or not long]
            return min(ok)[1] if ok else None

    def wait(self, timeout: float) -> None:
        """Until a ticket leaves or a worker is given back (:meth:`poke`), at most ``timeout`` s."""
        with self._cond:
            self._cond.wait(timeout)

    def poke(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def waiting(self, client: str | None = None) -> int:
        with self._cond:
            return sum(1 for c, _ in self._tickets.values() if client is None or c == client)


class Admission:
    """Per client address: at most ``sessions`` live sessions, ``reruns`` script runs a second (a burst of
    twice that; over it a page waits for its turn, at most ``max_delay`` s), counted where the page starts;
    and a fair share of the server's page-script time: ``seconds`` of it a second (the wall-clock seconds of
    script runs, so on average that many runs at once) shared equally among the clients that ran a script in the
    last ``active_s``. A client alone may use all of it; one that has used more than its share (a burst of one
    second's worth allowed) waits until it is paid back, at most ``max_wait`` s, so a swarm from one address
    slows itself, not the others. Wall-clock, not CPU, time: a server starved of CPU by its own workers or
    its neighbours gives its script threads less than their CPU time says, and a swarm's many runs at once
    then take one another's turns, which their wall-clock time counts."""

    def __init__(
        self,
        sessions: int,
        reruns: float,
        *,
        seconds: float = 4.0,
        session_ttl: float = 120.0,
        max_delay: float = 2.0,
        max_wait: float = 10.0,
        active_s: float = 10.0,
    ):
        self.sessions, self.reruns, self.ttl, self.max_delay = sessions, reruns, session_ttl, max_delay
        self.seconds, self.max_wait, self.active_s = seconds, max_wait, active_s
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[str, float]] = {}  # session -> (client, last seen)
        self._tokens: dict[str, tuple[float, float]] = {}  # client -> (tokens, time)
        self._owed: dict[str, tuple[float, float]] = {}  # client -> (script seconds over its share, time)
        self._active: dict[str, float] = {}  # client -> when it last began a script run
        self.refused = 0

    def enter(self, session: str, client: str | None) -> tuple[str | None, float]:
        """A script run of ``session`` from ``client`` begins: (a refusal to show, or None; seconds to wait
        first). Sets this thread's client (:func:`current_client`)."""
        client = client or UNKNOWN
        _local.client = client
        now = time.monotonic()
        with self._lock:
            for s in [s for s, (_, t) in self._seen.items() if now - t > self.ttl]:
                del self._seen[s]  # a closed tab: not seen for ttl seconds
            if (
                session not in self._seen
                and self.sessions > 0
                and sum(1 for c, _ in self._seen.values() if c == client) >= self.sessions
            ):
                self.refused += 1
                return (
                    f"This server already has {self.sessions} pages open from your address "
                    "(FLOWVIZ_CLIENT_SESSIONS): close one and reload this page."
                ), 0.0
            self._seen[session] = (client, now)
            delay = 0.0
            if self.reruns > 0:
                tokens, t = self._tokens.get(client, (2 * self.reruns, now))
                tokens = min(2 * self.reruns, tokens + (now - t) * self.reruns) - 1
                self._tokens[client] = (tokens, now)
                delay = min(self.max_delay, max(0.0, -tokens / self.reruns))
            if self.seconds > 0:
                self._active[client] = now
                for c in [c for c, t in self._active.items() if now - t > self.active_s]:
                    del self._active[c]
                rate = self.seconds / len(self._active)  # this client's share a second now
                owed = self._paid(client, now, rate)
                delay = max(delay, min(self.max_wait, max(0.0, owed - self.seconds) / rate))
            return None, delay

    def charge(self, client: str | None, seconds: float) -> None:
        """A script run of ``client`` took ``seconds`` of the server's script time."""
        client = client or UNKNOWN
        now = time.monotonic()
        with self._lock:
            rate = self.seconds / max(1, len(self._active))  # paid back up to now first, at its share now
            self._owed[client] = (self._paid(client, now, rate) + max(0.0, seconds), now)
            if len(self._owed) > 4096:  # forget those that owe nothing
                for c in [c for c, (o, _) in self._owed.items() if o <= 0][:1024]:
                    del self._owed[c]

    def _paid(self, client: str, now: float, rate: float) -> float:
        """What ``client`` still owes once paid back at ``rate`` since it was last counted."""
        owed, t = self._owed.get(client, (0.0, now))
        owed = max(0.0, owed - (now - t) * rate)
        self._owed[client] = (owed, now)
        return owed

    def leave(self, session: str) -> None:
        with self._lock:
            self._seen.pop(session, None)

    def sessions_of(self, client: str) -> int:
        with self._lock:
            return sum(1 for c, _ in self._seen.values() if c == client)
