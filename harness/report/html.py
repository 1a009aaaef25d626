"""`run.py report`: one static HTML page from any number of result CSVs that opens with no network. First the
summary (per GPU and workload class, which backend to use and by how much it wins) and a table of contents;
then the environment of each GPU, the serving mixes' winners, the verdicts (how often each library is the best
over a GPU's serving batches, drawn ones included), the figures (roofline, scaling curves, each backend
against the fastest of each spec, a heat map of the serving mixes a GPU and model, a verdict a GPU) and every result
row in one filterable table (the best of each spec marked, a failed cell's reason on hover, the `run.py`
command that reproduces each row). Size: plotly's JavaScript, the figures and the rows are each stored
once, gzipped and base64-encoded, and unpacked by the browser (DecompressionStream), so the committed
results make a page of about 2.5 MB instead of 10 MiB."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pandas as pd

from ..store import SPEC_COLUMNS, Status, latest

FILTERS = {"device": "GPU", "model": "model", "workload": "workload", "mix": "mix", "batch_size": "batch",
           "backend": "backend"}  # fmt: skip


def reproduce_command(row) -> str:
    """The `run.py sweep` command that measures this row's (spec, backend) again."""
    from specs import MIX_NAMES, MODELS

    if row.model not in MODELS:
        return f"(model {row.model!r} is not one of run.py's models: build the ExperimentSpec in Python)"
    backend = f"'{row.backend}'" if "[" in row.backend else row.backend  # a variant: quoted for the shell
    parts = ["python3 run.py sweep", f"-m {row.model}", f"-b {backend}", f"--dtype {row.dtype}"]
    if row.mix and row.mix.startswith(("uniform:", "lognormal:")):
        dist, a, rest = row.mix.split(":")
        b, seed = rest.split("@")
        parts += [f"--lengths {dist}:{a}:{b}", f"--seed {seed}", f"-w {row.workload}", f"--batch {row.batch_size}"]
        if row.workload in ("append", "spec-decode"):
            parts.append(f"--chunk {row.q_len}")
    elif row.mix:  # by its name where it has one (a named mix, draw:SEED): the same batch, rebuilt exactly
        parts.append(f"--mix {MIX_NAMES.get(row.mix, row.mix)}")
    else:
        parts += [f"-w {row.workload}", f"--batch {row.batch_size}", f"--seq {row.kv_len}"]
        if row.workload in ("append", "spec-decode"):
            parts.append(f"--chunk {row.q_len}")
    if not pd.isna(row.page_size):
        parts.append(f"--page-size {int(row.page_size)}")
    return " ".join(parts + _form_options(row, MODELS[row.model]))


def _form_options(row, model) -> list[str]:
    """The sweep options that pick this row's layer kind (a model with windowed layers), tp shard and FP8 form."""
    options = []
    if len(model.layers) > 1 or any(kind.name == "window" for kind in model.layers):
        options.append(f"--layer {'full' if pd.isna(getattr(row, 'window', None)) else 'window'}")
    tp = getattr(row, "tp", None)
    if not pd.isna(tp) and int(tp) > 1:
        options.append(f"--tp {int(tp)}")
    kv_dtype = getattr(row, "kv_dtype", "")
    if isinstance(kv_dtype, str) and kv_dtype:
        options.append(f"--kv-dtype {kv_dtype}")
        scale = getattr(row, "kv_scale", "")
        if isinstance(scale, str) and scale and scale != "tensor":
            options.append(f"--kv-scale {scale}")
        if str(getattr(row, "fp8_attention", "")) == "True":
            options.append("--fp8-attention")
    return options


def _form(r) -> str:
    """What the row computes beyond plain attention (tables.form_tag: window, soft-cap, tp, FP8), sinks included."""
    from .tables import form_tag

    fields = r._asdict()
    return " ".join(filter(None, [form_tag(fields), "sinks" if str(fields.get("sinks")) == "True" else ""]))


def _fmt(value, spec: str) -> str:
    return "" if value is None or pd.isna(value) else spec.format(value)


def _best_marks(frame: pd.DataFrame) -> pd.Series:
    """True on the fastest ok row of each (device, spec) among the newest rows, leaving out rows above their
    GPU's best measured ceiling (harness.ceilings)."""
    from ..ceilings import rebase

    newest = rebase(latest(frame))
    ok = newest[(newest["status"] == Status.OK.value) & ~newest["over_ceiling"]]
    spec_key = ["device", *SPEC_COLUMNS]
    best_index = ok.loc[ok.groupby(spec_key, dropna=False)["p50_ms"].idxmin()].index
    return frame.index.isin(best_index)


TABLE_COLUMNS = ["GPU", "model", "workload / mix", "form", "batch", "q", "kv", "page", "backend", "status", "p50 ms",
                 "p95 ms", "CI ±%", "TFLOP/s", "GB/s", "% peak", "measured", "reproduce"]  # fmt: skip


def above_ceiling(r) -> str:
    """Why a row's percent of peak is over 100 ('' when it is not): above the measured ceiling only (the
    calibration ran on another machine of the kind, or its stream was slower than this kernel), or above
    the vendor's datasheet as well (worth a look at the byte or FLOP count)."""
    decode = r.workload == "decode"
    pct, value = (r.pct_peak_gbps, r.gbps) if decode else (r.pct_peak_tflops, r.tflops)
    if pd.isna(pct) or pct <= 100:
        return ""
    from ..calibrate import DATASHEET
    from ..env import device_slug

    unit, ceiling = ("GB/s", r.ceiling_gbps) if decode else ("TFLOP/s", r.ceiling_tflops)
    sheet = DATASHEET.get(device_slug(r.device), {}).get("gbps" if decode else r.dtype)
    if sheet and value > sheet:
        return f"{value:.0f} {unit} beats the datasheet's {sheet:g}: check the ideal byte and FLOP count"
    return (f"{value:.0f} {unit} is above the measured ceiling of {ceiling:.0f} but within the datasheet: "
            "run `run.py calibrate` on this GPU")  # fmt: skip


def _table(frame: pd.DataFrame, body_only: bool = False) -> str:
    from specs import MIX_NAMES

    best = _best_marks(frame)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in TABLE_COLUMNS)
    body = []
    for is_best, r in zip(best, frame.itertuples()):
        ok = r.status == Status.OK.value
        ci = 100 * (r.p50_ci_high_ms - r.p50_ci_low_ms) / 2 / r.p50_ms if ok else None
        peak = r.pct_peak_gbps if r.workload == "decode" else r.pct_peak_tflops
        label = MIX_NAMES.get(r.mix, r.mix) if r.mix else r.workload
        status = (f'<td class="fail" title="{html.escape(r.reason)}">{r.status}</td>' if not ok
                  else '<td class="ok">ok</td>')  # fmt: skip
        cells = [r.device, r.model, label, _form(r), r.batch_size, r.q_len, r.kv_len,
                 "dense" if pd.isna(r.page_size) else int(r.page_size), r.backend]  # fmt: skip
        numbers = [_fmt(r.p50_ms, "{:.4g}"), _fmt(r.p95_ms, "{:.4g}"), _fmt(ci, "{:.2f}"), _fmt(r.tflops, "{:.1f}"),
                   _fmt(r.gbps, "{:.0f}")]  # fmt: skip
        over = above_ceiling(r)
        flag = f' over" title="{html.escape(over)}' if over else ""  # underlined, with why on hover
        peak_cell = f'<td class="num{flag}">{_fmt(peak, "{:.1f}")}{"†" if over else ""}</td>'
        data = " ".join(f'data-{k}="{html.escape(_filter_value(k, getattr(r, k)))}"' for k in FILTERS)
        command = reproduce_command(r)
        body.append(
            f'<tr {data} class="{"best" if is_best else ""}" title="{html.escape(command)}">'
            + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells)
            + status
            + "".join(f'<td class="num">{n}</td>' for n in numbers)
            + peak_cell
            + f"<td>{html.escape(r.timestamp[:10])}</td>"
            + f'<td><code class="cmd">{html.escape(command)}</code></td></tr>'
        )
    if body_only:
        return "".join(body)
    return f'<table id="results"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _filter_value(column: str, value) -> str:
    """A row's value for a filter: a mix by its name where it has one (draw:SEED for a drawn batch, whose string
    can run to kilobytes), anything else as it is."""
    from specs import MIX_NAMES

    return MIX_NAMES.get(value, value) if column == "mix" else str(value)


def _filters(frame: pd.DataFrame) -> str:
    out = []
    for column, title in FILTERS.items():
        values = sorted({_filter_value(column, v) for v in frame[column]}, key=lambda v: (len(v), v))
        options = "".join(f'<option value="{html.escape(v)}">{html.escape(v or "(uniform)")}</option>' for v in values)
        out.append(
            f'<label>{title} <select data-filter="{column}"><option value="">all</option>{options}</select></label>'
        )
    return '<div id="filters">' + " ".join(out) + ' <span id="shown"></span></div>'


def _environment(frame: pd.DataFrame) -> str:
    blocks = []
    for device, rows in frame.groupby("device"):
        versions = rows.groupby("backend")["backend_version"].agg(lambda v: ", ".join(sorted({x for x in v if x})))
        libs = "; ".join(f"{b} {v}" for b, v in versions.items() if v)
        facts = {
            "driver": ", ".join(sorted(set(rows["driver"]) - {""})) or "—",
            "CUDA": ", ".join(sorted(set(rows["cuda"]) - {""})) or "—",
            "torch": ", ".join(sorted(set(rows["torch"]))),
            "commits": ", ".join(sorted(set(rows["git_commit"]))),
            "measured": f"{rows['timestamp'].min()[:10]} … {rows['timestamp'].max()[:10]}",
            "rows": str(len(rows)),
            "over 100% of peak": str(sum(bool(above_ceiling(r)) for r in rows.itertuples())),
            "libraries": libs,
        }
        items = "".join(f"<dt>{k}</dt><dd>{html.escape(v)}</dd>" for k, v in facts.items())
        blocks.append(f'<section class="env"><h3>{html.escape(device)}</h3><dl>{items}</dl></section>')
    return "".join(blocks)


def roofline_figure(ok: pd.DataFrame):
    """A panel a GPU (sorted by name), each with that GPU's measured ceilings: the ceiling traces and the
    points are placed by the same list of devices, never by two orders that can disagree."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from .plots import PLOTLY_SYMBOLS, backend_style
    from .verdict import mix_label

    devices = sorted(ok["device"].unique())
    fig = make_subplots(rows=1, cols=len(devices), subplot_titles=devices, shared_yaxes=True)
    style = backend_style(ok["backend"])
    workloads = sorted(ok["workload"].unique(), key=lambda w: WORKLOAD_RANK.get(w, 9))
    seen = set()
    for col, device in enumerate(devices, start=1):
        rows = ok[ok["device"] == device]
        peak, bandwidth = rows["ceiling_tflops"].max(), rows["ceiling_gbps"].max()
        if pd.notna(peak) and pd.notna(bandwidth):
            xs = [10 ** (k / 20) for k in range(-20, 81)]
            fig.add_trace(go.Scatter(x=xs, y=[min(peak, bandwidth * x / 1e3) for x in xs], mode="lines",
                                     line={"color": "black", "width": 1}, name=f"measured ceiling ({device})",
                                     meta=device, showlegend=False,
                                     hovertemplate=f"{device}: {peak:.0f} TFLOP/s, {bandwidth:.0f} GB/s"
                                     "<extra></extra>"),
                          row=1, col=col)  # fmt: skip
        for (backend, workload), points in rows.groupby(["backend", "workload"], sort=True):
            colour, _ = style[backend]
            symbol = PLOTLY_SYMBOLS[workloads.index(workload) % len(PLOTLY_SYMBOLS)]
            # a mix by its name (draw:SEED, decode-heavy) or its first characters: a drawn batch of 256
            # requests is a string of kilobytes, and the page holds one a point
            text = (points["model"] + " " + points["mix"].map(lambda m: mix_label(m, 32))
                    .where(points["mix"] != "", points["workload"])
                    + " B=" + points["batch_size"].map(str) + " kv=" + points["kv_len"].map(str)
                    + " · " + points["p50_ms"].map("{:.4g} ms".format))  # fmt: skip
            x, y = points["intensity"].astype("float32"), points["tflops"].astype("float32")  # a plot's precision
            fig.add_trace(go.Scatter(x=x, y=y, mode="markers", name=backend,
                                     legendgroup=backend, showlegend=backend not in seen, meta=device,
                                     marker={"color": colour, "symbol": symbol, "size": 7}, text=text,
                                     hovertemplate=f"{backend} · {workload}<br>%{{text}}<extra></extra>"),
                          row=1, col=col)  # fmt: skip
            seen.add(backend)
    fig.update_xaxes(type="log", title_text="FLOP / ideal byte")
    fig.update_yaxes(type="log")
    fig.update_yaxes(title_text="TFLOP/s (p50)", col=1)
    fig.update_layout(height=520, title="Roofline: achieved TFLOP/s against arithmetic intensity; marker = workload "
                      f"({', '.join(f'{w} {PLOTLY_SYMBOLS[i]}' for i, w in enumerate(workloads))})")  # fmt: skip
    return fig


WORKLOAD_RANK = {"prefill": 0, "append": 1, "decode": 2, "spec-decode": 3, "mixed": 4}
# p50 over the fastest p50 of the same spec, on a log scale fixed from 1× (the best, green) to 4× and beyond
# (red), 2× in the middle: the same colour means the same gap in every heat map
RELATIVE_SCALE = {"colorscale": "RdYlGn_r", "zmin": 0, "zmax": 2, "colorbar": {
    "title": "× the fastest", "tickvals": [0, 0.5, 1, 1.5, 2], "ticktext": ["1×", "1.41×", "2×", "2.83×", "≥4×"]},
}  # fmt: skip


def relative_heatmap(table: pd.DataFrame, title: str):
    """A heat map of p50 / the column's fastest p50 (1 = the best, bold): rows = backend, columns = spec; the
    colour is log2 of the ratio on RELATIVE_SCALE, the text the ratio itself."""
    import numpy as np
    import plotly.graph_objects as go

    values = table.to_numpy(dtype=float)
    text = [["" if np.isnan(v) else (f"<b>{v:.2f}</b>" if v == 1 else f"{v:.2f}") for v in line] for line in values]
    heat = go.Heatmap(z=np.log2(values), x=[str(c) for c in table.columns], y=list(table.index), text=text,
                      texttemplate="%{text}", hovertemplate="%{y} · %{x}: %{text}×<extra></extra>",
                      **RELATIVE_SCALE)  # fmt: skip
    fig = go.Figure(heat)
    fig.update_layout(title=title, height=max(300, 24 * len(table.index) + 200), yaxis={"autorange": "reversed"})
    return fig


def _figures(frame: pd.DataFrame, serving: pd.DataFrame | None = None) -> list:
    """Plotly figures: roofline, scaling curves, each backend against the fastest of each uniform spec, a heat
    map of the serving mixes a GPU and model, the verdict over a GPU's serving batches (`serving`: the report's
    verdict.serving_verdict of the frame, made here where not given)."""
    from ..ceilings import rebase
    from .plots import MAX_MIX_COLUMNS, mix_ratios

    ok = rebase(latest(frame))
    ok = ok[ok["status"] == Status.OK.value].copy()
    figures = []
    if ok.empty:
        return figures
    ok["intensity"] = ok["tflops"] * 1e3 / ok["gbps"]  # FLOP per ideal byte
    figures.append(roofline_figure(ok))
    uniform = ok[ok["mix"] == ""]
    figures += _scaling_figures(uniform)
    for device, rows in uniform.groupby("device"):
        rows = rows.assign(spec=rows["model"] + " " + rows["workload"] + " B=" + rows["batch_size"].map(str)
                           + " kv=" + rows["kv_len"].map(str))  # fmt: skip
        grid = rows.pivot_table(index="backend", columns="spec", values="p50_ms", aggfunc="first")
        if grid.shape[1] > 40:  # the scaling presets: their curves say it; keep the heat map readable
            continue
        grid = grid.div(grid.min(axis=0), axis=1)
        title = f"Uniform batches · {device}: p50 / the spec's fastest p50 (1 = fastest)"
        figures.append(relative_heatmap(grid, title))
    for (device, model), table in mix_ratios(ok).items():  # one heat map a GPU and model: who wins each mix
        if table.shape[1] > MAX_MIX_COLUMNS:  # the drawn batches: the verdict says it (a heat map would not read)
            continue
        figures.append(relative_heatmap(table, f"Serving mixes · {device} · {model}: p50 / the mix's fastest p50"))
    from .verdict import serving_verdict, verdict_figures

    return figures + verdict_figures(serving_verdict(frame) if serving is None else serving)


def _scaling_figures(uniform: pd.DataFrame) -> list:
    """Per GPU, the curves of the (model, batch) groups measured at more than one KV length: a row of panels
    a group, a panel a workload, a line a backend, log-x; latency, then throughput (TFLOP/s for prefill and
    append, GB/s for decode: what bounds each)."""
    import plotly.express as px

    from .plots import PLOTLY_SYMBOLS, THROUGHPUT, backend_style, workload_metric

    if uniform.empty:
        return []
    lengths = uniform.groupby(["device", "model", "batch_size"])["kv_len"].transform("nunique")
    curves = uniform[lengths > 1].sort_values("kv_len").copy()
    curves["group"] = curves["model"] + " · B=" + curves["batch_size"].map(str)
    column = curves["workload"].map(lambda w: workload_metric(THROUGHPUT, w))  # the PNG plots' choice, tflops or gbps
    curves[THROUGHPUT] = [row[c] for row, c in zip(curves.to_dict("records"), column)]
    curves["chunk"] = curves["q_len"].where(curves["workload"] == "append", 0)
    style = backend_style(curves["backend"])
    colours = {b: c for b, (c, _) in style.items()}
    symbols = {b: PLOTLY_SYMBOLS[m] for b, (_, m) in style.items()}
    figures = []
    for device, rows in curves.groupby("device"):
        height = 260 * rows["group"].nunique() + 120
        for y, what in (("p50_ms", "p50 latency (ms)"), (THROUGHPUT, "TFLOP/s (prefill, append), GB/s (decode)")):
            fig = px.line(rows, x="kv_len", y=y, color="backend", symbol="backend", facet_col="workload",
                          facet_row="group", line_group="chunk", markers=True, log_x=True, log_y=y == "p50_ms",
                          hover_data=["model", "batch_size", "q_len", "p50_ms", "tflops", "gbps"], height=height,
                          color_discrete_map=colours, symbol_map=symbols,
                          title=f"Scaling · {device}: {what} against KV length")  # fmt: skip
            fig.update_yaxes(matches=None, showticklabels=True)
            figures.append(fig)
    return figures


def _winners(frame: pd.DataFrame) -> str:
    """The serving mixes' winners table (harness.report.tables.winners), or nothing without mix rows."""
    from .tables import winners

    table = winners(frame)
    if table.empty:
        return ""
    shown = table.assign(
        p50_ms=table["p50_ms"].map(lambda v: f"{v:.3f}"),
        runner_up_p50_ms=table["runner_up_p50_ms"].map(lambda v: "" if pd.isna(v) else f"{v:.3f}"),
        margin=table["margin"].map(lambda v: "" if pd.isna(v) else f"{v:.2f}×"),
        best_library_over_triton=table["best_library_over_triton"].map(lambda v: "" if pd.isna(v) else f"{v:.2f}"),
    )
    shown = shown.rename(columns={"kv": "KV", "p50_ms": "p50 ms", "runner_up": "runner-up",
                                  "runner_up_p50_ms": "runner-up p50 ms",
                                  "best_library_over_triton": "best library ÷ triton"})  # fmt: skip
    body = shown.to_html(index=False, na_rep="", table_id="winners", escape=True, border=0)
    intro = (
        "The fastest backend a GPU, model, mix and KV layout (newest ok rows), the runner-up, the margin, and"
        " the best library's p50 over the in-repo Triton kernels'."
    )
    return f'<h2 id="winners-h">Serving mixes: who wins</h2>\n<p>{intro}</p>\n{body}'


def _summary(frame: pd.DataFrame) -> str:
    """Per GPU and workload class: the backend to use, on how many specs it is the fastest, its median
    margin, and who wins the rest (harness.report.tables.best_by_class)."""
    from .tables import best_by_class

    table = best_by_class(frame)
    if table.empty:
        return "<p>(no ok rows: nothing to recommend)</p>"
    columns = ("GPU", "workload", "use", "fastest on", "median margin", "else fastest", "measured")
    head = "".join(f"<th>{c}</th>" for c in columns)
    body = "".join(
        f'<tr><td>{html.escape(r.device)}</td><td>{html.escape(r.workload)}</td><td class="use">'
        f'{html.escape(r.use)}</td><td class="num">{r.wins} of {r.specs} specs</td>'
        f'<td class="num">{r.margin:.2f}×</td><td>{html.escape(r.others or "—")}</td><td>{r.measured}</td></tr>'
        for r in table.itertuples()
    )
    return f'<table id="summary"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _short(title: str) -> str:
    """A figure's title for the contents: up to its colon, then what follows up to a parenthesis or comma."""
    head, _, tail = title.partition(":")
    return head if not tail else f"{head}: {re.split(r'[(,]', tail)[0].strip()}"


def _five_digits(value):
    """A figure's JSON (dicts, lists) with each float at 5 significant digits."""
    if isinstance(value, float):
        return float(f"{value:.5g}")
    if isinstance(value, list):
        return [_five_digits(v) for v in value]
    if isinstance(value, dict):
        return {k: _five_digits(v) for k, v in value.items()}
    return value


def _packed(text: str) -> str:
    """gzip, then base64: how the page stores plotly's JavaScript, the figures and the rows (unpacked by the
    browser's DecompressionStream)."""
    import base64
    import gzip

    return base64.b64encode(gzip.compress(text.encode(), compresslevel=9, mtime=0)).decode()


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>attnbench report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; color: #222; max-width: 1600px; }}
table {{ border-collapse: collapse; font-size: 12px; }}
th, td {{ border: 1px solid #ddd; padding: 2px 6px; }}
th {{ background: #f3f3f3; position: sticky; top: 0; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
td.fail {{ color: #a33; cursor: help; }}
td.over {{ color: #a60; text-decoration: underline dotted; cursor: help; }}
tr.best td {{ font-weight: bold; background: #eef8ee; }}
#summary {{ font-size: 15px; }} #summary td.use {{ font-weight: bold; color: #185; }}
code.cmd {{ font-size: 10px; color: #555; }}
.env {{ display: inline-block; vertical-align: top; margin: 0 2em 1em 0; }}
dl {{ display: grid; grid-template-columns: auto auto; gap: 0 1em; font-size: 13px; }}
dt {{ color: #666; }} dd {{ margin: 0; max-width: 50em; }}
#filters {{ margin: 1em 0; }} #filters label {{ margin-right: 1em; }}
#rows {{ max-height: 75vh; overflow: auto; border: 1px solid #ccc; }}
nav ol {{ columns: 2; font-size: 13px; }} h3 {{ font-size: 14px; margin: 1.5em 0 0.2em; }}
</style>
</head><body>
<h1>attnbench report</h1>
<p>{summary_line}</p>
<h2 id="summary-h">Which backend to use</h2>
<p>Per GPU and workload class: the backend (and variant) that is the fastest on the most specs (p50, newest ok
rows, every one checked against the fp32 reference), the median margin by which it wins them (runner-up p50 /
its p50), and who wins the others. Rows above their GPU's best measured ceiling are left out.</p>
{summary}
<nav><h2>Contents</h2><ol>{toc}</ol></nav>
<h2 id="environment">Environment</h2>
{environment}
{winners}
{verdicts}
<h2 id="figures">Figures</h2>
{figures}
<h2 id="rows-h">Rows</h2>
<p>The newest row of each task (spec, backend and variant on a GPU){older}. Bold: the fastest ok row of its spec on
its GPU. † / underlined % of peak: above the GPU's best
measured ceiling (hover for why; never bold). Hover a failed status for its reason, a row for the command that
measures it again.</p>
{filters}
<div id="rows"><table id="results"><thead><tr>{head}</tr></thead><tbody></tbody></table></div>
<script>
async function unpack(b64) {{
  const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'));
  return await new Response(stream).text();
}}
const PLOTLY = "{plotly_js}";
const FIGURES = "{figures_json}";
const ROWS = "{rows_html}";
const selects = document.querySelectorAll('#filters select');
function apply() {{
  const wanted = {{}};
  selects.forEach(s => {{ if (s.value) wanted[s.dataset.filter] = s.value; }});
  let shown = 0;
  document.querySelectorAll('#results tbody tr').forEach(tr => {{
    const camel = k => k.replace(/_([a-z])/g, (m, c) => c.toUpperCase());
    const keep = Object.entries(wanted).every(([k, v]) => tr.dataset[camel(k)] === v);
    tr.style.display = keep ? '' : 'none';
    if (keep) shown += 1;
  }});
  document.getElementById('shown').textContent = shown + ' rows shown';
}}
selects.forEach(s => s.addEventListener('change', apply));
(async () => {{
  document.querySelector('#results tbody').innerHTML = await unpack(ROWS);
  apply();
  const script = document.createElement('script');
  script.textContent = await unpack(PLOTLY);
  document.head.appendChild(script);
  const figures = JSON.parse(await unpack(FIGURES));
  figures.forEach((figure, i) => {{
    const div = document.getElementById('figure-' + i);
    Plotly.newPlot(div, figure.data, figure.layout, {{responsive: true}});
  }});
}})();
</script>
</body></html>
"""


def _shown_path(path: str) -> str:
    """A path relative to the working folder when it lies inside it."""
    import os

    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def write_report(frame: pd.DataFrame, out_dir: Path | str) -> Path:
    """Write OUT_DIR/index.html for the rows of `frame` (every row, history included: the figures and the summary
    read them all, the rows table the newest row of each task)."""
    import json

    from plotly.offline import get_plotlyjs

    from ..atomic import write_atomic
    from ..ceilings import rebase
    from .verdict import serving_verdict, verdict_html

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = rebase(frame.reset_index(drop=True))
    serving = serving_verdict(frame)  # the verdict section's table and its figures
    figures = _figures(frame, serving)
    titles = [f.layout.title.text or f"figure {i + 1}" for i, f in enumerate(figures)]
    for f in figures:
        f.update_layout(title=None, margin={"t": 40})
    figure_divs = "".join(
        f'<h3 id="fig-{i}">{html.escape(t)}</h3><div id="figure-{i}" class="plotly-graph-div" '
        f'style="height:{f.layout.height or 450}px"></div>'
        for i, (t, f) in enumerate(zip(titles, figures))
    )
    # one JSON list, parsed once by the page; its numbers to 5 significant digits (the plots' and hovers' precision:
    # the rows table keeps every digit), which took a quarter off the page's figures (416 to 292 KB, 2026-12-06)
    figures_json = json.dumps([_five_digits(json.loads(f.to_json())) for f in figures], separators=(",", ":"))
    files = sorted({_shown_path(f) for f in frame["file"]}) if "file" in frame else []
    folders = sorted({str(Path(f).parent) for f in files})
    source = f"{len(files)} files in {', '.join(folders)}" if len(files) > 3 else ", ".join(files) or "memory"
    summary_line = (f"{len(frame)} rows from {html.escape(source)}, {frame['device'].nunique()} GPU kinds, "
                    f"{frame['backend'].nunique()} backends (variants apart).")  # fmt: skip
    winners = _winners(frame)
    verdicts = verdict_html(serving)
    toc = [("summary-h", "Which backend to use"), ("environment", "Environment")]
    toc += [("winners-h", "Serving mixes: who wins")] if winners else []
    toc += [("verdict-h", "Verdicts: how often each library is the best")] if verdicts else []
    heads = [t.partition(":")[0] for t in titles]  # a title's head alone where no other figure shares it
    shown = [h if heads.count(h) == 1 else _short(t) for h, t in zip(heads, titles)]
    toc += [("figures", "Figures")] + [(f"fig-{i}", "· " + t) for i, t in enumerate(shown)]
    # the table holds the newest row of each task (what the bold marks and the verdicts read); re-runs and A/Bs that
    # a later row superseded stay in the CSVs and in the figures' history, which keeps the page one light file
    newest = frame.loc[sorted(latest(frame).index)]
    older = len(frame) - len(newest)
    toc += [("rows-h", f"Rows ({len(newest)})")]
    page = PAGE.format(
        plotly_js=_packed(get_plotlyjs()),
        figures_json=_packed(figures_json),
        rows_html=_packed(_table(newest, body_only=True)),
        older=f"; {older} older rows of the same tasks stay in the CSV files" if older else "",
        summary_line=summary_line,
        summary=_summary(frame),
        toc="".join(f'<li><a href="#{a}">{html.escape(t)}</a></li>' for a, t in toc),
        environment=_environment(frame),
        winners=winners,
        verdicts=verdicts,
        figures=figure_divs or "<p>(no ok rows to draw)</p>",
        filters=_filters(newest),
        head="".join(f"<th>{html.escape(c)}</th>" for c in TABLE_COLUMNS),
    )
    path = out_dir / "index.html"
    write_atomic(path, page)  # a failed write (a full disk, a read-only index.html) leaves the old page whole
    return path
