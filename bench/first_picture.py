"""Time from opening a link to the finished decision surface, in a real headless Chromium.

Each repetition starts a fresh `streamlit run app.py` (a cold server, with an empty run cache), waits for its
health check (the start-up hook has then loaded flowviz and started a training process; that time is printed
too), opens the reference config by link and waits until training is done and the full views are drawn. A
second page then opens the same link on the warm server, where the finished run is shared. Prints the
medians; the last lines give the warm median against issue 14's 1.5 s and the cold one against its 2.5 s.

With ``--bare``: the page is opened without a link, so the default config is trained.

With ``--floor``: each repetition also opens two pages that are not flowviz, on the same machine and browser:
a Streamlit page with one line of text, and one with that line and the config's finished Characteristics
figure (the same JSON flowviz sends). They are the floor of any page built on Streamlit and plotly.js here.
The four pages of a repetition are opened in a rotating order (interleaved); the last lines give flowviz's
warm and cold pages against the figure alone (targets 1.15 and 1.3), with the load average.

With ``--why``: each page load also prints where its time went, from the browser's own records: when the
page's kinds of element first appeared (a MutationObserver from the navigation), its long tasks, the CPU time
of the renderer's main thread (a Chrome trace: the work the picture waits for, and a measure that a loaded
machine distorts far less than wall-clock time), the plotly chunk's fetch, the websocket's messages, and when
the code of each kind of element was fetched (Streamlit loads each element's code when one is first drawn).

With ``--prebuilt``: the scenario is first trained into a disk cache (as `python -m flowviz prebuild`
does); each repetition starts a fresh server on that cache, opens the page, then picks the scenario in
the sidebar and times from the pick to its finished picture (target: 1 s).

    python bench/first_picture.py [--reps 5] [--preset reference] [--bare] [--prebuilt] [--floor] [--why]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(port, cache_dir, *, env=None, log=None, wait_s: float = 240.0, script="app.py", args=()):
    """A fresh `streamlit run app.py` (or ``script`` with ``args``) on loopback, returned once its health
    endpoint answers (within wait_s)."""
    env = dict(os.environ, **(env or {}), FLOWVIZ_CACHE_DIR=str(cache_dir))
    out = open(log, "w") if log else subprocess.DEVNULL
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(script),
            "--server.port",
            str(port),
            "--server.headless",
            "true",
            "--server.address",
            "127.0.0.1",
            "--",
            *args,
        ],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < wait_s:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1)
            return p
        except OSError:
            time.sleep(0.1)
    p.kill()
    raise SystemExit("streamlit did not start")


# finished: the status says done, neither a live view nor the samples drawn while training are on screen
DONE = (
    "() => document.body.innerText.includes('done') && !document.body.innerText.includes('Live view') "
    "&& !document.body.innerText.includes('first picture appears') "
    "&& document.querySelector('.js-plotly-plot') !== null"
)


# the browser's own records of a page load (--why): first appearance of each kind of element, long tasks
WHY_INIT = r"""
(() => {
  window.__marks = {}; window.__long = [];
  const mark = (n) => { if (!(n in window.__marks)) window.__marks[n] = Math.round(performance.now()); };
  try {
    new PerformanceObserver(l => l.getEntries().forEach(e => window.__long.push(Math.round(e.duration))))
      .observe({type: 'longtask', buffered: true});
  } catch (e) {}
  const kinds = {sidebar: '[data-testid=stSidebar] [data-testid=stElementContainer]', formula: '.katex',
    metric: '[data-testid=stMetric]', button: '[data-testid=stButton]', chart: '[data-testid=stPlotlyChart]',
    drawn: '.js-plotly-plot .main-svg', slider: '.js-plotly-plot .slider-container'};
  const seen = new MutationObserver(() => {
    for (const [n, q] of Object.entries(kinds)) if (document.querySelector(q)) mark(n);
  });
  document.addEventListener('DOMContentLoaded', () => seen.observe(document.body, {childList: true, subtree: true}));
})();
"""
WHY_READ = """() => {
  const res = performance.getEntriesByType('resource'), up = res.find(e => e.name.endsWith('/_stcore/health'));
  return {marks: window.__marks, long: window.__long,
  plotly: res.filter(e => e.name.includes('PlotlyChart'))
    .map(e => [Math.round(e.startTime), Math.round(e.responseEnd)])[0] || null,
  chunks: res.filter(e => up && e.startTime > up.startTime
      && /\\/js\\/([A-Z][A-Za-z]+|rehype-katex)\\.[^./]+\\.js$/.test(e.name))
    .map(e => [e.name.split('/').pop().split('.')[0], Math.round(e.startTime)]),
  elements: document.querySelectorAll('[data-testid=stElementContainer]').length};
}"""


CPU: dict[str, list[float]] = {}  # --why: each page's renderer main-thread CPU seconds, load after load


def _main_thread_cpu(trace: bytes) -> float:
    """CPU seconds of the page's renderer main thread (its tasks' thread time) in a Chrome trace: the work the
    page's first picture waited for, much less sensitive to the machine's load than the wall-clock time."""
    import json

    events = json.loads(trace)["traceEvents"]
    main = {
        (e["pid"], e["tid"]) for e in events if e.get("name") == "thread_name" and e["args"]["name"] == "CrRendererMain"
    }
    tasks = (e for e in events if (e.get("pid"), e.get("tid")) in main and e.get("ph") == "X")
    return sum(e.get("tdur", 0) for e in tasks if e["name"] in ("RunTask", "ThreadControllerImpl::RunTask")) / 1e6


def _open(browser, url, done: str = DONE, why: str | None = None) -> float:
    page = browser.new_page(viewport={"width": 1920, "height": 1080})
    frames: list[int] = []
    if why:
        page.add_init_script(WHY_INIT)
        page.on("websocket", lambda ws: ws.on("framereceived", lambda m: frames.append(len(m))))
        browser.start_tracing(page=page, categories=["devtools.timeline", "disabled-by-default-devtools.timeline"])
    t = time.perf_counter()
    page.goto(url)
    page.wait_for_function(done, timeout=120_000)
    dt = time.perf_counter() - t
    if why:
        cpu = _main_thread_cpu(browser.stop_tracing())
        w = page.evaluate(WHY_READ)
        marks = ", ".join(f"{k} {v / 1000:.2f}" for k, v in sorted(w["marks"].items(), key=lambda kv: kv[1]))
        fetch = "not fetched" if w["plotly"] is None else "{:.2f}-{:.2f} s".format(*(x / 1000 for x in w["plotly"]))
        chunks = ", ".join(f"{n} {t / 1000:.2f}" for n, t in w["chunks"])
        print(
            f"  {why}: {dt:.2f} s; {w['elements']} elements, first seen (s): {marks}; plotly chunk {fetch}; "
            f"long tasks {len(w['long'])}, {sum(w['long']) / 1000:.2f} s; renderer main thread CPU {cpu:.2f} s; "
            f"websocket {len(frames)} messages, {sum(frames) / 1e3:.0f} kB; elements' code fetched (s): {chunks}"
        )
        CPU.setdefault(why, []).append(cpu)
    page.close()
    return dt


def _pick(browser, url, title) -> float:
    """Open the page, then choose the scenario in the sidebar; seconds from the choice to its finished picture."""
    page = browser.new_page(viewport={"width": 1920, "height": 1080})
    page.goto(url)
    page.wait_for_function(DONE, timeout=120_000)
    page.locator("[data-testid='stSelectbox']").filter(has_text="Scenario").click()
    option = page.get_by_role("option", name=title)
    t = time.perf_counter()
    option.click()
    page.wait_for_function(
        f"() => document.body.innerText.includes({title!r}) && "
        f"document.querySelector('.js-plotly-plot') !== null && ({DONE[6:]})",
        timeout=120_000,
    )
    dt = time.perf_counter() - t
    page.close()
    return dt


def main(argv=None):
    from playwright.sync_api import sync_playwright

    import flowviz

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--preset", default="reference")
    ap.add_argument("--set", action="append", default=[], help="config overrides KEY=VALUE (tests use tiny runs)")
    ap.add_argument("--prebuilt", action="store_true", help="time a prebuilt scenario from the moment it is picked")
    ap.add_argument("--bare", action="store_true", help="open the bare address (the default config) instead of a link")
    ap.add_argument("--floor", action="store_true", help="time a bare Streamlit page and one with the figure alone")
    ap.add_argument("--why", action="store_true", help="print where each page load's time went (browser records)")
    a = ap.parse_args(argv)
    if a.prebuilt:
        return prebuilt(a)
    cfg = flowviz.preset(a.preset).with_sets(a.set)
    q = "" if a.bare else "&".join(f"{k}={v}" for k, v in cfg.to_query().items())
    cold, warm, boot = [], [], []
    floors = {"bare Streamlit page": [], "the figure alone": []}
    print(f"load average at the start: {_load()}")
    with sync_playwright() as pw, tempfile.TemporaryDirectory() as tmp:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        floor_pages = _floor_pages(cfg, Path(tmp), browser) if a.floor else []
        try:
            for rep in range(a.reps):
                port = _port()
                t = time.perf_counter()
                server = _serve(port, Path(tmp) / f"cache{rep}")  # empty: the run is trained, not loaded
                boot.append(time.perf_counter() - t)  # start-up: imports and the first training process
                url = f"http://127.0.0.1:{port}/?{q}"
                pages = {
                    "cold": lambda: cold.append(_open(browser, url, why=a.why and "flowviz, cold server")),
                    "warm": lambda: warm.append(_open(browser, url, why=a.why and "flowviz, warm server")),
                }
                for n, (u, d, _) in zip(floors, floor_pages):
                    pages[n] = lambda n=n, u=u, d=d: floors[n].append(_open(browser, u, d, a.why and n))
                order = ["cold", "warm"]  # the cold page trains the run the warm one shares; the floors in turn
                if floor_pages:
                    order = ORDERS[rep % len(ORDERS)]
                try:
                    for name in order:
                        pages[name]()
                finally:
                    server.terminate()
                    server.wait(10)
                ratios = (
                    f" (/ figure alone: cold {cold[-1] / floors['the figure alone'][-1]:.2f}, "
                    f"warm {warm[-1] / floors['the figure alone'][-1]:.2f})"
                    if floor_pages
                    else ""
                )
                print(
                    f"rep {rep}: server ready after {boot[-1]:.2f} s; link to picture: cold server {cold[-1]:.2f} "
                    f"s, warm server (shared run) {warm[-1]:.2f} s"
                    + "".join(f"; {n} {v[-1]:.2f} s" for n, v in floors.items() if v)
                    + ratios
                    + f"; load {_load()}"
                )
        finally:
            browser.close()
            for _, _, server in floor_pages:
                server.terminate()
                server.wait(10)
    mc, mw, mb = statistics.median(cold), statistics.median(warm), statistics.median(boot)
    print(f"median server start-up {mb:.2f} s (`streamlit run` to a passing health check)")
    print(f"median warm {mw:.2f} s (a finished run); ratio to the 1.5 s target = {mw / 1.5:.2f}")
    print(f"median launch + link to picture {statistics.median(b + c for b, c in zip(boot, cold)):.2f} s")
    print(f"median cold {mc:.2f} s; ratio to the 2.5 s target = {mc / 2.5:.2f}")
    if floor_pages:
        bare, alone = (statistics.median(v) for v in floors.values())
        print(f"load average at the end: {_load()}")
        print(
            f"floor of any Streamlit page here: {bare:.2f} s bare, {alone:.2f} s with the same figure alone; "
            f"flowviz / the figure alone (medians): warm {mw / alone:.2f} (target 1.15), cold {mc / alone:.2f} "
            "(target 1.3); medians of each repetition's ratios: warm "
            f"{statistics.median(w / f for w, f in zip(warm, floors['the figure alone'])):.2f}, cold "
            f"{statistics.median(c / f for c, f in zip(cold, floors['the figure alone'])):.2f}"
        )
    if CPU.get("the figure alone"):
        base = statistics.median(CPU["the figure alone"])
        print(
            "renderer main-thread CPU until the picture (medians): "
            + ", ".join(f"{n} {statistics.median(v):.2f} s ({statistics.median(v) / base:.2f})" for n, v in CPU.items())
        )


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


# the pages of a repetition with --floor, in turn (the cold page before the warm one, whose run it trained)
ORDERS = [
    ["bare Streamlit page", "cold", "the figure alone", "warm"],
    ["cold", "the figure alone", "warm", "bare Streamlit page"],
    ["the figure alone", "cold", "bare Streamlit page", "warm"],
]

# Not flowviz: a page with the figure flowviz sends (read once per server) and the word the timing waits for.
FLOOR_APP = """
import sys
import plotly.io as pio
import streamlit as st

@st.cache_resource
def figure(path):
    return pio.from_json(open(path).read())

if sys.argv[1:]:
    st.plotly_chart(figure(sys.argv[1]), width="stretch", theme=None, key="fig")
st.write("done")
"""


def _floor_pages(cfg, tmp: Path, browser) -> list[tuple[str, str, subprocess.Popen]]:
    """(url, finished-predicate, server) of the two pages that are not flowviz, each opened once (caches filled)."""
    import flowviz
    from flowviz.plots import FIGURES
    from flowviz.training.analysis import analyse

    r = flowviz.train(cfg)
    (tmp / "fig.json").write_text(FIGURES["characteristics"](analyse(r.model, r.data, history=r.history)).to_json())
    (tmp / "floor.py").write_text(FLOOR_APP)
    text = "() => document.body.innerText.includes('done')"
    drawn = "() => document.body.innerText.includes('done') && document.querySelector('.js-plotly-plot') !== null"
    pages = []
    for args, done in (([], text), ([str(tmp / "fig.json")], drawn)):
        port = _port()
        server = _serve(port, tmp / "cache", script=tmp / "floor.py", args=args)
        pages.append((f"http://127.0.0.1:{port}/", done, server))
        _open(browser, pages[-1][0], done)
    return pages


def prebuilt(a):
    from playwright.sync_api import sync_playwright

    import flowviz
    from flowviz.core.presets import preset_configs, preset_info
    from flowviz.runfiles import cache
    from flowviz.serve.settings import Settings
    from flowviz.training.train import train

    name = a.preset if a.preset != "reference" else "moons"
    title = preset_info(name)["title"]
    picks = []
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        os.environ["FLOWVIZ_CACHE_DIR"] = tmp
        for cfg in preset_configs(name):
            cfg = cfg.with_sets(a.set)
            r = train(cfg)
            cache.store(cfg, r.model, r.history, r.metrics, settings=Settings.from_env())
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        q = "&".join(f"{k}={v}" for k, v in flowviz.Config(train_steps=30, n_samples=200).to_query().items())
        for rep in range(a.reps):
            port = _port()
            server = _serve(port, tmp)  # a restarted server: the scenario comes from the disk cache
            try:
                picks.append(_pick(browser, f"http://127.0.0.1:{port}/?{q}", title))
            finally:
                server.terminate()
                server.wait(10)
            print(f"rep {rep}: picked '{title}', finished picture after {picks[-1]:.2f} s")
        browser.close()
    m = statistics.median(picks)
    print(f"median from pick to picture {m:.2f} s; ratio to the 1 s target = {m:.2f}")


if __name__ == "__main__":
    main()
