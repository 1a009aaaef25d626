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
from typing import List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from specs import MODELS, PRESETS, DType, SpecError, get_preset

REPO = Path(__file__).resolve().parent
console = Console(width=None if sys.stdout.isatty() else 200)
app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.split("\n\n")[0])

PresetName = Enum("PresetName", {name: name for name in PRESETS}, type=str)
TableFormat = Enum("TableFormat", {"rich": "rich", "markdown": "markdown"}, type=str)


def friendly_errors(fn):
    """Bad input ends with one clear line naming the field, not a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from harness.store import StoreError

        try:
            return fn(*args, **kwargs)
        except (SpecError, StoreError, ValueError) as exc:
            console.print(f"[red]error:[/] {exc}")
            raise typer.Exit(2) from None

    return wrapper


def split_list(values: Optional[List[str]]) -> Optional[List[str]]:
    """`-b a,b -b c` -> [a, b, c]; None stays None."""
    if not values:
        return None
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def parse_ints(values: Optional[List[str]], field: str) -> Optional[List[int]]:
    items = split_list(values)
    if items is None:
        return None
    try:
        out = [int(v) for v in items]
    except ValueError:
        raise SpecError(f"{field}: expected positive integers, got {', '.join(items)}") from None
    if any(v < 1 for v in out):
        raise SpecError(f"{field}: expected positive integers, got {', '.join(items)}")
    return out


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
    preset: PresetName = typer.Option("smoke", help="Named sweep to run; the options below narrow it."),
    backend: Optional[List[str]] = typer.Option(None, "--backend", "-b", help="Backends (repeat or comma-separate); default: all."),
    model: Optional[List[str]] = typer.Option(None, "--model", "-m", help=f"Models: {', '.join(MODELS)}."),
    workload: Optional[List[str]] = typer.Option(None, "--workload", "-w", help="prefill, append, decode."),
    batch: Optional[List[str]] = typer.Option(None, help="Batch sizes."),
    seq: Optional[List[str]] = typer.Option(None, help="KV lengths in tokens (prefill: also the query length)."),
    chunk: Optional[List[str]] = typer.Option(None, help="Append chunk lengths (query tokens per step)."),
    dtype: Optional[DType] = typer.Option(None, help="Input dtype (default: the preset's, bf16)."),
    page_size: Optional[int] = typer.Option(None, help="Paged KV with this many tokens a page (default dense)."),
    timing: Optional[str] = typer.Option(None, help="events (default on GPU), graph, profiler; wall on CPU."),
    iterations: Optional[int] = typer.Option(None, help="A fixed number of timed calls (default: adaptive)."),
    min_iterations: int = typer.Option(10, help="Adaptive: at least this many timed calls."),
    max_iterations: int = typer.Option(2000, help="Adaptive: at most this many timed calls."),
    ci_target: float = typer.Option(0.01, help="Adaptive: stop once the p50's 95% interval is within ±this (0.01 = ±1%)."),
    warmup: Optional[int] = typer.Option(None, help="Warm-up calls before timing (default 10 on GPU, 2 on CPU)."),
    max_seconds: Optional[float] = typer.Option(None, help="Cap on one task's timed loop (default 10 s on GPU, 1 s on CPU; at least 5 calls)."),
    timeout: float = typer.Option(600.0, help="Seconds one (spec, backend) may take, compile included, before it is killed."),
    device: Optional[str] = typer.Option(None, help="cuda or cpu (default: cuda when there is a GPU)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="CSV to append to (default results/<gpu>.csv)."),
    resume: bool = typer.Option(False, help="Skip (spec, backend) pairs the output file already holds."),
    plot_dir: Optional[Path] = typer.Option(REPO / "plots", help="Where the sweep's plots go; --no-plot-dir for none."),
):
    """Run a sweep: every spec of the (narrowed) preset × every backend, one CSV row each."""
    from harness.calibrate import calibration_file
    from harness.env import device_slug
    from harness.measure import MeasureConfig
    from harness.sweep import log_path_for, make_run_id
    from harness.timer import Repetition

    specs, names, tasks, device = plan(preset, backend, model, workload, batch, seq, chunk, dtype, page_size, device)
    on_gpu = device == "cuda"
    repetition = Repetition(
        iterations=iterations,
        min_iterations=min_iterations,
        max_iterations=max_iterations,
        ci_target=ci_target,
        max_seconds=max_seconds if max_seconds is not None else (10.0 if on_gpu else 1.0),
        warmup=warmup if warmup is not None else (10 if on_gpu else 2),
    )
    slug = device_slug(gpu_name() or "gpu") if on_gpu else "cpu"
    config = MeasureConfig(
        device=device,
        repetition=repetition,
        timing=timing,
        run_id=make_run_id(),
        calibration_path=str(calibration_file(slug)),
        calibrate_if_missing=True,
    )
    config.timing_mode  # validates --timing against the device
    if output is None:
        output = REPO / "results" / f"{slug}.csv"

    console.print(
        f"sweep [bold]{preset.value}[/]: {len(specs)} specs × {len(names)} backends = {len(tasks)} tasks "
        f"on {device} → {output} (run {config.run_id})"
    )
    rows, skipped = run_with_progress(tasks, config, output, timeout, resume)
    print_summary(rows, skipped)
    console.print(f"rows appended to [bold]{output}[/]; worker log: {log_path_for(config.run_id)}")
    if plot_dir and rows:
        from harness.report import plot as make_plots

        for path in make_plots(rows, plot_dir):
            console.print(f"plot: {path}")


def plan(preset, backend, model, workload, batch, seq, chunk, dtype, page_size, device):
    """The narrowed preset's specs × backends as tasks, and the device they run on."""
    import torch

    from frameworks import load_all
    from harness.sweep import plan_tasks

    grid = get_preset(preset.value).narrowed(
        models=split_list(model),
        workloads=split_list(workload),
        batch_sizes=parse_ints(batch, "batch"),
        seq_lens=parse_ints(seq, "seq"),
        chunks=parse_ints(chunk, "chunk"),
        dtype=dtype,
        page_size=page_size,
    )
    specs = grid.specs()
    if not specs:
        raise SpecError("the narrowed sweep has no specs (is every --chunk longer than every --seq?)")
    names = split_list(backend) or sorted(load_all())
    tasks = plan_tasks(specs, names)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device not in ("cuda", "cpu"):
        raise SpecError(f"device: {device!r} is not valid; expected one of cuda, cpu")
    return specs, names, tasks, device


def run_with_progress(tasks, config, output, timeout, resume=False):
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
            progress.update(bar, advance=1, description=f"{task.spec.model} {task.spec.workload} · {task.backend}")

        rows = list(run_sweep(tasks, config, output, timeout_s=timeout, resume=resume, on_row=on_row))
    return rows, skipped


@app.command()
@friendly_errors
def check(
    preset: PresetName = typer.Option("smoke", help="Named sweep to check; the options below narrow it."),
    backend: Optional[List[str]] = typer.Option(None, "--backend", "-b", help="Backends (repeat or comma-separate); default: all."),
    model: Optional[List[str]] = typer.Option(None, "--model", "-m"),
    workload: Optional[List[str]] = typer.Option(None, "--workload", "-w"),
    batch: Optional[List[str]] = typer.Option(None),
    seq: Optional[List[str]] = typer.Option(None),
    chunk: Optional[List[str]] = typer.Option(None),
    dtype: Optional[DType] = typer.Option(None),
    page_size: Optional[int] = typer.Option(None),
    timeout: float = typer.Option(600.0, help="Seconds one (spec, backend) may take before it is killed."),
    device: Optional[str] = typer.Option(None, help="cuda or cpu (default: cuda when there is a GPU)."),
):
    """Correctness only: every backend against the fp32 reference, one call each, nothing stored.
    Prints the relative error per cell; exits 1 if any backend is incorrect or errors."""
    import tempfile

    from harness.measure import MeasureConfig
    from harness.report import pivot, render_rich
    from harness.store import Status
    from harness.sweep import make_run_id
    from harness.timer import Repetition

    specs, names, tasks, device = plan(preset, backend, model, workload, batch, seq, chunk, dtype, page_size, device)
    config = MeasureConfig(device=device, repetition=Repetition(iterations=1, warmup=0), run_id=make_run_id())
    console.print(f"check [bold]{preset.value}[/]: {len(specs)} specs × {len(names)} backends on {device}")
    with tempfile.TemporaryDirectory() as scratch:
        rows, _ = run_with_progress(tasks, config, Path(scratch) / "check.csv", timeout)
    console.print(render_rich(pivot(rows, "rel_err"), title="‖out − ref‖ / ‖ref‖ against the fp32 reference"))
    bad = [r for r in rows if r.status in (Status.INCORRECT, Status.ERROR, Status.TIMEOUT)]
    counts = Counter(r.status.value for r in rows)
    console.print(", ".join(f"{n} {status}" for status, n in counts.most_common()))
    for r in bad:
        console.print(f"[red]{r.status}[/] {r.backend} · {r.spec.describe()}: {r.reason}")
    if bad:
        raise typer.Exit(1)


def print_summary(rows, skipped: int) -> None:
    from harness.report import pivot, render_rich

    if rows:
        console.print(render_rich(pivot(rows, "p50_ms"), title="p50 latency, ms (best per column in bold)"))
    counts = Counter(r.status.value for r in rows)
    text = ", ".join(f"{n} {status}" for status, n in counts.most_common())
    console.print(f"{len(rows)} rows: {text or 'none'}" + (f"; {skipped} skipped by --resume" if skipped else ""))


@app.command("list")
@friendly_errors
def list_(device: Optional[str] = typer.Option(None, help="cuda or cpu (default: cuda when there is a GPU).")):
    """Backends (with availability and the reason when not), models and presets."""
    from frameworks import load_all
    from harness.env import pick_device

    dev = pick_device(device)
    table = Table(title=f"backends on {dev.type}")
    for col in ("backend", "available", "version / reason", "kernel"):
        table.add_column(col)
    for name, cls in sorted(load_all().items()):
        backend = cls()
        reason = backend.availability(dev)
        table.add_row(name, "[red]no[/]" if reason else "[green]yes[/]", reason or backend.version(), cls.upstream)
    console.print(table)

    models = Table(title="models")
    for col in ("model", "q heads", "kv heads", "head dim", "GQA group"):
        models.add_column(col)
    for m in MODELS.values():
        models.add_row(m.name, str(m.num_q_heads), str(m.num_kv_heads), str(m.head_dim), str(m.gqa_group))
    console.print(models)

    presets = Table(title="presets")
    for col in ("preset", "specs", "models", "batch", "seq", "chunks"):
        presets.add_column(col)
    for name, grid in PRESETS.items():
        presets.add_row(name, str(len(grid.specs())), ", ".join(grid.models), ", ".join(map(str, grid.batch_sizes)),
                        ", ".join(map(str, grid.seq_lens)), ", ".join(map(str, grid.chunks)))  # fmt: skip
    console.print(presets)


def load_filtered(files, model, workload, backend):
    from harness.store import load_many

    rows = load_many(files)
    for field, wanted in (("model", split_list(model)), ("workload", split_list(workload)), ("backend", split_list(backend))):
        if wanted:
            rows = [r for r in rows if getattr(r, field) in wanted]
    if not rows:
        raise ValueError("no rows left after the filters")
    return rows


@app.command()
@friendly_errors
def table(
    files: Optional[List[Path]] = typer.Argument(None, help="One or more results CSVs."),
    metric: str = typer.Option("p95_ms", help="p50_ms, p95_ms, mean_ms, tflops, gbps, tokens_per_s, setup_ms, peak_mem_gib, rel_err, ..."),
    fmt: TableFormat = typer.Option("rich", "--format", help="rich (terminal) or markdown."),
    model: Optional[List[str]] = typer.Option(None, "--model", "-m"),
    workload: Optional[List[str]] = typer.Option(None, "--workload", "-w"),
    backend: Optional[List[str]] = typer.Option(None, "--backend", "-b"),
    readme: Optional[Path] = typer.Option(None, help="Regenerate, in place, every attnbench:table block of this Markdown file."),
):
    """Rows = backend, columns = model × workload, cell = the metric (failed cells show their status)."""
    from harness.report import check_metric, pivot, render_markdown, render_rich, rewrite_readme
    from harness.store import load_many

    if readme is not None:
        if not readme.exists():
            raise ValueError(f"readme: {readme} does not exist")
        text = readme.read_text()
        new, blocks = rewrite_readme(text, readme.resolve().parent, load_many)
        if blocks == 0:
            raise ValueError(f"readme: {readme} has no <!-- attnbench:table files=... --> block")
        if new != text:
            readme.write_text(new)
        console.print(f"{readme}: {blocks} table block(s) {'rewritten' if new != text else 'already up to date'}")
        return
    if not files:
        raise ValueError("files: give one or more results CSVs (or --readme README.md)")
    check_metric(metric)
    p = pivot(load_filtered(files, model, workload, backend), metric)
    if fmt.value == "markdown":
        print(render_markdown(p))
    else:
        console.print(render_rich(p))


@app.command()
@friendly_errors
def plot(
    files: List[Path] = typer.Argument(..., help="One or more results CSVs."),
    out_dir: Path = typer.Option(REPO / "plots", help="Folder for the PNGs."),
    metric: Optional[List[str]] = typer.Option(None, help="Metrics to draw (default p50_ms and tflops)."),
    model: Optional[List[str]] = typer.Option(None, "--model", "-m"),
    workload: Optional[List[str]] = typer.Option(None, "--workload", "-w"),
    backend: Optional[List[str]] = typer.Option(None, "--backend", "-b"),
    baseline: Optional[str] = typer.Option(None, help="Backend the speedup heatmap divides by (default: sdpa, when it has rows)."),
):
    """Latency and TFLOP/s against KV length (a panel per workload, a line per backend), a roofline
    against the measured ceilings, and a speedup heatmap against a baseline backend (PNGs)."""
    from harness.report import plot as make_plots
    from harness.report import plot_roofline, plot_speedup

    rows = load_filtered(files, model, workload, backend)
    metrics = tuple(split_list(metric) or ("p50_ms", "tflops"))
    paths = make_plots(rows, out_dir, metrics)
    if not paths:
        raise ValueError("no ok rows to plot")
    paths += plot_roofline(rows, out_dir)
    if baseline is None and any(r.backend == "sdpa" for r in rows):
        baseline = "sdpa"
    if baseline:
        paths += plot_speedup(rows, out_dir, baseline)
    for path in paths:
        console.print(f"plot: {path}")


@app.command()
@friendly_errors
def calibrate(
    device: Optional[str] = typer.Option(None, help="cuda or cpu (default: cuda when there is a GPU)."),
):
    """Measure this device's matmul rate (bf16, fp16, fp32) and copy bandwidth; store them in
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
    for col in ("dtype", "matmul TFLOP/s", "datasheet dense", "copy GB/s (read+write)", "datasheet HBM"):
        out.add_column(col, justify="right")
    sheet = cal.DATASHEET.get(env.device_slug, {})
    for row in rows:
        out.add_row(row.dtype, f"{row.matmul_tflops:.1f}", str(sheet.get(row.dtype, "—")), f"{row.copy_gbps:.0f}", str(sheet.get("gbps", "—")))
    console.print(out)
    console.print(f"appended to {path}")


@app.command()
@friendly_errors
def compare(
    a: Path = typer.Argument(..., help="Baseline results CSV (A)."),
    b: Path = typer.Argument(..., help="Candidate results CSV (B)."),
    min_effect: float = typer.Option(0.01, help="Differences smaller than this (0.01 = 1%, the timer's target precision) are never called significant; 0 = intervals alone."),
    show: str = typer.Option("all", help="all, or significant (only the rows that differ)."),
):
    """B against A per (spec, backend): ratio of p50s, significance from both 95% intervals, geomean."""
    from harness.compare import compare as compare_rows
    from harness.compare import summarize
    from harness.store import load_rows

    if show not in ("all", "significant"):
        raise ValueError(f"show: {show!r} is not valid; expected one of all, significant")
    comparisons = compare_rows(load_rows(a), load_rows(b), min_effect)
    out = Table(title=f"B = {b.name} vs A = {a.name} (ratio = B p50 / A p50; below 1: B is faster)")
    for col in ("spec", "backend", "A p50 ms [95% CI]", "B p50 ms [95% CI]", "ratio", "verdict"):
        out.add_column(col)
    colours = {"faster": "green", "slower": "red", "not significant": "dim"}
    colour_of = lambda verdict: next((c for k, c in colours.items() if verdict.startswith(k)), "yellow")  # noqa: E731
    for c in comparisons:
        if show == "significant" and not c.significant:
            continue
        fmt = lambda r: f"{r.p50_ms:.4g} [{r.p50_ci_low_ms:.4g}, {r.p50_ci_high_ms:.4g}]" if r and r.p50_ms is not None and r.p50_ci_low_ms is not None else (r.status.value if r else "—")  # noqa: E731
        ratio = f"{c.ratio:.3f}" if c.ratio is not None else "—"
        out.add_row(c.label, c.backend, fmt(c.a), fmt(c.b), ratio, f"[{colour_of(c.verdict)}]{c.verdict}[/]")
    console.print(out)
    s = summarize(comparisons)
    if s.compared:
        console.print(
            f"{s.compared} compared: {s.compared - s.significant} not significant "
            f"({s.share_not_significant:.0%}), {s.faster} faster, {s.slower} slower; "
            f"geometric mean of B/A = {s.geomean_ratio:.4f}; {s.not_comparable} not comparable"
        )
    else:
        console.print(f"nothing comparable ({s.not_comparable} rows without a partner or not ok on both sides)")


if __name__ == "__main__":
    sys.exit(app())
