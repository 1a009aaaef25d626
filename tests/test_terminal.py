"""Terminal output that fits 100 columns with a summary first: `run.py table` and `run.py compare` on the
committed results; p50 by default; a sweep's plots follow -o."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from typer.testing import CliRunner

import run
from harness.store import append_rows

from .helpers import tiny_spec
from .test_store import ok_row

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def _fits(output: str, width: int = 100) -> list[str]:
    lines = output.splitlines()
    assert max(len(line) for line in lines) <= width, max(lines, key=len)
    return lines


def test_table_of_the_serving_results_fits_100_columns_with_a_summary_first():
    assert run.console.width == 100  # piped (as under pytest): 100 columns
    result = runner.invoke(run.app, ["table", str(ROOT / "results" / "h200-serving.csv")])
    assert result.exit_code == 0, result.output
    lines = _fits(result.output)
    assert lines[0].startswith("36 specs × 14 backends; p50_ms (lower is better)")  # p50 by default
    assert any(line.startswith("fastest most often: flash-attn3 ") for line in lines[:20])
    assert len(lines) < 200  # was 414


def test_compare_of_a_file_with_itself_prints_the_counts_first_and_fits():
    path = str(ROOT / "results" / "h200-serving.csv")
    result = runner.invoke(run.app, ["compare", path, path])
    assert result.exit_code == 0, result.output
    lines = _fits(result.output)
    assert len(lines) < 20  # was 3,707
    assert "213 compared: 0 faster, 0 slower, 213 same" in " ".join(lines[:3])
    assert "291 not comparable: 291 not both ok" in result.output
    assert "H100" not in result.output  # an H200 compare names only H200 spreads


def test_compare_meets_rows_of_the_same_gpu_only_unless_asked(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    append_rows(a, [ok_row(tiny_spec("decode"))])
    append_rows(b, [dataclasses.replace(ok_row(tiny_spec("decode")), device="NVIDIA H200")])
    same = runner.invoke(run.app, ["compare", str(a), str(b), "--no-spread"])
    assert "nothing compared (other GPU kinds: --across-gpus pairs them by spec)" in same.output
    assert "2 not comparable: 1 only in A, 1 only in B" in same.output
    across = runner.invoke(run.app, ["compare", str(a), str(b), "--no-spread", "--across-gpus"])
    assert "1 compared: 0 faster, 0 slower, 1 same" in across.output


def test_a_sweeps_plots_go_beside_its_csv(tmp_path):
    from harness.options import plots_beside

    assert plots_beside(tmp_path / "x" / "run.csv", ROOT) == tmp_path / "x" / "run-plots"
    assert plots_beside(ROOT / "results" / "h100.csv", ROOT) == ROOT / "plots"
    out = tmp_path / "elsewhere.csv"
    args = ["sweep", "-b", "torch-naive", "-m", "Llama-3.1-8B", "-w", "decode", "--batch", "1", "--seq", "64,128",
            "--device", "cpu", "--iterations", "2", "-o", str(out)]  # fmt: skip
    result = runner.invoke(run.app, args)
    assert result.exit_code == 0, result.output
    assert list((tmp_path / "elsewhere-plots").glob("*.png"))


def test_a_table_with_no_ok_cell_says_so_and_shows_the_statuses(tmp_path):
    """Every row unavailable: the summary does not claim a backend is left out, and the table shows it."""
    from harness.measure import make_row
    from harness.store import Status

    from .test_store import CONFIG, ENV

    path = tmp_path / "u.csv"
    append_rows(path, [make_row(tiny_spec("decode"), "sdpa-cudnn", "", ENV, CONFIG, Status.UNAVAILABLE, "no GPU")])
    result = runner.invoke(run.app, ["table", str(path)])
    assert result.exit_code == 0, result.output
    assert "no ok cell in any backend" in result.output and "not shown" not in result.output
