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


def pytest_configure(config):
    """A test worker of several on the CPU computes with one thread: one process a core already keeps every core
    busy, and two workers of two threads each on two cores wait on each other's threads. Processes the tests
    start (sweep workers, the README's commands) keep PyTorch's default."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and not torch.cuda.is_available():
        torch.set_num_threads(max(1, torch.get_num_threads() // workers))  # the default: a thread a core


def pytest_xdist_auto_num_workers(config):
    """`-n auto` (the default addopts): one process a core on the CPU; none on a GPU host, where
    parallel tests would share one device and disturb each other's timings."""
    return 0 if torch.cuda.is_available() else None
