import os
import sys
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    # the in-repo Triton kernels run on the CPU under Triton's interpreter; set before triton is imported
    os.environ.setdefault("TRITON_INTERPRET", "1")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def pytest_xdist_auto_num_workers(config):
    """`-n auto` (the default addopts): one process a core on the CPU; none on a GPU host, where
    parallel tests would share one device and disturb each other's timings."""
    return 0 if torch.cuda.is_available() else None
