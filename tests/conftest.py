import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("FLOWVIZ_CACHE_DIR", str(ROOT / "test-artifacts" / "cache"))
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def root():
    return ROOT
