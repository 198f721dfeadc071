import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

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
    many process pools a test process makes; a server stops it with its last pool (flowviz.serve.work.pool), which
    here would restart it for every test that trains in a worker. At the end, the forkservers this process
    started are killed (as flowviz.serve.work.pool does: their own exit could wait on torch's threads); the resource
    tracker ends by itself once the last worker has (a pool a test left open holds it until then)."""
    import signal

    from flowviz.serve.work import pool

    stop = pool.stop_helper_processes
    pool.stop_helper_processes = lambda: None
    yield
    pool.stop_helper_processes = stop
    for pid in os.listdir("/proc") if os.path.isdir("/proc") else []:
        try:
            if not pid.isdigit() or b"multiprocessing.forkserver" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue
            if int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) == os.getpid():
                os.kill(int(pid), signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            pass


def pytest_collection_modifyitems(config, items):
    """Files with browser tests first, then those with slow ones (most such tests first), then the rest (most
    tests first): pytest-xdist hands whole files to its two processes in this order (`make test` passes
    --no-loadscope-reorder), so the long files start early and the short ones fill in at the end. xdist's own
    order (most tests first) left the single-test browser files to the end: one process ran 72 s alone."""
    files: dict[str, list[int]] = {}
    for item in items:
        counts = files.setdefault(item.nodeid.split("::")[0], [0, 0, 0])
        counts[0] += item.get_closest_marker("browser") is not None
        counts[1] += item.get_closest_marker("slow") is not None
        counts[2] += 1
    rank = {f: (not c[0], not c[1], -c[0], -c[1], -c[2]) for f, c in files.items()}
    items.sort(key=lambda item: rank[item.nodeid.split("::")[0]])  # stable: each file's tests stay in order
