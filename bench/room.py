"""A room on one server: N headless followers (HTTP/SSE clients, asyncio, in a process of their own) plus a few
real Chromium followers watch a lecturer's page (Chromium) while the lecturer changes view and layer frame.

Prints, per change: the share of followers that had the change (state and, for a new figure, its JSON) within
1 s and the slowest, measured from the lecturer's click and from the server's publication; the lecturer's own
time from a click on a view to its picture, in rounds of phases without and with the headless followers (and
the server's CPU per click in each), then with the Chromium followers too; and the server's memory per
follower (resident set growth from no follower to all connected, divided by their number). The last line is
the ratio that matters.

The Chromium followers stand for students' own laptops and phones: they run in a browser of their own at the
idle CPU priority (SCHED_IDLE; ``--followers-priority``), so that on this one machine their drawing takes only the
CPU the lecturer's browser and the server leave, as other devices would; ``--followers-priority equal`` puts
them on an equal footing with the lecturer.

    .venv/bin/python bench/room.py                       # 200 followers + 3 Chromium followers
    .venv/bin/python bench/room.py --followers 20 --browsers 1 --changes 4 --clicks 2   # a quick run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking"]
VIEWS = ("Decision surface", "Characteristics")
TITLES = {"Decision surface": "Decision", "Characteristics": " over u(t"}  # a part of each view's figure title


# ------------------------------------------------------------------------------ headless followers (child)
async def _follower(i: int, host: str, port: int, code: str, log: list, stop: asyncio.Event):
    """One follower: the event stream, and each figure it names fetched once (as a browser's cache would)."""
    have: set[str] = set()

    async def fetch(h: str):
        r, w = await asyncio.open_connection(host, port)
        w.write(
            f"GET /room/{code}/fig/{h} HTTP/1.1\r\nHost: {host}\r\nAccept-Encoding: gzip\r\n"
            f"Connection: close\r\n\r\n".encode()
        )
        await w.drain()
        data = await r.read()
        w.close()
        return data.split(b" ", 2)[1] == b"200"

    r, w = await asyncio.open_connection(host, port)
    w.write(f"GET /room/{code}/events HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode())
    await w.drain()
    head = await r.readuntil(b"\r\n\r\n")
    if b" 200 " not in head.split(b"\r\n", 1)[0]:
        log.append({"i": i, "refused": head.split(b"\r\n", 1)[0].decode()})
        return
    chunked = b"chunked" in head.lower()
    buf = b""
    while not stop.is_set():
        if chunked:
            size = int((await r.readline()).strip() or b"0", 16)
            if size == 0:
                break
            buf += await r.readexactly(size)
            await r.readexactly(2)
        else:
            part = await r.read(65536)
            if not part:
                break
            buf += part
        while b"\n\n" in buf:
            msg, buf = buf.split(b"\n\n", 1)
            fields = dict(line.split(b": ", 1) for line in msg.split(b"\n") if b": " in line)
            if fields.get(b"event") == b"end":
                log.append({"i": i, "end": time.time()})
                w.close()
                return
            if fields.get(b"event") != b"state":
                continue
            t_msg = time.time()
            room = json.loads(fields[b"data"])
            new = [h for h in room["state"].get("figures", []) if h not in have]
            ok = all(await asyncio.gather(*(fetch(h) for h in new)))
            have.update(new)
            st = room["state"]
            log.append(
                {
                    "i": i,
                    "seq": room["seq"],
                    "view": st.get("view"),
                    "k": st.get("k"),
                    "t_msg": t_msg,
                    "t": time.time(),
                    "published": room.get("published"),
                    "figs_ok": ok,
                    "fetched": len(new),
                }
            )
    w.close()


async def _followers(n: int, url: str, code: str, out: str, ready: str):
    from urllib.parse import urlparse

    u = urlparse(url)
    log: list = []
    stop = asyncio.Event()
    tasks = []
    for i in range(n):
        tasks.append(asyncio.create_task(_follower(i, u.hostname, u.port, code, log, stop)))
        if i % 20 == 19:
            await asyncio.sleep(0.05)
    while len({e["i"] for e in log}) < n:
        await asyncio.sleep(0.05)
    Path(ready).write_text("ready")
    await asyncio.gather(*tasks, return_exceptions=True)
    Path(out).write_text(json.dumps(log))


# ------------------------------------------------------------------------------ the driver
def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads)."""
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def phase(page, reps: int, pid: int) -> tuple[list[float], float]:
    """click_to_picture, and the server's CPU seconds per click meanwhile."""
    c0 = cpu_s(pid)
    times = click_to_picture(page, reps)
    return times, (cpu_s(pid) - c0) / (reps + 1)


def radio(page, label):
    page.locator("[data-testid='stRadio'] [role='radiogroup'] label").filter(has_text=label).first.click()


def click_to_picture(page, reps: int) -> list[float]:
    """Seconds from a click on a view to its figure drawn (its title in the chart), alternating two views."""

    def show(view):
        title = TITLES[view]
        t0 = time.perf_counter()
        radio(page, view)
        page.wait_for_function(
            f"() => [...document.querySelectorAll('.js-plotly-plot .gtitle')].some("
            f"e => e.textContent.includes({json.dumps(title)}))",
            timeout=60_000,
        )
        dt = time.perf_counter() - t0
        time.sleep(0.6)
        return dt

    show(VIEWS[1])  # untimed: every timed click changes the view
    return [show(VIEWS[i % 2]) for i in range(reps)]


FOLLOWER_DRAWN = "() => document.body.dataset.seq !== '-1' && document.querySelector('.js-plotly-plot') !== null"


def first_pictures(browser, lect, url: str, code: str, cfg, reps: int) -> tuple[list[float], list[float]]:
    """A follower's first picture (a first visit: fresh browser context, plotly.js and the figure fetched) and
    first_picture.py's floor (a Streamlit page with the same characteristics figure alone), interleaved."""
    if reps <= 0:
        return [], []
    from first_picture import _floor_pages, _open

    radio(lect, "Characteristics")  # the lecturer shows the figure the floor page shows
    time.sleep(2.0)
    with tempfile.TemporaryDirectory() as tmp:
        pages = _floor_pages(cfg, Path(tmp), browser)
        try:
            (_, _, bare), (alone_url, alone_done, _) = pages
            bare.terminate()
            first, floor = [], []
            for _ in range(reps):
                first.append(_open(browser, f"{url}/room/{code}", FOLLOWER_DRAWN))
                floor.append(_open(browser, alone_url, alone_done))
        finally:
            for _, _, server in pages:
                server.terminate()
                server.wait(10)
    return first, floor


# how the followers' browser is started: a prefix of its command line
PRIORITY = {"idle": "chrt --idle 0", "low": "nice -n 19", "equal": ""}


def _launcher(exe: str, priority: str, folder: Path) -> str:
    """``exe`` itself, or a launcher in ``folder`` that runs it at CPU ``priority`` (a PRIORITY key)."""
    if not PRIORITY[priority]:
        return exe
    launcher = folder / "chromium-followers"
    launcher.write_text(f'#!/bin/sh\nexec {PRIORITY[priority]} {exe} "$@"\n')
    launcher.chmod(0o755)
    return str(launcher)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--followers", type=int, default=200)
    ap.add_argument("--browsers", type=int, default=3)
    ap.add_argument("--changes", type=int, default=10, help="changes of view or frame, alternately")
    ap.add_argument("--clicks", type=int, default=6, help="lecturer's clicks per phase")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of phases without and with followers")
    ap.add_argument("--gap", type=float, default=3.0, help="seconds between changes")
    ap.add_argument("--first", type=int, default=3, help="a follower's first picture against the floor: reps")
    ap.add_argument(
        "--followers-priority",
        choices=sorted(PRIORITY),
        default="idle",
        help="the Chromium followers' browser's CPU priority: idle (SCHED_IDLE), low (nice 19) or equal",
    )
    ap.add_argument("--child", nargs=4, metavar=("URL", "CODE", "OUT", "READY"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        asyncio.run(_followers(a.followers, *a.child))
        return

    from playwright.sync_api import sync_playwright
    from tiny import LiveServer

    from flowviz import Config
    from flowviz.serve.rooms import CODE_RE

    cfg = Config(n_samples=400, n_steps=12, train_steps=120)
    q = "&".join(f"{k}={v}" for k, v in cfg.to_query().items())
    cache = tempfile.mkdtemp(prefix="flowviz-bench-room-")
    env = {
        "FLOWVIZ_CACHE_DIR": cache,
        "FLOWVIZ_WARM": "0",
        "FLOWVIZ_ROOM_FOLLOWERS": str(a.followers + a.browsers + 10),
    }
    server = LiveServer(env=env, wait_s=180)
    with server as url, sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        lect = b.new_page(viewport={"width": 1280, "height": 720})
        lect.goto(f"{url}/?{q}&room=open")
        lect.wait_for_selector("[role='dialog'] img", timeout=120_000)
        lect.keyboard.press("Escape")
        lect.wait_for_function("() => document.body.innerText.includes('done')", timeout=120_000)
        code = next(pp.stem for pp in (Path(cache) / "rooms").glob("*.json") if CODE_RE.fullmatch(pp.stem))
        time.sleep(1.0)
        click_to_picture(lect, 2)  # untimed: both figures built once
        pid = server.proc.pid
        first_pics, floor_pics = first_pictures(b, lect, url, code, cfg, a.first)
        work = Path(tempfile.mkdtemp())

        def start_followers(tag: str):
            out, ready = work / f"followers-{tag}.json", work / f"ready-{tag}"
            child = subprocess.Popen(
                [sys.executable, __file__, "--followers", str(a.followers), "--child", url, code, str(out), str(ready)]
            )
            t_wait = time.time()
            while not ready.exists() and time.time() - t_wait < 120:
                time.sleep(0.1)
            time.sleep(1.0)
            return child, out

        # the lecturer's click -> picture, phases interleaved: without followers, with the headless ones
        off, on_headless, cpu_off, cpu_on = [], [], [], []
        for r in range(a.rounds):
            t, c = phase(lect, a.clicks, pid)
            off += t
            cpu_off.append(c)
            tmp, _ = start_followers(f"round{r}")
            t, c = phase(lect, a.clicks, pid)
            on_headless += t
            cpu_on.append(c)
            tmp.terminate()
            tmp.wait(30)
            time.sleep(1.0)

        rss0 = rss_kb(pid)
        child, out = start_followers("main")
        time.sleep(1.0)
        rss1 = rss_kb(pid)
        # the Chromium followers stand for the students' own devices: a browser of their own, at low CPU priority
        # (--followers-priority), so that on this one machine they draw with the cores the lecturer's browser leaves
        fb = p.chromium.launch(executable_path=_launcher(CHROMIUM, a.followers_priority, work), args=ARGS)
        pages = []
        for _ in range(a.browsers):
            pg = fb.new_page(viewport={"width": 1280, "height": 720})
            pg.add_init_script("""window.__seen = [];
new MutationObserver(() => window.__seen.push({seq: document.body.dataset.seq, view: document.body.dataset.view,
  k: document.body.dataset.k, t: Date.now() / 1000})).observe(document,
  {attributes: true, subtree: true, attributeFilter: ['data-seq', 'data-k', 'data-view']});""")
            pg.goto(f"{url}/room/{code}")
            pages.append(pg)
        for pg in pages:
            pg.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length > 0", timeout=120_000)
        time.sleep(2.0)

        # the changes: a view (a new figure, fetched once per follower), then a layer frame (the same figure)
        changes = []
        radio(lect, "Characteristics")
        current = "Characteristics"
        time.sleep(a.gap)

        def pick(view):
            t0 = time.time()
            radio(lect, view)
            title = TITLES[view]
            lect.wait_for_function(
                f"() => [...document.querySelectorAll('.js-plotly-plot .gtitle')].some("
                f"e => e.textContent.includes({json.dumps(title)}))",
                timeout=60_000,
            )
            changes.append({"kind": "view", "view": view, "t0": t0, "shown": time.time()})
            time.sleep(a.gap)
            return view

        for i in range(a.changes):
            if i % 2 == 0:
                current = pick(VIEWS[0] if current == VIEWS[1] else VIEWS[1])
                continue
            if current != "Characteristics":
                current = pick("Characteristics")
            lect.wait_for_selector(".js-plotly-plot .slider-rail-rect", timeout=60_000)
            rail = lect.locator(".js-plotly-plot .slider-rail-rect").first
            rail.scroll_into_view_if_needed()
            box = rail.bounding_box()
            k = [3, 9, 6, 12, 1][(i // 2) % 5]
            t0 = time.time()
            lect.mouse.click(box["x"] + box["width"] * k / 12, box["y"] + box["height"] / 2)
            changes.append({"kind": "frame", "k": k, "view": "Characteristics", "t0": t0, "shown": t0})
            lect.evaluate("() => window.scrollTo(0, 0)")
            time.sleep(a.gap)
        seen_pages = [pg.evaluate("() => window.__seen") for pg in pages]
        # the lecturer's click -> picture with the headless followers, phases interleaved: without, then with the
        # Chromium followers (their pages away from the room, then back on it)
        off_b, on, cpu_all = [], [], []
        for _ in range(a.rounds):
            for pg in pages:
                pg.goto("about:blank")
            time.sleep(1.0)
            off_b += phase(lect, a.clicks, pid)[0]
            for pg in pages:
                pg.goto(f"{url}/room/{code}")
            for pg in pages:
                pg.wait_for_function(FOLLOWER_DRAWN, timeout=120_000)
            time.sleep(1.0)
            t, c = phase(lect, a.clicks, pid)
            on += t
            cpu_all.append(c)
        if os.environ.get("ROOM_BENCH_DEBUG"):
            print(seen_pages, changes)
        lect.get_by_role("button", name="Close room").click()
        child.wait(60)
        log = json.loads(out.read_text())
        for pg in pages:
            pg.close()
        fb.close()
        b.close()

    # latencies: per change and follower, the first state showing it (with its figures fetched)
    refused = [e for e in log if "refused" in e]
    by_i: dict[int, list] = {}
    for e in log:
        if "seq" in e:
            by_i.setdefault(e["i"], []).append(e)

    def first(entries, ch, t_key):
        for e in entries:
            if e[t_key] < ch["t0"] or e["view"] != ch["view"]:
                continue
            if ch["kind"] == "frame" and str(e["k"]) != str(ch["k"]):
                continue
            return e
        return None

    nan = float("nan")
    print(f"room {code}: {a.followers} headless followers ({len(refused)} refused), {a.browsers} Chromium followers")
    all_click, all_pub, all_shown, all_chrome, all_headless, all_publish = [], [], [], [], [], []
    for ch in changes:
        lat, pub, published = [], [], []
        for entries in by_i.values():
            e = first(entries, ch, "t")
            lat.append(e["t"] - ch["t0"] if e else float("inf"))
            if e and e.get("published"):
                pub.append(e["t"] - e["published"])
                published.append(e["published"] - ch["t0"])
        all_headless += lat
        all_publish += published
        n_headless = len(lat)
        for seen in seen_pages:
            hit = next(
                (
                    s
                    for s in seen
                    if s["t"] >= ch["t0"]
                    and s["view"] == ch["view"]
                    and (ch["kind"] != "frame" or s["k"] == str(ch["k"]))
                ),
                None,
            )
            lat.append(hit["t"] - ch["t0"] if hit else float("inf"))
        all_chrome += lat[n_headless:]
        all_click += lat
        all_pub += pub
        all_shown += [x - (ch["shown"] - ch["t0"]) for x in lat]
        within = sum(x <= 1.0 for x in lat) / max(1, len(lat))
        what = ch["view"] if ch["kind"] == "view" else f"k = {ch['k']}"
        print(
            f"  {ch['kind']:5s} {what:18s} followers {len(lat)}: within 1 s {100 * within:5.1f} %, median "
            f"{statistics.median(lat):.3f} s, slowest {max(lat):.3f} s from the click; from publication: "
            f"median {statistics.median(pub) if pub else nan:.3f} s, slowest {max(pub, default=nan):.3f} s"
        )
        print(
            f"        published {statistics.median(published) if published else nan:.3f} s after the click"
            + (f", lecturer's own picture {ch['shown'] - ch['t0']:.3f} s" if ch["kind"] == "view" else "")
            + f"; slowest headless {max(lat[:n_headless], default=nan):.3f} s, Chromium followers "
            + ", ".join(f"{x:.3f}" for x in lat[n_headless:])
            + " s"
        )
    n = len(all_click)
    srt = sorted(all_click)
    p95 = srt[min(n - 1, int(0.95 * n))]
    print(
        f"all changes: {100 * sum(x <= 1 for x in all_click) / n:.1f} % within 1 s, 95th percentile {p95:.3f} s, "
        f"slowest {srt[-1]:.3f} s (from the click); from publication: 95th percentile "
        f"{sorted(all_pub)[int(0.95 * (len(all_pub) - 1))]:.3f} s, slowest {max(all_pub):.3f} s"
    )
    after = sorted(all_shown)
    print(
        f"after the lecturer's own picture: {100 * sum(x <= 1 for x in after) / n:.1f} % within 1 s, "
        f"{100 * sum(x <= 3 for x in after) / n:.1f} % within 3 s, 95th percentile "
        f"{after[min(n - 1, int(0.95 * n))]:.3f} s, slowest {after[-1]:.3f} s"
    )
    print(
        f"slowest from the click: headless {max(all_headless):.3f} s, Chromium {max(all_chrome, default=nan):.3f} s;"
        f" publication after the click: median {statistics.median(all_publish):.3f} s, slowest "
        f"{max(all_publish):.3f} s"
    )
    if first_pics:
        fp, fl = statistics.median(first_pics), statistics.median(floor_pics)
        print(
            f"a follower's first picture (fresh context, plotly.js and figure fetched): median {fp:.2f} s "
            f"({', '.join(f'{x:.2f}' for x in first_pics)}); first_picture.py's floor, the same figure alone on a "
            f"Streamlit page: {fl:.2f} s ({', '.join(f'{x:.2f}' for x in floor_pics)}); ratio {fp / fl:.2f}"
        )
    print(
        f"server memory: {rss0 / 1024:.0f} MiB before, {rss1 / 1024:.0f} MiB with {a.followers} headless "
        f"followers: {(rss1 - rss0) / a.followers:.1f} KiB per follower"
    )
    base, base_b = statistics.median(off), statistics.median(off_b)
    with_h, with_all = statistics.median(on_headless), statistics.median(on)
    print(
        f"lecturer click -> picture ({a.rounds} rounds of {a.clicks} clicks without, then with, the "
        f"{a.followers} headless followers): medians {base:.3f} s without, {with_h:.3f} s with them"
    )
    print("  without: " + ", ".join(f"{x:.2f}" for x in off))
    print("  with:    " + ", ".join(f"{x:.2f}" for x in on_headless))
    print(
        f"then with the headless followers, {a.rounds} rounds without, then with, the {a.browsers} Chromium "
        f"followers (their browser at priority {a.followers_priority}): medians {base_b:.3f} s without, "
        f"{with_all:.3f} s with them"
    )
    print("  without: " + ", ".join(f"{x:.2f}" for x in off_b))
    print("  with:    " + ", ".join(f"{x:.2f}" for x in on))
    print(
        f"server CPU per lecturer click, per round: without followers "
        f"{', '.join(f'{1000 * c:.0f}' for c in cpu_off)} ms; with the {a.followers} headless followers "
        f"{', '.join(f'{1000 * c:.0f}' for c in cpu_on)} ms; with the Chromium followers too "
        f"{', '.join(f'{1000 * c:.0f}' for c in cpu_all)} ms"
    )
    print(
        f"ratio lecturer with/without followers {with_h / base:.2f} (headless), {with_all / base_b:.2f} (the "
        f"Chromium followers on top, at priority {a.followers_priority}), {with_h / base * with_all / base_b:.2f} "
        f"(all against none); p95 follower latency {p95:.2f} s"
    )


if __name__ == "__main__":
    main()
