"""The bodies of the commands that read results files and show them (`run.py table`, `plot`, `report`, `compare`,
`spread`): the rows the options name, the view the flags pick, printed on the console or written as files."""

from __future__ import annotations

from pathlib import Path


def load_filtered(files, model, workload, backend, console):
    """Rows of the files, narrowed by the filters; a filter value the files do not hold is an error."""
    from ..options import check_known, dedupe, only_results, split_list
    from ..store import labelled, load_many

    rows = labelled(load_many(only_results(files, console)))
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


def table(console, files, filters, view: str, metric: str, markdown: bool, within: float,
          by_content: bool = False) -> None:  # fmt: skip
    """`run.py table`: `view` is pivot (rows = backend, columns = model × workload, cell = the metric), winners,
    verdict (per library: win rate, geomean and worst ratio to the best; by_content: one a kind of batch) or
    model-step."""
    if not files:
        raise ValueError("files: give one or more results CSVs (or --readme README.md)")
    if view == "verdict":
        from ..options import check_number
        from .verdict import render_verdict_markdown, verdict, verdict_by_content

        check_number("--within", within, minimum=0)
        rows = load_filtered(files, *filters, console)
        parts = verdict_by_content(rows, within) if by_content else [("", verdict(rows, within))]
        parts = [(kind, found) for kind, found in parts if not found.empty]
        if not parts:
            raise ValueError("--verdict: no ok rows in these files")
        text = "\n\n".join((f"### {kind}\n\n" if kind else "") + render_verdict_markdown(found, within)
                             for kind, found in parts)  # fmt: skip
        return _markdown(console, text, markdown)
    if view == "model-step":
        from .model_step import model_steps, render_model_steps, terminal_model_steps

        steps = model_steps(load_filtered(files, *filters, console))
        if steps.empty:
            raise ValueError("--model-step: no rows of a model with declared layer kinds in these files")
        if markdown:
            print(render_model_steps(steps))
        else:
            for part in terminal_model_steps(steps):
                console.print(part)
        return
    from .tables import check_metric, pivot, render_markdown, render_terminal, render_winners_markdown, winners

    if view == "winners":
        found = winners(load_filtered(files, *filters, console))
        if found.empty:
            raise ValueError("--winners: no ok rows of a serving mix in these files")
        return _markdown(console, render_winners_markdown(found), markdown)
    check_metric(metric)
    p = pivot(load_filtered(files, *filters, console), metric)
    if markdown:
        print(render_markdown(p))
    else:
        for part in render_terminal(p, console.width):
            console.print(part)


def _markdown(console, text: str, plain: bool) -> None:
    """Markdown as it is (--format markdown), or rendered by Rich."""
    if plain:
        print(text)
    else:
        from rich.markdown import Markdown

        console.print(Markdown(text))


def plot(console, files, out_dir: Path, metric: list[str] | None, filters, baseline: str | None) -> None:
    """`run.py plot`: curves, mixes, the roofline, the verdict (more than one library), a model's attention per
    step, and the speed-up against `baseline` (default: sdpa, when it has rows), as PNGs in out_dir."""
    from ..options import check_output_dir, split_list
    from ..store import Status
    from .model_step import model_steps, plot_model_steps
    from .plots import plot as plot_curves
    from .plots import plot_mixes, plot_roofline, plot_speedup, plot_tp, plot_verdict
    from .verdict import verdict

    metrics = tuple(split_list(metric, "--metric") or ("p50_ms", "throughput"))
    check_output_dir("--out-dir", out_dir)
    rows = load_filtered(files, *filters, console)
    if not any(r.status is Status.OK and r.p50_ms is not None for r in rows):
        raise ValueError("no ok rows to plot")
    if baseline is not None and not any(r.backend == baseline for r in rows):  # before any file is written
        names = ", ".join(sorted({r.backend for r in rows}))
        raise ValueError(f"--baseline: {baseline!r} has no rows; expected one of {names}")
    paths = plot_curves(rows, out_dir, metrics) + plot_mixes(rows, out_dir) + plot_roofline(rows, out_dir)
    if len({r.backend.split("[")[0] for r in rows}) > 1:  # how often each library is the best (verdict.py)
        paths += plot_verdict(verdict(rows), out_dir)
    paths += plot_model_steps(model_steps(rows), out_dir)  # models with layer kinds: attention per step
    paths += plot_tp(rows, out_dir)  # specs measured at several tensor-parallel degrees
    if baseline is None and any(r.backend == "sdpa" for r in rows):
        baseline = "sdpa"
    if baseline:
        paths += plot_speedup(rows, out_dir, baseline)
    for path in paths:
        console.print(f"plot: {path}")


def report(console, files, out_dir: Path) -> None:
    """`run.py report`: the one static HTML page of every row of the files, in out_dir."""
    from ..options import check_output_dir, only_results
    from ..store import labelled, load_frame
    from .html import write_report

    check_output_dir("--output", out_dir)
    path = write_report(labelled(load_frame(only_results(files, console))), out_dir)
    console.print(f"report: {path} ({path.stat().st_size / 2**20:.1f} MiB, no network needed)")


def compare_files(console, a: Path, b: Path, min_effect, spread, no_spread, show, all_rows, a_gpu, b_gpu, across_gpus,
                  spread_named: bool = True):  # fmt: skip
    """`run.py compare`: B's rows against A's, the counts first, then the rows that differ (or all, `show`).
    spread_named: the spread file was named by the user (an error when it is missing), not the default one."""
    from ..compare import compare, load_spread, on_gpu, render_comparison
    from ..options import check_input_files, check_number
    from ..store import labelled, load_rows

    if show not in ("all", "significant"):
        raise ValueError(f"show: {show!r} is not valid; expected one of all, significant")
    check_number("--min-effect", min_effect, minimum=0)
    check_input_files("files", [a, b])
    noise = {} if no_spread or spread is None else load_spread(spread, required=spread_named)
    rows_a = labelled(on_gpu(load_rows(a), a_gpu, "--a-gpu", a))  # variants apart, named as -b takes them
    rows_b = labelled(on_gpu(load_rows(b), b_gpu, "--b-gpu", b))
    comparisons = compare(rows_a, rows_b, min_effect, noise, same_device=not (across_gpus or a_gpu or b_gpu))
    for part in render_comparison(comparisons, rows_a, rows_b, a, b, noise, spread, show, all_rows, across_gpus):
        console.print(part)


def spread_files(console, files, output: Path) -> None:
    """`run.py spread`: the between-run spread of the files' repeated specs, printed and saved to `output`
    (other devices' rows there kept)."""
    from rich.table import Table

    from ..compare import between_run_spread, save_spread
    from ..options import check_input_files, check_output_file, only_results
    from ..store import load_frame

    check_input_files("files", files)
    check_output_file("--output", output)
    table = between_run_spread(load_frame(only_results(files, console)))
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
