"""What every tier shares: the repository root, one disk cache and one forkserver per test process, and the
fixtures that make (and always end) a registry or an executor of a given kind.

The tiers are folders, by what their tests start: unit (nothing but this process), cli (command lines and
scripts as child processes), serve (registries, executors and their worker processes), page (the page in
Streamlit's AppTest), browser (a real Chromium against live servers), ray (Ray clusters). `make test` runs them
with two test processes, a file at a time, in that folder order (the browser tier first: its files are the
longest); `make test-fast` runs the unit tier alone."""

import os
import shutil
import sys
from pathlib import Path

import pytest

# One thread a process for OpenMP (torch) and OpenBLAS (numpy, scipy), here and in every process a test starts
# (each library reads it when it loads: before torch is imported). The suite runs two test processes on two
# cores, each with its servers, workers and command lines beside it: a second thread of a library only spins
# waiting for a core (torch's in the command lines, OpenBLAS's in scipy's griddata). Code that sets its threads
# still does.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# one disk cache per test process (pytest-xdist runs two; each empties its own at start)
os.environ.setdefault(
    "FLOWVIZ_CACHE_DIR", str(ROOT / "test-artifacts" / f"cache-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}")
)
shutil.rmtree(os.environ["FLOWVIZ_CACHE_DIR"], ignore_errors=True)  # each session starts with an empty disk cache
torch.set_num_threads(1)
# a Ray call made unconnected must fail, never start a local cluster (read when Ray is imported: before the tests)
os.environ["RAY_ENABLE_AUTO_CONNECT"] = "0"


@pytest.fixture(scope="session")
def root():
    return ROOT


@pytest.fixture(scope="session", autouse=True)
def _one_forkserver_per_test_process():
    """Keep multiprocessing's forkserver (torch and flowviz preloaded: about 3 s of CPU to start) between the
    many process pools a test process makes: a pool stops it with the last open pool of its process, and this
    one, held open for the session, starts no worker. Shut down at the end, it stops the forkserver and the
    resource tracker if it is the last (the page's registry, which AppTest tests leave to the end of the
    process, stops them at exit as a server does)."""
    from flowviz.serve.work.pool import ProcessPool

    held = ProcessPool(1)
    yield
    held.shutdown()


@pytest.fixture
def registry():
    """``registry(mode, size, **kw)``: a run registry on the executor named ``mode`` ("thread", "process";
    the settings' choice where None) with ``size`` workers (the settings' count where None), other arguments
    as ``Registry`` takes them; each one made is shut down after the test, whatever it still runs."""
    from flowviz.serve.runs.registry import Registry

    made = []

    def make(mode: str | None = None, size: int | None = None, **kw):
        made.append(Registry(max_workers=size, mode=mode, **kw))
        return made[-1]

    yield make
    for reg in reversed(made):
        reg.shutdown()


@pytest.fixture
def executor():
    """``executor(name, size=1)``: the executor of that name (``flowviz.serve.work.executor.EXECUTORS``), shut down
    after the test. The Ray one runs on the test process's one local cluster of 2 CPUs (started on first use and
    kept for the next Ray test: a cluster's start-up and its workers' imports cost seconds)."""
    import tiny

    made = []

    def make(name: str, size: int = 1):
        made.append(tiny.executor(name, size))
        return made[-1]

    yield make
    for ex in reversed(made):
        ex.shutdown()
