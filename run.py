#!/usr/bin/env python3
"""attnbench: sweep attention backends over real model shapes, check them against an fp32
reference, time them, and keep every result in a CSV database that drives tables and plots.

    python run.py list
    python run.py sweep --preset smoke
    python run.py table results/h100.csv --metric tflops
    python run.py plot results/h100.csv
"""

from __future__ import annotations

import functools
import sys
from collections import Counter
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from harness.options import ASCII_FLOAT, ASCII_INT, split_list
from specs import MIXES, MODELS, PRESETS, DType, SpecError, Workload

REPO = Path(__file__).resolve().parent
console = Console(width=None if sys.stdout.isatty() else 100, emoji=False)  # piped: 100 columns
app = typer.Typer(
    add_completion=False, no_args_is_help=True, help=__doc__.split("\n\n")[0], pretty_exceptions_enable=False
)

IntOption = functools.partial(typer.Option, parser=ASCII_INT)  # '٣' is refused, not read as 3
FloatOption = functools.partial(typer.Option, parser=ASCII_FLOAT)
PresetName = Enum("PresetName", {name: name for name in PRESETS}, type=str)
TableFormat = Enum("TableFormat", {"rich": "rich", "markdown": "markdown"}, type=str)


def friendly_errors(fn):
    """Bad input ends with one plain line on stderr naming the field, exit 2, not a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from harness.errors import EXIT_BAD_INPUT, describe_os_error, error
        from harness.store import StoreError

        try:
            return fn(*args, **kwargs)
        except (SpecError, StoreError, ValueError) as exc:
            error(str(exc))
        except OSError as exc:  # a file that cannot be read or written, said in one line
            error(describe_os_error(exc))
        except RuntimeError as exc:  # a worker that cannot start: its own one line
            from harness.workers.local import SweepError

            if not isinstance(exc, SweepError):
                raise
            error(str(exc))
        raise typer.Exit(EXIT_BAD_INPUT)

    return wrapper


def gpu_name() -> str | None:
    """The GPU's name without creating a CUDA context in this (parent) process."""
    try:
        import pynvml

        pynvml.nvmlInit()
        name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0))
        return name.decode() if isinstance(name, bytes) else name
    except Exception:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


@app.command()
@friendly_errors
def sweep(
    preset: PresetName = typer.Option(
        "smoke",
        metavar="PRESET",
        help=f"Named sweep to run: {', '.join(PRESETS)}; the options below narrow it.",
        rich_help_panel="What to measure",
    ),
    backend: list[str] | None = typer.Option(
        None,
        "--backend",
        "-b",
        help="Backends (repeat or comma-separate), each NAME or NAME\\[key=value,...] for a variant (run.py list "
        "shows them), NAME\\[*] for its defaults and contender variants; default: every backend and contender.",
        metavar="NAME,...",
        rich_help_panel="What to measure",
    ),
    model: list[str] | None = typer.Option(
        None,
        "--model",
        "-m",
        help=f"Models: {', '.join(MODELS)}.",
        metavar="MODEL,...",
        rich_help_panel="What to measure",
    ),
    workload: list[str] | None = typer.Option(
        None,
        "--workload",
        "-w",
        help=f"Workloads: {', '.join(w.value for w in Workload)}.",
        metavar="WORKLOAD,...",
        rich_help_panel="What to measure",
    ),
    batch: list[str] | None = typer.Option(
        None, help="Batch sizes.", metavar="N,...", rich_help_panel="What to measure"
    ),
    seq: list[str] | None = typer.Option(
        None,
        help="KV lengths in tokens (prefill: also the query length).",
        metavar="TOKENS,...",
        rich_help_panel="What to measure",
    ),
    chunk: list[str] | None = typer.Option(
        None,
        help="Append chunk lengths (query tokens per step); spec-decode draft lengths.",
        metavar="TOKENS,...",
        rich_help_panel="What to measure",
    ),
    dtype: DType | None = typer.Option(
        None, help="Input dtype (default: the preset's, bf16).", rich_help_panel="What to measure"
    ),
    page_size: list[str] | None = typer.Option(
        None,
        help="KV page sizes, e.g. 1,16,64,256 (default the preset's; 'dense' for no pages).",
        metavar="SIZE,...",
        rich_help_panel="What to measure",
    ),
    mix: list[str] | None = typer.Option(
        None,
        help=f"Batches of requests: mix strings like 2q2k_32q1s1k, drawn batches draw:SEED or draw:FIRST-LAST, "
        f"or names: {', '.join(MIXES)}.",
        metavar="MIX,...",
        rich_help_panel="What to measure",
    ),
    kv_dtype: list[str] | None = typer.Option(
        None,
        help="KV cache dtypes: default (the input dtype) and/or fp8_e4m3 (e4m3 with fp32 scales).",
        metavar="default|fp8_e4m3",
        rich_help_panel="What to measure",
    ),
    kv_scale: str | None = typer.Option(
        None,
        help="FP8 scales: tensor (default) or head (one a KV head).",
        metavar="tensor|head",
        rich_help_panel="What to measure",
    ),
    fp8_attention: bool = typer.Option(
        False,
        "--fp8-attention",
        help="FP8 specs: Q in e4m3 too, with descales (FA3's FP8 form).",
        rich_help_panel="What to measure",
    ),
    lengths: str | None = typer.Option(
        None,
        help="KV lengths drawn per request: uniform:LOW:HIGH or lognormal:MEDIAN:SIGMA (with -w, --batch).",
        metavar="DIST:A:B",
        rich_help_panel="What to measure",
    ),
    seed: int = IntOption(
        0, help="Seed of --lengths (recorded in the row).", metavar="N", rich_help_panel="What to measure"
    ),
    layer: list[str] | None = typer.Option(
        None,
        help="Layer kinds of each model: full, window (default: every kind the model declares).",
        metavar="KIND,...",
        rich_help_panel="What to measure",
    ),
    tp: list[str] | None = typer.Option(
        None,
        help="Tensor-parallel degrees, e.g. 1,2,4,8: each spec holds one GPU's heads (recorded in the row).",
        metavar="N,...",
        rich_help_panel="What to measure",
    ),
    timing: str | None = typer.Option(
        None,
        help="events (default on GPU), graph, profiler; wall on CPU.",
        metavar="MODE",
        rich_help_panel="How to measure",
    ),
    iterations: int | None = IntOption(
        None, help="A fixed number of timed calls (default: adaptive).", metavar="N", rich_help_panel="How to measure"
    ),
    min_iterations: int = IntOption(
        10, help="Adaptive: at least this many timed calls.", metavar="N", rich_help_panel="How to measure"
    ),
    max_iterations: int = IntOption(
        2000, help="Adaptive: at most this many timed calls.", metavar="N", rich_help_panel="How to measure"
    ),
    ci_target: float = FloatOption(
        0.01,
        help="Adaptive: stop once the p50's 95% interval is within ±this (0.01 = ±1%).",
        metavar="FRACTION",
        rich_help_panel="How to measure",
    ),
    warmup: int | None = IntOption(
        None,
        help="Warm-up calls before timing (default 10 on GPU, 2 on CPU).",
        metavar="N",
        rich_help_panel="How to measure",
    ),
    max_seconds: float | None = FloatOption(
        None,
        help="Cap on one task's timed loop (default 10 s on GPU, 1 s on CPU; at least 5 calls).",
        metavar="SECONDS",
        rich_help_panel="How to measure",
    ),
    timeout: float = FloatOption(
        600.0,
        help="Seconds one (spec, backend) may take, compile included, before it is killed.",
        metavar="SECONDS",
        rich_help_panel="How to measure",
    ),
    device: str | None = typer.Option(
        None,
        help="cuda or cpu (default: cuda when there is a GPU).",
        metavar="cuda|cpu",
        rich_help_panel="What to measure",
    ),
    output: Path | None = typer.Option(
        None,
        "--output",
        "-o",
        help="CSV to append to (default results/<gpu>.csv).",
        metavar="FILE.csv",
        rich_help_panel="Where rows go",
    ),
    resume: bool = typer.Option(
        False,
        "--resume",
        metavar="",
        help="Skip (spec, backend) pairs the output file already holds; error and timeout rows run again.",
        rich_help_panel="Where rows go",
    ),
    keep_failed: bool = typer.Option(
        False,
        "--keep-failed",
        metavar="",
        help="With --resume: also skip pairs whose newest row is error or timeout.",
        rich_help_panel="Where rows go",
    ),
    retry_unavailable: bool = typer.Option(
        False,
        "--retry-unavailable",
        metavar="",
        help="With --resume: also run again pairs whose newest row is unavailable (a library installed since).",
        rich_help_panel="Where rows go",
    ),
    gpus: str | None = typer.Option(
        None,
        help="Run on several local GPUs at once: 'all' or ids like 0,1,3 (one worker process each).",
        metavar="all|ID,...",
        rich_help_panel="Scale-out",
    ),
    workers: int | None = IntOption(
        None, help="Worker processes for a CPU sweep (GPU sweeps: --gpus).", metavar="N", rich_help_panel="Scale-out"
    ),
    ray: str | None = typer.Option(
        None,
        help="Run the tasks on a Ray cluster: 'auto' (the running one) or ray://host:port; one GPU a task.",
        metavar="ADDRESS",
        rich_help_panel="Scale-out",
    ),
    accelerator_type: str | None = typer.Option(
        None, help="With --ray: only GPUs of this Ray accelerator type.", metavar="TYPE", rich_help_panel="Scale-out"
    ),
    l2_flush: str = typer.Option(
        "zero",
        help="How the L2 is evicted before each timed call: zero (write a 256 MB buffer) or read; in the "
        "row's timing_mode.",
        metavar="zero|read",
        rich_help_panel="How to measure",
    ),
    git_commit: str | None = typer.Option(
        None,
        help="The commit the rows name (default: asked of git; give it for a copy of the tree without .git).",
        metavar="SHA",
        rich_help_panel="Where rows go",
    ),
    plots: bool = typer.Option(
        True,
        "--plots/--no-plots",
        metavar="",
        help="Draw the plots of the output file after the sweep.",
        rich_help_panel="Where rows go",
    ),
    plot_dir: Path | None = typer.Option(
        None,
        help="Where the plots go (default: beside the output CSV, in <name>-plots/; the repository's plots/ for "
        "its results/ files).",
        metavar="FOLDER",
        rich_help_panel="Where rows go",
    ),
):
    """Run a sweep: every spec of the (narrowed) preset × every backend, one CSV row each."""
    from harness.atomic import WriteError
    from harness.calibrate import calibration_file
    from harness.env import device_slug
    from harness.errors import (
        EXIT_BAD_INPUT,
        EXIT_INCORRECT,
        EXIT_INTERRUPTED,
        EXIT_TERMINATED,
        Terminated,
        error,
        note,
        terminate_as_interrupt,
    )
    from harness.measure import MeasureConfig
    from harness.options import check_number, check_output_dir, check_output_file
    from harness.store import Status
    from harness.sweep import failure_groups, make_run_id
    from harness.timer import Repetition, check_l2_flush
    from harness.workers.local import log_path_for

    check_number("--timeout", timeout, minimum=0, inclusive=False)
    check_number("--max-seconds", max_seconds, minimum=0, inclusive=False)
    check_number("--iterations", iterations, minimum=1)
    check_number("--min-iterations", min_iterations, minimum=1)
    check_number("--max-iterations", max_iterations, minimum=max(1, min_iterations))
    check_number("--warmup", warmup, minimum=0)
    check_number("--ci-target", ci_target, minimum=0, inclusive=False)
    if ci_target >= 1:
        raise SpecError(f"--ci-target: must be below 1 (0.01 = ±1%), got {ci_target!r}")
    if keep_failed and not resume:
        raise SpecError("--keep-failed: only means something with --resume")
    if retry_unavailable and not resume:
        raise SpecError("--retry-unavailable: only means something with --resume")
    check_number("--workers", workers, minimum=1)
    if gpus is not None:
        if device == "cpu":
            raise SpecError("--gpus: runs on GPUs; for a CPU sweep use --workers")
        device = "cuda"
    if ray is not None:
        if gpus is not None or workers is not None:
            raise SpecError("--ray: the cluster places the tasks; leave out --gpus and --workers")
        if not (ray == "auto" or ray.startswith("ray://")):
            raise SpecError(f"--ray: {ray!r} is not valid; expected auto or ray://host:port")
        device = device or "cuda"  # the GPUs are the cluster's, not necessarily this host's
        from harness.workers.ray import connect

        connect(ray)  # before anything is planned: no Ray, no cluster or a dead address is one line
    from harness.plan import plan_sweep
    from harness.workers.local import worker_environments

    specs, names, tasks, device = plan_sweep(
        preset, backend, model, workload, batch, seq, chunk, dtype, page_size, device, mix, lengths, seed,
        check_device=ray is None, layer=layer, tp=tp, kv_dtype=kv_dtype, kv_scale=kv_scale,
        fp8_attention=fp8_attention,
    )  # fmt: skip
    on_gpu = device == "cuda"
    worker_envs = worker_environments(gpus, workers, on_gpu)
    repetition = Repetition(
        iterations=iterations,
        min_iterations=min_iterations,
        max_iterations=max_iterations,
        ci_target=ci_target,
        max_seconds=max_seconds if max_seconds is not None else (10.0 if on_gpu else 1.0),
        warmup=warmup if warmup is not None else (10 if on_gpu else 2),
    )
    slug = "ray" if ray else device_slug(gpu_name() or "gpu") if on_gpu else "cpu"
    if output is None:
        output = REPO / "results" / f"{slug}.csv"
    check_output_file("--output", output)
    config = MeasureConfig(
        device=device,
        repetition=repetition,
        timing=timing,
        run_id=make_run_id(),
        calibration_path=str(calibration_file(slug, output.parent)),  # beside the results, never elsewhere
        calibrate_if_missing=True,
        l2_flush=check_l2_flush(l2_flush),
        git_commit=git_commit,
    )
    _ = config.timing_mode  # validates --timing against the device
    check_appendable(output)
    if plot_dir is None:
        from harness.options import plots_beside

        plot_dir = plots_beside(output, REPO)
    if plots:
        check_output_dir("--plot-dir", plot_dir)

    console.print(
        f"sweep [bold]{preset.value}[/]: {len(specs)} specs × {len(names)} backends = {len(tasks)} tasks "
        f"on {device} → {output} (run {config.run_id})"
    )
    again = f"run the same command with --resume (python3 {' '.join(resume_command(sys.argv))})"
    restore = terminate_as_interrupt()  # SIGTERM takes Ctrl-C's path: rows kept, workers ended, the hint
    try:
        rows, skipped = run_with_progress(
            tasks, config, output, timeout, resume, keep_failed, worker_envs, ray, accelerator_type, retry_unavailable
        )
    except KeyboardInterrupt as exc:
        how = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        note(f"{how}: every finished row is in {output}; to continue where it stopped, {again}")
        raise typer.Exit(EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED) from None
    except WriteError as exc:  # a full disk: the row that did not fit was cut back, every earlier one kept
        error(f"{exc}; the sweep stopped, every earlier row is kept: once there is room, {again}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    finally:
        restore()
    summarize_file(output, tasks, len(rows), skipped)
    console.print(f"rows appended to [bold]{output}[/]; worker log: {log_path_for(config.run_id)}")
    if plots:
        from harness.report.plots import plot as make_plots
        from harness.store import labelled, load_rows

        for path in make_plots(labelled(load_rows(output)), plot_dir):
            console.print(f"plot: {path}")
    failures = failure_groups(rows)
    for status, backend_name, reason, count in failures:
        note(f"{status} × {count}: {backend_name}: {reason}")
    if any(status is Status.INCORRECT for status, *_ in failures):
        n = sum(count for status, _, _, count in failures if status is Status.INCORRECT)
        error(f"{n} rows are incorrect (a backend's output differs from the fp32 reference; listed above); exit 3")
        raise typer.Exit(EXIT_INCORRECT)


def resume_command(argv: list[str]) -> list[str]:
    """The command line that was run, with --resume added once."""
    args = [Path(argv[0]).name if argv and argv[0].endswith("run.py") else "run.py", *argv[1:]]
    return args if "--resume" in args else [*args, "--resume"]


def check_appendable(output: Path) -> None:
    """An existing output file must be a whole attnbench CSV before anything is appended to it."""
    from harness.store import load_rows

    if output.exists() and output.stat().st_size:
        load_rows(output)


def run_with_progress(
    tasks, config, output, timeout, resume=False, keep_failed=False, workers=None, ray=None, accelerator_type=None,
    retry_unavailable=False,
):  # fmt: skip
    """run_sweep under a rich progress bar; returns (rows, tasks skipped by resume)."""
    from harness.sweep import run_sweep

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


@app.command()
@friendly_errors
def check(
    preset: PresetName = typer.Option("smoke", help="Named sweep to check; the options below narrow it."),
    backend: list[str] | None = typer.Option(
        None,
        "--backend",
        "-b",
        help="Backends (repeat or comma-separate), each NAME or NAME[key=value,...] for a variant (run.py list "
        "shows them), NAME[*] for its defaults and contender variants; default: every backend and contender.",
    ),
    model: list[str] | None = typer.Option(None, "--model", "-m"),
    workload: list[str] | None = typer.Option(None, "--workload", "-w"),
    batch: list[str] | None = typer.Option(None),
    seq: list[str] | None = typer.Option(None),
    chunk: list[str] | None = typer.Option(None),
    dtype: DType | None = typer.Option(None),
    page_size: list[str] | None = typer.Option(None, help="KV page sizes (or 'dense')."),
    mix: list[str] | None = typer.Option(None, help="Mix strings or names of batches of requests."),
    lengths: str | None = typer.Option(None, help="uniform:LOW:HIGH or lognormal:MEDIAN:SIGMA."),
    seed: int = IntOption(0, help="Seed of --lengths."),
    layer: list[str] | None = typer.Option(None, help="Layer kinds: full, window (default: every kind)."),
    tp: list[str] | None = typer.Option(None, help="Tensor-parallel degrees, e.g. 1,2,4,8."),
    kv_dtype: list[str] | None = typer.Option(None, help="KV cache dtypes: default and/or fp8_e4m3."),
    kv_scale: str | None = typer.Option(None, help="FP8 scales: tensor or head."),
    fp8_attention: bool = typer.Option(False, "--fp8-attention", help="FP8 specs: Q in e4m3 too."),
    timeout: float = FloatOption(600.0, help="Seconds one (spec, backend) may take before it is killed."),
    device: str | None = typer.Option(None, help="cuda or cpu (default: cuda when there is a GPU)."),
):
    """Correctness only: every backend against the fp32 reference, one call each, nothing stored.
    Prints the relative error per cell; exits 1 if any backend is incorrect or errors."""
    import tempfile

    from harness.measure import MeasureConfig
    from harness.options import check_number
    from harness.report.tables import pivot, render_rich
    from harness.store import Status
    from harness.sweep import make_run_id
    from harness.timer import Repetition

    check_number("--timeout", timeout, minimum=0, inclusive=False)
    from harness.plan import plan_sweep

    specs, names, tasks, device = plan_sweep(
        preset, backend, model, workload, batch, seq, chunk, dtype, page_size, device, mix, lengths, seed,
        layer=layer, tp=tp, kv_dtype=kv_dtype, kv_scale=kv_scale, fp8_attention=fp8_attention,
    )  # fmt: skip
    config = MeasureConfig(device=device, repetition=Repetition(iterations=1, warmup=0), run_id=make_run_id())
    console.print(f"check [bold]{preset.value}[/]: {len(specs)} specs × {len(names)} backends on {device}")
    with tempfile.TemporaryDirectory() as scratch:
        rows, _ = run_with_progress(tasks, config, Path(scratch) / "check.csv", timeout)
    console.print(render_rich(pivot(rows, "rel_err"), title="‖out − ref‖ / ‖ref‖ against the fp32 reference"))
    bad = [r for r in rows if r.status in (Status.INCORRECT, Status.ERROR, Status.TIMEOUT)]
    counts = Counter(r.status.value for r in rows)
    console.print(", ".join(f"{n} {status}" for status, n in counts.most_common()))
    for r in bad:
        console.print(f"[red]{r.status}[/] {escape(f'{r.backend} · {r.spec.describe()}: {r.reason}')}")
    if bad:
        raise typer.Exit(1)


def summarize_file(output: Path, tasks, measured: int, skipped: int) -> None:
    """The table of every planned task as the file now holds it (rows of earlier, resumed runs included)."""
    from harness.store import labelled, latest, load_rows

    planned = {t.key for t in tasks}
    rows = labelled([r for r in latest(load_rows(output)) if r.task_key in planned])
    print_summary(rows, skipped, measured)


def print_summary(rows, skipped: int, measured: int | None = None) -> None:
    from harness.report.tables import pivot, render_terminal

    if rows:
        for part in render_terminal(pivot(rows, "p50_ms"), console.width, title="p50 latency, ms (the best in bold)"):
            console.print(part)
    counts = Counter(r.status.value for r in rows)
    text = ", ".join(f"{n} {status}" for status, n in counts.most_common())
    head = f"{len(rows)} rows" if measured is None else f"{len(rows)} tasks in the file ({measured} measured now)"
    console.print(f"{head}: {text or 'none'}" + (f"; {skipped} kept from earlier runs by --resume" if skipped else ""))


@app.command("list")
@friendly_errors
def list_(
    device: str | None = typer.Option(None, help="cuda or cpu (default: cuda when there is a GPU)."),
    backend: list[str] | None = typer.Option(None, "--backend", "-b", help="Only these backends."),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print the backends as JSON (name, availability, capabilities, variants) and nothing else.",
    ),  # fmt: skip
):
    """Backends (with availability and the reason when not), their variants, models and presets."""
    import json

    from frameworks import load_all
    from harness.catalog import backend_catalog
    from harness.env import pick_device
    from harness.options import check_known, dedupe

    dev = pick_device(device)
    names = dedupe(split_list(backend))
    if names:
        check_known("--backend", names, sorted(load_all()))
    catalog = backend_catalog(dev, names)
    if as_json:
        print(json.dumps(catalog, indent=1))
        return
    from harness.catalog import catalog_tables

    for shown in catalog_tables(catalog, dev.type, with_models_and_presets=not names):
        console.print(shown)


def only_results(files):
    """The results CSVs among files; the project's other CSVs (ceilings, spread) are passed over with a
    note, so that `results/*.csv` works; none left is an error."""
    from harness.options import results_files

    kept, notes = results_files(files)
    for note in notes:
        console.print(f"[dim]{escape(note)}[/]", soft_wrap=True)
    if not kept:
        raise ValueError("files: none of them is a results CSV")
    return kept


def load_filtered(files, model, workload, backend):
    """Rows of the files, narrowed by the filters; a filter value the files do not hold is an error."""
    from harness.options import check_known, dedupe
    from harness.store import labelled, load_many

    rows = labelled(load_many(only_results(files)))
    for field, wanted in (
        ("model", split_list(model, "--model")),
        ("workload", split_list(workload, "--workload")),
        ("backend", split_list(backend, "--backend")),
    ):
        if wanted:
            check_known(f"--{field}", dedupe(wanted), sorted({getattr(r, field) for r in rows}))
            rows = [r for r in rows if getattr(r, field) in wanted]
    if not rows:
        raise ValueError("no rows left after the filters")
    return rows


@app.command()
@friendly_errors
def table(
    files: list[Path] | None = typer.Argument(None, help="One or more results CSVs."),
    metric: str = typer.Option(
        "p50_ms",
        "--metric",
        "--stat",
        help="p50_ms (the README's), p95_ms, mean_ms, tflops, gbps, pct_peak_gbps, tokens_per_s, rel_err, ...",
    ),
    fmt: TableFormat = typer.Option("rich", "--format", help="rich (terminal) or markdown."),
    model: list[str] | None = typer.Option(None, "--model", "-m"),
    workload: list[str] | None = typer.Option(None, "--workload", "-w"),
    backend: list[str] | None = typer.Option(None, "--backend", "-b"),
    readme: Path | None = typer.Option(
        None, help="Regenerate, in place, every attnbench:table block of this Markdown file."
    ),
    show_winners: bool = typer.Option(
        False, "--winners", help="Serving mixes: the fastest backend a mix, the runner-up and the margin."
    ),
    show_verdict: bool = typer.Option(
        False,
        "--verdict",
        help="Per library (its best variant a batch): win rate, geomean and worst ratio to the best.",
    ),
    within: float = typer.Option(0.05, help="--verdict: a win is a time within this of the best (0.05 = 5%)."),
    model_step: bool = typer.Option(
        False, "--model-step", help="A model's attention per forward step: Σ layers × p50 over its layer kinds."
    ),
):
    """Rows = backend, columns = model × workload, cell = the metric (failed cells show their status).
    With --winners: one line a serving mix, who wins and by how much. With --verdict: how often each library
    is the best (harness/report/verdict.py)."""
    from harness.report.readme import rewrite_readme
    from harness.report.tables import (
        check_metric,
        pivot,
        render_markdown,
        render_terminal,
        render_winners_markdown,
        winners,
    )
    from harness.store import labelled, load_many

    if readme is not None:
        if not readme.exists():
            raise ValueError(f"readme: {readme} does not exist")
        text = readme.read_text()
        new, blocks = rewrite_readme(text, readme.resolve().parent, lambda files: labelled(load_many(files)))
        if blocks == 0:
            raise ValueError(f"readme: {readme} has no <!-- attnbench:table files=... --> block")
        if new != text:
            from harness.atomic import write_atomic

            write_atomic(readme, new)
        console.print(
            f"{readme}: {blocks} table block(s) {'rewritten' if new != text else 'already up to date'}", soft_wrap=True
        )
        return
    if not files:
        raise ValueError("files: give one or more results CSVs (or --readme README.md)")
    if show_verdict:
        from harness.options import check_number
        from harness.report.verdict import render_verdict_markdown, verdict

        check_number("--within", within, minimum=0)
        found = verdict(load_filtered(files, model, workload, backend), within)
        if found.empty:
            raise ValueError("--verdict: no ok rows in these files")
        text = render_verdict_markdown(found, within)
        if fmt.value == "markdown":
            print(text)
        else:
            from rich.markdown import Markdown

            console.print(Markdown(text))
        return  # the verdict alone (the draw merge's behaviour; lost in the forms merge on main)
    if model_step:
        from harness.report.model_step import model_steps, render_model_steps

        steps = model_steps(load_filtered(files, model, workload, backend))
        if steps.empty:
            raise ValueError("--model-step: no rows of a model with declared layer kinds in these files")
        print(render_model_steps(steps))
        return
    if show_winners:
        found = winners(load_filtered(files, model, workload, backend))
        if found.empty:
            raise ValueError("--winners: no ok rows of a serving mix in these files")
        if fmt.value == "markdown":
            print(render_winners_markdown(found))
        else:
            from rich.markdown import Markdown

            console.print(Markdown(render_winners_markdown(found)))
        return
    check_metric(metric)
    p = pivot(load_filtered(files, model, workload, backend), metric)
    if fmt.value == "markdown":
        print(render_markdown(p))
    else:
        for part in render_terminal(p, console.width):
            console.print(part)


@app.command()
@friendly_errors
def readme(
    files: list[Path] | None = typer.Argument(None, help="Markdown files (default: README.md and docs/**/*.md)."),
    check: bool = typer.Option(False, "--check", help="Change nothing; exit 1 if a block differs from the CSVs."),
):
    """Regenerate every <!-- attnbench:table ... --> block of the README and docs/ from the committed CSVs."""
    from harness.report.readme import generated_files, rewrite_files
    from harness.store import labelled, load_many

    found = rewrite_files(files or generated_files(REPO), lambda paths: labelled(load_many(paths)))
    stale = [path for path, _, old, new in found if old != new]
    for path, blocks, old, new in found:
        if not check and old != new:
            from harness.atomic import write_atomic

            write_atomic(path, new)
        state = ("differs" if check else "rewritten") if old != new else "up to date"
        console.print(f"{path}: {blocks} block(s) {state}", soft_wrap=True)
    if check and stale:
        raise typer.Exit(1)


@app.command()
@friendly_errors
def plot(
    files: list[Path] = typer.Argument(..., help="One or more results CSVs."),
    out_dir: Path = typer.Option(REPO / "plots", help="Folder for the PNGs."),
    metric: list[str] | None = typer.Option(
        None, help="Metrics to draw (default p50_ms and throughput: TFLOP/s, GB/s for decode)."
    ),
    model: list[str] | None = typer.Option(None, "--model", "-m"),
    workload: list[str] | None = typer.Option(None, "--workload", "-w"),
    backend: list[str] | None = typer.Option(None, "--backend", "-b"),
    baseline: str | None = typer.Option(
        None, help="Backend the speedup heatmap divides by (default: sdpa, when it has rows)."
    ),
):
    """Latency and TFLOP/s against KV length (a panel per workload, a line per backend), a roofline
    against the measured ceilings, and a speedup heatmap against a baseline backend (PNGs)."""
    from harness.options import check_output_dir
    from harness.report.plots import plot as make_plots
    from harness.report.plots import plot_mixes, plot_roofline, plot_speedup

    check_output_dir("--out-dir", out_dir)
    rows = load_filtered(files, model, workload, backend)
    metrics = tuple(split_list(metric) or ("p50_ms", "throughput"))
    paths = make_plots(rows, out_dir, metrics) + plot_mixes(rows, out_dir)
    if not paths:
        raise ValueError("no ok rows to plot")
    paths += plot_roofline(rows, out_dir)
    if len({r.backend.split("[")[0] for r in rows}) > 1:  # how often each library is the best (report/verdict.py)
        from harness.report.plots import plot_verdict
        from harness.report.verdict import verdict

        paths += plot_verdict(verdict(rows), out_dir)
    from harness.report.model_step import model_steps, plot_model_steps

    paths += plot_model_steps(model_steps(rows), out_dir)  # models with layer kinds: attention per step
    if baseline is None and any(r.backend == "sdpa" for r in rows):
        baseline = "sdpa"
    if baseline:
        paths += plot_speedup(rows, out_dir, baseline)
    for path in paths:
        console.print(f"plot: {path}")


@app.command()
@friendly_errors
def calibrate(
    device: str | None = typer.Option(None, help="cuda or cpu (default: cuda when there is a GPU)."),
):
    """Measure this device's matmul rate (bf16, fp16, fp32), copy and read-only bandwidth; store them in
    results/calibration-<device>.csv. Sweeps use the newest calibration for percent of peak."""
    from harness import calibrate as cal
    from harness.env import collect, pick_device
    from harness.measure import now_utc

    dev = pick_device(device)
    env = collect(dev)
    rows = cal.measure(dev, env, timestamp=now_utc())
    path = cal.calibration_file(env.device_slug)
    cal.save(rows, path)
    out = Table(title=f"measured ceilings · {env.device} · torch {env.torch}")
    for col in (
        "dtype",
        "matmul TFLOP/s",
        "datasheet dense",
        "copy GB/s (read+write)",
        "read-only GB/s",
        "datasheet HBM",
        "reader",
    ):
        out.add_column(col, justify="right")
    sheet = cal.DATASHEET.get(env.device_slug, {})
    for row in rows:
        out.add_row(
            row.dtype,
            f"{row.matmul_tflops:.1f}",
            str(sheet.get(row.dtype, "—")),
            f"{row.copy_gbps:.0f}",
            f"{row.read_gbps:.0f}",
            str(sheet.get("gbps", "—")),
            row.read_kernel,
        )
    console.print(out)
    console.print(f"appended to {path}")


@app.command()
@friendly_errors
def report(
    files: list[Path] = typer.Argument(
        ..., help="Results CSVs or folders of them (e.g. results/); other CSVs are skipped with a note."
    ),
    out_dir: Path = typer.Option(..., "--output", "-o", help="Folder for index.html (created)."),
):
    """One static HTML page (works offline): environment per GPU, every row in a filterable table
    with the command that reproduces it, roofline, scaling curves, speed-up heatmap, serving mixes."""
    from harness.options import check_output_dir
    from harness.report.html import write_report
    from harness.store import labelled, load_frame

    check_output_dir("--output", out_dir)
    path = write_report(labelled(load_frame(only_results(files))), out_dir)
    console.print(f"report: {path} ({path.stat().st_size / 2**20:.1f} MiB, no network needed)")


@app.command()
@friendly_errors
def repair(file: Path = typer.Argument(..., help="A results CSV whose last row was torn.")):
    """Move a torn last row (a killed writer, a full disk) into FILE.torn and keep every whole row."""
    from harness.options import check_input_files
    from harness.store import repair as repair_file

    check_input_files("file", [file])
    kept, torn = repair_file(file)
    if torn is None:
        console.print(f"{file}: nothing torn; {kept} rows, all whole")
    else:
        console.print(f"{file}: the torn last row moved to {torn}; {kept} whole rows kept")


SPREAD_FILE = REPO / "results" / "spread.csv"


@app.command()
@friendly_errors
def compare(
    a: Path = typer.Argument(..., help="Baseline results CSV (A)."),
    b: Path = typer.Argument(..., help="Candidate results CSV (B)."),
    min_effect: float = FloatOption(
        0.01,
        help="Differences smaller than this (0.01 = 1%, the timer's target precision) are never called "
        "significant; 0 = intervals alone.",
    ),
    spread: Path | None = typer.Option(
        SPREAD_FILE,
        help="Between-run spread per GPU and workload (run.py spread); a difference inside it is not "
        "significant. --no-spread to ignore.",
    ),
    no_spread: bool = typer.Option(False, "--no-spread", help="Judge by the intervals and --min-effect alone."),
    show: str = typer.Option(
        "significant", help="significant (only the rows that differ, the default) or all (every compared row)."
    ),
    all_rows: bool = typer.Option(
        False, "--all", help="Also list rows present in only one file (by default: only counted)."
    ),
    a_gpu: str | None = typer.Option(
        None,
        help="Only A's rows measured on the GPU whose UUID starts with this (the GPUs of one host: "
        "the same file as A and B, --a-gpu and --b-gpu).",
    ),
    b_gpu: str | None = typer.Option(None, help="Only B's rows measured on the GPU whose UUID starts with this."),
    across_gpus: bool = typer.Option(
        False, "--across-gpus", help="Pair rows of different GPU kinds by spec (default: a row meets its own GPU's)."
    ),
):
    """B against A per (GPU, spec, backend): the counts first (faster, slower, same, not comparable and why),
    then the rows that differ; ratio of p50s, significance from both 95% intervals and the measured
    between-run spread, geometric mean of the ratios."""
    from harness.compare import compare as compare_rows
    from harness.compare import load_spread, on_gpu, render_comparison
    from harness.options import check_input_files, check_number
    from harness.store import labelled, load_rows

    if show not in ("all", "significant"):
        raise ValueError(f"show: {show!r} is not valid; expected one of all, significant")
    check_number("--min-effect", min_effect, minimum=0)
    check_input_files("files", [a, b])
    noise = {} if no_spread or spread is None else load_spread(spread)
    rows_a = labelled(on_gpu(load_rows(a), a_gpu, "--a-gpu", a))  # variants apart, named as -b takes them
    rows_b = labelled(on_gpu(load_rows(b), b_gpu, "--b-gpu", b))
    comparisons = compare_rows(rows_a, rows_b, min_effect, noise, same_device=not (across_gpus or a_gpu or b_gpu))
    for part in render_comparison(comparisons, rows_a, rows_b, a, b, noise, spread, show, all_rows, across_gpus):
        console.print(part)


@app.command("spread")
@friendly_errors
def spread_(
    files: list[Path] = typer.Argument(..., help="Results CSVs holding several runs of the same specs."),
    output: Path = typer.Option(SPREAD_FILE, "--output", "-o", help="Where the spread table goes (compare reads it)."),
):
    """Between-run spread: how far the same (spec, backend, version, kernel) moves between runs in
    separate processes, per GPU and workload (90th percentile and maximum over keys)."""
    from harness.compare import between_run_spread, save_spread
    from harness.options import check_input_files, check_output_file
    from harness.store import load_frame

    check_input_files("files", files)
    check_output_file("--output", output)
    table = between_run_spread(load_frame(only_results(files)))
    if table.empty:
        raise ValueError("no (spec, backend) was measured in more than one run in these files")
    out = Table(title="between-run spread of p50 (|p50 / median − 1| per key)")
    for col in ("device", "workload", "keys", "runs (max)", "p90", "max"):
        out.add_column(col)
    for r in table.itertuples():
        out.add_row(r.device, r.workload, str(r.keys), str(r.runs), f"{r.spread_p90:.2%}", f"{r.spread_max:.2%}")
    console.print(out)
    written = save_spread(table, output)
    others = len(written) - len(table)
    console.print(f"written to {output}" + (f" ({others} rows of other devices kept)" if others else ""))


def main(argv: list[str] | None = None) -> int:
    """The CLI: every usage error is one plain line on stderr (harness/errors.py lists the exit codes)."""
    from harness.errors import main as run_app

    return run_app(app, argv)


if __name__ == "__main__":
    sys.exit(main())
