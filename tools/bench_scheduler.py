"""Scheduling overhead of the sweep: N tiny tasks (decode, B=1, 16 keys, 2 heads, one timed call)
through the worker processes, against the time the workers spent measuring them. A benchmark, not a
test (the target: under 50 ms a task).

    python3 -m tools.bench_scheduler [--tasks 1000] [--workers 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from harness.measure import MeasureConfig
from harness.plan import plan_tasks
from harness.sweep import run_sweep
from harness.timer import Repetition
from specs import ExperimentSpec


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    specs = [ExperimentSpec("decode", 1, 1, 16 + i, 2, 1, 16, model="bench") for i in range(args.tasks)]
    tasks = plan_tasks(specs, ["torch-naive"])
    config = MeasureConfig(device="cpu", repetition=Repetition(iterations=1, warmup=0))
    with tempfile.TemporaryDirectory() as folder:
        t0 = time.perf_counter()
        rows = list(run_sweep(tasks, config, Path(folder) / "b.csv", timeout_s=60, workers=[{}] * args.workers))
        wall = time.perf_counter() - t0
    measuring = sum(r.setup_ms + r.p50_ms for r in rows) / 1e3  # the work inside the workers, summed
    per_task = (wall * args.workers - measuring) / len(rows)
    print(f"{len(rows)} tasks through {args.workers} workers: {wall:.1f} s wall, {measuring:.1f} s of prepare + "
          f"call in the workers; overhead {per_task * 1e3:.1f} ms a task a worker "
          f"(worker start, inputs, reference check, row, CSV write, scheduling)")  # fmt: skip


if __name__ == "__main__":
    main()
