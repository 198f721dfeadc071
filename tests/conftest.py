import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# one disk cache per test process (pytest-xdist runs two; each empties its own at start)
os.environ.setdefault("FLOWVIZ_CACHE_DIR",
                      str(ROOT / "test-artifacts" / f"cache-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"))
shutil.rmtree(os.environ["FLOWVIZ_CACHE_DIR"], ignore_errors=True)  # each session starts with an empty disk cache
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def root():
    return ROOT


# Under pytest-xdist (`make test`: -n 2 --dist loadgroup) each file is one group, so its module fixtures (a live
# server, trained runs) are made once, in one process; the tests of SPREAD are dealt out one by one instead
# (independent subprocesses and browsers: the longest files, which would otherwise end the run alone); every
# test that starts a Ray cluster joins the group "ray" (one cluster at a time on the machine).
SPREAD = {"test_bench.py", "test_browser.py"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("xdist_group") is not None:
            continue
        if item.get_closest_marker("ray") is not None:
            item.add_marker(pytest.mark.xdist_group("ray"))
        elif item.path.name not in SPREAD:
            item.add_marker(pytest.mark.xdist_group(item.path.name))
