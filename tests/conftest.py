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
# a Ray call made unconnected must fail, never start a local cluster (read when Ray is imported: before the tests)
os.environ["RAY_ENABLE_AUTO_CONNECT"] = "0"


@pytest.fixture(scope="session")
def root():
    return ROOT

