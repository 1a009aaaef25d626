"""PNG figures of result rows (matplotlib, no display needed): latency and TFLOP/s against KV length
per model, the roofline against the measured ceilings, and the speed-up heatmap over a baseline.
The interactive versions are in the HTML report (`harness/report/html.py`)."""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..env import device_slug
from ..store import ResultRow, Status, latest
from .tables import METRICS, WORKLOAD_ORDER, Pivot, pivot


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path) -> Path:
    """Draw into memory, then replace the PNG through a temporary file and a rename."""
    from ..atomic import write_atomic

    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=110, format="png")
    plt.close(fig)
    write_atomic(path, buffer.getvalue())
    return path


# 20 colours that stay apart (tab10, then ten darker or brighter others) and 12 markers; the pair of colour and
# marker tells up to 240 backends apart, and the first 20 differ by colour alone
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf", "#393b79", "#e7ba52", "#637939", "#843c39", "#7b4173", "#3182bd", "#fd8d3c", "#31a354",
           "#bc80bd", "#000000")  # fmt: skip
MARKERS = "osD^vXP*ph<>"
PLOTLY_SYMBOLS = ("circle", "square", "diamond", "triangle-up", "triangle-down", "x", "cross", "star", "pentagon",
                  "hexagon", "triangle-left", "triangle-right")  # fmt: skip


def backend_style(backends) -> dict[str, tuple[str, int]]:
    """backend -> (colour, marker index), the same in every panel and figure of one set of backends: the
    names sorted, a colour each from PALETTE, and a marker that also changes, so that 16+ backends (and
    their variants) stay apart even where two colours look alike."""
    names = sorted(set(backends))
    return {b: (PALETTE[i % len(PALETTE)], (i + i // len(PALETTE)) % len(MARKERS)) for i, b in enumerate(names)}


def backend_colours(backends: list[str], plt=None) -> dict:
    """One colour a backend, the same in every panel (backend_style)."""
    return {b: colour for b, (colour, _) in backend_style(backends).items()}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower()


THROUGHPUT = "throughput"  # a pseudo-metric: TFLOP/s where compute bounds the workload, GB/s where memory does


def workload_metric(metric: str, workload: str) -> str:
    """The column a panel draws: `throughput` is gbps for decode (memory-bound), tflops otherwise."""
    if metric != THROUGHPUT:
        return metric
    return "gbps" if workload == "decode" else "tflops"


def with_form(row: ResultRow) -> ResultRow:
    """The row with its FP8 form in the backend's name ('flashinfer (fp8 KV)'), so that a curve per backend
    keeps the bf16 and the FP8 cache apart (the fp8 preset plots decode time against context for both)."""
    note = fp8_note(row.kv_dtype, row.fp8_attention, row.kv_scale)
    return replace(row, backend=f"{row.backend}{note}") if note else row


def fp8_note(kv_dtype: str, fp8_attention: bool, kv_scale: str) -> str:
    """' (fp8 KV)', ' (fp8 QKV, per head)', or '' for a cache in the spec's dtype."""
    if not kv_dtype or pd.isna(kv_dtype):
        return ""
    form = "fp8 QKV" if fp8_attention else "fp8 KV"
    return f" ({form}{', per head' if kv_scale == 'head' else ''})"


def plot(
    rows: Iterable[ResultRow], out_dir: Path | str, metrics: tuple[str, ...] = ("p50_ms", THROUGHPUT)
) -> list[Path]:
    """One PNG per (device, model, batch size, dtype): a column per workload, a row per metric,
    x = KV length (log scale), one line (colour and marker) per backend; only ok rows are drawn.
    `throughput` draws TFLOP/s for prefill and append and GB/s for decode."""
    plt = _pyplot()

    for m in metrics:
        if m != THROUGHPUT and m not in METRICS:
            raise ValueError(f"metric: {m!r} is not valid; expected one of {THROUGHPUT}, {', '.join(METRICS)}")
    ok = [with_form(r) for r in latest(rows) if r.status is Status.OK and not r.mix]  # mixes: plot_mixes
    # a model's windowed layers beside its full ones: a line of their own a backend (flat against the context)
    ok = [replace(r, backend=f"{r.backend} · window {r.window}") if r.window is not None else r for r in ok]
    out_dir = Path(out_dir)
    groups: dict[tuple, list[ResultRow]] = {}
    for r in ok:
        groups.setdefault((r.device, r.model, r.batch_size, r.dtype, r.tp), []).append(r)
    written = []
    for (device, model, batch, dtype, tp), group in sorted(groups.items()):
        workloads = [w for w in WORKLOAD_ORDER if any(r.workload == w for r in group)]
        backends = sorted({r.backend for r in group})
        color = backend_colours(backends, plt)
        marker = {b: MARKERS[m] for b, (_, m) in backend_style(backends).items()}
        bars = any(len({(r.kv_len, r.q_len) for r in group if r.workload == w}) == 1 for w in workloads)
        names_room = 0.055 * max(len(b) for b in backends) if bars else 0.0  # the bars' slanted names under each row
        width, height = max(7.0, 4.2 * len(workloads)), (3.3 + names_room) * len(metrics)  # and the title, legend
        fig, axes = plt.subplots(len(metrics), len(workloads), figsize=(width, height), squeeze=False)
        for j, workload in enumerate(workloads):
            wrows = [r for r in group if r.workload == workload]
            single_point = len({(r.kv_len, r.q_len) for r in wrows}) == 1
            for i, shown in enumerate(metrics):
                metric = workload_metric(shown, workload)
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
                                marker=marker[backend],
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
        # as many legend columns as the longest label leaves room for (about 0.06 in a character, small font)
        longest = max((len(label) for label in handles), default=1)
        ncol = max(1, min(6, len(handles), int(width // (0.4 + 0.06 * longest))))
        fig.legend(list(handles.values()), list(handles.keys()), loc="lower center", ncol=ncol, fontsize="small")
        sharded = f" · tp {tp}" if tp > 1 else ""
        fig.suptitle(f"{model} · batch {batch} · {dtype} · {device}{sharded}")
        legend_rows = -(-len(handles) // ncol)
        fig.tight_layout(rect=(0, min(0.5, (0.3 + 0.22 * legend_rows) / height), 1, 0.95))
        path = out_dir / f"{device_slug(device)}_{_slug(model)}_b{batch}_{dtype}{f'_tp{tp}' if tp > 1 else ''}.png"
        written.append(_save(plt, fig, path))
    return written


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


SPEEDUP_COLUMNS = 16  # specs a panel of the speedup map; more stack as further panels


def plot_speedup(rows: Iterable[ResultRow], out_dir: Path | str, baseline: str) -> list[Path]:
    """Per device: a heatmap of baseline p50 / backend p50 (above 1 = faster than the baseline),
    rows = backends, columns = specs; failed cells show their status. A device where no spec has both the baseline
    and another backend `ok` gets no map."""
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
        if not finite:  # the baseline ran nowhere another backend did (SDPA on latent attention): no ratio to draw
            continue
        span = max([abs(math.log10(v)) for v in finite] + [0.05])
        # at most SPEEDUP_COLUMNS specs a panel, the panels stacked: one strip of 60 specs was 8,700 pixels wide
        strips = [range(i, min(i + SPEEDUP_COLUMNS, len(p.col_labels))) for i in range(0, len(p.col_labels),
                                                                                      SPEEDUP_COLUMNS)]  # fmt: skip
        width = 1.3 * max(len(cols) for cols in strips) + 2.5
        fig, axes = plt.subplots(len(strips), 1, figsize=(width, (0.5 * len(p.row_labels) + 2) * len(strips)),
                                 squeeze=False)  # fmt: skip
        norm = LogNorm(vmin=10**-span, vmax=10**span)
        for ax, cols in zip(axes[:, 0], strips):
            grid = [[values[i][j] or float("nan") for j in cols] for i in range(len(p.row_labels))]
            image = ax.imshow(grid, cmap="RdYlGn", norm=norm, aspect="auto")
            for i, rl in enumerate(p.row_labels):
                for x, j in enumerate(cols):
                    v = values[i][j]
                    text = f"{v:.2f}×" if v else p.cells.get((rl, p.col_labels[j]), "—").lower()[:11]
                    ax.text(x, i, text, ha="center", va="center", fontsize="x-small", color="black" if v else "gray")
            labels = [p.col_labels[j].replace(" ", "\n", 1) for j in cols]
            long = max(len(label) for label in labels) > 24  # a spec with a form or a mix: slanted, or they overlap
            ax.set_xticks(range(len(cols)), labels, fontsize="x-small", rotation=30 if long else 0,
                          ha="right" if long else "center")  # fmt: skip
            ax.set_yticks(range(len(p.row_labels)), p.row_labels, fontsize="small")
            fig.colorbar(image, ax=ax, shrink=0.8)
        axes[0, 0].set_title(f"speedup over {baseline} (p50) · {device}")
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


def mix_ratios(rows) -> dict[tuple[str, str], pd.DataFrame]:
    """(device, model) -> rows = backend, columns = serving mix (· page size), cell = the backend's p50
    over the fastest p50 of that column (1 = it wins; NaN = no ok row)."""
    from .tables import model_order, ok_mix_rows

    frame = ok_mix_rows(rows)
    frame = frame.assign(group=frame["mix_name"] + " · " + frame["kv"])
    out = {}
    for device in sorted(frame["device"].unique()):
        mine = frame[frame["device"] == device]
        for model in model_order(mine["model"]):
            table = mine[mine["model"] == model].pivot_table(index="backend", columns="group", values="p50_ms")
            columns = sorted(table.columns, key=_mix_column_order)
            out[(device, model)] = table.div(table.min(axis=0), axis=1)[columns]
    return out


def _mix_column_order(group: str):
    """The preset's mixes in its order; within one, plain before its forms, a form's shards (tp=N) after it in tp
    order, dense before pages ('decode-heavy window=128 · dense' before 'decode-heavy window=128 tp=2 · page 16')."""
    from .tables import mix_rank

    head, kv = group.split(" · ")
    name, *form = head.split(" ")
    tp = next((int(f[3:]) for f in form if f.startswith("tp=")), 1)
    rest = [f for f in form if not f.startswith("tp=")]
    return mix_rank(name), name, rest, tp, kv != "dense", kv


MAX_MIX_COLUMNS = 48  # a heat map wider than this is unreadable: the verdict plot speaks for more batches


def plot_mixes(rows, out_dir: Path | str) -> list[Path]:
    """Per device, one heat map a model: rows = backend, columns = serving mix and KV layout, each
    cell the backend's p50 over the column's fastest (1.00 = the winner, boxed; blank = did not run
    ok), so who wins where, and by how much, reads at a glance. Not drawn for a device whose model has
    more than MAX_MIX_COLUMNS of them (the 210 drawn batches of the `generalization` preset made a heat map
    22,000 pixels wide): its verdict plot (plot_verdict) says how often each backend wins them."""
    import matplotlib.colors as mcolors

    plt = _pyplot()
    written = []
    ratios = mix_ratios(rows)
    for device in dict.fromkeys(d for d, _ in ratios):
        panels = [(model, table) for (d, model), table in ratios.items() if d == device]
        columns = max(len(t.columns) for _, t in panels)
        if columns > MAX_MIX_COLUMNS:
            continue
        height = sum(0.32 * len(t) + 1.3 for _, t in panels) + 0.6
        shared = all(list(t.columns) == list(panels[0][1].columns) for _, t in panels)
        fig, axes = plt.subplots(len(panels), 1, figsize=(max(8, 0.95 * columns + 2.5), height), squeeze=False,
                                 layout="constrained")  # fmt: skip
        norm = mcolors.LogNorm(vmin=1, vmax=10)
        for ax, (model, table) in zip(axes[:, 0], panels):
            values = table.to_numpy(dtype=float)
            image = ax.imshow(values.clip(1, 10), cmap="RdYlGn_r", norm=norm, aspect="auto")
            for (i, j), value in np.ndenumerate(values):
                if np.isnan(value):
                    continue
                text = f"{value:.2f}" if value < 10 else f"{value:.0f}"
                ax.text(j, i, text, ha="center", va="center", fontsize=7,
                        fontweight="bold" if value == 1 else "normal")  # fmt: skip
                if value == 1:
                    ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=1.5, color="black"))
            last = ax is axes[-1, 0]
            ax.set_xticks(range(len(table.columns)), table.columns if last or not shared else [], rotation=30,
                          ha="right", fontsize="small")  # fmt: skip
            ax.set_yticks(range(len(table.index)), table.index, fontsize="small")
            ax.set_title(model, fontsize="medium", loc="left")
        fig.colorbar(image, ax=axes[:, 0].tolist(), label="p50 / the column's fastest p50", shrink=0.6)
        fig.suptitle(f"serving mixes · {device}")
        written.append(_save(plt, fig, Path(out_dir) / f"{device_slug(device)}_serving_mixes.png"))
    return written


def plot_verdict(table: pd.DataFrame, out_dir: Path | str, within: float = 0.05) -> list[Path]:
    """The verdict (harness/verdict.verdict's table), one PNG a device: a bar a library, its win rate, with its
    geomean and worst ratio to the best as markers on the same 0-1 axis."""
    plt = _pyplot()
    written = []
    for device, group in table.groupby("device", sort=False):
        fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(group) + 2), 4), layout="constrained")
        x = range(len(group))
        ax.bar(x, group["win_rate"], color="tab:blue", alpha=0.7, label=f"win rate (within {within * 100:g}%)")
        ax.plot(x, group["geomean"], "D", color="black", label="geomean of best ÷ its time")
        ax.plot(x, group["worst"], "v", color="tab:red", label="worst best ÷ its time")
        for i, r in zip(x, group.itertuples()):
            ax.text(i, r.win_rate + 0.02, f"{r.win_rate:.0%}", ha="center", fontsize="small")
        ax.set_xticks(list(x), group["library"], rotation=20, ha="right")
        ax.set_ylim(0, 1.3)
        ax.set_ylabel("share · ratio")
        ax.legend(fontsize="small", loc="upper center", ncol=3)
        ax.set_title(f"verdict over {int(group['batches'].iloc[0])} batches · {device}", fontsize="medium")
        written.append(_save(plt, fig, Path(out_dir) / f"{device_slug(device)}_verdict.png"))
    return written


def plot_tp(rows, out_dir: Path | str) -> list[Path]:
    """Per GPU attention time against the tensor-parallel degree: one PNG a (device, model), a panel a
    (workload or mix, layer kind), x = tp (log 2), a line a backend; only specs measured at two tp or more."""
    plt = _pyplot()
    ok = [r for r in latest(rows) if r.status is Status.OK]
    panels: dict[tuple, dict[str, list]] = {}
    for r in ok:
        layer = f"window {r.window}" if r.window is not None else "full"
        shape = r.mix or f"{r.workload} b{r.batch_size} × {r.kv_len}"
        pages = f" · pages {r.page_size}" if r.page_size else ""
        key = (r.device, r.model, f"{shape}{pages} · {layer}")
        panels.setdefault(key, {}).setdefault(r.backend, []).append((r.tp, r.p50_ms))
    figures: dict[tuple, list] = {}
    for (device, model, title), lines in sorted(panels.items()):
        if len({tp for points in lines.values() for tp, _ in points}) > 1:
            figures.setdefault((device, model), []).append((title, lines))
    written = []
    for (device, model), shown in figures.items():
        backends = sorted({b for _, lines in shown for b in lines})
        colour = backend_colours(backends, plt)
        marker = {b: MARKERS[m] for b, (_, m) in backend_style(backends).items()}
        fig, axes = plt.subplots(1, len(shown), figsize=(max(7.0, 4.2 * len(shown)), 3.8), squeeze=False,
                                 layout="constrained")  # fmt: skip
        for ax, (title, lines) in zip(axes[0], shown):
            for backend in backends:
                points = sorted(lines.get(backend, []))
                if points:
                    ax.plot(*zip(*points), "-", marker=marker[backend], color=colour[backend], label=backend)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("tensor-parallel degree (heads a GPU holds ÷ tp)")
            ax.set_ylabel("p50_ms per GPU")
            ax.set_title(title, fontsize="medium")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize="small")
        fig.suptitle(f"{model} · attention time per GPU against tp · {device}")
        written.append(_save(plt, fig, Path(out_dir) / f"{device_slug(device)}_{_slug(model)}_tp.png"))
    return written
