"""The HTML report's page: ceilings in their own GPU's panel, the summary first, contents, size, the palette, the
fixed colour scale, and `run.py report` on folders with other CSVs among the results."""

from __future__ import annotations

import base64
import dataclasses
import gzip
import os
import re

import pandas as pd
import pytest
from typer.testing import CliRunner

import run
from harness.store import append_rows, as_frame

from .helpers import tiny_spec
from .test_store import ok_row

runner = CliRunner()


def two_devices():
    """An H200's rows written before an H100's: the order of appearance is not the sorted one (which once
    drew each GPU's ceilings in the other's panel)."""
    rows = []
    for device, bw, peak in (("NVIDIA H200", 4700.0, 800.0), ("NVIDIA H100 80GB HBM3", 3100.0, 700.0)):
        for workload, tflops, gbps in (("prefill", 300.0, 900.0), ("decode", 5.0, 0.5 * bw)):
            for backend, slower in (("torch-naive", 1.0), ("sdpa", 2.0)):
                row = ok_row(tiny_spec(workload), tflops=tflops / slower, gbps=gbps / slower, p50_ms=1.5 * slower)
                rows.append(dataclasses.replace(row, device=device, backend=backend, ceiling_gbps=bw,
                                                ceiling_tflops=peak, pct_peak_gbps=100 * gbps / slower / bw,
                                                pct_peak_tflops=100 * tflops / slower / peak))  # fmt: skip
    return rows


def test_each_gpus_ceilings_are_drawn_in_its_own_panel(tmp_path):
    from harness.report.html import roofline_figure

    frame = as_frame(two_devices())
    frame["intensity"] = frame["tflops"] * 1e3 / frame["gbps"]
    fig = roofline_figure(frame)
    axis_of = {}
    for trace in fig.data:
        axis_of.setdefault(trace.meta, set()).add(trace.xaxis)
    assert all(len(axes) == 1 for axes in axis_of.values()), axis_of  # a GPU's traces share one panel
    assert axis_of["NVIDIA H100 80GB HBM3"] != axis_of["NVIDIA H200"]
    titles = {a.text: a.x for a in fig.layout.annotations}
    for trace in fig.data:
        if trace.name.startswith("measured ceiling"):
            panel = next(iter(axis_of[trace.meta]))
            domain = fig.layout["xaxis" + panel[1:]].domain
            assert domain[0] <= titles[trace.meta] <= domain[1]  # under its own title
            peak = 800.0 if trace.meta == "NVIDIA H200" else 700.0
            assert max(trace.y) == peak  # that GPU's ceiling, not the other's
            assert trace.meta in trace.name


def _unpack(page: str, name: str) -> str:
    data = re.search(rf'const {name} = "([^"]*)"', page).group(1)
    return gzip.decompress(base64.b64decode(data)).decode()


def test_the_page_starts_with_the_summary_and_contents_and_stores_each_thing_once(tmp_path):
    from harness.report.html import write_report

    page = write_report(as_frame(two_devices()), tmp_path / "r").read_text()
    assert page.index('id="summary"') < page.index("<nav>") < page.index('id="environment"')
    summary = page.split('id="summary"')[1].split("</table>")[0]
    assert summary.count("<tr>") == 1 + 4  # a line a GPU and workload class
    for anchor in re.findall(r'href="#([^"]+)"', page):
        assert f'id="{anchor}"' in page
    assert page.count("Plotly.newPlot") == 1  # one plotly bundle, the figures drawn from one JSON list
    figures = __import__("json").loads(_unpack(page, "FIGURES"))
    assert len(figures) == page.count('class="plotly-graph-div"') >= 2
    assert _unpack(page, "ROWS").count("<tr ") == 8
    # the figures' numbers at 5 significant digits (the rows table keeps every digit): no longer mantissa
    mantissas = re.findall(r"(?<![\w.])-?(\d+\.\d+)(?:e-?\d+)?(?=[,\]}])", _unpack(page, "FIGURES"))
    assert mantissas and max(len(m.replace(".", "").strip("0")) for m in mantissas) <= 5


def test_drawn_batches_get_a_verdict_and_are_named_not_spelled_out(tmp_path):
    """Serving batches give the page a verdict section and a verdict figure a GPU; a drawn batch appears by its
    name (draw:SEED) in the rows' filter, the reproduce command and the roofline's hover text, never as its mix
    string (kilobytes for a batch of 256 requests, three times a row)."""
    from harness.report.html import write_report
    from specs import ExperimentSpec
    from specs.draw import draw_batch

    mix = draw_batch(7)
    assert len(mix) > 60
    spec = ExperimentSpec.from_mix(mix, 32, 8, 128, model="Llama-3.1-8B")
    rows = [dataclasses.replace(ok_row(spec, p50_ms=t, tflops=100 / t, gbps=1000 / t), backend=b,
                                ceiling_tflops=800.0, ceiling_gbps=4000.0)
            for b, t in (("triton", 1.0), ("flashinfer", 1.08), ("flash-attn3", 2.0))]  # fmt: skip
    page = write_report(as_frame(rows), tmp_path / "r").read_text()
    verdict = page.split('id="verdict-h"')[1].split("</table>")[0]
    assert "triton" in verdict and "100%" in verdict and "0.50" in verdict  # FA3: half the best's speed
    figures = _unpack(page, "FIGURES")
    assert "Verdict · " in page and "draw:7" in figures
    table = _unpack(page, "ROWS")
    assert 'data-mix="draw:7"' in table and "--mix draw:7" in table
    assert mix not in table and mix not in figures


@pytest.mark.skipif(
    os.environ.get("ATTNBENCH_SKIP_README_COMMANDS") != "1",
    reason="checked on the README's own `run.py report results/` (test_docs.py: the_report_is_one_page_under_3_mb)",
)
def test_the_committed_results_make_a_page_under_3_mb(tmp_path):
    """Where the README's commands are not run (ATTNBENCH_SKIP_README_COMMANDS=1), the same check here."""
    result = runner.invoke(run.app, ["report", "results", "-o", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert "results/extra/h200-ab-triton-gluon-2026-11-29.csv skipped: not a results file" in result.output
    assert (tmp_path / "r" / "index.html").stat().st_size < 3_000_000


def test_sixteen_backends_keep_apart():
    from harness.report.plots import backend_style

    names = [f"backend-{i}" for i in range(24)]
    style = backend_style(names)
    assert len(set(style.values())) == 24
    assert len({colour for colour, _ in list(style.values())[:20]}) == 20  # the first 20 by colour alone
    assert backend_style(reversed(names)) == style  # the order given does not matter


def test_the_heat_maps_share_one_fixed_scale_anchored_on_the_best():
    from harness.report.html import RELATIVE_SCALE, relative_heatmap

    table = pd.DataFrame({"a": [1.0, 1.5, 9.0], "b": [2.0, 1.0, None]}, index=["x", "y", "z"])
    heat = relative_heatmap(table, "t").data[0]
    assert (heat.zmin, heat.zmax) == (RELATIVE_SCALE["zmin"], RELATIVE_SCALE["zmax"]) == (0, 2)  # 1× … 4×, fixed
    assert heat.z[0][0] == 0 and heat.text[0][0] == "<b>1.00</b>"


def test_report_takes_folders_and_skips_other_csvs_with_a_line_each(tmp_path):
    folder = tmp_path / "results"
    (folder / "extra").mkdir(parents=True)
    append_rows(folder / "a.csv", two_devices())
    (folder / "extra" / "ab.csv").write_text("commit,gpu,date\n1,2,3\n")
    result = runner.invoke(run.app, ["report", str(folder), "-o", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if "skipped" in line]
    assert notes == [f"{folder / 'extra' / 'ab.csv'} skipped: not a results file (columns commit, gpu, date)"]
    missing = runner.invoke(run.app, ["report", str(tmp_path / "nope"), "-o", str(tmp_path / "r")])
    assert missing.exit_code == 2 and "no such file or folder" in missing.output
