"""Rooms: a lecturer's page followed read-only at /room/CODE.

The store (flowviz.serve.rooms) alone: tokens, limits, idle end, figures reachable only through their room.
Then two live servers sharing one disk cache (two replicas): a lecturer in Chromium on the first, followers in
Chromium and as plain HTTP/SSE clients on both; screenshots of the follower page and the QR code at 1280 x 720
and 390 x 844 (in $ROOM_SHOTS, default test-artifacts/).
"""

import json
import os
import re
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from tiny import ROOT, TINY, LiveServer, wait_for

from flowviz.serve.rooms import Limits, RoomError, RoomStore

SHOTS = Path(os.environ.get("ROOM_SHOTS", ROOT / "test-artifacts"))
CFG = TINY.replace(n_steps=6, train_steps=40)


# ------------------------------------------------------------------------------------------ the store alone
def test_only_the_token_drives_a_room_and_its_figures_are_reached_only_through_it(tmp_path):
    s = RoomStore(tmp_path, Limits(max_rooms=2, max_followers=5, idle_s=60))
    code, token = s.open()
    other, other_token = s.open()
    with pytest.raises(RoomError, match="2 rooms open"):  # the limit, in words
        s.open()
    h = s.put_figure(b'{"data": []}')
    assert s.publish(code, token, {"view": "Transport", "figures": [h]}) == 1
    assert s.publish(code, token, {"view": "Transport", "figures": [h]}) == 1  # nothing changed: same number
    for bad in (other_token, "", token + "x"):
        with pytest.raises(RoomError, match="Only the page that opened"):
            s.publish(code, bad, {"view": "Dictionary"})
    assert s.read(code)["state"]["view"] == "Transport" and token not in (tmp_path / f"{code}.json").read_text()
    assert s.figure(code, h) is not None and s.figure(other, h) is None  # a code reaches its own figures only
    assert s.publish(code, token, {"k": 3}, merge=True) == 2 and s.read(code)["state"]["figures"] == [h]
    s.close(code, token)
    assert s.ended(s.read(code)) and s.figure(code, h) is None
    with pytest.raises(RoomError, match="ended"):
        s.publish(code, token, {"view": "Transport"})
    rec = s.read(other)
    rec["alive"] = time.time() - 61  # idle past the limit
    s._write(rec)
    assert s.ended(s.read(other)) and s.open_rooms() == []
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary file left


def test_the_room_link_flags_are_read_once_and_only_the_room_code_is_kept():
    from flowviz.ui import links

    link = links.parse_link({"view": "Transport", "k": "3", "room": "open", "scenario": "moons"})
    assert (link.view, link.flags["k"], link.flags["room"], link.notices) == ("Transport", 3, "open", ())
    written = links.link_of(link.config, link.flags)
    assert "room" not in written and (written["view"], written["k"]) == ("transport", "3")  # one room opened
    assert links.link_of(link.config, {**link.flags, "room": "ABC234"})["room"] == "ABC234"  # Back to the room
    bad = links.parse_link({"view": "Nope", "k": "-1", "room": "abc"})
    assert (bad.view, bad.flags["k"], bad.flags["room"]) == (None, None, None) and len(bad.notices) == 3


@pytest.mark.slow
def test_a_lecturer_s_probe_at_a_kept_training_step_is_computed_on_that_step_s_weights():
    """A page showing a kept step (a room's lecturer scrubbing training) probes that step's model."""
    import numpy as np

    from flowviz.serve.runs.registry import Registry
    from flowviz.serve.settings import Settings
    from flowviz.training import instruments as ins

    reg = Registry(max_workers=1, mode="thread", settings=Settings(cache_dir="off", warm=False))
    try:
        run = reg.start(CFG)
        assert wait_for(lambda: run.finished, 120) and run.status == "done", run.error
        step = min(run.kept)
        at = run.at(step)
        assert at is not None and at.latest.step == step < run.latest.step
        got = reg.compute(at, "probe_path", probe=[0.5, 0.25])
        want = ins.flow_paths(run.model(step), np.asarray([[0.5, 0.25]], np.float32))[:, 0].numpy()
        np.testing.assert_array_equal(got, want)
        assert not np.array_equal(got, reg.compute(run, "probe_path", probe=[0.5, 0.25]))  # not the last weights
    finally:
        reg.shutdown()


# ------------------------------------------------------------------------------------------ live servers
class Follower(threading.Thread):
    """A plain HTTP client on a room's event stream: every state it receives, and whether the stream ended."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.states, self.ended, self.error = url, [], False, None
        self.start()

    def run(self):
        try:
            with urllib.request.urlopen(self.url, timeout=120) as r:
                event = None
                for raw in r:
                    line = raw.decode().rstrip("\n")
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: ") and event == "state":
                        self.states.append(json.loads(line[6:]))
                    elif line.startswith("data: ") and event == "end":
                        self.ended = True
            self.ended = True
        except Exception as e:  # noqa: BLE001
            self.error = e

    def saw(self, pred) -> bool:
        return any(pred(s["state"]) for s in list(self.states))


def _get(url: str, method: str = "GET", data: bytes | None = None, headers=None):
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, data=data, method=method, headers=headers or {}), timeout=30
        ) as r:
            return r.status, r.read().decode(errors="replace"), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace"), e.headers


@pytest.fixture(scope="module")
def replicas():
    """Two servers sharing one disk cache (FLOWVIZ_CACHE_DIR), started side by side."""
    from helpers.browser import CHROMIUM

    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing")
    cache = tempfile.mkdtemp(prefix="flowviz-room-")
    env = {"FLOWVIZ_CACHE_DIR": cache, "FLOWVIZ_WARM": "0", "FLOWVIZ_WORKERS": "1", "FLOWVIZ_ROOM_FOLLOWERS": "8"}
    servers = [LiveServer(env=env, wait_s=180), LiveServer(env=env, wait_s=180)]  # two at once on a busy box
    urls = [None, None]

    def start(i):
        urls[i] = servers[i].__enter__()

    threads = [threading.Thread(target=start, args=(i,)) for i in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    try:
        assert all(urls), "a server did not start"
        yield urls[0], urls[1], Path(cache) / "rooms"
    finally:
        started = [s for s in servers if getattr(s, "proc", None) is not None]
        for s in started:  # both stop at once
            s.proc.terminate()
        for s in started:
            s.__exit__()


def _radio(page, label):
    """Pick the view ``label`` (again if a rerun of the busy page lost the click)."""
    option = page.locator("[data-testid='stRadio'] [role='radiogroup'] label").filter(has_text=label).first
    for _ in range(3):
        option.click()
        if wait_for(lambda: option.locator("input").is_checked(), 20):
            return


def _choose(page, label, option):
    """Pick ``option`` in the sidebar's selectbox ``label`` (again if a rerun of the page closed its list)."""
    box = page.locator("[data-testid='stSidebar'] [data-testid='stSelectbox']").filter(has_text=label).first
    for _ in range(4):
        box.scroll_into_view_if_needed()
        box.click()
        try:
            page.get_by_role("option", name=option).click(timeout=8_000)
            return
        except Exception:  # noqa: BLE001
            page.keyboard.press("Escape")
    raise AssertionError(f"{option!r} could not be picked in {label!r}")


def _room_code(page) -> str:
    page.wait_for_function("() => /\\/room\\/[A-Z2-9]{6}/.test(document.body.innerText)", timeout=60_000)
    return re.search(r"/room/([A-Z2-9]{6})", page.inner_text("body")).group(1)


def _follower_state(page) -> dict:
    return page.evaluate("() => ({...document.body.dataset})")


@pytest.mark.browser
@pytest.mark.slow
def test_a_hall_follows_the_lecturer_across_two_replicas(replicas, browser):
    a, b, rooms = replicas
    SHOTS.mkdir(parents=True, exist_ok=True)
    q = "&".join(f"{k}={v}" for k, v in CFG.to_query().items())

    # the lecturer opens the page straight into a room: the large QR code is shown for the projector
    lect = browser.new_page(viewport={"width": 1280, "height": 720})
    lect.goto(f"{a}/?{q}&room=open")
    lect.wait_for_selector("[role='dialog'] img", timeout=60_000)
    code = _room_code(lect)
    in_dialog = f"() => (document.querySelector(\"[role='dialog']\")?.innerText || '').includes('{code}')"
    lect.wait_for_function(in_dialog, timeout=30_000)  # the code drawn (the dialog's first line)
    time.sleep(0.5)
    lect.screenshot(path=str(SHOTS / "room_qr_1280x720.png"))
    lect.set_viewport_size({"width": 390, "height": 844})
    time.sleep(0.8)
    lect.wait_for_function(in_dialog, timeout=30_000)
    lect.screenshot(path=str(SHOTS / "room_qr_390x844.png"))
    lect.set_viewport_size({"width": 1280, "height": 720})
    lect.keyboard.press("Escape")
    lect.wait_for_selector("[role='dialog']", state="detached", timeout=10_000)
    lect.get_by_role("button", name="Close room").scroll_into_view_if_needed()
    time.sleep(0.5)
    lect.screenshot(path=str(SHOTS / "room_panel_1280x720.png"))  # the sidebar's room box
    assert (rooms / f"{code}.json").is_file()

    # followers: plain HTTP clients on both replicas, one Chromium on each
    subs = [Follower(f"{a}/room/{code}/events") for _ in range(2)] + [Follower(f"{b}/room/{code}/events")]
    fol = browser.new_page(viewport={"width": 1280, "height": 720})
    fol.goto(f"{a}/room/{code}")
    phone = browser.new_page(viewport={"width": 390, "height": 844})
    phone.goto(f"{b}/room/{code}")  # the second replica
    for page in (fol, phone):
        page.wait_for_function(
            "() => document.body.dataset.view === 'Characteristics' && "
            "document.querySelectorAll('.js-plotly-plot').length > 0",
            timeout=90_000,
        )

    def everyone(pred, what, pages=(fol, phone), page_pred=None, timeout=30):
        assert wait_for(lambda: all(s.saw(pred) for s in subs), timeout), (
            what,
            lect.url,
            [{k: v for k, v in s.states[-1]["state"].items() if k not in ("text", "link")} for s in subs if s.states],
        )
        if page_pred:
            for page in pages:
                page.wait_for_function(page_pred, timeout=timeout * 1000)

    # a change of view
    _radio(lect, "Decision surface")
    everyone(
        lambda s: s.get("view") == "Decision surface" and s.get("figures"),
        "view",
        page_pred="() => document.body.dataset.view === 'Decision surface'",
    )
    # a change of layer frame: the lecturer's slider, back on the characteristics
    _radio(lect, "Characteristics")
    everyone(
        lambda s: s.get("view") == "Characteristics" and s.get("figures"),
        "view back",
        page_pred="() => document.body.dataset.view === 'Characteristics'",
    )
    lect.wait_for_selector(".js-plotly-plot .slider-rail-rect", timeout=30_000)
    time.sleep(1.0)
    lect.locator(".js-plotly-plot .slider-rail-rect").first.scroll_into_view_if_needed()
    rail = lect.locator(".js-plotly-plot .slider-rail-rect").first.bounding_box()
    lect.mouse.click(rail["x"] + rail["width"] * 0.5, rail["y"] + rail["height"] / 2)  # frame 3 of 0..6
    everyone(lambda s: s.get("k") == 3, "frame", page_pred="() => document.body.dataset.k === '3'")
    time.sleep(1.0)
    fol.screenshot(path=str(SHOTS / "room_follower_1280x720.png"))
    phone.screenshot(path=str(SHOTS / "room_follower_390x844.png"))
    active = fol.evaluate("() => document.querySelector('.js-plotly-plot').layout.sliders[0].active")
    assert active == 3

    # a follower can send nothing: no POST route for it, and the lecturer's routes want the secret
    for url in (f"{a}/room/{code}", f"{b}/room/{code}/state", f"{a}/room/{code}/events"):
        assert _get(url, "POST", b"{}")[0] == 405
    for headers in ({}, {"X-Room-Token": "guess"}):
        status, body, _ = _get(f"{b}/room/{code}/frame", "POST", b'{"k": 1}', headers)
        assert status == 403 and body.startswith("Refused")
    assert json.loads(_get(f"{a}/room/{code}/state")[1])["state"]["k"] == 3

    # figures come once per change, by content hash, and a second fetch is free
    h = json.loads(_get(f"{b}/room/{code}/state")[1])["state"]["figures"][0]
    status, body, headers = _get(f"{b}/room/{code}/fig/{h}")
    assert status == 200 and "immutable" in headers["Cache-Control"] and headers["ETag"] == f'"{h}"'
    assert _get(f"{b}/room/{code}/fig/{h}", headers={"If-None-Match": f'"{h}"'})[0] == 304
    assert _get(f"{b}/room/{code}/fig/{'0' * 32}")[0] == 404

    # "Explore from here": a page of its own at the room's config, view and frame
    fol.click("#explore")
    fol.wait_for_selector("[data-testid='stRadio']", timeout=60_000)
    fol.wait_for_function("() => document.body.dataset.flowvizK === '3'", timeout=60_000)
    checked = fol.locator("[data-testid='stRadio'] [role='radiogroup'] label:has(input:checked)").first.inner_text()
    assert checked.strip() == "Characteristics"
    from urllib.parse import parse_qs, urlparse

    query = {k: v[-1] for k, v in parse_qs(urlparse(fol.url).query).items()}
    assert {k: query[k] for k in CFG.to_query()} == CFG.to_query() and query.get("room") == code
    assert fol.locator("text=Back to the room").count() > 0
    fol.goto(f"{a}/room/{code}")  # back to the room
    fol.wait_for_function("() => document.body.dataset.view === 'Characteristics'", timeout=30_000)

    # the probe: clicked on the lecturer's Instruments view
    _radio(lect, "Instruments")
    for _ in range(3):  # the lecturer's page has the probe once its link says so (a click during a rerun is lost)
        lect.wait_for_selector("text=Click any point of the plane", timeout=60_000)
        plane = lect.locator(".js-plotly-plot").first
        plane.wait_for(timeout=60_000)
        plane.scroll_into_view_if_needed()  # under the page's header rows: a click must land on the plane itself
        time.sleep(1.0)
        area = plane.locator(".nsewdrag").first.bounding_box()
        lect.mouse.click(area["x"] + 0.3 * area["width"], area["y"] + 0.4 * area["height"])
        if wait_for(lambda: "probe=" in lect.url, 30):
            break
    everyone(
        lambda s: (
            s.get("view") == "Instruments"
            and s.get("instrument") == "Probe"
            and s.get("probe")
            and len(s.get("figures") or ()) >= 2
        ),
        "probe",
        timeout=60,
        page_pred="() => document.body.dataset.view === 'Instruments' && "
        "document.getElementById('where').textContent.includes('probe (') && "
        "document.querySelectorAll('.js-plotly-plot').length >= 2",  # the plane and the probe's figure
    )

    # a change of scenario (the lightest: two blocks), picked from Characteristics
    _radio(lect, "Characteristics")
    everyone(lambda s: s.get("view") == "Characteristics", "view before the scenario")
    _choose(lect, "Scenario", "When Euler steps fold the plane")
    everyone(
        lambda s: (
            s.get("scenario") == "folding" and s.get("title") == "When Euler steps fold the plane" and s.get("text")
        ),
        "scenario",
        page_pred="() => document.getElementById('title').textContent.startsWith('When Euler')",
    )

    # wrong and ended codes get a plain message
    status, body, _ = _get(f"{b}/room/ZZZZZZ")
    assert status == 404 and "There is no room with this code" in body and "<script" not in body
    assert _get(f"{a}/room/not-a-code")[0] == 404
    old = RoomStore(rooms)
    gone, token = old.open()
    old.close(gone, token)
    status, body, _ = _get(f"{b}/room/{gone}")
    assert status == 410 and "This room has ended" in body

    # closing the room ends every follower's stream, on both replicas
    lect.locator("[data-testid='stSidebar']").get_by_role("button", name="Close room").click()
    assert wait_for(lambda: all(s.ended for s in subs), 20), [(s.ended, s.error) for s in subs]
    phone.wait_for_function("() => document.body.dataset.ended === '1'", timeout=20_000)
    assert _get(f"{a}/room/{code}")[0] == 410
    assert not any(s.error for s in subs)
    for page in (lect, fol, phone):
        page.close()


@pytest.mark.browser
def test_followers_beyond_the_limit_get_a_message(replicas):
    a, _, rooms = replicas
    s = RoomStore(rooms)
    code, token = s.open()
    s.publish(code, token, {"view": "Characteristics"})
    subs = [Follower(f"{a}/room/{code}/events") for _ in range(8)]  # the server's limit (FLOWVIZ_ROOM_FOLLOWERS)
    assert wait_for(lambda: all(x.states for x in subs), 20)
    status, body, _ = _get(f"{a}/room/{code}")
    assert status == 503 and "This room is full" in body and "8 followers" in body
    assert _get(f"{a}/room/{code}/events")[0] == 503
    s.close(code, token)
    assert wait_for(lambda: all(x.ended for x in subs), 20)
