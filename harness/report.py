"""Reports as pure functions of result rows: one pivot (any metric), rendered as a terminal or
Markdown table, and one plot function (latency and TFLOP/s against sequence length)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .env import device_slug
from .store import ResultRow, Status, as_frame, latest

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
STATUS_LABEL = {s: s.value.upper() for s in Status}

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


def _model_rank(model: str) -> tuple[int, str]:
    """Models in the order specs/models.py lists them, unknown ones after, alphabetically."""
    from specs import MODELS

    names = list(MODELS)
    return (names.index(model) if model in names else len(names), model)


def _sortable(value) -> tuple:
    return (0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value))


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


def _mix_order(mix: str) -> int:
    """Named mixes in the preset's order, other mix strings after."""
    from specs import MIX_NAMES

    names = list(MIX_NAMES)
    return names.index(mix) if mix in names else len(names)


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
    frame["order"] = [
        (_model_rank(r.model), _mix_order(r.mix), WORKLOAD_ORDER.get(r.workload, 9),
         *(_sortable(None if pd.isna(getattr(r, a)) else getattr(r, a)) for a in varying))
        for r in frame.itertuples()
    ]  # fmt: skip
    col_labels = list(dict.fromkeys(frame.sort_values("order", kind="stable")["col"]))
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


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def backend_colours(backends: list[str], plt) -> dict:
    """One colour a backend, the same in every panel: tab10 while it has room, tab20 past it."""
    cmap, size = (plt.get_cmap("tab10"), 10) if len(backends) <= 10 else (plt.get_cmap("tab20"), 20)
    return {b: cmap(i % size) for i, b in enumerate(backends)}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower()


def plot(rows: Iterable[ResultRow], out_dir: Path | str, metrics: tuple[str, ...] = ("p50_ms", "tflops")) -> list[Path]:
    """One PNG per (device, model, batch size, dtype): a column per workload, a row per metric,
    x = KV length (log scale), one line per backend; only ok rows are drawn."""
    plt = _pyplot()

    for m in metrics:
        check_metric(m)
    ok = [r for r in latest(rows) if r.status is Status.OK]
    out_dir = Path(out_dir)
    groups: dict[tuple, list[ResultRow]] = {}
    for r in ok:
        groups.setdefault((r.device, r.model, r.batch_size, r.dtype), []).append(r)
    written = []
    for (device, model, batch, dtype), group in sorted(groups.items()):
        workloads = [w for w in WORKLOAD_ORDER if any(r.workload == w for r in group)]
        backends = sorted({r.backend for r in group})
        color = backend_colours(backends, plt)
        fig, axes = plt.subplots(
            len(metrics), len(workloads), figsize=(4.2 * len(workloads), 3.3 * len(metrics)), squeeze=False
        )
        for j, workload in enumerate(workloads):
            wrows = [r for r in group if r.workload == workload]
            single_point = len({(r.kv_len, r.q_len) for r in wrows}) == 1
            for i, metric in enumerate(metrics):
                ax = axes[i][j]
                if single_point:  # one sequence length: bars say more than one-point lines
                    names = [b for b in backends if any(r.backend == b for r in wrows)]
                    heights = [next(getattr(r, metric) for r in wrows if r.backend == b) for b in names]
                    for x, (b, h) in enumerate(zip(names, heights)):
                        ax.bar(x, h, color=color[b], label=b)
                    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize="small")
                    ax.set_xlabel(f"KV {wrows[0].kv_len}, q {wrows[0].q_len}")
                else:
                    for backend in backends:
                        mine = [r for r in wrows if r.backend == backend]
                        chunks = sorted({r.q_len for r in mine}) if workload == "append" else [None]
                        for chunk in chunks:
                            pts = sorted(
                                (r.kv_len, getattr(r, metric)) for r in mine if chunk is None or r.q_len == chunk
                            )
                            style = "-" if chunk is None or chunk == chunks[0] else "--"
                            name = backend if style == "-" else f"{backend} (chunk {chunk})"
                            ax.plot(
                                [p[0] for p in pts],
                                [p[1] for p in pts],
                                style,
                                marker="o",
                                color=color[backend],
                                label=name,
                            )
                    ax.set_xscale("log", base=2)
                    ax.set_xlabel("KV length (tokens)")
                if metric.endswith("_ms") and not single_point:
                    ax.set_yscale("log")
                ax.set_title(workload if i == 0 else "")
                ax.set_ylabel(metric)
                ax.grid(True, alpha=0.3)
        handles = {}
        for ax in axes.flat:
            for handle, label in zip(*ax.get_legend_handles_labels()):
                handles.setdefault(label, handle)
        fig.legend(
            list(handles.values()),
            list(handles.keys()),
            loc="lower center",
            ncol=min(6, len(handles)),
            fontsize="small",
        )
        fig.suptitle(f"{model} · batch {batch} · {dtype} · {device}")
        fig.tight_layout(rect=(0, 0.08 + 0.02 * (len(handles) // 6), 1, 0.95))
        path = out_dir / f"{device_slug(device)}_{_slug(model)}_b{batch}_{dtype}.png"
        written.append(_save(plt, fig, path))
    return written


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


# ---- roofline and speedup heatmap ---------------------------------------------------------------


def plot_roofline(rows: Iterable[ResultRow], out_dir: Path | str) -> list[Path]:
    """Per device: arithmetic intensity (FLOP/byte) against achieved TFLOP/s, with the measured
    matmul and copy ceilings; a colour per backend, a marker per workload."""
    plt = _pyplot()

    ok = [r for r in latest(rows) if r.status is Status.OK and r.ceiling_tflops and r.ceiling_gbps]
    out_dir = Path(out_dir)
    written = []
    markers = {"prefill": "o", "append": "s", "decode": "^"}
    for device in sorted({r.device for r in ok}):
        mine = [r for r in ok if r.device == device]
        backends = sorted({r.backend for r in mine})
        color = backend_colours(backends, plt)
        fig, ax = plt.subplots(figsize=(8, 5.5))
        for dtype in sorted({r.dtype for r in mine}):
            rs = [r for r in mine if r.dtype == dtype]
            peak, bw = rs[0].ceiling_tflops, rs[0].ceiling_gbps
            intensities = [r.spec.flops / r.spec.ideal_bytes for r in rs]
            lo, hi = min(intensities + [1.0]) / 2, max(intensities + [peak * 1e3 / bw]) * 2
            xs = [lo * (hi / lo) ** (i / 200) for i in range(201)]
            ax.plot(xs, [min(peak, bw * x / 1e3) for x in xs], "k-", lw=1.2, alpha=0.7)
            ax.annotate(f"{dtype} matmul {peak:.3g} TFLOP/s, copy {bw / 1e3:.3g} TB/s (measured)",
                        (xs[-1], peak), ha="right", va="bottom", fontsize="small")  # fmt: skip
        for r in mine:
            ax.scatter(
                r.spec.flops / r.spec.ideal_bytes,
                r.tflops,
                color=color[r.backend],
                marker=markers.get(r.workload, "x"),
                s=40,
            )
        for b in backends:
            ax.scatter([], [], color=color[b], marker="o", label=b)
        for w, m in markers.items():
            if any(r.workload == w for r in mine):
                ax.scatter([], [], color="gray", marker=m, label=w)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("arithmetic intensity (FLOP / ideal byte)")
        ax.set_ylabel("achieved TFLOP/s (p50)")
        ax.set_title(f"roofline · {device}")
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize="small", ncol=2, loc="lower right")
        fig.tight_layout()
        path = out_dir / f"{device_slug(device)}_roofline.png"
        written.append(_save(plt, fig, path))
    return written


def speedup_grid(p: Pivot, baseline: str) -> list[list[float | None]]:
    """[backend][column] = baseline p50 / backend p50 (above 1: faster than the baseline), None where
    either is not a number. `p` is a p50_ms pivot."""
    values: list[list[float | None]] = [[None] * len(p.col_labels) for _ in p.row_labels]
    for i, rl in enumerate(p.row_labels):
        for j, col in enumerate(p.col_labels):
            base, mine = p.cells.get((baseline, col), ""), p.cells.get((rl, col), "")
            if _is_number(base) and _is_number(mine):
                values[i][j] = float(base) / float(mine)
    return values


def plot_speedup(rows: Iterable[ResultRow], out_dir: Path | str, baseline: str) -> list[Path]:
    """Per device: a heatmap of baseline p50 / backend p50 (above 1 = faster than the baseline),
    rows = backends, columns = specs; failed cells show their status."""
    from matplotlib.colors import LogNorm

    plt = _pyplot()

    rows = latest(rows)
    if not any(r.backend == baseline for r in rows):
        raise ValueError(
            f"baseline: {baseline!r} has no rows; expected one of {', '.join(sorted({r.backend for r in rows}))}"
        )
    out_dir = Path(out_dir)
    written = []
    for device in sorted({r.device for r in rows}):
        p = pivot([r for r in rows if r.device == device], "p50_ms")
        if baseline not in p.row_labels:
            continue
        values = speedup_grid(p, baseline)
        finite = [v for row in values for v in row if v]
        span = max([abs(math.log10(v)) for v in finite] + [0.05])
        fig, ax = plt.subplots(figsize=(1.3 * len(p.col_labels) + 2.5, 0.5 * len(p.row_labels) + 2))
        grid = [[v if v else float("nan") for v in row] for row in values]
        image = ax.imshow(grid, cmap="RdYlGn", norm=LogNorm(vmin=10**-span, vmax=10**span), aspect="auto")
        for i, rl in enumerate(p.row_labels):
            for j, col in enumerate(p.col_labels):
                v = values[i][j]
                text = f"{v:.2f}×" if v else p.cells.get((rl, col), "—").lower()[:11]
                ax.text(j, i, text, ha="center", va="center", fontsize="x-small", color="black" if v else "gray")
        ax.set_xticks(range(len(p.col_labels)), [c.replace(" ", "\n", 1) for c in p.col_labels], fontsize="x-small")
        ax.set_yticks(range(len(p.row_labels)), p.row_labels, fontsize="small")
        ax.set_title(f"speedup over {baseline} (p50) · {device}")
        fig.colorbar(image, ax=ax, shrink=0.8)
        fig.tight_layout()
        path = out_dir / f"{device_slug(device)}_speedup_vs_{_slug(baseline)}.png"
        written.append(_save(plt, fig, path))
    return written


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False
