"""Reports as pure functions of result rows: one pivot (any metric), rendered as a terminal or
Markdown table, and one plot function (latency and TFLOP/s against sequence length)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .store import Status, as_frame, latest

# numeric columns a table or plot can show, with how to print them
METRICS: dict[str, str] = {
    "p50_ms": "{:.3f}",
    "p95_ms": "{:.3f}",
    "mean_ms": "{:.3f}",
    "min_ms": "{:.3f}",
    "max_ms": "{:.3f}",
    "std_ms": "{:.4f}",
    "setup_ms": "{:.0f}",
    "tflops": "{:.1f}",
    "gbps": "{:.0f}",
    "tokens_per_s": "{:.3g}",
    "peak_mem_gib": "{:.2f}",
    "rel_err": "{:.2e}",
    "pct_peak_tflops": "{:.1f}",
    "pct_peak_gbps": "{:.1f}",
    "roofline_ms": "{:.3f}",
    "p50_ci_low_ms": "{:.3f}",
    "p50_ci_high_ms": "{:.3f}",
}
HIGHER_IS_BETTER = {"tflops", "gbps", "tokens_per_s", "pct_peak_tflops", "pct_peak_gbps"}

# spec fields that may tell two columns apart, in the order they are shown
SPEC_AXES = (
    "mix", "batch_size", "q_len", "kv_len", "dtype", "page_size", "causal", "num_q_heads", "num_kv_heads", "head_dim",
)  # fmt: skip


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise ValueError(f"metric: {metric!r} is not valid; expected one of {', '.join(METRICS)}")
    return metric


@dataclass(frozen=True)
class Pivot:
    metric: str
    row_labels: list[str]
    col_labels: list[str]
    cells: dict[tuple[str, str], str]  # (row, col) -> text; absent = not measured
    best: dict[str, str]  # col -> row label of the best ok value


WORKLOAD_ORDER = {"prefill": 0, "append": 1, "decode": 2}


MIX_DETERMINED = ("mix", "batch_size", "q_len", "kv_len")  # a mix fixes these: its name says them


def _col_label(row, varying: list[str]) -> str:
    from specs import MIX_NAMES

    if row.mix in MIX_NAMES:
        parts = [row.model, MIX_NAMES[row.mix]]
    elif row.mix:
        parts = [row.model, row.workload, row.mix]
    else:
        parts = [row.model, row.workload]
    short = {"batch_size": "B", "q_len": "q", "kv_len": "kv", "page_size": "page", "num_q_heads": "Hq",
             "num_kv_heads": "Hkv", "head_dim": "D"}  # fmt: skip
    for axis in varying:
        if row.mix and axis in MIX_DETERMINED:
            continue
        value = getattr(row, axis)
        if axis == "page_size" and pd.isna(value):
            parts.append("dense")
            continue
        parts.append(f"{short.get(axis, axis)}={value}" if axis in short or axis == "causal" else str(value))
    return " ".join(parts)


def pivot(data, metric: str = "p95_ms") -> Pivot:
    """Rows = backend (with the device when several), columns = model × workload or mix (plus any
    other spec field that varies inside one of those), cell = the metric, or the status when not ok.
    `data`: a results frame or ResultRows; the newest row per (device, spec, backend) is shown."""
    check_metric(metric)
    frame = latest(as_frame(data)).copy()
    group = frame.groupby(["model", "workload"], dropna=False)
    varying = [axis for axis in SPEC_AXES if (group[axis].nunique(dropna=False) > 1).any()]
    several = frame["device"].nunique() > 1
    frame["row"] = frame["backend"] + (" [" + frame["device"] + "]" if several else "")
    frame["col"] = [_col_label(r, varying) for r in frame.itertuples()]
    from specs import MIX_NAMES, MODELS

    models = [*MODELS, *sorted(set(frame["model"]) - set(MODELS))]  # known models in their order, others after
    ordered = frame.assign(
        _model=pd.Categorical(frame["model"], categories=models, ordered=True),
        _mix=frame["mix"].map({m: i for i, m in enumerate(MIX_NAMES)}).fillna(len(MIX_NAMES)),
        _workload=frame["workload"].map(WORKLOAD_ORDER).fillna(9),
    ).sort_values(["_model", "_mix", "_workload", *varying], kind="stable", na_position="last")
    col_labels = list(dict.fromkeys(ordered["col"]))
    fmt = METRICS[metric]
    ok = (frame["status"] == Status.OK.value) & frame[metric].notna()
    label = frame["status"].str.upper()
    text = frame[metric].map(lambda v: "" if pd.isna(v) else fmt.format(v))
    shown_with_status = frame[metric].notna() & (metric in ("rel_err", "setup_ms", "roofline_ms"))
    frame["cell"] = label.where(~shown_with_status, text + " " + label).where(~ok, text)
    cells = {(r.row, r.col): r.cell for r in frame[["row", "col", "cell"]].itertuples()}
    values = frame[ok].pivot_table(index="row", columns="col", values=metric, aggfunc="first")
    best = (values.idxmax() if metric in HIGHER_IS_BETTER else values.idxmin()).to_dict()
    return Pivot(metric, sorted(frame["row"].unique()), col_labels, cells, best)


def render_rich(p: Pivot, title: str | None = None):
    from rich.table import Table

    table = Table(title=title or f"{p.metric} (best per column in bold; failed cells show their status)")
    table.add_column("backend", style="cyan", no_wrap=True)
    for col in p.col_labels:
        table.add_column(col.replace(" ", "\n", 1), justify="right", overflow="fold")
    for rl in p.row_labels:
        cells = []
        for col in p.col_labels:
            text = p.cells.get((rl, col), "—")
            if p.best.get(col) == rl:
                text = f"[bold green]{text}[/]"
            elif not re.match(r"^[\d.]", text):
                text = f"[dim]{text}[/]"
            cells.append(text)
        table.add_row(rl, *cells)
    return table


def render_markdown(p: Pivot) -> str:
    lines = [
        "| backend | " + " | ".join(p.col_labels) + " |",
        "|---|" + "---:|" * len(p.col_labels),
    ]
    for rl in p.row_labels:
        cells = []
        for col in p.col_labels:
            text = p.cells.get((rl, col), "—")
            cells.append(f"**{text}**" if p.best.get(col) == rl else text)
        lines.append(f"| {rl} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---- README blocks ------------------------------------------------------------------------------

BLOCK = re.compile(
    r"(?P<open><!-- attnbench:table (?P<params>[^>]*?) -->\n)(?P<body>.*?)(?P<close><!-- /attnbench:table -->)",
    re.DOTALL,
)


def _block_params(text: str) -> dict[str, str]:
    params = {}
    for token in text.split():
        if "=" not in token:
            raise ValueError(
                f"README table marker: {token!r} is not key=value (keys: files, metric, model, workload, backend)"
            )
        key, value = token.split("=", 1)
        if key not in ("files", "metric", "model", "workload", "backend"):
            raise ValueError(
                f"README table marker: {key!r} is not valid; expected one of files, metric, model, workload, backend"
            )
        params[key] = value
    if "files" not in params:
        raise ValueError("README table marker: needs files=results/<gpu>.csv[,more.csv]")
    return params


def rewrite_readme(text: str, base_dir: Path, load) -> tuple[str, int]:
    """Regenerate every `<!-- attnbench:table files=… metric=… -->` … `<!-- /attnbench:table -->`
    block from the CSVs it names; nothing outside the blocks changes. Returns (text, blocks)."""
    count = 0

    def render(match: re.Match) -> str:
        nonlocal count
        params = _block_params(match.group("params"))
        rows = load([base_dir / f for f in params["files"].split(",")])
        for field in ("model", "workload", "backend"):
            if field in params:
                wanted = set(params[field].split(","))
                rows = [r for r in rows if getattr(r, field) in wanted]
        metric = params.get("metric", "p95_ms")
        table = render_markdown(pivot(rows, metric))
        count += 1
        return f"{match.group('open')}{table}\n{match.group('close')}"

    return BLOCK.sub(render, text), count
