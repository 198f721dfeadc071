"""The README's cluster recipe, run as written: `ray start --head`, `ray start --address=...` for a second
node (on this machine), the command line's sweep against the cluster, and two server replicas sharing one cache
volume, each started with FLOWVIZ_EXECUTOR=ray RAY_ADDRESS=...

Ray 2.60 turns token authentication on for a head started by `ray start --head`; the recipe sets
RAY_AUTH_MODE=token and one token (RAY_AUTH_TOKEN here, or ~/.ray/auth_token copied to every machine) for every
node and client, as the README says. The cluster lives in its own temporary directory, so no other test's
``ray.init()`` finds it, and is ended by ending the two ``ray start --block`` commands (never ``ray stop``, which
ends every Ray process of the machine).
"""

import json
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny import TINY, LiveServer, cli_sets, free_port, link, wait_for

ray = pytest.importorskip("ray", reason="the ray extra (requirements-ray.txt) is not installed")
# not marked ray: its cluster is `ray start` processes in a directory of their own, which no in-process ray.init()
# finds, so it runs in the parallel part (where no other cluster runs: the ray-marked tests come after it)
pytestmark = pytest.mark.slow

RAY = str(Path(sys.executable).parent / "ray")
CHROMIUM = "/usr/bin/chromium"
AUTH = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}  # every node and client of the recipe


def _nodes(address: str) -> int:
    """Alive nodes of the cluster at ``address``, asked from a separate process (this one stays unconnected)."""
    code = (
        f"import ray; ray.init(address={address!r}, log_to_driver=False); "
        "print(sum(n['Alive'] for n in ray.nodes()), int(ray.cluster_resources().get('CPU', 0)))"
    )
    p = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=dict(os.environ, **AUTH)
    )
    return tuple(int(v) for v in p.stdout.split()[-2:]) if p.returncode == 0 else (0, 0)


@pytest.fixture(scope="module")
def cluster():
    """(address, temp dir): a head started by `ray start --head` and a second node by `ray start --address`."""
    import shutil
    import tempfile

    # a short path: Ray's sockets live below it and a socket path has at most 107 bytes (pytest's are longer)
    tmp = Path(tempfile.mkdtemp(prefix="fvray", dir="/tmp"))
    port = free_port()
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", **AUTH)
    env.pop("RAY_ADDRESS", None)
    head_log = tmp / "head.log"
    head = subprocess.Popen(
        [
            RAY,
            "start",
            "--head",
            f"--port={port}",
            "--num-cpus=1",
            "--block",
            f"--temp-dir={tmp / 't'}",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ],
        env=env,
        stdout=open(head_log, "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    procs = [head]
    try:
        # the address the head prints for the other machines (Ray picks this machine's interface, not loopback)
        assert wait_for(
            lambda: re.search(r"--address='([\d.]+:\d+)'", head_log.read_text()) or head.poll() is not None, 120
        ), head_log.read_text()[-2000:]
        m = re.search(r"--address='([\d.]+:\d+)'", head_log.read_text())
        assert m, head_log.read_text()[-2000:]
        address = m.group(1)
        worker = subprocess.Popen(
            [RAY, "start", f"--address={address}", "--num-cpus=1", "--block", "--disable-usage-stats"],
            env=env,
            stdout=open(tmp / "worker.log", "w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        procs.append(worker)
        deadline = time.time() + 90
        while _nodes(address) != (2, 2):
            assert worker.poll() is None, (tmp / "worker.log").read_text()[-2000:]
            assert time.time() < deadline, (tmp / "worker.log").read_text()[-2000:]
            time.sleep(1)
        yield address, tmp
    finally:
        for p in reversed(procs):  # `ray start --block` ends its node's processes when it is ended
            p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, 9)
        shutil.rmtree(tmp, ignore_errors=True)


def test_two_ray_start_nodes_form_one_cluster_of_their_cpus(cluster):
    address, _ = cluster
    assert _nodes(address) == (2, 2)  # the head and the second node, one CPU each


def test_the_command_line_sweeps_on_the_ray_start_cluster(cluster, tmp_path, root):
    address, _ = cluster
    env = dict(os.environ, RAY_ADDRESS=address, **AUTH)
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "flowviz",
            "sweep",
            "--executor",
            "ray",
            *cli_sets(TINY),
            "--vary",
            "n_steps=1,2,4,8",
            "--sequential",
            "--out",
            str(tmp_path),
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    doc = json.loads((tmp_path / "sweep.json").read_text())
    assert [m["n_steps"] for m in doc["members"]] == [1, 2, 4, 8] and (tmp_path / "sweep.html").exists()
    assert "member 4 of 4 finished" in p.stderr + p.stdout  # one member per worker, progress as they finish


@pytest.mark.browser
def test_two_replicas_on_the_cluster_share_one_cache_volume(cluster, tmp_path):
    """A link trained through replica 1 (on the cluster) opens finished on replica 2, from the shared cache."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing")
    from playwright.sync_api import sync_playwright

    address, _ = cluster
    env = {
        "FLOWVIZ_EXECUTOR": "ray",
        "RAY_ADDRESS": address,
        "FLOWVIZ_CACHE_DIR": str(tmp_path / "shared"),
        "FLOWVIZ_WARM": "0",
        **AUTH,
    }
    q = "&".join(f"{k}={v}" for k, v in link(TINY).items())
    done = (
        "() => document.body.innerText.includes('done') && !document.body.innerText.includes('Live view') "
        "&& document.querySelector('.js-plotly-plot') !== null"
    )
    one, two = LiveServer(env, wait_s=120), LiveServer(env, wait_s=120)
    with one as url1, two as url2, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        for url in (url1, url2):
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.goto(f"{url}/?{q}")
            page.wait_for_function(done, timeout=120_000)
            assert page.locator("[data-testid='stException']").count() == 0
            page.close()
        browser.close()
        log1, log2 = one.log.read_text(), two.log.read_text()
    assert re.search(r"run \w+ started (for \S+ )?\(runs started: 1\)", log1), log1[-2000:]  # trained on the cluster
    assert "from the disk cache" in log2 and " started (runs started" not in log2, log2[-2000:]  # not trained again
