"""A lecture hall on one server: many concurrent sessions in real headless Chromium pages, loopback only.

Starts the real server (an empty run cache) and runs three phases, each bounded in time:

1. S pages open the same scenario at once: time to the finished picture (p50, p95), errors, and how many
   training runs the server started (the registry logs each): the target is exactly one;
2. S pages open S distinct configs at once: every one completes, and the most workers busy at any moment
   (the pool logs it) never exceeds the pool size;
3. 200 pages are opened and closed in turn: the server's resident memory afterwards against before
   (target: within 100 MB);
4. (its own server, the run budget lifted so that they are admitted) two pages open links at the hard
   limits (issue 17, case 7; seeds 11 and 12) and, once both train, a third visitor opens a light run: its
   finished picture must come within 30 s (the long runs never take the last worker). With the budget on
   (``--heavy-budget``), the two links are refused at once instead, which the phase reports; it then runs on
   the server of phases 1 to 3, after them (nothing of it needs a server of its own).

5. (its own server) a swarm: ``--swarm`` sessions (40) from one client address open links one ``seed=`` apart
   (runs of about 7 s each) and ask for a rerun every 4 s, and once the workers are busy, a Chromium page from
   another address opens a light run: seconds to its first picture (target within 60 s: the queue is served
   round robin by client). The swarm's sessions are headless websocket clients that speak Streamlit's own
   protocol and draw nothing, as a script would (``--swarm-kind chromium``: real pages, whose own drawing on
   the same cores is then measured too). The two addresses are the X-Forwarded-For header, which the server
   trusts from loopback only.

The server's peak resident memory is printed; the last line gives the phase-1 p95 and the ratio of
runs started to runs needed.

    python bench/load.py [--sessions 30] [--cycles 200] [--workers 2] [--phases 1,2,3,4,5] [--heavy-budget]
    python bench/load.py --executor ray      # the same phases, the server training on a local Ray cluster

With ``--executor ray`` the server runs with FLOWVIZ_EXECUTOR=ray and no RAY_ADDRESS: it starts a local Ray
cluster of ``--workers`` CPUs for itself (one machine; the README's recipe points RAY_ADDRESS at a real one).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from first_picture import ARGS, DONE, _port, _serve  # noqa: E402


def _rss_mb(pid: int) -> float:
    """Resident memory of the server and its worker processes, in MB."""
    total = 0.0
    for p in [pid] + _children(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            pass
    return total


def _children(pid: int) -> list[int]:
    out = []
    try:
        for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            out += [int(c)] + _children(int(c))
    except OSError:
        pass
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=30)
    ap.add_argument("--cycles", type=int, default=200)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--steps", type=int, default=150, help="training steps of each run")
    ap.add_argument("--timeout", type=float, default=600, help="seconds allowed per phase")
    ap.add_argument("--phases", default="1,2,3,4,5", help="which phases to run (phase 3 needs phase 1's link)")
    ap.add_argument("--swarm", type=int, default=40, help="pages of the one client of phase 5")
    ap.add_argument("--swarm-steps", type=int, default=1500, help="training steps of each of the swarm's runs")
    ap.add_argument(
        "--swarm-kind",
        choices=("headless", "chromium"),
        default="headless",
        help="the swarm's sessions: websocket clients that draw nothing, or Chromium pages",
    )
    ap.add_argument("--heavy-budget", action="store_true", help="phase 4 with the server's default run budget")
    ap.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="where the server trains: its own process pool, or a local Ray cluster of --workers CPUs",
    )
    a = ap.parse_args(argv)
    a.cluster_env = {"FLOWVIZ_EXECUTOR": "ray"} if a.executor == "ray" else {}
    _phases(a)


def _phases(a):
    from playwright.sync_api import sync_playwright

    import flowviz

    phases = {int(p) for p in a.phases.split(",") if p.strip()}
    shared = 4 in phases and a.heavy_budget and bool(phases & {1, 2, 3})  # refused at once: the same server will do
    if 4 in phases and not shared:
        heavy_phase(a)
    if 5 in phases:
        swarm_phase(a)
    if not phases & {1, 2, 3}:
        return
    tmp = tempfile.mkdtemp()
    port = _port()
    log_path = Path(tmp) / "server.log"
    server = _serve(
        port, Path(tmp) / "cache", env={"FLOWVIZ_WORKERS": str(a.workers), **a.cluster_env}, log=log_path, wait_s=120
    )
    peak = [0.0]
    stop = threading.Event()

    def sample():
        while not stop.wait(0.5):
            peak[0] = max(peak[0], _rss_mb(server.pid))

    threading.Thread(target=sample, daemon=True).start()
    base = flowviz.Config(n_samples=300, train_steps=a.steps, n_steps=8)
    url = f"http://127.0.0.1:{port}"
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)

            def wave(links):
                pages, t0 = [], time.perf_counter()
                for link in links:
                    p = browser.new_page(viewport={"width": 1024, "height": 700})
                    p.goto(link, wait_until="commit")
                    pages.append(p)
                times, errors = [], 0
                for p in pages:
                    left = max(1.0, a.timeout - (time.perf_counter() - t0))
                    try:
                        p.wait_for_function(DONE, timeout=left * 1000)
                        times.append(time.perf_counter() - t0)
                        if p.locator("[data-testid='stException']").count():
                            errors += 1
                    except Exception:
                        errors += 1
                for p in pages:
                    p.close()
                return times, errors

            def q(cfg):
                return url + "/?" + "&".join(f"{k}={v}" for k, v in cfg.to_query().items())

            # 1. the same preset for everybody
            same = base.replace(seed=1)
            t1, e1 = wave([q(same)] * a.sessions)
            started_1 = len(re.findall(r"runs started: \d+", log_path.read_text()))
            # 2. a different config each
            t2, e2 = wave([q(base.replace(seed=1000 + i)) for i in range(a.sessions)])
            busy = [int(m) for m in re.findall(r"workers busy: (\d+) of", log_path.read_text())]
            started = [int(m) for m in re.findall(r"runs started: (\d+)", log_path.read_text())]
            # 3. open and close pages in turn
            time.sleep(2)
            before = _rss_mb(server.pid)
            t0, cycles = time.perf_counter(), 0
            while cycles < a.cycles and time.perf_counter() - t0 < a.timeout:
                p = browser.new_page(viewport={"width": 1024, "height": 700})
                p.goto(q(same))
                p.wait_for_function(DONE, timeout=60_000)
                p.close()
                cycles += 1
            time.sleep(3)
            after = _rss_mb(server.pid)
            if shared:
                heavy_pages(a, browser, url, log_path)
            browser.close()
    finally:
        stop.set()
        server.terminate()
        server.wait(10)

    def pct(v, p):
        return statistics.quantiles(v, n=100)[p - 1] if len(v) >= 2 else (v[0] if v else float("nan"))

    print(
        f"phase 1: {a.sessions} sessions, one preset: p50 {pct(t1, 50):.1f} s, p95 {pct(t1, 95):.1f} s to the "
        f"finished picture; errors {e1}; training runs started {started_1} (target 1)"
    )
    print(
        f"phase 2: {a.sessions} distinct configs: p50 {pct(t2, 50):.1f} s, p95 {pct(t2, 95):.1f} s; errors {e2}; "
        f"runs started {max(started) - started_1 if started else 0}; most workers busy at once "
        f"{max(busy) if busy else 0} (pool {a.workers})"
    )
    print(
        f"phase 3: {cycles} sessions opened and closed: server memory {before:.0f} MB before, {after:.0f} MB "
        f"after ({after - before:+.0f} MB; target within 100 MB)"
    )
    print(f"server peak resident memory (with its workers): {peak[0]:.0f} MB")
    print(f"phase-1 p95 {pct(t1, 95):.1f} s; ratio of runs started to runs needed = {started_1 / 1:.2f}")


HARD_LIMITS = {"n_samples": 20000, "n_steps": 256, "width": 256, "train_steps": 20000}


def heavy_phase(a) -> float:
    """Phase 4 on a server of its own (FLOWVIZ_WARM=0; the run budget lifted unless ``--heavy-budget``)."""
    from playwright.sync_api import sync_playwright

    tmp = tempfile.mkdtemp()
    port, log_path = _port(), Path(tmp) / "heavy.log"
    env = {"FLOWVIZ_WORKERS": str(a.workers), "FLOWVIZ_WARM": "0", **a.cluster_env}
    if not a.heavy_budget:
        env.update(FLOWVIZ_MAX_RUN_SECONDS="1e9", FLOWVIZ_MAX_RUN_MB="1e9")
    server = _serve(port, Path(tmp) / "cache", env=env, log=log_path)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            light_s = heavy_pages(a, browser, f"http://127.0.0.1:{port}", log_path)
            browser.close()
    finally:
        server.terminate()
        server.wait(10)
    return light_s


def heavy_pages(a, browser, url: str, log_path: Path) -> float:
    """Phase 4: seconds from a light link to its finished picture while two hard-limit runs hold workers (or
    were refused by the budget). Only the server log written from now on is read."""
    import flowviz

    def q(cfg):
        return url + "/?" + "&".join(f"{k}={v}" for k, v in cfg.to_query().items())

    start = len(log_path.read_text())
    light_s, refused = float("nan"), 0
    heavy = []
    for seed in (11, 12):
        p = browser.new_page(viewport={"width": 1024, "height": 700})
        p.goto(q(flowviz.Config(seed=seed, **HARD_LIMITS)), wait_until="commit")
        heavy.append(p)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 120:  # both heavy runs hold a worker, or were refused
        text = log_path.read_text()[start:]
        refused = sum("not started" in p.inner_text("body") for p in heavy)
        if len(re.findall(r"runs started: \d+", text)) + refused >= 2:
            break
        time.sleep(0.5)
    light = browser.new_page(viewport={"width": 1024, "height": 700})
    t1 = time.perf_counter()
    light.goto(q(flowviz.Config(n_samples=300, train_steps=a.steps, n_steps=8, seed=13)))
    try:
        light.wait_for_function(DONE, timeout=a.timeout * 1000)
        light_s = time.perf_counter() - t1
    except Exception:
        pass
    for p in heavy + [light]:
        p.close()
    print(
        f"phase 4: two hard-limit links open ({refused} refused by the budget); a third visitor's light run "
        f"finished in {light_s:.1f} s (target within 30 s)"
    )
    return light_s


FIRST = "() => document.querySelector('.js-plotly-plot') !== null"  # any picture of the run, live or finished


def swarm_phase(a) -> float:
    """Phase 5 on a server of its own (FLOWVIZ_WARM=0): seconds from another client's light link to its first
    picture while one client's ``--swarm`` pages queue a run each."""
    from playwright.sync_api import sync_playwright

    import flowviz

    tmp = tempfile.mkdtemp()
    port, log_path = _port(), Path(tmp) / "swarm.log"
    server = _serve(
        port,
        Path(tmp) / "cache",
        env={"FLOWVIZ_WORKERS": str(a.workers), "FLOWVIZ_WARM": "0", **a.cluster_env},
        log=log_path,
    )
    url = f"http://127.0.0.1:{port}"

    def q(cfg):
        return url + "/?" + "&".join(f"{k}={v}" for k, v in cfg.to_query().items())

    light_s, started = float("nan"), 0
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            other = browser.new_context(
                viewport={"width": 1024, "height": 700}, extra_http_headers={"X-Forwarded-For": "10.0.0.2"}
            )
            links = [
                q(flowviz.Config(n_samples=300, n_steps=8, train_steps=a.swarm_steps, seed=5000 + i))
                for i in range(a.swarm)
            ]
            if a.swarm_kind == "chromium":
                swarm = browser.new_context(
                    viewport={"width": 1024, "height": 700}, extra_http_headers={"X-Forwarded-For": "10.0.0.1"}
                )
                for link in links:
                    swarm.new_page().goto(link, wait_until="commit")
            else:
                stop = threading.Event()
                clients = threading.Thread(target=_headless, args=(port, links, "10.0.0.1", stop), daemon=True)
                clients.start()
            t0 = last = time.perf_counter()
            while time.perf_counter() - t0 < a.timeout:  # the swarm's runs are all started (most wait), or the
                now = len(re.findall(r"started for 10\.0\.0\.1", log_path.read_text()))  # rest refused
                last, started = (time.perf_counter(), now) if now > started else (last, started)
                if started >= a.swarm or (started and time.perf_counter() - last > 30):
                    break
                time.sleep(0.5)
            light = other.new_page()
            t1 = time.perf_counter()
            try:
                light.goto(
                    q(flowviz.Config(n_samples=300, train_steps=a.steps, n_steps=8, seed=13)),
                    wait_until="commit",
                    timeout=a.timeout * 1000,
                )
                light.wait_for_function(FIRST, timeout=a.timeout * 1000)
                light_s = time.perf_counter() - t1
            except Exception:
                pass
            ours = len(re.findall(r"started for 10\.0\.0\.2", log_path.read_text()))
            done = log_path.read_text().count("started for 10.0.0.1")
            if a.swarm_kind != "chromium":
                stop.set()
                clients.join(30)
            browser.close()
    finally:
        server.terminate()
        server.wait(10)
    print(
        f"phase 5: {a.swarm} {a.swarm_kind} sessions of one client started {started} runs ({done} by the end); "
        f"another client's "
        f"light run ({ours} started for it) had its first picture in {light_s:.1f} s (target within 60 s)"
    )
    return light_s


def _headless(port: int, links: list[str], address: str, stop: threading.Event, every_s: float = 4.0) -> None:
    """Sessions that speak Streamlit's websocket protocol and draw nothing: each opens its link (the
    X-Forwarded-For header says ``address``), reads every message the server sends, and asks for a rerun of its
    page every ``every_s`` seconds until ``stop`` is set."""
    import asyncio
    from urllib.parse import urlsplit

    import websockets
    from streamlit.proto.BackMsg_pb2 import BackMsg

    def rerun(link: str) -> bytes:
        m = BackMsg()
        m.rerun_script.query_string = urlsplit(link).query
        m.rerun_script.page_script_hash = ""
        return m.SerializeToString()

    async def session(link: str) -> None:
        async with websockets.connect(
            f"ws://127.0.0.1:{port}/_stcore/stream",
            subprotocols=["streamlit"],
            additional_headers={"X-Forwarded-For": address},
            max_size=None,
        ) as ws:
            ask, last = rerun(link), 0.0
            while not stop.is_set():
                if time.monotonic() - last >= every_s:
                    await ws.send(ask)
                    last = time.monotonic()
                try:
                    await asyncio.wait_for(ws.recv(), 0.5)
                except TimeoutError:
                    pass

    async def all_of_them() -> None:
        await asyncio.gather(*(session(link) for link in links), return_exceptions=True)

    asyncio.run(all_of_them())


if __name__ == "__main__":
    main()
