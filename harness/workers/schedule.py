"""Plan the order of a sweep's queue for the makespan on N workers that pull from one shared queue.

A task costs `inputs_s` (drawing its spec's inputs and fp32 reference, paid when a worker starts a spec it
does not hold), `setup_s` (prepare plus the first call: compiles, plan(), autotuning) and `measure_s` (the timed
calls, their warm-up and L2 flushes, the check). The estimate comes from the spec, or from a results file's row
of the same task key (its measured `setup_ms` and p50_ms × n_iters, plus the fixed overheads below).

Host contention: the compile-heavy backends' setups slow each other down. A setup that runs while k of them
run on the host progresses at 1 / (1 + CONTENTION × (k − 1)) of its speed alone. CONTENTION is fitted to
the four-H200 `scaling` run (2026-11-29): one prefill's setup took 216 s against 106 s for its neighbours
while four ran at once, (216 / 106 − 1) / 3 = 0.35 (docs/scale-out.md). The same model replays any order
(`replay`), so the old and the new order are compared under the same assumption.

The sweep's queue (`SpecQueue`) gives a worker the next task of the spec whose inputs it holds, else the head.
`plan` is a pure function of (tasks, costs, workers): it replays those pulls with the cost model, a free worker
starting the spec with the most work left that no worker holds, and starting a compile-heavy setup only while
fewer than `cap` run if a lighter spec is left (the cap is the one, from 1 to N, whose replay ends first). The
sequence of the picks is the queue; a worker that comes earlier or later than planned takes the next task
anyway, so a wrong estimate costs time, never a task."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from specs import ExperimentSpec

COMPILE_HEAVY = frozenset({"torch-compile", "flex", "triton"})
CONTENTION = round((216 / 106 - 1) / 3, 2)  # 0.35: four compiles at once, 216 s against 106 s

# fixed overheads, fitted on the one-GPU H200 `scaling` rows (2026-11-23; seconds between consecutive rows)
INPUTS_S = 0.65  # a worker's first task of a spec: inputs and reference (0.82 s against 0.16 s for the rest)
TASK_OVERHEAD_S = 0.13  # an ok row beyond its setup and timed calls
TIMING_OVERHEAD = 0.3  # warm-up calls and L2 flushes, as a share of p50 × n_iters
NOT_MEASURED_S = 0.2  # a row that is not ok (unsupported, unavailable, oom, error): 0.03-0.8 s, mean 0.2

# estimates from the spec alone (no row): an H100/H200's rough rates, 25 timed calls within the time cap
MATMUL_FLOPS = 400e12
COPY_BYTES_S = 3.0e12
LAUNCH_S = 20e-6
TIMED_CALLS = 25
SETUP_S = {"torch-compile": 0.5, "flex": 2.0, "triton": 0.6, "flash-attn4": 0.25}  # others: DEFAULT_SETUP_S
DEFAULT_SETUP_S = 0.05
COMPILE_S_PER_TFLOP = {"torch-compile": 6.0}  # inductor's build and first call grow with the shape (59 s at 8.8)
# the naive backends hold the score matrix: past this many scores (batch × query heads × Σ q·k) every one of
# them ran out of memory at once on the H200 (141 GB), no build, no timed call; below it, most ran
SCORES_LIMIT = {"torch-compile": 48e9, "torch-naive": 12e9, "sdpa-math": 12e9}


class Schedulable(Protocol):
    spec: ExperimentSpec
    backend: str

    @property
    def key(self) -> tuple: ...


@dataclass(frozen=True)
class Cost:
    """Seconds one task takes a worker alone; `compile_heavy`: its setup slows down beside other such setups."""

    setup_s: float
    measure_s: float
    inputs_s: float = INPUTS_S
    compile_heavy: bool = False

    @property
    def task_s(self) -> float:
        """Setup and measuring, for a worker that already holds the spec's inputs."""
        return self.setup_s + self.measure_s


def estimate(spec: ExperimentSpec, backend: str, max_seconds: float = 0.5) -> Cost:
    """A task's cost from its spec: a compile-heavy backend's build, and TIMED_CALLS calls at the roofline."""
    if spec.num_q_heads * spec.batch.visible_pairs(causal=False) > SCORES_LIMIT.get(backend, float("inf")):
        return Cost(0.0, NOT_MEASURED_S, compile_heavy=backend in COMPILE_HEAVY)
    call_s = max(spec.flops / MATMUL_FLOPS, spec.ideal_bytes / COPY_BYTES_S) + LAUNCH_S
    setup_s = SETUP_S.get(backend, DEFAULT_SETUP_S) + COMPILE_S_PER_TFLOP.get(backend, 0.0) * spec.flops / 1e12
    measure_s = TASK_OVERHEAD_S + (1 + TIMING_OVERHEAD) * min(max_seconds, TIMED_CALLS * call_s)
    return Cost(setup_s, measure_s, compile_heavy=backend in COMPILE_HEAVY)


def cost_from_row(row, backend: str) -> Cost:
    """A task's cost from its measured row (a ResultRow, or any object with its fields)."""
    heavy = backend in COMPILE_HEAVY
    if getattr(row.status, "value", row.status) != "ok":
        return Cost((row.setup_ms or 0.0) / 1e3, NOT_MEASURED_S, compile_heavy=heavy)
    timed_s = row.p50_ms * row.n_iters / 1e3
    return Cost(row.setup_ms / 1e3, TASK_OVERHEAD_S + (1 + TIMING_OVERHEAD) * timed_s, compile_heavy=heavy)


def estimate_costs(tasks: Iterable[Schedulable], rows: Iterable = (), max_seconds: float = 0.5) -> list[Cost]:
    """One cost a task: from the newest row of its task key where `rows` holds one, else from its spec."""
    measured = {row.task_key: row for row in rows}  # rows in file order: the later one of a key wins
    return [
        cost_from_row(measured[t.key], t.backend) if t.key in measured else estimate(t.spec, t.backend, max_seconds)
        for t in tasks
    ]


@dataclass(frozen=True)
class Replay:
    makespan_s: float
    order: tuple[int, ...]  # task indices in the order the workers pulled them
    worker_of: tuple[int, ...]  # per task index, the worker that ran it
    spec_switches: int


def replay(
    costs: Sequence[Cost],
    specs: Sequence,
    workers: int,
    pick: Callable[[int, object, int], int] | Sequence[int],
    contention: float = CONTENTION,
) -> Replay:
    """Event simulation of `workers` pulling tasks. `pick(worker, spec it holds, compile-heavy setups running)`
    returns the next task index (or -1: none left); a sequence of indices is a queue pulled as the sweep pulls
    it (`SpecQueue`: the worker's own spec first, else the head).
    A worker pays a task's inputs_s when its spec differs from the one it holds, then setup_s (slowed by
    contention when compile-heavy), then measure_s."""
    if workers < 1:
        raise ValueError("workers: need at least 1")
    if not callable(pick):
        queue = SpecQueue(list(pick), specs.__getitem__)
        pick = lambda worker, held, compiling: queue.take(held, -1)  # noqa: E731
    held: list[object] = [None] * workers
    running: dict[int, list] = {}  # worker -> [task, phase (0 inputs, 1 setup, 2 measure), work left]
    order, worker_of, switches = [], [-1] * len(costs), 0
    now = 0.0

    def compiling() -> int:
        return sum(1 for task, phase, _ in running.values() if phase == 1 and costs[task].compile_heavy)

    def begin(worker: int) -> bool:
        nonlocal switches
        task = pick(worker, held[worker], compiling())
        if task < 0:
            return False
        order.append(task)
        worker_of[task] = worker
        switch = specs[task] != held[worker]
        switches += switch
        held[worker] = specs[task]
        running[worker] = [task, 0, costs[task].inputs_s if switch else 0.0]
        return True

    def advance(worker: int) -> None:
        """Move the worker's task past its finished (or empty) phases; a finished task frees the worker."""
        while worker in running and running[worker][2] <= 1e-12:
            task, phase, _ = running[worker]
            if phase == 2:
                del running[worker]
                begin(worker)
            else:
                running[worker][1:] = [phase + 1, costs[task].setup_s if phase == 0 else costs[task].measure_s]

    for worker in range(workers):
        if begin(worker):
            advance(worker)
    while running:
        slow = 1 + contention * max(0, compiling() - 1)
        rate = {w: (1 / slow if s[1] == 1 and costs[s[0]].compile_heavy else 1.0) for w, s in running.items()}
        step = min(s[2] / rate[w] for w, s in running.items())
        now += step
        for w, s in running.items():
            s[2] -= step * rate[w]
        for w in sorted(w for w, s in running.items() if s[2] <= 1e-9 * max(1.0, now)):
            running[w][2] = 0.0
            advance(w)
    return Replay(now, tuple(order), tuple(worker_of), switches)


class SpecQueue:
    """The sweep's one queue: a worker takes the first task of the spec whose inputs it holds, else the head,
    so that a spec's backends stay on one worker while the planned order decides which spec comes next.
    Safe to share between threads."""

    def __init__(self, items: Iterable, spec_of: Callable):
        self._items = list(items)
        self._taken = [False] * len(self._items)
        self._head = 0
        self._spec_of = spec_of
        self._by_spec: dict[object, deque[int]] = {}
        for position, item in enumerate(self._items):
            self._by_spec.setdefault(spec_of(item), deque()).append(position)
        self._lock = threading.Lock()

    def take(self, held=None, default=None):
        """The next task for a worker holding `held` (a spec, or None), or `default` when none is left."""
        with self._lock:
            mine = self._by_spec.get(held) if held is not None else None
            if mine:
                position = mine.popleft()
            else:
                while self._head < len(self._items) and self._taken[self._head]:
                    self._head += 1
                if self._head == len(self._items):
                    return default
                position = self._head
                self._by_spec[self._spec_of(self._items[position])].popleft()  # the earliest of its spec
            self._taken[position] = True
            return self._items[position]


def _planner(costs: Sequence[Cost], specs: Sequence, cap: int):
    """The pick rule `plan` replays: a worker stays on its spec (as SpecQueue makes it), its largest task
    first; a free worker starts the spec with the most work left that no worker holds, preferring one whose
    first task is not a compile-heavy setup while `cap` of them run; with none left unheld, it joins the
    spec with the most work left."""
    left: dict[object, list[int]] = {}  # spec -> its task indices, largest first
    for i in sorted(range(len(costs)), key=lambda i: -costs[i].task_s):
        left.setdefault(specs[i], []).append(i)
    work = {spec: sum(costs[i].task_s for i in tasks) for spec, tasks in left.items()}
    holders: dict[object, int] = {}

    def take(worker: int, held, compiling: int) -> int:
        if held in left:
            spec = held
        elif not left:
            return -1
        else:
            by_work = sorted(left, key=lambda s: -work[s])  # stable: ties keep the tasks' order
            unheld = [s for s in by_work if not holders.get(s)]
            light = [s for s in unheld if not costs[left[s][0]].compile_heavy or compiling < cap]
            spec = (light or unheld or by_work)[0]
            if held is not None:
                holders[held] -= 1
            holders[spec] = holders.get(spec, 0) + 1
        i = left[spec].pop(0)
        work[spec] -= costs[i].task_s
        if not left[spec]:
            del left[spec]
        return i

    return take


def plan(
    tasks: Sequence[Schedulable], costs: Sequence[Cost], workers: int, contention: float = CONTENTION
) -> list[Schedulable]:
    """The queue order that ends first on `workers` under the cost model (see the module's docstring)."""
    if len(tasks) != len(costs):
        raise ValueError(f"costs: {len(costs)} for {len(tasks)} tasks")
    specs = [t.spec for t in tasks]
    best = None
    for cap in range(1, max(1, workers) + 1):
        run = replay(costs, specs, max(1, workers), _planner(costs, specs, cap), contention)
        if best is None or run.makespan_s < best.makespan_s - 1e-9:
            best = run
    return [tasks[i] for i in best.order]
