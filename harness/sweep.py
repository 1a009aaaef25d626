"""A sweep: planned (spec, backend) tasks measured by workers (this host's, or a Ray cluster's) into one CSV,
which this process alone writes: every row is appended the moment it exists, so a killed sweep loses nothing."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path

from frameworks import label

from .measure import MeasureConfig
from .plan import Task
from .store import ResultRow, Status, append_rows, done_keys
from .workers.local import FAILED, local_rows

RETRIED_ON_RESUME = (Status.ERROR, Status.TIMEOUT)  # transient: a re-run may succeed


def make_run_id() -> str:
    return uuid.uuid4().hex[:12]


def run_sweep(
    tasks: list[Task],
    config: MeasureConfig,
    output: Path,
    timeout_s: float,
    resume: bool = False,
    keep_failed: bool = False,
    retry_unavailable: bool = False,
    on_row: Callable[[Task, ResultRow | None], None] | None = None,
    workers: list[dict[str, str]] | None = None,
    ray_address: str | None = None,
    accelerator_type: str | None = None,
) -> Iterator[ResultRow]:
    """Measure `tasks`, appending each row to `output` as soon as it exists; yields the rows.
    With `resume`, tasks whose (spec, backend) the file already holds are skipped (on_row gets None),
    except those whose newest row is `error` or `timeout`, which run again unless `keep_failed`, and
    `unavailable` ones with `retry_unavailable` (a library installed since the rows were written).
    `workers`: one environment per local worker process (harness/workers/local.py); `ray_address`: run the
    tasks on a Ray cluster instead (harness/workers/ray.py), same rows."""
    config = replace(config, run_id=config.run_id or make_run_id())
    retry = (() if keep_failed else RETRIED_ON_RESUME) + ((Status.UNAVAILABLE,) if retry_unavailable else ())
    skip = done_keys(output, retry=retry) if resume else set()
    todo = []
    for task in tasks:
        if task.key in skip:
            if on_row:
                on_row(task, None)
        else:
            todo.append(task)
    if ray_address:
        from .workers.ray import ray_rows

        rows = ray_rows(todo, config, timeout_s, ray_address, accelerator_type)
    else:
        rows = local_rows(todo, config, timeout_s, workers)
    try:
        for task, row in rows:
            append_rows(output, [row])
            if on_row:
                on_row(task, row)
            yield row
    finally:  # Ctrl-C, SIGTERM, a failed write: the workers end now, not after their task
        rows.close()


def failure_groups(rows: Iterable[ResultRow]) -> list[tuple[Status, str, str, int]]:
    """(status, backend, reason, rows) of a sweep's incorrect, error and timeout rows, grouped, incorrect
    first and then the most frequent: what a sweep prints at its end, so a failure never hides in the CSV."""
    counts: dict[tuple[Status, str, str], int] = {}
    for row in rows:
        if row.status in FAILED:
            key = (row.status, label(row.backend, row.variant), " ".join(row.reason.split())[:300])
            counts[key] = counts.get(key, 0) + 1
    order = {status: i for i, status in enumerate(FAILED)}
    return [(*key, n) for key, n in sorted(counts.items(), key=lambda kv: (order[kv[0][0]], -kv[1], kv[0][1:]))]
