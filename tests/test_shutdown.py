"""SIGTERM to a live `streamlit run app.py` with a busy worker leaves no flowviz process alive after 5 s."""

import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from test_browser import ARGS, CHROMIUM
from tiny import free_port

from flowviz import Config

pytestmark = pytest.mark.browser


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (workers, the forkserver and its children, the resource tracker)."""
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as fh:
                    parent[int(d)] = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        found.update(kids)
        todo.extend(kids)
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGTERM])
def test_a_signal_to_a_server_with_a_busy_worker_ends_every_flowviz_process_within_5_s(root, tmp_path, sig):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing")
    from playwright.sync_api import sync_playwright

    port, log = free_port(), tmp_path / "server.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1", FLOWVIZ_WORKERS="1", FLOWVIZ_WARM="0",
               FLOWVIZ_CACHE_DIR=str(tmp_path / "cache"))
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                                 "--server.headless", "true", "--server.address", "127.0.0.1",
                                 "--browser.gatherUsageStats", "false"], cwd=root, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(240):
            try:
                urllib.request.urlopen(url + "/_stcore/health", timeout=1)
                break
            except OSError:
                time.sleep(0.25)
        long_run = Config(n_samples=2000, n_steps=32, width=64, train_steps=20000, seed=77).to_query()
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = b.new_page()
            page.goto(url + "/?" + "&".join(f"{k}={v}" for k, v in long_run.items()))
            deadline = time.time() + 120
            while "workers busy: 1 of 1" not in log.read_text() and time.time() < deadline:
                page.wait_for_timeout(250)
            assert "workers busy: 1 of 1" in log.read_text(), log.read_text()[-2000:]
            page.wait_for_timeout(1000)  # the worker is inside its training steps
            ours = _descendants(proc.pid)
            assert ours, "the server has no child processes"
            t0 = time.time()
            proc.send_signal(sig)
            while (proc.poll() is None or any(_alive(q) for q in ours)) and time.time() - t0 < 5:
                time.sleep(0.1)
            left = [q for q in ours if _alive(q)]
            assert proc.poll() is not None and not left, (left, log.read_text()[-2000:])
            b.close()
    finally:
        if proc.poll() is None:
            proc.kill()
        for q in _descendants(proc.pid):
            try:
                os.kill(q, signal.SIGKILL)
            except OSError:
                pass
