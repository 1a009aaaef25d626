"""A sweep: planned (spec, backend) tasks measured by workers (this host's, or a Ray cluster's) into one CSV,
which this process alone writes: every row is appended the moment it exists, so a killed sweep loses nothing.
Also the bodies of `run.py sweep` and `run.py check`: their options checked, the run under a progress bar, the
summary at the end."""

from __future__ import annotations

import sys
import textwrap
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from frameworks import label
from specs import SpecError

from .env import device_name
from .measure import MeasureConfig
from .plan import Task
from .store import ResultRow, Status, append_rows, done_keys, labelled
from .timer import Repetition, TimingMode
from .workers.local import FAILED, local_rows

if TYPE_CHECKING:
    from .cli_options import Destination, Measuring, ScaleOut, Selection

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
    # the rows of this device only (a Ray cluster's devices are its own: every row counts there)
    here = None if ray_address or not resume else device_name(config.device)
    skip = done_keys(output, retry=retry, device=here) if resume else set()
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


# ---- the commands: `run.py sweep` (rows into a CSV) and `run.py check` (correctness only, nothing stored) --------


def sweep_command(
    what: Selection, how: Measuring, where: Destination, scale: ScaleOut, console, argv: list[str] | None = None
) -> int:
    """`run.py sweep`: the options checked, the tasks planned, measured under a progress bar into the output CSV,
    the file's table, plots and failed rows printed; returns the exit code (harness/errors.py lists them)."""
    from .atomic import WriteError
    from .calibrate import calibration_file
    from .env import REPO_ROOT, device_slug, gpu_name
    from .errors import (
        EXIT_BAD_INPUT,
        EXIT_INCORRECT,
        EXIT_INTERRUPTED,
        EXIT_TERMINATED,
        Terminated,
        error,
        note,
        terminate_as_interrupt,
    )
    from .options import check_output_dir, check_output_file, plots_beside
    from .plan import plan_sweep, resolve_backends
    from .timer import check_l2_flush
    from .workers.local import log_path_for, worker_environments

    check_measuring(how)
    device = check_scale_out(what.device, where, scale)
    if scale.ray is not None:
        from .workers.ray import connect

        connect(scale.ray)  # before anything is planned: no Ray, no cluster or a dead address is one line
    specs, names, tasks, device = plan_sweep(replace(what, device=device), check_device=scale.ray is None)
    on_gpu = device == "cuda"
    worker_envs = worker_environments(scale.gpus, scale.workers, on_gpu)
    repetition = Repetition(
        iterations=how.iterations,
        min_iterations=how.min_iterations,
        max_iterations=how.max_iterations,
        ci_target=how.ci_target,
        max_seconds=how.max_seconds if how.max_seconds is not None else (10.0 if on_gpu else 1.0),
        warmup=how.warmup if how.warmup is not None else (10 if on_gpu else 2),
    )
    slug = "ray" if scale.ray else device_slug(gpu_name() or "gpu") if on_gpu else "cpu"
    output = where.output if where.output is not None else REPO_ROOT / "results" / f"{slug}.csv"
    check_output_file("--output", output)
    config = MeasureConfig(
        device=device,
        repetition=repetition,
        timing=how.timing,
        run_id=make_run_id(),
        calibration_path=str(calibration_file(slug, output.parent)),  # beside the results, never elsewhere
        calibrate_if_missing=True,
        l2_flush=check_l2_flush(how.l2_flush),
        git_commit=where.git_commit,
    )
    if config.timing_mode is TimingMode.WALL and how.l2_flush != "zero":  # wall-clock timing flushes no L2
        raise SpecError(f"--l2-flush: {how.l2_flush} flushes a GPU's L2; this sweep is timed by the wall clock")
    check_appendable(output)
    plot_dir = where.plot_dir if where.plot_dir is not None else plots_beside(output, REPO_ROOT)
    if where.plots:
        check_output_dir("--plot-dir", plot_dir)

    pairs = resolve_backends(names)
    variants = f" ({len(pairs)} variants)" if len(pairs) > len(names) else ""
    console.print(
        f"sweep [bold]{what.preset.value}[/]: {len(specs)} specs × {len(names)} backends{variants} = {len(tasks)} "
        f"tasks on {device} → {output} (run {config.run_id})"
    )
    unplanned = len(specs) * len(pairs) - len(tasks)
    if unplanned:  # a table's "—" where a variant was not planned: said once here
        console.print(f"{unplanned} (spec, variant) pairs not planned: the variant runs nothing else there than its "
                      "backend's defaults (run.py list says where each key applies)")  # fmt: skip
    again = f"run the same command with --resume (python3 {' '.join(resume_command(argv or sys.argv))})"
    restore = terminate_as_interrupt()  # SIGTERM takes Ctrl-C's path: rows kept, workers ended, the hint
    try:
        rows, skipped = run_with_progress(
            tasks, config, output, how.timeout, console, where.resume, where.keep_failed, worker_envs, scale.ray,
            scale.accelerator_type, where.retry_unavailable,
        )  # fmt: skip
    except KeyboardInterrupt as exc:
        stopped = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        note(f"{stopped}: every finished row is in {output}; to continue where it stopped, {again}")
        return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED
    except WriteError as exc:  # a full disk: the row that did not fit was cut back, every earlier one kept
        error(f"{exc}; the sweep stopped, every earlier row is kept: once there is room, {again}")
        return EXIT_BAD_INPUT
    finally:
        restore()
    summarize_file(output, tasks, len(rows), skipped, console)
    console.print(f"rows appended to [bold]{output}[/]; worker log: {log_path_for(config.run_id)}")
    if where.plots:
        from .report import plots
        from .store import load_rows

        try:
            for path in plots.plot(labelled(load_rows(output)), plot_dir):
                console.print(f"plot: {path}")
        except KeyboardInterrupt:  # every row is stored: only the plots are left to draw
            redraw = f"python3 run.py plot {output} --out-dir {plot_dir}"
            note(f"interrupted while drawing the plots: every row is in {output}; `{redraw}` draws them")
            return EXIT_INTERRUPTED
    failures = failure_groups(rows)
    for status, backend_name, reason, count in failures:  # wrapped at 100 columns, the rest lines indented
        note(textwrap.fill(f"{status} × {count}: {backend_name}: {reason}", 100, subsequent_indent="    "))
    absent: dict[str, dict[str, None]] = {}  # why a cell says unavailable: a line a reason, naming its backends
    for r in rows:
        if r.status is Status.UNAVAILABLE:
            absent.setdefault(" ".join(r.reason.split())[:200], {})[label(r.backend, r.variant)] = None
    for reason, names in sorted(absent.items()):
        line = f"unavailable ({reason}): {', '.join(sorted(names))}"
        note(textwrap.fill(line, 100, subsequent_indent="    ", break_on_hyphens=False))  # names whole
    if any(status is Status.INCORRECT for status, *_ in failures):
        n = sum(count for status, _, _, count in failures if status is Status.INCORRECT)
        error(f"{n} rows are incorrect (a backend's output differs from the fp32 reference; listed above); exit 3")
        return EXIT_INCORRECT
    return 0


def check_measuring(how: Measuring) -> None:
    """--timeout and the repetition options, each a number in its range."""
    from .options import check_number

    check_number("--timeout", how.timeout, minimum=0, inclusive=False)
    check_number("--max-seconds", how.max_seconds, minimum=0, inclusive=False)
    check_number("--iterations", how.iterations, minimum=1)
    check_number("--min-iterations", how.min_iterations, minimum=1)
    check_number("--max-iterations", how.max_iterations, minimum=max(1, how.min_iterations))
    check_number("--warmup", how.warmup, minimum=0)
    check_number("--ci-target", how.ci_target, minimum=0, inclusive=False)
    if how.ci_target >= 1:
        raise SpecError(f"--ci-target: must be below 1 (0.01 = ±1%), got {how.ci_target!r}")


def check_scale_out(device: str | None, where: Destination, scale: ScaleOut) -> str | None:
    """--resume's companions, and the scale-out options that cannot go together; returns the device the sweep
    asks for (--gpus and --ray: cuda, unless --device says otherwise where that can be)."""
    from .options import check_number

    if where.keep_failed and not where.resume:
        raise SpecError("--keep-failed: only means something with --resume")
    if where.retry_unavailable and not where.resume:
        raise SpecError("--retry-unavailable: only means something with --resume")
    check_number("--workers", scale.workers, minimum=1)
    if scale.gpus is not None:
        if device == "cpu":
            raise SpecError("--gpus: runs on GPUs; for a CPU sweep use --workers")
        device = "cuda"
    if scale.ray is not None:
        if scale.gpus is not None or scale.workers is not None:
            raise SpecError("--ray: the cluster places the tasks; leave out --gpus and --workers")
        if not (scale.ray == "auto" or scale.ray.startswith("ray://")):
            raise SpecError(f"--ray: {scale.ray!r} is not valid; expected auto or ray://host:port")
        device = device or "cuda"  # the GPUs are the cluster's, not necessarily this host's
    return device


def check_command(what: Selection, timeout: float, console) -> int:
    """`run.py check`: every backend against the fp32 reference, one call each, nothing stored; the relative
    error per cell printed; 1 if any backend is incorrect or errors."""
    import tempfile

    from rich.markup import escape

    from .options import check_number
    from .plan import plan_sweep
    from .report.tables import pivot, render_rich

    check_number("--timeout", timeout, minimum=0, inclusive=False)
    specs, names, tasks, device = plan_sweep(what)
    config = MeasureConfig(device=device, repetition=Repetition(iterations=1, warmup=0), run_id=make_run_id())
    console.print(f"check [bold]{what.preset.value}[/]: {len(specs)} specs × {len(names)} backends on {device}")
    with tempfile.TemporaryDirectory() as scratch:
        rows, _ = run_with_progress(tasks, config, Path(scratch) / "check.csv", timeout, console)
    shown = labelled(rows)  # variants apart, named as -b takes them
    console.print(render_rich(pivot(shown, "rel_err"), title="‖out − ref‖ / ‖ref‖ against the fp32 reference"))
    bad = [r for r in rows if r.status in (Status.INCORRECT, Status.ERROR, Status.TIMEOUT)]
    counts = Counter(r.status.value for r in rows)
    console.print(", ".join(f"{n} {status}" for status, n in counts.most_common()))
    absent = (Status.UNSUPPORTED, Status.UNAVAILABLE)  # a form a backend lacks, or a backend this machine lacks
    why = Counter((r.status.value, label(r.backend, r.variant), r.reason) for r in rows if r.status in absent)
    for (status, backend_name, reason), n in sorted(why.items()):
        console.print(escape(f"{status} × {n}: {backend_name}: {reason}"), style="dim")
    for r in bad:
        name = label(r.backend, r.variant)
        console.print(f"[red]{r.status}[/] {escape(f'{name} · {r.spec.describe()}: {r.reason}')}")
    return 1 if bad else 0


def resume_command(argv: list[str]) -> list[str]:
    """The command line that was run, with --resume added once."""
    args = [Path(argv[0]).name if argv and argv[0].endswith("run.py") else "run.py", *argv[1:]]
    return args if "--resume" in args else [*args, "--resume"]


def check_appendable(output: Path) -> None:
    """An existing output file must be a whole attnbench CSV before anything is appended to it."""
    from .store import load_rows

    if output.exists() and output.stat().st_size:
        load_rows(output)


def run_with_progress(
    tasks, config, output, timeout, console, resume=False, keep_failed=False, workers=None, ray=None,
    accelerator_type=None, retry_unavailable=False,
):  # fmt: skip
    """run_sweep under a rich progress bar; returns (rows, tasks skipped by resume)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    skipped = 0
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        bar = progress.add_task("measuring", total=len(tasks))

        def on_row(task, row):
            nonlocal skipped
            if row is None:
                skipped += 1
            progress.update(bar, advance=1, description=f"{task.spec.model} {task.spec.workload} · {task.label}")

        rows = list(
            run_sweep(
                tasks, config, output, timeout_s=timeout, resume=resume, keep_failed=keep_failed, on_row=on_row,
                workers=workers, ray_address=ray, accelerator_type=accelerator_type,
                retry_unavailable=retry_unavailable,
            )
        )  # fmt: skip
    return rows, skipped


def summarize_file(output: Path, tasks, measured: int, skipped: int, console) -> None:
    """The table of every planned task as the file now holds it (rows of earlier, resumed runs included)."""
    from .report.tables import pivot, render_terminal
    from .store import labelled, latest, load_rows

    planned = {t.key for t in tasks}
    rows = labelled([r for r in latest(load_rows(output)) if r.task_key in planned])
    if rows:
        for part in render_terminal(pivot(rows, "p50_ms"), console.width, title="p50 latency, ms (the best in bold)"):
            console.print(part)
    counts = Counter(r.status.value for r in rows)
    text = ", ".join(f"{n} {status}" for status, n in counts.most_common())
    head = f"{len(rows)} tasks in the file ({measured} measured now)"
    console.print(f"{head}: {text or 'none'}" + (f"; {skipped} kept from earlier runs by --resume" if skipped else ""))
