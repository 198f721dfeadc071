"""What the tests share: the repository root and the tiny runs (a few hundred points, a few dozen steps:
well under a second each on one core). Files that need a variant derive it with ``.replace``."""

from pathlib import Path

from flowviz import Config

ROOT = Path(__file__).resolve().parent.parent

TINY = Config(n_samples=120, n_steps=4, width=8, train_steps=30)  # runs that only have to finish
SMALL = Config(n_samples=200, n_steps=6, width=8, train_steps=60)  # runs whose numbers are compared
SWEEP = SMALL.replace(n_steps=16, train_steps=40, lr=0.02, seed=3)  # sweeps, which vary the depth from the default


def link(config: Config) -> dict[str, str]:
    """The link parameters of ``config``'s keys that differ from the defaults."""
    default = Config().to_query()
    return {k: v for k, v in config.to_query().items() if v != default[k]}


def cli_sets(config: Config) -> list[str]:
    """``--set KEY=VALUE`` arguments for ``config``'s keys that differ from the defaults."""
    return [arg for k, v in link(config).items() for arg in ("--set", f"{k}={v}")]


def wait_for(pred, timeout: float = 60) -> bool:
    """True as soon as ``pred()`` is, False after ``timeout`` seconds (polled every 20 ms)."""
    import time

    t = time.time()
    while time.time() - t < timeout:
        if pred():
            return True
        time.sleep(0.02)
    return False


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SERVER_LOGS: dict[str, Path] = {}  # each live server's log by its address (a failing page wait quotes it)


class LiveServer:
    """A `streamlit run app.py` on a free loopback port (``with LiveServer(env=...) as url``), its output in
    ``self.log``; started once its health check answers (within ``wait_s``), ended on leaving."""

    def __init__(self, env: dict | None = None, wait_s: float = 120.0):
        import tempfile

        self.env, self.wait_s = env or {}, wait_s
        self.log = Path(tempfile.mkdtemp()) / "streamlit.log"

    def __enter__(self) -> str:
        import os
        import subprocess
        import sys
        import urllib.request

        port = free_port()
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.env)
        self.proc = subprocess.Popen(
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
            cwd=ROOT,
            env=env,
            stdout=open(self.log, "w"),
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{port}"
        SERVER_LOGS[self.url] = self.log

        def healthy():
            try:
                urllib.request.urlopen(self.url + "/_stcore/health", timeout=1)
                return True
            except OSError:
                return self.proc.poll() is not None  # it died: stop waiting

        if not wait_for(healthy, self.wait_s) or self.proc.poll() is not None:
            self.__exit__()
            raise RuntimeError(f"streamlit did not start: {self.log.read_text()[-2000:]}")
        return self.url

    def __exit__(self, *exc) -> None:
        import subprocess

        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def executor(name: str, size: int = 1):
    """``make_executor`` for a test; the Ray one on the test process's one local cluster of 2 CPUs (started on
    first use and kept for the next Ray test: a cluster's start-up and its workers' imports cost seconds)."""
    from flowviz.serve.settings import Settings
    from flowviz.serve.work.executor import make_executor

    if name == "ray":
        from flowviz.serve.work.ray_executor import ray_started

        ray_started(num_cpus=2)
    return make_executor(Settings(), size=size, name=name)
