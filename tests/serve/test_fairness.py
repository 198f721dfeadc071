"""Fairness across clients: the queue for workers is served round robin by client address, and one client's
pages, waiting runs and reruns are bounded (flowviz.serve.fair, the registry)."""

import threading

import pytest
from tiny import TINY, wait_for

from flowviz.core.errors import FlowvizError
from flowviz.serve.fair import Admission, FairQueue, current_client
from flowviz.serve.runs.registry import Registry
from flowviz.serve.settings import Settings


def test_the_queue_serves_clients_in_turn_oldest_first_within_each():
    q = FairQueue()
    swarm = [q.enter("10.0.0.1") for _ in range(5)]
    other = [q.enter("10.0.0.2") for _ in range(2)]
    order = []
    while (t := q.first()) is not None:
        order.append(t)
        q.leave(t, served=True)
    assert order == [swarm[0], other[0], swarm[1], other[1], swarm[2], swarm[3], swarm[4]]


def test_a_long_ticket_without_a_free_long_slot_lets_the_next_short_one_go():
    q = FairQueue()
    long_one = q.enter("a", long=True)
    short = q.enter("b")
    assert q.first(long_ok=False) == short and q.first(long_ok=True) == long_one


def test_a_client_s_pages_are_bounded_and_its_reruns_wait_their_turn():
    adm = Admission(sessions=3, reruns=10.0)
    for i in range(3):
        assert adm.enter(f"s{i}", "10.0.0.1") == (None, 0.0)
    why, _ = adm.enter("s3", "10.0.0.1")
    assert "3 pages open from your address" in why and "FLOWVIZ_CLIENT_SESSIONS" in why
    assert adm.enter("s0", "10.0.0.1")[0] is None  # a page already open reruns
    assert adm.enter("t0", "10.0.0.2")[0] is None and current_client() == "10.0.0.2"  # another address: its own
    adm.leave("s1")
    assert adm.enter("s3", "10.0.0.1")[0] is None
    delays = [adm.enter("s0", "10.0.0.1")[1] for _ in range(40)]  # a burst of 20, then 10 a second
    assert delays[0] == 0.0 and 0 < delays[-1] <= 2.0 and delays == sorted(delays)
    assert adm.enter("t0", "10.0.0.2")[1] == 0.0  # the other address is not slowed


def _start_as(reg, client: str, config):
    reg.admission.enter(f"session-{client}-{config.seed}", client)
    return reg.start(config)


@pytest.mark.slow
def test_a_swarm_of_runs_from_one_client_delays_only_itself():
    """8 sessions of one address start 8 runs (distinct seeds) on one worker; a light run from another address
    starts as soon as the worker is free, while most of the swarm still waits."""
    reg = Registry(
        max_workers=1, mode="thread", prestart=False, settings=Settings(cache_dir="off", warm=False, client_queued=0)
    )
    try:
        swarm = [_start_as(reg, "10.0.0.1", TINY.replace(seed=100 + i, train_steps=300)) for i in range(8)]
        assert wait_for(lambda: swarm[0].status == "training", 30)
        light = _start_as(reg, "10.0.0.2", TINY.replace(seed=7))
        assert reg.queued_before(light) == 1  # the swarm's next run only (round robin), not all seven
        assert wait_for(lambda: light.status != "queued", 60)
        waiting = sum(1 for r in swarm if r.status == "queued")
        assert waiting >= 5, [r.status for r in swarm]
        assert wait_for(lambda: light.finished, 60) and light.status == "done"
    finally:
        reg.shutdown()


def test_a_client_s_waiting_runs_are_bounded():
    reg = Registry(
        max_workers=1, mode="thread", prestart=False, settings=Settings(cache_dir="off", warm=False, client_queued=2)
    )
    try:
        runs = [_start_as(reg, "10.0.0.1", TINY.replace(seed=200 + i, train_steps=2000)) for i in range(3)]
        with pytest.raises(FlowvizError, match="runs from your address are already waiting"):
            _start_as(reg, "10.0.0.1", TINY.replace(seed=300))
        other = _start_as(reg, "10.0.0.2", TINY.replace(seed=301))  # another address is not refused
        assert other.client == "10.0.0.2" and all(r.client == "10.0.0.1" for r in runs)
    finally:
        reg.shutdown()


def test_a_thread_that_no_page_admitted_has_the_unknown_client():
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("c", current_client()))
    t.start()
    t.join()
    assert box["c"] == "unknown"


@pytest.mark.slow  # (streamlit's import)
def test_a_fragment_s_own_refresh_counts_against_its_client_s_reruns(monkeypatch):
    """The pages' fragments refresh every 0.5 and 1 s while a run is live, without the page's script (and so
    without admit()): each such run is counted too, so one client's 40 refreshing pages wait their turn; a whole
    page's run, counted by admit(), is not counted twice."""
    from types import SimpleNamespace

    from streamlit.runtime.scriptrunner_utils import script_run_context as src

    from flowviz.ui import session as server

    adm, slept = Admission(sessions=0, reruns=10.0), []
    monkeypatch.setattr(server, "registry", lambda: SimpleNamespace(admission=adm))
    monkeypatch.setattr(server, "client_address", lambda: "10.0.0.1")
    monkeypatch.setattr(server, "session_id", lambda: "s")
    monkeypatch.setattr("time.sleep", slept.append)
    ctx = SimpleNamespace(fragment_ids_this_run=None)
    monkeypatch.setattr(src, "get_script_run_ctx", lambda: ctx)
    for _ in range(40):
        server.pace()
    assert slept == []  # whole-page runs: admit() counts them
    ctx.fragment_ids_this_run = ["views"]
    for _ in range(40):
        server.pace()
    assert len(slept) == 40 - 20 and 0 < slept[0] <= slept[-1] <= 2.0  # a burst of 20, then 10 a second
    assert adm.enter("t", "10.0.0.2")[1] == 0.0  # another address is not slowed


@pytest.mark.parametrize(
    "ip, local",
    [
        ("127.0.0.1", True),
        ("127.3.2.1", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),  # a server listening on both families sees a local IPv4 client so
        ("10.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("2001:db8::1", False),
        ("fe80::1%eth0", False),
        ("not an address", False),
    ],
)
def test_a_loopback_connection_is_keyed_by_its_forwarded_address(ip, local):
    from flowviz.ui.session import _loopback

    assert _loopback(ip) is local


def test_script_time_is_shared_among_the_clients_using_it_and_a_swarm_waits_for_its_own_debt(monkeypatch):
    """Two clients share one second of script time a second: the one that used 5 s waits while the other is active, at
    its half share; alone it pays back at the whole rate; the other never waits for the first one's debt."""
    import flowviz.serve.fair as fair

    now = [1000.0]
    monkeypatch.setattr(fair.time, "monotonic", lambda: now[0])
    adm = Admission(sessions=0, reruns=0, seconds=1.0)
    assert adm.enter("a1", "swarm") == (None, 0.0)  # nothing used yet
    adm.charge("swarm", 5.0)  # its 40 pages' script runs took 5 CPU seconds
    assert adm.enter("a2", "swarm")[1] == pytest.approx(4.0)  # alone: owes 5, a burst of 1 s, paid at 1 s/s
    assert adm.enter("b1", "light") == (None, 0.0)  # another address: no wait for the swarm's debt
    assert adm.enter("a3", "swarm")[1] == pytest.approx(8.0)  # two active now: paid at half a second a second
    adm.charge("light", 0.2)
    assert adm.enter("b2", "light") == (None, 0.0)  # within its own burst
    now[0] += 4.0  # paid back 2 s at its half share
    assert adm.enter("a4", "swarm")[1] == pytest.approx(4.0)
    adm.charge("swarm", 100.0)
    assert adm.enter("a5", "swarm")[1] == 10.0  # at most max_wait
    now[0] += 11.0  # the light client was last seen 15 s ago: the swarm is alone again, at the whole rate
    assert adm.enter("a6", "swarm")[1] == 10.0 and adm._paid("swarm", now[0], 1.0) == pytest.approx(103.0 - 11.0)
    assert Admission(sessions=0, reruns=0, seconds=0).enter("x", "swarm") == (None, 0.0)  # 0: no bound


def test_a_page_and_a_fragment_run_are_charged_their_script_run_s_time(monkeypatch):
    from types import SimpleNamespace

    from streamlit.runtime.scriptrunner_utils import script_run_context as src

    from flowviz.ui import session as server

    adm = Admission(sessions=0, reruns=0, seconds=1.0)
    charged = []
    monkeypatch.setattr(adm, "charge", lambda c, s: charged.append((c, round(s, 6))))
    monkeypatch.setattr(server, "registry", lambda: SimpleNamespace(admission=adm))
    monkeypatch.setattr(server, "client_address", lambda: "10.0.0.1")
    monkeypatch.setattr(server, "session_id", lambda: "s")
    clock = [10.0]
    monkeypatch.setattr("time.monotonic", lambda: clock[0])
    ctx = SimpleNamespace(fragment_ids_this_run=None)
    monkeypatch.setattr(src, "get_script_run_ctx", lambda: ctx)
    import streamlit as st

    monkeypatch.setattr(st, "error", lambda *a: None)
    assert server.admit()
    clock[0] += 0.25
    server.pace()  # a fragment inside the whole page's run: counted with it
    server.settle(fragment=True)
    assert charged == []
    server.settle()
    assert charged == [("10.0.0.1", 0.25)]
    ctx.fragment_ids_this_run = ["views"]  # a fragment's own rerun
    server.pace()
    clock[0] += 0.125
    server.settle(fragment=True)
    assert charged[-1] == ("10.0.0.1", 0.125)
    server.settle()  # nothing admitted on this thread since: nothing charged twice
    assert len(charged) == 2


def test_time_a_page_waits_for_a_worker_is_not_charged_to_its_client(monkeypatch):
    """A page's run that waits for its run's pictures (an executor call, a run's final views coming) is
    charged only its own time."""
    from types import SimpleNamespace

    from streamlit.runtime.scriptrunner_utils import script_run_context as src

    import flowviz.serve.fair as fair
    from flowviz.ui import session as server

    adm = Admission(sessions=0, reruns=0, seconds=1.0)
    charged = []
    monkeypatch.setattr(adm, "charge", lambda c, s: charged.append(round(s, 6)))
    monkeypatch.setattr(server, "registry", lambda: SimpleNamespace(admission=adm))
    monkeypatch.setattr(server, "client_address", lambda: "10.0.0.1")
    monkeypatch.setattr(server, "session_id", lambda: "s")
    monkeypatch.setattr(src, "get_script_run_ctx", lambda: SimpleNamespace(fragment_ids_this_run=None))
    clock = [50.0]
    monkeypatch.setattr("time.monotonic", lambda: clock[0])
    with fair.waiting():  # before the run: not its wait
        clock[0] += 7.0
    assert server.admit()
    clock[0] += 0.5
    with fair.waiting():
        clock[0] += 30.0  # the worker makes the final pictures
    clock[0] += 0.25
    server.settle()
    assert charged == [0.75]


def test_an_executor_call_is_a_wait_of_the_calling_thread(executor):
    import time

    import flowviz.serve.fair as fair
    from flowviz.core.data import make_dataset
    from flowviz.training.train import train

    ex = executor("thread")
    r = train(TINY)
    fair.waited(reset=True)
    t = time.monotonic()
    ex.analyse(r.model, make_dataset(TINY))
    assert 0 < fair.waited() <= time.monotonic() - t
