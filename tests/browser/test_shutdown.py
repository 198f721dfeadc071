"""A signal to a live `streamlit run app.py` leaves no flowviz process alive after 5 s, and nothing in its log
that reads as a fault: SIGTERM to the server with a busy worker, Ctrl-C (SIGINT to the whole process group)
while it analyses its prebuilt runs."""

import os
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager

import pytest
from tiny import free_port

from flowviz import Config


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


@contextmanager
def _server(root, log, env: dict, *, own_session: bool = False):
    """A `streamlit run app.py` on a free port, logging to ``log``, once its health check answers: (process,
    address). Afterwards it and every process below it are killed if still there."""
    port = free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1", **env)
    with open(log, "wb") as out:  # own_session: a process group of its own, so its group's signal misses pytest
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                "app.py",
                "--server.port",
                str(port),
                "--server.headless",
                "true",
                "--server.address",
                "127.0.0.1",
                "--browser.gatherUsageStats",
                "false",
            ],
            cwd=root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=own_session,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(url + "/_stcore/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
        for q in _descendants(proc.pid):
            try:
                os.kill(q, signal.SIGKILL)
            except OSError:
                pass


@pytest.mark.browser
@pytest.mark.parametrize("sig", [signal.SIGTERM])
def test_a_signal_to_a_server_with_a_busy_worker_ends_every_flowviz_process_within_5_s(root, tmp_path, sig, browser):
    log = tmp_path / "server.log"
    with _server(
        root, log, {"FLOWVIZ_WORKERS": "1", "FLOWVIZ_WARM": "0", "FLOWVIZ_CACHE_DIR": str(tmp_path / "cache")}
    ) as (proc, url):
        # minutes of training, within the server's run budget (a run it refuses never makes its worker busy)
        long_run = Config(n_samples=2000, n_steps=32, width=64, train_steps=5000, seed=77).to_query()
        page = browser.new_page()
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
        page.close()
        assert proc.poll() is not None and not left, (left, log.read_text()[-2000:])
        assert " ERROR " not in log.read_text() and "Traceback" not in log.read_text(), log.read_text()[-2000:]


def _prebuilt(cache_dir) -> int:
    """Every scenario's runs in a disk cache, as `python -m flowviz prebuild` leaves them (untrained weights:
    only their loading and final pictures matter here); returns how many."""
    from flowviz.core.data import make_dataset
    from flowviz.core.model import build_model
    from flowviz.core.presets import preset_configs, preset_names
    from flowviz.runfiles import cache
    from flowviz.serve.settings import Settings
    from flowviz.training.train import run_metrics

    configs = [c for name in preset_names() for c in preset_configs(name)]
    metrics = run_metrics(train=(0.7, 0.5), test=(0.7, 0.5), steps=1)
    for c in configs:
        assert (
            cache.store(
                c, build_model(c, make_dataset(c).n_classes), [], metrics, settings=Settings(cache_dir=str(cache_dir))
            )
            is not None
        )
    return len(configs)


@pytest.mark.slow
def test_ctrl_c_stops_a_server_warming_its_prebuilt_runs_quietly(root, tmp_path):
    """Ctrl-C in the terminal that runs `make run` signals the server, the forkserver and every training
    process at once, here as soon as the server answers (its workers are starting and analysing prebuilt
    runs). The workers ignore it (they start so), the server's shutdown ends them: every process is gone
    within 5 s and the log has no ERROR line (it had one per run being analysed: "final views failed: the
    training process stopped unexpectedly") and no traceback."""
    n = _prebuilt(tmp_path / "cache")
    log = tmp_path / "server.log"
    with _server(
        root,
        log,
        {"FLOWVIZ_WORKERS": "2", "FLOWVIZ_WARM": "1", "FLOWVIZ_CACHE_DIR": str(tmp_path / "cache")},
        own_session=True,
    ) as (proc, _):
        assert "from the disk cache" in _wait_text(log, "from the disk cache")  # warming has begun
        ours = _descendants(proc.pid)
        assert ours, log.read_text()[-2000:]
        t0 = time.time()
        os.killpg(proc.pid, signal.SIGINT)
        while (proc.poll() is None or any(_alive(q) for q in ours | _descendants(proc.pid))) and time.time() - t0 < 5:
            time.sleep(0.1)
        text = log.read_text()
        assert proc.poll() is not None and not [q for q in ours if _alive(q)], text[-2000:]
        assert "flowviz is stopping" in text and " ERROR " not in text and "Traceback" not in text, (n, text[-3000:])


def _wait_text(log, text: str, timeout: float = 10.0) -> str:
    """The log once ``text`` is in it (or ``timeout`` s have passed)."""
    t0 = time.time()
    while text not in log.read_text() and time.time() - t0 < timeout:
        time.sleep(0.05)
    return log.read_text()


# A server process as `streamlit run` makes it (flowviz.ui.server: its registry, its logging, its shutdown on a
# signal), without the browser: it starts one run, watches it like a page, and prints each status it sees.
_SIGNALLED = r"""
import signal, sys, threading, time
from flowviz import Config
from flowviz.ui import shared

stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *a: stop.set())
reg = shared.registry()
if sys.argv[3] != "at-once":
    reg.ready(60)
run = reg.start(Config(n_samples=2000, n_steps=32, width=64, train_steps=int(sys.argv[1]), seed=int(sys.argv[2])))
seen = None
while not stop.is_set():
    reg.get(run.key)
    now = (str(run.status), run.latest.step if run.latest else -1)
    if now != seen:
        print("status", *now, flush=True)
        seen = now
    time.sleep(0.01)
shared.shut_down()
print("stopped", run.status, flush=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize("point", ["queued", "first step", "training", "final pictures"])
def test_sigterm_at_any_point_of_a_run_marks_it_cancelled_with_no_error_in_the_log(root, tmp_path, point):
    """SIGTERM as soon as the run is started (its worker process still starting), at its first snapshot,
    mid-training, while a worker makes its final pictures: the run ends cancelled (or done, when it had finished),
    every process is gone within 5 s, and the log has no ERROR line and no traceback."""
    steps = {"final pictures": 60}.get(point, 5000)
    env = dict(
        os.environ,
        PYTHONUNBUFFERED="1",
        FLOWVIZ_WORKERS="1",
        FLOWVIZ_WARM="0",
        FLOWVIZ_CACHE_DIR=str(tmp_path / "cache"),
        PYTHONPATH=str(root),
    )
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _SIGNALLED,
                str(steps),
                str(len(point)),
                "at-once" if point == "queued" else "ready",
            ],
            cwd=root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    want = {
        "queued": "status ",
        "first step": "status training",
        "training": "status training",
        "final pictures": "status done",
    }[point]
    try:
        text = _wait_text(log, want, timeout=120)
        if point == "training":
            time.sleep(1.0)
        assert want in text, text[-2000:]
        ours = _descendants(proc.pid)
        t0 = time.time()
        proc.send_signal(signal.SIGTERM)
        while (proc.poll() is None or any(_alive(q) for q in ours)) and time.time() - t0 < 5:
            time.sleep(0.05)
        text = log.read_text()
        assert proc.poll() is not None and not [q for q in ours if _alive(q)], text[-2000:]
        assert "stopped cancelled" in text or ("stopped done" in text and point == "final pictures"), text[-2000:]
        assert " ERROR " not in text and "Traceback" not in text, text[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
        for q in _descendants(proc.pid):
            try:
                os.kill(q, signal.SIGKILL)
            except OSError:
                pass
