"""`run.py report`: one static HTML page from any number of result CSVs, with plotly's JavaScript
embedded (it opens with no network). Sections: the environment of each GPU; every result row in one
filterable table (GPU, model, workload, mix, batch, backend), the best of each spec marked, a failed
cell's reason on hover, the `run.py` command that reproduces each row; the roofline, the scaling
curves, the speed-up heatmap and the winners of each serving mix as plotly figures."""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from .store import SPEC_COLUMNS, Status, latest

FILTERS = {"device": "GPU", "model": "model", "workload": "workload", "mix": "mix", "batch_size": "batch",
           "backend": "backend"}  # fmt: skip


def reproduce_command(row) -> str:
    """The `run.py sweep` command that measures this row's (spec, backend) again."""
    from specs import MODELS

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
    elif row.mix:
        parts.append(f"--mix {row.mix}")
    else:
        parts += [f"-w {row.workload}", f"--batch {row.batch_size}", f"--seq {row.kv_len}"]
        if row.workload in ("append", "spec-decode"):
            parts.append(f"--chunk {row.q_len}")
    if not pd.isna(row.page_size):
        parts.append(f"--page-size {int(row.page_size)}")
    return " ".join(parts)


def _fmt(value, spec: str) -> str:
    return "" if value is None or pd.isna(value) else spec.format(value)


def _best_marks(frame: pd.DataFrame) -> pd.Series:
    """True on the fastest ok row of each (device, spec) among the newest rows."""
    newest = latest(frame)
    ok = newest[newest["status"] == Status.OK.value]
    spec_key = ["device", *SPEC_COLUMNS]
    best_index = ok.loc[ok.groupby(spec_key, dropna=False)["p50_ms"].idxmin()].index
    return frame.index.isin(best_index)


TABLE_COLUMNS = ["GPU", "model", "workload / mix", "batch", "q", "kv", "page", "backend", "status", "p50 ms", "p95 ms",
                 "CI ±%", "TFLOP/s", "GB/s", "% peak", "measured", "reproduce"]  # fmt: skip


def above_ceiling(r) -> str:
    """Why a row's percent of peak is over 100 ('' when it is not): above the measured ceiling only (the
    calibration ran on another machine of the kind, or its stream was slower than this kernel), or above
    the vendor's datasheet as well (worth a look at the byte or FLOP count)."""
    decode = r.workload == "decode"
    pct, value = (r.pct_peak_gbps, r.gbps) if decode else (r.pct_peak_tflops, r.tflops)
    if pd.isna(pct) or pct <= 100:
        return ""
    from .calibrate import DATASHEET
    from .env import device_slug

    unit, ceiling = ("GB/s", r.ceiling_gbps) if decode else ("TFLOP/s", r.ceiling_tflops)
    sheet = DATASHEET.get(device_slug(r.device), {}).get("gbps" if decode else r.dtype)
    if sheet and value > sheet:
        return f"{value:.0f} {unit} beats the datasheet's {sheet:g}: check the ideal byte and FLOP count"
    return (f"{value:.0f} {unit} is above the measured ceiling of {ceiling:.0f} but within the datasheet: "
            "run `run.py calibrate` on this GPU")  # fmt: skip


def _table(frame: pd.DataFrame) -> str:
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
        cells = [r.device, r.model, label, r.batch_size, r.q_len, r.kv_len,
                 "dense" if pd.isna(r.page_size) else int(r.page_size), r.backend]  # fmt: skip
        numbers = [_fmt(r.p50_ms, "{:.4g}"), _fmt(r.p95_ms, "{:.4g}"), _fmt(ci, "{:.2f}"), _fmt(r.tflops, "{:.1f}"),
                   _fmt(r.gbps, "{:.0f}")]  # fmt: skip
        over = above_ceiling(r)
        flag = f' over" title="{html.escape(over)}' if over else ""  # underlined, with why on hover
        peak_cell = f'<td class="num{flag}">{_fmt(peak, "{:.1f}")}</td>'
        data = " ".join(f'data-{k}="{html.escape(str(getattr(r, k)))}"' for k in FILTERS)
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
    return f'<table id="results"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _filters(frame: pd.DataFrame) -> str:
    from specs import MIX_NAMES

    out = []
    for column, title in FILTERS.items():
        values = sorted({str(v) for v in frame[column]}, key=lambda v: (len(v), v))
        options = "".join(
            f'<option value="{html.escape(v)}">{html.escape(MIX_NAMES.get(v, v) or "(uniform)")}</option>'
            for v in values
        )
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


def _figures(frame: pd.DataFrame) -> list:
    """Plotly figures: roofline, scaling curves, speed-up heatmap, a heat map of the serving mixes a
    GPU and model."""
    import plotly.express as px
    import plotly.graph_objects as go

    from .plots import mix_ratios

    ok = latest(frame)
    ok = ok[ok["status"] == Status.OK.value].copy()
    figures = []
    if ok.empty:
        return figures
    ok["intensity"] = ok["tflops"] * 1e3 / ok["gbps"]  # FLOP per ideal byte
    roof = px.scatter(ok, x="intensity", y="tflops", color="backend", symbol="workload", facet_col="device",
                      log_x=True, log_y=True, hover_data=["model", "mix", "batch_size", "kv_len", "p50_ms"],
                      title="Roofline: achieved TFLOP/s against arithmetic intensity (FLOP / ideal byte)")  # fmt: skip
    for i, (device, rows) in enumerate(ok.groupby("device"), start=1):
        peak, bandwidth = rows["ceiling_tflops"].max(), rows["ceiling_gbps"].max()
        if pd.notna(peak) and pd.notna(bandwidth):
            xs = [10 ** (k / 20) for k in range(-20, 81)]
            roof.add_trace(go.Scatter(x=xs, y=[min(peak, bandwidth * x / 1e3) for x in xs], mode="lines",
                                      line={"color": "black"}, name=f"measured ceiling ({device})", showlegend=False),
                           row=1, col=i)  # fmt: skip
    figures.append(roof)
    uniform = ok[ok["mix"] == ""]
    figures += _scaling_figures(uniform)
    if "sdpa" in set(uniform["backend"]):
        key = uniform[["device", *SPEC_COLUMNS]].apply(lambda c: c.map(str)).agg("|".join, axis=1)
        joined = uniform.assign(key=key)
        base = joined[joined["backend"] == "sdpa"].set_index("key")["p50_ms"]
        joined = joined.join(base.rename("sdpa_ms"), on="key")
        joined["speedup"] = joined["sdpa_ms"] / joined["p50_ms"]
        joined["spec"] = joined["device"] + " · " + joined["model"] + " " + joined["workload"]
        grid = joined.pivot_table(index="backend", columns="spec", values="speedup", aggfunc="first")
        figures.append(px.imshow(grid, color_continuous_scale="RdYlGn", color_continuous_midpoint=1.0, text_auto=".2f",
                                 aspect="auto", title="Speed-up over sdpa (sdpa p50 / backend p50)"))  # fmt: skip
    for (device, model), table in mix_ratios(ok).items():  # one heat map a GPU and model: who wins each mix
        title = f"Serving mixes · {device} · {model}: p50 / the mix's fastest p50 (1 = wins)"
        heat = px.imshow(table, color_continuous_scale="RdYlGn_r", range_color=(1, 3), text_auto=".2f",
                         aspect="auto", title=title)  # fmt: skip
        figures.append(heat)
    return figures


def _scaling_figures(uniform: pd.DataFrame) -> list:
    """Per GPU, the curves of the (model, batch) groups measured at more than one KV length: a row of panels
    a group, a panel a workload, a line a backend, log-x; latency, then throughput (TFLOP/s for prefill and
    append, GB/s for decode: what bounds each)."""
    import plotly.express as px

    from .plots import THROUGHPUT, workload_metric

    if uniform.empty:
        return []
    lengths = uniform.groupby(["device", "model", "batch_size"])["kv_len"].transform("nunique")
    curves = uniform[lengths > 1].sort_values("kv_len").copy()
    curves["group"] = curves["model"] + " · B=" + curves["batch_size"].map(str)
    column = curves["workload"].map(lambda w: workload_metric(THROUGHPUT, w))  # the PNG plots' choice, tflops or gbps
    curves[THROUGHPUT] = [row[c] for row, c in zip(curves.to_dict("records"), column)]
    curves["chunk"] = curves["q_len"].where(curves["workload"] == "append", 0)
    figures = []
    for device, rows in curves.groupby("device"):
        height = 260 * rows["group"].nunique() + 120
        for y, what in (("p50_ms", "p50 latency (ms)"), (THROUGHPUT, "TFLOP/s (prefill, append), GB/s (decode)")):
            fig = px.line(rows, x="kv_len", y=y, color="backend", symbol="backend", facet_col="workload",
                          facet_row="group", line_group="chunk", markers=True, log_x=True, log_y=y == "p50_ms",
                          hover_data=["model", "batch_size", "q_len", "p50_ms", "tflops", "gbps"], height=height,
                          title=f"Scaling · {device}: {what} against KV length")  # fmt: skip
            fig.update_yaxes(matches=None, showticklabels=True)
            figures.append(fig)
    return figures


def _winners(frame: pd.DataFrame) -> str:
    """The serving mixes' winners table (harness.report.winners), or nothing without mix rows."""
    from .report import winners

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
    return f"<h2>Serving mixes: who wins</h2>\n<p>{intro}</p>\n{body}"


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>attnbench report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; font-size: 12px; }}
th, td {{ border: 1px solid #ddd; padding: 2px 6px; }}
th {{ background: #f3f3f3; position: sticky; top: 0; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
td.fail {{ color: #a33; cursor: help; }}
td.over {{ color: #a60; text-decoration: underline dotted; cursor: help; }}
tr.best td {{ font-weight: bold; background: #eef8ee; }}
code.cmd {{ font-size: 10px; color: #555; }}
.env {{ display: inline-block; vertical-align: top; margin: 0 2em 1em 0; }}
dl {{ display: grid; grid-template-columns: auto auto; gap: 0 1em; font-size: 13px; }}
dt {{ color: #666; }} dd {{ margin: 0; max-width: 50em; }}
#filters {{ margin: 1em 0; }} #filters label {{ margin-right: 1em; }}
</style>
<script>{plotly_js}</script>
</head><body>
<h1>attnbench report</h1>
<p>{summary} Every number passed the fp32 reference check before it was timed. Bold: the fastest ok row of
its spec on its GPU (newest rows). Hover a failed status for its reason, a row for the command that
measures it again.</p>
<h2>Environment</h2>
{environment}
{winners}
<h2>Figures</h2>
{figures}
<h2>All rows</h2>
{filters}
{table}
<script>
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
apply();
</script>
</body></html>
"""


def _shown_path(path: str) -> str:
    """A path relative to the working folder when it lies inside it."""
    import os

    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def write_report(frame: pd.DataFrame, out_dir: Path | str) -> Path:
    """Write OUT_DIR/index.html for the rows of `frame` (every row, history included)."""
    from plotly.offline import get_plotlyjs

    from .atomic import write_atomic

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = frame.reset_index(drop=True)
    figures = "".join(f.to_html(full_html=False, include_plotlyjs=False) for f in _figures(frame))
    files = sorted({_shown_path(f) for f in frame["file"]}) if "file" in frame else []
    summary = (f"{len(frame)} rows from {', '.join(html.escape(f) for f in files) or 'memory'}, "
               f"{frame['device'].nunique()} GPU kinds, {frame['backend'].nunique()} backends.")  # fmt: skip
    page = PAGE.format(
        plotly_js=get_plotlyjs(),
        summary=summary,
        environment=_environment(frame),
        winners=_winners(frame),
        figures=figures or "<p>(no ok rows to draw)</p>",
        filters=_filters(frame),
        table=_table(frame),
    )
    path = out_dir / "index.html"
    write_atomic(path, page)  # a failed write (a full disk, a read-only index.html) leaves the old page whole
    return path
