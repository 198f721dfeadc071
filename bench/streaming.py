"""Training speed while a browser page watches and refreshes, against the same run with no page.

Starts the real server and, per repetition, trains two runs of the same size (different seeds, so neither
is shared): one with a headless Chromium page open on it all the way (metrics refresh twice a second,
figures once a second), and one whose page is closed as soon as training starts, so nothing polls it.
Each run's steps per second is what its last snapshot reports (training time only, evaluation included in
both). The last line gives the median ratio watched / unwatched (target: at least 0.75).

    python bench/streaming.py [--reps 3] [--steps 3000]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from first_picture import ARGS, DONE, _port, _serve  # noqa: E402

import flowviz  # noqa: E402


def _steps_per_second(page) -> float:
    text = page.inner_text("body")
    m = re.search(r"steps / s\s*\n\s*([0-9.]+)", text)
    if not m:
        raise RuntimeError("no steps / s metric on the page")
    return float(m.group(1))


def main(argv=None):
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--set", action="append", default=[], help="config overrides KEY=VALUE")
    ap.add_argument("--min-rate", type=float, default=40.0, help="steps/s surely reached with no page watching")
    a = ap.parse_args(argv)
    base = flowviz.preset("reference").replace(train_steps=a.steps).with_sets(a.set)
    watched, alone = [], []
    with sync_playwright() as pw, tempfile.TemporaryDirectory() as tmp:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        port = _port()
        server = _serve(port, Path(tmp))
        try:

            def link(seed):
                q = "&".join(f"{k}={v}" for k, v in base.replace(seed=seed).to_query().items())
                return f"http://127.0.0.1:{port}/?{q}"

            for rep in range(a.reps):
                page = browser.new_page(viewport={"width": 1280, "height": 720})
                page.goto(link(100 + rep))
                page.wait_for_function(DONE, timeout=600_000)
                watched.append(_steps_per_second(page))
                page.close()
                page = browser.new_page(viewport={"width": 1280, "height": 720})
                page.goto(link(200 + rep))
                page.wait_for_function("() => /training|done/.test(document.body.innerText)", timeout=60_000)
                page.close()  # nobody watches this one ...
                time.sleep(a.steps / a.min_rate)  # ... until it has surely finished
                page = browser.new_page(viewport={"width": 1280, "height": 720})
                page.goto(link(200 + rep))  # the same config: shows the finished run
                page.wait_for_function(DONE, timeout=600_000)
                alone.append(_steps_per_second(page))
                page.close()
                print(f"rep {rep}: watched {watched[-1]:.0f} steps/s, unwatched {alone[-1]:.0f} steps/s")
        finally:
            server.terminate()
            server.wait(10)
            browser.close()
    mw, ma = statistics.median(watched), statistics.median(alone)
    print(f"median steps/s: watched {mw:.0f}, unwatched {ma:.0f}; ratio watched/unwatched = {mw / ma:.2f}")


if __name__ == "__main__":
    main()
