"""Replay a sweep's queue on 1, 2, 4 and 8 workers without a GPU: the old order (longest-first by FLOPs and
bytes, a spec's backends together) against `harness.workers.schedule.plan`, with task costs from measured one-GPU rows
(setup_ms, p50_ms × n_iters and the fixed overheads), under the same host-contention model for both orders.

    python3 -m tools.simulate_schedule [--results results/h200-scaling.csv] [--preset scaling] [--workers 1,2,4,8]

Columns: makespan of the old order, of the new one planned from the rows, and of the new one planned from
the specs alone (what a sweep without earlier rows gets; replayed with the rows' costs); the lower bound
(all work ÷ workers, or the longest task) and each makespan over it; the bound under the contention model
(no order beats it: the host's compile-heavy setups slow each other) and the new makespan over that."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.plan import Task, longest_first
from harness.store import latest, load_rows
from harness.workers import schedule
from specs import get_preset

DEFAULT_RESULTS = Path(__file__).resolve().parent.parent / "results" / "h200-scaling.csv"


@dataclass(frozen=True)
class Line:
    workers: int
    old_s: float
    new_s: float
    new_spec_only_s: float
    bound_s: float
    contended_bound_s: float


def fifo(order: Sequence[int]) -> Callable[[int, object, int], int]:
    """A pick rule for `schedule.replay`: the queue pulled strictly in order (the sweep's queue before SpecQueue)."""
    queue = iter(list(order))
    return lambda worker, held, compiling: next(queue, -1)


def lower_bound(costs: Sequence[schedule.Cost], specs: Sequence, workers: int) -> float:
    """No order ends sooner, contention aside: the larger of all work ÷ workers (inputs once a spec) and the
    longest task (with its inputs)."""
    inputs = {spec: cost.inputs_s for spec, cost in zip(specs, costs, strict=True)}
    total = sum(c.task_s for c in costs) + sum(inputs.values())
    return max(total / workers, max((c.inputs_s + c.task_s for c in costs), default=0.0))


def contended_bound(
    costs: Sequence[schedule.Cost], specs: Sequence, workers: int, contention: float = schedule.CONTENTION
) -> float:
    """No order ends sooner under the contention model either: with k̄ compile-heavy setups running on
    average, the host builds at most f(k̄) = k̄ / (1 + contention × (k̄ − 1)) setups' worth a second (f is
    concave, so a varying k does no better than its mean), and k̄ ≤ (workers × T − other work) ÷ T."""
    bound = lower_bound(costs, specs, workers)
    compile_s = sum(c.setup_s for c in costs if c.compile_heavy)
    other_s = lower_bound(costs, specs, 1) - compile_s if costs else 0.0  # all work but the compile-heavy setups

    def feasible(span: float) -> bool:
        mean_k = min(workers, (workers * span - other_s) / span)
        rate = mean_k if mean_k <= 1 else mean_k / (1 + contention * (mean_k - 1))
        return rate > 0 and compile_s <= span * rate + 1e-9

    if compile_s == 0 or feasible(bound):
        return bound
    low, high = bound, bound
    while not feasible(high):
        high *= 2
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (low, mid) if feasible(mid) else (mid, high)
    return high


def tasks_for(preset: str, backends: list[str]) -> list[Task]:
    """The preset's specs × backends, spec-major as plan_tasks makes them (no adapter is imported)."""
    return [Task(spec, name, "") for spec in get_preset(preset).specs() for name in backends]


def simulate(
    tasks: list[Task], rows, workers: list[int], contention: float = schedule.CONTENTION, max_seconds: float = 0.5
) -> list[Line]:
    costs = schedule.estimate_costs(tasks, rows)  # what the replay charges: the measured rows where they exist
    guessed = schedule.estimate_costs(tasks, (), max_seconds)  # what a sweep without rows plans with
    specs = [t.spec for t in tasks]
    index = {id(t): i for i, t in enumerate(tasks)}

    def makespan(order: list[Task], count: int, pull=lambda order: order) -> float:
        return schedule.replay(costs, specs, count, pull([index[id(t)] for t in order]), contention).makespan_s

    return [
        Line(
            count,
            makespan(longest_first(tasks), count, fifo),  # as the sweep pulled it
            makespan(schedule.plan(tasks, costs, count, contention), count),
            makespan(schedule.plan(tasks, guessed, count, contention), count),
            lower_bound(costs, specs, count),
            contended_bound(costs, specs, count, contention),
        )
        for count in workers
    ]


def table(lines: list[Line]) -> str:
    head = (
        f"{'workers':>7} {'old s':>7} {'new s':>7} {'spec s':>7} {'bound s':>8} {'old÷b':>6} {'new÷b':>6} "
        f"{'spec÷b':>6} {'host b s':>8} {'new÷hb':>6}"
    )
    out = [head]
    for x in lines:
        out.append(
            f"{x.workers:>7} {x.old_s:>7.0f} {x.new_s:>7.0f} {x.new_spec_only_s:>7.0f} {x.bound_s:>8.0f} "
            f"{x.old_s / x.bound_s:>6.2f} {x.new_s / x.bound_s:>6.2f} {x.new_spec_only_s / x.bound_s:>6.2f} "
            f"{x.contended_bound_s:>8.0f} {x.new_s / x.contended_bound_s:>6.2f}"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="one-GPU rows giving the costs")
    parser.add_argument("--preset", default="scaling")
    parser.add_argument("--workers", default="1,2,4,8", help="comma-separated worker counts")
    parser.add_argument("--contention", type=float, default=schedule.CONTENTION, help="0: no host contention")
    parser.add_argument("--max-seconds", type=float, default=0.5, help="the sweep's timing cap, for estimates")
    args = parser.parse_args(argv)
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    if not workers or min(workers) < 1:
        parser.error("--workers: give positive counts, e.g. 1,2,4,8")
    rows = latest(load_rows(args.results))
    backends = sorted({r.backend for r in rows})
    tasks = tasks_for(args.preset, backends)
    matched = len({t.key for t in tasks} & {r.task_key for r in rows})
    print(
        f"{args.preset}: {len(tasks)} tasks ({len(backends)} backends), {matched} with a row in {args.results.name}; "
        f"contention {args.contention:g}"
    )
    print(table(simulate(tasks, rows, workers, args.contention, args.max_seconds)))


if __name__ == "__main__":
    main()
