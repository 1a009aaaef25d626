#!/usr/bin/env python3
"""attnbench: sweep attention backends over real model shapes, check them against an fp32
reference, time them, and keep every result in a CSV database that drives tables and plots.

    python run.py list
    python run.py sweep --preset smoke
    python run.py table results/h100.csv --metric tflops
    python run.py plot results/h100.csv
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console

from harness.cli_options import (
    AnyDevice,
    BackendFilter,
    Destination,
    Measuring,
    ModelFilter,
    ScaleOut,
    Selection,
    TableFormat,
    Timeout,
    WorkloadFilter,
    with_options,
)
from harness.errors import friendly_errors
from harness.options import ASCII_FLOAT, PATH

REPO = Path(__file__).resolve().parent
SPREAD_FILE = REPO / "results" / "spread.csv"
console = Console(width=None if sys.stdout.isatty() else 100, emoji=False)  # piped: 100 columns
app = typer.Typer(
    add_completion=False, no_args_is_help=True, help=__doc__.split("\n\n")[0], pretty_exceptions_enable=False
)


@app.command()
@friendly_errors
@with_options
def sweep(what: Selection, how: Measuring, where: Destination, scale: ScaleOut):
    """Run a sweep: every spec of the (narrowed) preset × every backend, one CSV row each."""
    from harness.sweep import sweep_command

    raise typer.Exit(sweep_command(what, how, where, scale, console))


@app.command()
@friendly_errors
@with_options
def check(what: Selection, timeout: Timeout = 600.0):
    """Correctness only: every backend against the fp32 reference, one call each, nothing stored.
    Prints the relative error per cell; exits 1 if any backend is incorrect or errors."""
    from harness.sweep import check_command

    raise typer.Exit(check_command(what, timeout, console))


@app.command("list")
@friendly_errors
def list_(
    device: AnyDevice = None,
    backend: list[str] | None = typer.Option(None, "--backend", "-b", help="Only these backends."),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print the backends as JSON (name, availability, capabilities, variants) and nothing else.",
    ),  # fmt: skip
):
    """Backends (with availability and the reason when not), their variants, models and presets."""
    from harness.catalog import list_command

    list_command(console, device, backend, as_json)


@app.command()
@friendly_errors
def table(
    files: list[Path] | None = typer.Argument(None, parser=PATH, help="One or more results CSVs."),
    metric: str = typer.Option(
        "p50_ms",
        "--metric",
        "--stat",
        help="p50_ms (the README's), p95_ms, mean_ms, tflops, gbps, pct_peak_gbps, tokens_per_s, rel_err, ...",
    ),
    fmt: TableFormat = typer.Option("rich", "--format", help="rich (terminal) or markdown."),
    model: ModelFilter = None,
    workload: WorkloadFilter = None,
    backend: BackendFilter = None,
    readme: Path | None = typer.Option(
        None, parser=PATH, help="Regenerate, in place, every attnbench:table block of this Markdown file."
    ),
    show_winners: bool = typer.Option(
        False, "--winners", help="Serving mixes: the fastest backend a mix, the runner-up and the margin."
    ),
    show_verdict: bool = typer.Option(
        False,
        "--verdict",
        help="Per library (its best variant a batch): win rate, geomean and worst ratio to the best.",
    ),
    within: float | None = typer.Option(
        None, help="--verdict: a win is a time within this of the best (default 0.05 = 5%)."
    ),
    by_content: bool = typer.Option(
        False,
        "--by-content",
        help="--verdict: one a kind of batch (decodes, speculative steps, mixed, prompts, chunks).",
    ),
    model_step: bool = typer.Option(
        False, "--model-step", help="A model's attention per forward step: Σ layers × p50 over its layer kinds."
    ),
):
    """Rows = backend, columns = model × workload, cell = the metric (failed cells show their status).
    With --winners: one line a serving mix, who wins and by how much. With --verdict: how often each library
    is the best (harness/report/verdict.py)."""
    from harness.report import commands
    from harness.report import readme as blocks

    if readme is not None:
        return blocks.rewrite_one(readme, console)
    views = [name for name, on in (("--verdict", show_verdict), ("--model-step", model_step),
                                    ("--winners", show_winners)) if on]  # fmt: skip
    if len(views) > 1:
        raise ValueError(f"{views[1]}: one view at a time; {views[0]} was given too")
    view = "verdict" if show_verdict else "model-step" if model_step else "winners" if show_winners else "pivot"
    if within is not None and view != "verdict":
        raise ValueError("--within: only means something with --verdict")
    if by_content and view != "verdict":
        raise ValueError("--by-content: only means something with --verdict")
    if metric != "p50_ms" and view != "pivot":  # the verdict, the winners and a model's step rank by p50 time
        raise ValueError(
            f"--metric: --{view} ranks by p50_ms; give --metric without --{view} for the table of {metric}"
        )
    within = 0.05 if within is None else within
    commands.table(console, files, (model, workload, backend), view, metric, fmt.value == "markdown", within,
                   by_content)  # fmt: skip


@app.command()
@friendly_errors
def readme(
    files: list[Path] | None = typer.Argument(
        None, parser=PATH, help="Markdown files (default: README.md and docs/**/*.md)."
    ),
    check: bool = typer.Option(False, "--check", help="Change nothing; exit 1 if a block differs from the CSVs."),
):
    """Regenerate every <!-- attnbench:table ... --> block of the README and docs/ from the committed CSVs."""
    from harness.report.readme import generated_files, rewrite_all

    raise typer.Exit(rewrite_all(files or generated_files(REPO), check, console))


@app.command()
@friendly_errors
def plot(
    files: list[Path] = typer.Argument(..., parser=PATH, help="One or more results CSVs."),
    out_dir: Path = typer.Option(REPO / "plots", parser=PATH, help="Folder for the PNGs."),
    metric: list[str] | None = typer.Option(
        None, help="Metrics to draw (default p50_ms and throughput: TFLOP/s, GB/s for decode)."
    ),
    model: ModelFilter = None,
    workload: WorkloadFilter = None,
    backend: BackendFilter = None,
    baseline: str | None = typer.Option(
        None, help="Backend the speedup heatmap divides by (default: sdpa, when it has rows)."
    ),
):
    """Latency and TFLOP/s against KV length (a panel per workload, a line per backend), a roofline
    against the measured ceilings, and a speedup heatmap against a baseline backend (PNGs)."""
    from harness.report import commands

    commands.plot(console, files, out_dir, metric, (model, workload, backend), baseline)


@app.command()
@friendly_errors
def calibrate(device: AnyDevice = None):
    """Measure this device's matmul rate (bf16, fp16, fp32), copy and read-only bandwidth; store them in
    results/calibration-<device>.csv. Sweeps use the newest calibration for percent of peak."""
    from harness.calibrate import calibrate_command

    calibrate_command(console, device)


@app.command()
@friendly_errors
def report(
    files: list[Path] = typer.Argument(
        ..., parser=PATH, help="Results CSVs or folders of them (e.g. results/); other CSVs are skipped with a note."
    ),
    out_dir: Path = typer.Option(..., "--output", "-o", parser=PATH, help="Folder for index.html (created)."),
):
    """One static HTML page (works offline): environment per GPU, the newest row of each task in a filterable
    table with the command that reproduces it, roofline, scaling curves, speed-up heatmap, serving mixes."""
    from harness.report import commands

    commands.report(console, files, out_dir)


@app.command()
@friendly_errors
def repair(file: Path = typer.Argument(..., parser=PATH, help="A results CSV whose last row was torn.")):
    """Move a torn last row (a killed writer, a full disk) into FILE.torn and keep every whole row."""
    from harness.options import check_input_files
    from harness.store import repair as repair_file

    check_input_files("file", [file])
    kept, torn = repair_file(file)
    if torn is None:
        console.print(f"{file}: nothing torn; {kept} rows, all whole")
    else:
        console.print(f"{file}: the torn last row moved to {torn}; {kept} whole rows kept")


@app.command()
@friendly_errors
def compare(
    a: Path = typer.Argument(..., parser=PATH, help="Baseline results CSV (A)."),
    b: Path = typer.Argument(..., parser=PATH, help="Candidate results CSV (B)."),
    min_effect: float = typer.Option(
        0.01,
        parser=ASCII_FLOAT,
        help="Differences smaller than this (0.01 = 1%, the timer's target precision) are never called "
        "significant; 0 = intervals alone.",
    ),
    spread: Path | None = typer.Option(
        SPREAD_FILE,
        parser=PATH,
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
    from harness.report.commands import compare_files

    # the default spread file may be absent (no spreads measured yet); a file the user names must be there
    compare_files(console, a, b, min_effect, spread, no_spread, show, all_rows, a_gpu, b_gpu, across_gpus,
                  spread_named=spread != SPREAD_FILE)  # fmt: skip


@app.command("spread")
@friendly_errors
def spread_(
    files: list[Path] = typer.Argument(..., parser=PATH, help="Results CSVs holding several runs of the same specs."),
    output: Path = typer.Option(
        SPREAD_FILE, "--output", "-o", parser=PATH, help="Where the spread table goes (compare reads it)."
    ),
):
    """Between-run spread: how far the same (spec, backend, version, kernel) moves between runs in
    separate processes, per GPU and workload (90th percentile and maximum over keys)."""
    from harness.report.commands import spread_files

    spread_files(console, files, output)


def main(argv: list[str] | None = None) -> int:
    """The CLI: every usage error is one plain line on stderr (harness/errors.py lists the exit codes)."""
    from harness.errors import main as run_app

    return run_app(app, argv)


if __name__ == "__main__":
    sys.exit(main())
