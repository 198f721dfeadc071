"""Time from opening a link to the finished decision surface, in a real headless Chromium.

Each repetition starts a fresh `streamlit run app.py` (a cold server), opens the reference config by
link and waits until training is done and the full (non-live) views are drawn. A second page then opens
the same link on the warm server, where the finished run is shared. Prints the medians; the last line
gives the cold median against the 5 s target.

    python bench/first_picture.py [--reps 5] [--preset reference]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def _port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(port):
    p = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                          "--server.headless", "true", "--server.address", "127.0.0.1"], cwd=ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1)
            return p
        except OSError:
            time.sleep(0.1)
    p.kill()
    raise SystemExit("streamlit did not start")


def _open(browser, url) -> float:
    page = browser.new_page(viewport={"width": 1920, "height": 1080})
    t = time.perf_counter()
    page.goto(url)
    page.wait_for_selector(".js-plotly-plot", timeout=120_000)
    page.wait_for_function("() => document.body.innerText.includes('done') && "
                           "!document.body.innerText.includes('Live view')", timeout=120_000)
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
    a = ap.parse_args(argv)
    cfg = flowviz.preset(a.preset).with_sets(a.set)
    q = "&".join(f"{k}={v}" for k, v in cfg.to_query().items())
    cold, warm = [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        for rep in range(a.reps):
            port = _port()
            server = _serve(port)
            try:
                cold.append(_open(browser, f"http://127.0.0.1:{port}/?{q}"))
                warm.append(_open(browser, f"http://127.0.0.1:{port}/?{q}"))
            finally:
                server.terminate()
                server.wait(10)
            print(f"rep {rep}: cold server {cold[-1]:.2f} s, warm server (shared run) {warm[-1]:.2f} s")
        browser.close()
    mc, mw = statistics.median(cold), statistics.median(warm)
    print(f"median warm {mw:.2f} s")
    print(f"median cold {mc:.2f} s; ratio to the 5 s target = {mc / 5:.2f}")


if __name__ == "__main__":
    main()
