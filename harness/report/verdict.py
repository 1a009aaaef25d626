"""How often each library is the best, over many batches (DESIGN.md, "Drawn traffic and verdicts").

A batch is one spec on one device. Its best time is the least p50 of every ok row (the newest row per task,
as `latest` keeps). A library is a backend with all of its variants (`triton` and `triton[splits=work]`):
its time on a batch is its best variant's, and the verdict names the variant that won. Per library:

- win rate: the share of the batches within `within` (5%) of the best (flashinfer-bench's win@p), counted
  over every batch of the results, so a batch the library did not run (unsupported, failed) is not a win;
- geomean and worst of best ÷ the library's time (1 = the best; 0.5 = twice the best's time), over the
  batches it ran, with the batch of the worst named.

Pure functions of a results frame (`harness.store.load_frame`, with or without `labelled`); the table fits
100 columns, the plot is a PNG (plots.plot_verdict); for the HTML report, the verdict over a GPU's serving
batches as a table and a plotly figure a GPU (serving_verdict, verdict_html, verdict_figures)."""

from __future__ import annotations

import math

import pandas as pd

from frameworks import label

from ..store import SPEC_COLUMNS, Status, as_frame, latest

WITHIN = 0.05  # a library "wins" a batch when its time is at most 1.05 × the best


def batch_lines(data) -> pd.DataFrame:
    """One line a (batch, library) with an ok row: device, the batch's spec columns, `library`, `variant`
    (the winning variant's label, e.g. triton[splits=work]), `p50_ms` (the library's best), `best_ms` (the
    batch's best over every library), `ratio` = best_ms / p50_ms and `batch` (a short name for the batch)."""
    frame = _newest(data)
    ok = frame[(frame["status"] == Status.OK.value) & frame["p50_ms"].notna()]
    keys = ["device", *SPEC_COLUMNS]
    columns = [*keys, "library", "variant", "p50_ms", "best_ms", "ratio", "batch"]
    if ok.empty:
        return pd.DataFrame(columns=columns)
    ok = ok.sort_values(["p50_ms", "shown"], kind="stable")
    best_of_library = ok.drop_duplicates([*keys, "library"], keep="first")
    lines = best_of_library.assign(
        variant=best_of_library["shown"],
        best_ms=best_of_library.groupby(keys, dropna=False)["p50_ms"].transform("min"),
    )
    lines = lines.assign(ratio=lines["best_ms"] / lines["p50_ms"], batch=[batch_name(r) for r in lines.itertuples()])
    return lines[columns].reset_index(drop=True)


def _newest(data) -> pd.DataFrame:
    """The newest row a task, with `library` (the backend) and `shown` (backend[variant]): from rows as stored
    (backend, variant) or as shown (`labelled`: the variant inside the backend's name)."""
    frame = latest(as_frame(data))
    shown = [b if "[" in b else label(b, v) for b, v in zip(frame["backend"], frame["variant"])]
    return frame.assign(library=[name.split("[", 1)[0] for name in shown], shown=shown)


def mix_label(mix: str, width: int) -> str:
    """A mix in a few characters: its name where it has one (a named mix, draw:SEED for the generalization
    preset's), else its first `width` characters (a drawn batch of 256 requests is a string of kilobytes)."""
    from specs import MIX_NAMES

    return MIX_NAMES.get(mix) or _cut(mix, width)


def batch_name(row) -> str:
    """A batch in a few words: the mix's label (mix_label), else its workload and shape; its form where it has one
    (window, soft-cap, tp, FP8: tables.form_tag); dense or the page size (the model is said apart)."""
    from .tables import form_tag

    page = "dense" if pd.isna(row.page_size) else f"page {int(row.page_size)}"
    form = form_tag(row._asdict() if hasattr(row, "_asdict") else vars(row))  # a frame's itertuples row, or any
    for long, short in (("window=", "w"), ("softcap=", "cap"), ("tp=", "tp"), ("fp8-attention", "fp8 attn")):
        form = form.replace(long, short)  # a few characters: the label shares a cell of a 100-column table
    # the form right after the workload or mix, so a label cut to its cell keeps what tells the batch apart
    what = [mix_label(row.mix, 16)] if row.mix else [row.workload]
    shape = [] if row.mix else [f"B{row.batch_size} kv{row.kv_len}"]
    return " ".join([*what, *([form] if form else []), *shape, page])


def ratio_text(value) -> str:
    """A ratio to the best in a cell: two decimals, or one significant digit below 0.01 (never 0.00)."""
    if value is None or pd.isna(value):
        return "—"
    return f"{value:.2f}" if value >= 0.01 else f"{value:.1g}"


def verdict(data, within: float = WITHIN) -> pd.DataFrame:
    """One line a (device, library): `batches` (the device's batches), `ran` (those it has an ok row on),
    `wins` and `win_rate` (within `within` of the best, over every batch), `geomean` and `worst` of best ÷
    its time over the batches it ran, `worst_batch`, and `variants` (which variant was the library's best
    how often, most often first). Sorted by win rate, then geomean, best first."""
    if within < 0:
        raise ValueError(f"within: must be 0 or more (0.05 = 5%), got {within!r}")
    lines = batch_lines(data)
    keys = ["device", *SPEC_COLUMNS]
    out = []
    for (device, library), group in lines.groupby(["device", "library"], sort=False):
        batches = lines[lines["device"] == device].drop_duplicates(keys).shape[0]
        wins = int((group["ratio"] >= 1 / (1 + within) - 1e-12).sum())
        worst = group.loc[group["ratio"].idxmin()]
        several_models = lines.loc[lines["device"] == device, "model"].nunique() > 1
        counts = sorted(group["variant"].value_counts().items(), key=lambda c: (-c[1], "[" in c[0], c[0]))
        variants = ", ".join(f"{_variant_part(v)} {n / len(group):.0%}" for v, n in counts)
        out.append(
            {
                "device": device,
                "library": library,
                "batches": batches,
                "ran": len(group),
                "wins": wins,
                "win_rate": wins / batches,
                "geomean": math.exp(group["ratio"].map(math.log).mean()),
                "worst": float(worst["ratio"]),
                "worst_batch": (f"{worst['model']} " if several_models else "") + worst["batch"],
                "variants": variants,
            }
        )
    frame = _newest(data)
    for (device, library), group in frame.groupby(["device", "library"], sort=False):
        if (device, library) in {(o["device"], o["library"]) for o in out}:
            continue  # a library with no ok row: listed, its failures counted, never a win
        statuses = ", ".join(f"{n} {status}" for status, n in group["status"].value_counts().items())
        batches = lines[lines["device"] == device].drop_duplicates(keys).shape[0]
        out.append({"device": device, "library": library, "batches": batches, "ran": 0, "wins": 0, "win_rate": 0.0,
                    "geomean": math.nan, "worst": math.nan, "worst_batch": "",
                    "variants": f"none ok: {statuses}"})  # fmt: skip
    table = pd.DataFrame(out, columns=["device", "library", "batches", "ran", "wins", "win_rate", "geomean", "worst",
                                       "worst_batch", "variants"])  # fmt: skip
    if table.empty:
        return table
    return table.sort_values(["device", "win_rate", "geomean"], ascending=[True, False, False]).reset_index(drop=True)


def _variant_part(shown: str) -> str:
    """'triton[splits=work]' -> 'splits=work'; a backend's defaults -> 'default'."""
    return shown[shown.index("[") + 1 : -1] if shown.endswith("]") and "[" in shown else "default"


CONTENTS = ("decodes", "speculative steps", "mixed", "prompts", "chunks")  # what a batch holds (batch_content)
_WORKLOAD_CONTENT = {"decode": "decodes", "spec-decode": "speculative steps", "prefill": "prompts", "append": "chunks",
                     "mixed": "mixed"}  # fmt: skip


def batch_content(mix: str, workload: str) -> str:
    """What a batch holds, one of CONTENTS, from its requests' kinds (specs.batch's `request_kinds`): every request a
    decode; speculative steps (at most MAX_SPEC_DECODE query tokens, decodes beside them); prompts only (each
    request's queries are its whole cache); chunks only; anything else mixed. A uniform batch or a length
    generator: its workload."""
    from specs import SpecError
    from specs.batch import parse_mix

    if not mix:
        return _WORKLOAD_CONTENT.get(workload, workload)
    try:
        kinds = parse_mix(mix).request_kinds
    except SpecError:  # a length generator (lognormal:…@seed) builds one workload
        return _WORKLOAD_CONTENT.get(workload, workload)
    if kinds <= {"spec-decode", "decode"} and kinds != {"decode"}:
        return "speculative steps"  # steps, decodes beside them
    return _WORKLOAD_CONTENT[kinds.pop()] if len(kinds) == 1 else "mixed"


def verdict_by_content(data, within: float = WITHIN) -> list[tuple[str, pd.DataFrame]]:
    """The verdict over each kind of batch apart (batch_content), in CONTENTS order, those the rows hold: which
    library to use for decode-heavy traffic need not be the one for prompts."""
    frame = as_frame(data)
    kinds = [batch_content(m, w) for m, w in zip(frame["mix"].fillna(""), frame["workload"])]
    present = [c for c in CONTENTS if c in kinds] + sorted(set(kinds) - set(CONTENTS))
    return [(c, verdict(frame[[k == c for k in kinds]], within)) for c in present]


def render_verdict_markdown(table: pd.DataFrame, within: float = WITHIN) -> str:
    """The verdict as Markdown lines no wider than 100 columns (the worst batch and the variants cut to fit)."""
    if table.empty:
        return "(no ok rows)"
    lines = []
    for device, group in table.groupby("device", sort=False):
        batches = int(group["batches"].iloc[0])
        lines += [
            f"**{device}**, {batches} batches. win: within {within * 100:g}% of the best time (a batch not run is",
            "not a win); geomean and worst of best ÷ the library's time, over the batches it ran.",
            "",
            "| library | ran | win | geomean | worst | worst batch | best variant |",
            "|---|---:|---:|---:|---:|---|---|",
        ]
        for r in group.itertuples():
            geomean, worst = (ratio_text(x) for x in (r.geomean, r.worst))
            numbers = f"| {r.library} | {r.ran} | {r.win_rate:.0%} | {geomean} | {worst} |"
            room = max(20, 100 - len(numbers) - 6)  # the last two cells share what is left of 100 columns
            worst_width = min(len(r.worst_batch), room // 2 + 2)
            lines.append(f"{numbers} {_cut(r.worst_batch, worst_width)} | {_cut(r.variants, room - worst_width)} |")
        lines.append("")
    return "\n".join(lines).rstrip()


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def serving_verdict(frame: pd.DataFrame) -> pd.DataFrame:
    """harness.report.verdict's table over the serving batches (rows with a mix: named and drawn) a GPU, with
    the win rate within 10% beside the one within 5% (`win_rate_10`)."""
    mixes = frame[frame["mix"].fillna("") != ""]
    if mixes.empty:
        return pd.DataFrame()
    table = verdict(mixes)
    if table.empty:
        return table
    wide = verdict(mixes, 0.10).set_index(["device", "library"])["win_rate"]
    return table.assign(win_rate_10=[wide.get((d, lib), 0.0) for d, lib in zip(table["device"], table["library"])])


def verdict_figures(table: pd.DataFrame) -> list:
    """One bar chart a GPU: each library's win rate (within 5% and 10%), its geomean and worst ratio to the best."""
    import plotly.graph_objects as go

    figures = []
    if table.empty:
        return figures
    for device, group in table.groupby("device", sort=False):
        libraries = list(group["library"])
        fig = go.Figure([
            go.Bar(x=libraries, y=group["win_rate"], name="win rate (within 5%)"),
            go.Bar(x=libraries, y=group["win_rate_10"], name="win rate (within 10%)"),
            go.Scatter(x=libraries, y=group["geomean"], mode="markers", name="geomean of best ÷ its time",
                       marker={"symbol": "diamond", "size": 11, "color": "black"}),
            go.Scatter(x=libraries, y=group["worst"], mode="markers", name="worst best ÷ its time",
                       marker={"symbol": "triangle-down", "size": 11, "color": "#c33"}),
        ])  # fmt: skip
        batches = int(group["batches"].iloc[0])
        fig.update_layout(title=f"Verdict · {device}: how often each library is the best, over {batches} serving"
                          " batches", yaxis={"range": [0, 1.15]}, barmode="group", height=420)  # fmt: skip
        figures.append(fig)
    return figures


def verdict_html(table: pd.DataFrame) -> str:
    """The verdict table a GPU over its serving batches, or nothing without them."""
    if table.empty:
        return ""
    shown = pd.DataFrame({
        "GPU": table["device"], "library": table["library"], "batches": table["batches"], "ran": table["ran"],
        "win (5%)": table["win_rate"].map("{:.0%}".format), "win (10%)": table["win_rate_10"].map("{:.0%}".format),
        "geomean": table["geomean"].map(ratio_text),
        "worst": table["worst"].map(ratio_text),
        "worst batch": table["worst_batch"], "best variant": table["variants"],
    })  # fmt: skip
    body = shown.to_html(index=False, table_id="verdict", escape=True, border=0)
    intro = (
        "Per GPU, over its serving batches (the named mixes and the drawn ones, every model): each library at"
        " its best variant a batch, the share of batches within 5% and 10% of the best time (a batch it did not"
        " run is not a win), and the geomean and worst of best ÷ its time over the batches it ran"
        " (<code>run.py table FILE --verdict</code>)."
    )
    return f'<h2 id="verdict-h">Verdicts: how often each library is the best</h2>\n<p>{intro}</p>\n{body}'
