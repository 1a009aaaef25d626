"""Tables as pure functions of result rows: one pivot (any metric), rendered for a terminal, as Rich or as
Markdown; the serving mixes' winners; the best backend per GPU and workload class."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import pandas as pd

from ..store import Status, as_frame, latest

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
    "rel_err_vs_unquantized": "{:.2e}",
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
    "window", "sinks", "softcap", "tp",
    "kv_dtype", "fp8_attention", "kv_scale",
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
             "num_kv_heads": "Hkv", "head_dim": "D", "tp": "tp"}  # fmt: skip
    for axis in varying:
        if row.mix and axis in MIX_DETERMINED:
            continue
        value = getattr(row, axis)
        if axis == "page_size" and pd.isna(value):
            parts.append("dense")
            continue
        if axis in ("window", "softcap"):  # a layer kind's form: window=128 or full, softcap=50 or no-softcap
            parts.append(("full" if axis == "window" else "no-softcap") if pd.isna(value) else f"{axis}={value:g}")
            continue
        if axis == "sinks":
            parts.append("sinks" if value else "no-sinks")
            continue
        if axis == "fp8_attention":  # said when on; a default cache and scale ('') say nothing
            value = "fp8-attention" if not pd.isna(value) and str(value) == "True" else ""
        if pd.isna(value) or value == "":
            continue
        parts.append(f"{short.get(axis, axis)}={value}" if axis in short or axis == "causal" else str(value))
    return " ".join(parts)


def model_order(names) -> list[str]:
    """The known models among `names` in their table order, then any others sorted."""
    from specs import MODELS

    names = set(names)
    return [m for m in MODELS if m in names] + sorted(names - set(MODELS))


def mix_rank(name: str) -> int:
    """A named serving mix's place in the preset (ad-hoc mixes after every named one)."""
    from specs import MIX_NAMES

    name = name.split(" ")[0]  # a mix name, then its form (form_tag)
    return list(MIX_NAMES.values()).index(name) if name in MIX_NAMES.values() else len(MIX_NAMES)


def kv_label(page_size) -> str:
    return "dense" if pd.isna(page_size) else f"page {int(page_size)}"


def form_tag(row) -> str:
    """What a mix row computes beyond its mix and KV layout: a window, a soft-cap, a tp shard, an FP8 cache or FP8
    attention ('' for plain attention), so rows of one mix on another layer kind or shard never share a cell."""
    parts = []
    if not pd.isna(row.get("window")):
        parts.append(f"window={row['window']:g}")
    if not pd.isna(row.get("softcap")):
        parts.append(f"softcap={row['softcap']:g}")
    tp = row.get("tp")
    if not pd.isna(tp) and int(tp) > 1:
        parts.append(f"tp={int(tp)}")
    if isinstance(row.get("kv_dtype"), str) and row["kv_dtype"]:
        parts.append(row["kv_dtype"])
    if str(row.get("fp8_attention")) == "True":
        parts.append("fp8-attention")
    return " ".join(parts)


def ok_mix_rows(data) -> pd.DataFrame:
    """The newest ok rows of serving mixes (named or ad hoc) that have a p50, with `mix_name` (the
    preset's name where there is one, then the row's form where it has one: `form_tag`) and `kv` (dense or page N)."""
    from specs import MIX_NAMES

    frame = latest(as_frame(data))
    frame = frame[(frame["status"] == Status.OK.value) & (frame["mix"] != "") & frame["p50_ms"].notna()]
    names = frame["mix"].map(lambda m: MIX_NAMES.get(m, m))
    forms = frame.apply(form_tag, axis=1) if len(frame) else names
    names = pd.Series([f"{name} {form}" if form else name for name, form in zip(names, forms)], index=frame.index,
                      dtype=object)  # fmt: skip
    return frame.assign(mix_name=names, kv=frame["page_size"].map(kv_label).astype(object))


OVER = "†"  # marks a cell whose row stands above 100% of its GPU's best measured ceiling (harness.ceilings)


def pivot(data, metric: str = "p50_ms") -> Pivot:
    """Rows = backend (with the device when several), columns = model × workload or mix (plus any
    other spec field that varies inside one of those), cell = the metric, or the status when not ok.
    `data`: a results frame or ResultRows; the newest row per (device, spec, backend) is shown. Percent of
    peak is against the GPU's best measured ceiling; a row above it is marked † and never the best."""
    from ..ceilings import rebase

    check_metric(metric)
    frame = rebase(latest(as_frame(data)))
    group = frame.groupby(["model", "workload"], dropna=False)
    varying = [axis for axis in SPEC_AXES if (group[axis].nunique(dropna=False) > 1).any()]
    several = frame["device"].nunique() > 1
    frame["row"] = frame["backend"] + (" [" + frame["device"] + "]" if several else "")
    frame["col"] = [_col_label(r, varying) for r in frame.itertuples()]
    from specs import MIX_NAMES

    ordered = frame.assign(
        _model=pd.Categorical(frame["model"], categories=model_order(frame["model"]), ordered=True),
        _mix=frame["mix"].map({m: i for i, m in enumerate(MIX_NAMES)}).fillna(len(MIX_NAMES)),
        _workload=frame["workload"].map(WORKLOAD_ORDER).fillna(9),
    ).sort_values(["_model", "_mix", "_workload", *varying], kind="stable", na_position="last")
    col_labels = list(dict.fromkeys(ordered["col"]))
    fmt = METRICS[metric]
    ok = (frame["status"] == Status.OK.value) & frame[metric].notna()
    label = frame["status"].str.upper()
    text = frame[metric].map(lambda v: "" if pd.isna(v) else fmt.format(v)) + frame["over_ceiling"].map(
        {True: OVER, False: ""}
    )
    with_status = ("rel_err", "rel_err_vs_unquantized", "setup_ms", "roofline_ms")
    shown_with_status = frame[metric].notna() & (metric in with_status)
    frame["cell"] = label.where(~shown_with_status, text + " " + label).where(~ok, text)
    cells = {(r.row, r.col): r.cell for r in frame[["row", "col", "cell"]].itertuples()}
    values = frame[ok & ~frame["over_ceiling"]].pivot_table(index="row", columns="col", values=metric, aggfunc="first")
    best = (values.idxmax() if metric in HIGHER_IS_BETTER else values.idxmin()).to_dict()
    return Pivot(metric, sorted(frame["row"].unique()), col_labels, cells, best)


WORKLOAD_CLASSES = {"prefill": "prefill", "append": "append (chunked prefill)", "decode": "decode",
                    "spec-decode": "speculative decode", "mixed": "serving mix"}  # fmt: skip


def best_by_class(data) -> pd.DataFrame:
    """The summary: for each GPU and workload class (uniform prefill, append, decode, speculative decode,
    serving mixes), the backend (with its variant) that is fastest on the most of its specs, on how many,
    the median margin by which it wins them (runner-up p50 / its p50), and the backend that wins most of the
    rest. Newest ok rows only; a row above its GPU's ceiling (harness.ceilings) is left out."""
    from ..ceilings import rebase

    frame = rebase(latest(as_frame(data)))
    frame = frame[(frame["status"] == Status.OK.value) & frame["p50_ms"].notna() & ~frame["over_ceiling"]]
    if frame.empty:
        return pd.DataFrame(columns=["device", "workload", "use", "wins", "specs", "margin", "others", "measured"])
    frame = frame.assign(wclass=frame["workload"].where(frame["mix"] == "", "mixed"))
    from ..store import SPEC_COLUMNS

    lines = []
    for (device, wclass), group in frame.groupby(["device", "wclass"], sort=False):
        won, margins, dates = {}, {}, {}
        specs = 0
        for _, spec_rows in group.groupby(list(SPEC_COLUMNS), dropna=False):
            ranked = spec_rows.sort_values("p50_ms", kind="stable")
            if len(ranked) < 2:
                continue
            specs += 1
            first, second = ranked.iloc[0], ranked.iloc[1]
            won[first["backend"]] = won.get(first["backend"], 0) + 1
            margins.setdefault(first["backend"], []).append(second["p50_ms"] / first["p50_ms"])
            dates.setdefault(first["backend"], set()).add(first["timestamp"][:10])
        if not won:
            continue
        order = sorted(won, key=lambda b: (-won[b], b))
        use = order[0]
        lines.append({"device": device, "workload": WORKLOAD_CLASSES.get(wclass, wclass), "use": use,
                      "wins": won[use], "specs": specs, "margin": float(pd.Series(margins[use]).median()),
                      "others": ", ".join(f"{b} ({won[b]})" for b in order[1:3]),
                      "measured": " … ".join(sorted({min(dates[use]), max(dates[use])}))})  # fmt: skip
    table = pd.DataFrame(lines)
    if table.empty:
        return pd.DataFrame(columns=["device", "workload", "use", "wins", "specs", "margin", "others", "measured"])
    rank = {name: i for i, name in enumerate(WORKLOAD_CLASSES.values())}
    return table.sort_values(["device", "workload"], key=lambda c: c.map(rank) if c.name == "workload" else c,
                             kind="stable").reset_index(drop=True)  # fmt: skip


def render_best_markdown(table: pd.DataFrame) -> str:
    if table.empty:
        return "(no ok rows)"
    several = table["device"].nunique() > 1
    head = (["GPU"] if several else []) + ["workload", "use", "fastest on", "median margin", "else fastest", "measured"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * (len(head) - 4) + "---:|---:|---|---|"]
    for r in table.itertuples():
        cells = ([r.device] if several else []) + [
            r.workload, f"**{r.use}**", f"{r.wins} of {r.specs} specs", f"{r.margin:.2f}×", r.others or "—", r.measured
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


WIDE = 12  # spec columns beyond which a terminal table turns (a spec a line, a backend a column)


def _styled(text: str, best: bool) -> str:
    """A terminal table's cell as Rich markup: the text escaped (data, never markup), bold green when it is the
    best of its spec, dim when it is a status rather than a number."""
    from rich.markup import escape

    text = escape(text)
    if best:
        return f"[bold green]{text}[/]"
    return text if re.match(r"^[\d.]", text) else f"[dim]{text}[/]"


def render_rich(p: Pivot, title: str | None = None):
    """A backend a line and a spec a column; turned when there are more than WIDE specs and more specs than
    backends (the `scaling` preset's 62 specs made 62 columns that no terminal shows), the best still in
    bold (then: per line)."""
    from rich.markup import escape
    from rich.table import Table

    turned = len(p.col_labels) > WIDE and len(p.col_labels) > len(p.row_labels)
    where = "line" if turned else "column"
    table = Table(title=title or f"{p.metric} (best per {where} in bold; failed cells show their status)")
    lines, columns = (p.col_labels, p.row_labels) if turned else (p.row_labels, p.col_labels)
    table.add_column("spec" if turned else "backend", style="cyan", no_wrap=True)
    for col in columns:  # labels are data (a variant's brackets), never markup
        table.add_column(escape(col.replace(" ", "\n", 1)), justify="right", overflow="fold")
    for line in lines:
        cells = []
        for col in columns:
            backend, spec = (col, line) if turned else (line, col)
            cells.append(_styled(p.cells.get((backend, spec), "—"), p.best.get(spec) == backend))
        table.add_row(escape(line), *cells)
    return table


SHORT_STATUS = {"UNSUPPORTED": "unsup", "UNAVAILABLE": "n/a", "ERROR": "error", "OOM": "oom", "TIMEOUT": "t/o",
                "INCORRECT": "wrong"}  # fmt: skip


def _short_cell(text: str) -> str:
    head, _, tail = text.partition(" ")
    return SHORT_STATUS.get(text, SHORT_STATUS.get(tail, text) if tail else text)


def _split_name(name: str) -> str:
    """A backend's name broken after its hyphens and before a variant's bracket, for a narrow column head."""
    return re.sub(r"(?<=-)|(?=\[)", "\n", name).replace("\n\n", "\n").strip("\n")


def terminal_summary(p: Pivot) -> list[str]:
    """The lines printed before a table: its size, who is the fastest how often, what failed how often, and
    the backends left out because none of their cells ran ok."""
    cells = [p.cells.get((r, c)) for r in p.row_labels for c in p.col_labels]
    statuses = Counter(_short_cell(c) for c in cells if c and not re.match(r"^[\d.]", c))
    wins = Counter(p.best.values())
    better = "higher" if p.metric in HIGHER_IS_BETTER else "lower"
    lines = [f"{len(p.col_labels)} specs × {len(p.row_labels)} backends; {p.metric} ({better} is better)"]
    if wins:
        lines.append("fastest most often: " + ", ".join(f"{b} {n}" for b, n in wins.most_common(5)))
    if statuses:
        counts = ", ".join(f"{n} {s}" for s, n in statuses.most_common())
        lines.append(f"cells not ok: {counts} (n/a: unavailable)")
    idle = [r for r in p.row_labels if not any(re.match(r"^[\d.]", p.cells.get((r, c), "")) for c in p.col_labels)]
    if idle and len(idle) < len(p.row_labels):
        lines.append("no ok cell, not shown: " + ", ".join(idle))
    elif idle:  # none ran ok: every backend is shown, with its statuses (render_terminal)
        lines.append("no ok cell in any backend; their statuses below")
    if any(OVER in v for v in p.cells.values()):
        lines.append(f"{OVER}: above the GPU's best measured ceiling (never the best)")
    return lines


def render_terminal(p: Pivot, width: int, title: str | None = None) -> list:
    """What `run.py table` prints in a terminal WIDTH columns wide: the summary lines, then a spec a line and a
    backend a column (or the other way round when there are more backends than specs), the columns split
    over as many tables as it takes for each to fit the width; the best of each spec in bold."""
    from rich.markup import escape
    from rich.table import Table

    shown = [r for r in p.row_labels if any(re.match(r"^[\d.]", p.cells.get((r, c), "")) for c in p.col_labels)]
    shown = shown or list(p.row_labels)
    turned = len(p.col_labels) >= len(shown)  # a spec a line
    lines, columns = (p.col_labels, shown) if turned else (shown, p.col_labels)
    out: list = [escape(line) for line in terminal_summary(p)]
    label_width = min(max((len(x) for x in lines), default=4), 44)

    def head(col: str) -> str:
        return _split_name(col) if turned else col.replace(" ", "\n")

    def cell(line: str, col: str) -> str:
        backend, spec = (col, line) if turned else (line, col)
        return _short_cell(p.cells.get((backend, spec), "—"))

    widths = {c: max([len(cell(x, c)) for x in lines] + [len(part) for part in head(c).split("\n")]) for c in columns}
    groups, current, used = [], [], label_width + 4
    for c in columns:
        need = widths[c] + 3
        if current and used + need > width:
            groups.append(current)
            current, used = [], label_width + 4
        current.append(c)
        used += need
    if current:
        groups.append(current)
    if len(groups) > 1:  # as many tables, the columns spread evenly over them (when that still fits)
        size = -(-len(columns) // len(groups))
        even = [columns[i : i + size] for i in range(0, len(columns), size)]
        if all(label_width + 4 + sum(widths[c] + 3 for c in g) <= width for g in even):
            groups = even
    for k, group in enumerate(groups, start=1):
        part = f" ({k} of {len(groups)})" if len(groups) > 1 else ""
        table = Table(title=(title or f"{p.metric}, best of each spec in bold") + part, title_justify="left",
                      show_edge=False, pad_edge=False)  # fmt: skip
        table.add_column("spec" if turned else "backend", style="cyan", no_wrap=False, max_width=label_width)
        for col in group:
            table.add_column(escape(head(col)), justify="right", no_wrap=True, min_width=widths[col])
        for line in lines:
            row = []
            for col in group:
                backend, spec = (col, line) if turned else (line, col)
                row.append(_styled(cell(line, col), p.best.get(spec) == backend))
            table.add_row(escape(line), *row)
        out.append(table)
    return out


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


# ---- serving mixes: who wins -----------------------------------------------------------------------


def winners(data, reference: str = "triton") -> pd.DataFrame:
    """One line a (device, model, mix, KV layout) among the ok rows of named or ad-hoc mixes: the
    fastest backend by p50, the runner-up, the margin (runner-up p50 / winner p50) and, for
    `reference` (the in-repo kernels), the best library's p50 over its own (1 = it wins; the
    Triton issue's target is ≥ 0.8). Empty when no mix row is ok."""
    lines = []
    for (device, model, mix_name, kv), group in ok_mix_rows(data).groupby(["device", "model", "mix_name", "kv"]):
        ranked = group.sort_values("p50_ms", kind="stable")
        first = ranked.iloc[0]
        second = ranked.iloc[1] if len(ranked) > 1 else None
        base = ranked["backend"].str.split("[").str[0]  # a variant (triton[splits=work]) is its backend's
        libraries = ranked[base != reference]
        mine = ranked[base == reference]
        lines.append(
            {
                "device": device,
                "model": model,
                "mix": mix_name,
                "kv": kv,
                "backends": len(ranked),
                "winner": first["backend"],
                "p50_ms": first["p50_ms"],
                "runner_up": None if second is None else second["backend"],
                "runner_up_p50_ms": None if second is None else second["p50_ms"],
                "margin": None if second is None else second["p50_ms"] / first["p50_ms"],
                f"best_library_over_{reference}": (
                    libraries["p50_ms"].iloc[0] / mine["p50_ms"].iloc[0] if len(mine) and len(libraries) else None
                ),
            }
        )
    table = pd.DataFrame(lines)
    if table.empty:
        return table
    order = table.assign(
        _model=pd.Categorical(table["model"], categories=model_order(table["model"]), ordered=True),
        _mix=table["mix"].map(mix_rank),
    )
    return table.loc[order.sort_values(["device", "_model", "_mix", "kv"], kind="stable").index].reset_index(drop=True)


def render_winners_markdown(table: pd.DataFrame, reference: str = "triton") -> str:
    if table.empty:
        return "(no ok rows of a serving mix)"
    several = table["device"].nunique() > 1
    ratio = f"best_library_over_{reference}"
    head = (["device"] if several else []) + ["model", "mix", "KV", "winner", "p50 ms", "runner-up", "margin",
                                              f"best library ÷ {reference}"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * (len(head) - 4) + "---:|---|---:|---:|"]
    for r in table.itertuples():
        runner = "—" if r.runner_up is None or pd.isna(r.runner_up) else f"{r.runner_up} ({r.runner_up_p50_ms:.3f})"
        margin = "—" if pd.isna(r.margin) else f"{r.margin:.2f}×"
        mine = getattr(r, ratio)
        cells = ([r.device] if several else []) + [
            r.model, r.mix, r.kv, f"**{r.winner}**", f"{r.p50_ms:.3f}", runner, margin,
            "—" if mine is None or pd.isna(mine) else f"{mine:.2f}",
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
