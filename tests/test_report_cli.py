"""Tables, plots and the CLI, on a fixture CSV and through typer's test runner."""

import dataclasses

import pytest
from typer.testing import CliRunner

import run
from harness.measure import make_row
from harness.report import pivot, render_markdown
from harness.store import Status, append_rows, load_rows

from .helpers import tiny_spec
from .test_store import CONFIG, ENV, ok_row

runner = CliRunner()


@pytest.fixture
def fixture_csv(tmp_path):
    """Two backends over prefill and decode: one OOM cell, one unsupported cell."""
    path = tmp_path / "fixture.csv"
    prefill, decode = tiny_spec("prefill"), tiny_spec("decode")
    rows = [
        ok_row(prefill, p95_ms=2.0, tflops=100.0),
        ok_row(decode, p95_ms=0.5, tflops=10.0),
        dataclasses.replace(ok_row(prefill, p95_ms=1.0, tflops=200.0), backend="sdpa-flash"),
        make_row(decode, "sdpa-flash", "", ENV, CONFIG, Status.OOM, "CUDA out of memory"),
        make_row(prefill, "flex", "", ENV, CONFIG, Status.UNSUPPORTED, "no"),
    ]
    append_rows(path, rows)
    return path


def test_pivot_cells_best_and_statuses(fixture_csv):
    p = pivot(load_rows(fixture_csv), "p95_ms")
    assert p.row_labels == ["flex", "sdpa-flash", "torch-naive"]
    assert p.col_labels == ["tiny prefill", "tiny decode"]
    assert p.cells[("torch-naive", "tiny prefill")] == "2.000"
    assert p.cells[("sdpa-flash", "tiny decode")] == "OOM"
    assert p.cells[("flex", "tiny prefill")] == "UNSUPPORTED"
    assert ("flex", "tiny decode") not in p.cells
    assert p.best == {"tiny prefill": "sdpa-flash", "tiny decode": "torch-naive"}
    assert pivot(load_rows(fixture_csv), "tflops").best["tiny prefill"] == "sdpa-flash"  # higher is better


def test_columns_split_when_another_spec_field_varies(fixture_csv):
    append_rows(fixture_csv, [ok_row(tiny_spec("decode", kv_len=96), p95_ms=0.7)])
    p = pivot(load_rows(fixture_csv), "p95_ms")
    assert "tiny decode kv=96" in p.col_labels and "tiny decode kv=48" in p.col_labels


def test_markdown_table(fixture_csv):
    text = render_markdown(pivot(load_rows(fixture_csv), "p95_ms"))
    lines = text.splitlines()
    assert lines[0] == "| backend | tiny prefill | tiny decode |"
    assert "| sdpa-flash | **1.000** | OOM |" in lines
    assert "| flex | UNSUPPORTED | — |" in lines


def test_cli_table(fixture_csv):
    result = runner.invoke(run.app, ["table", str(fixture_csv), "--format", "markdown", "--metric", "tflops"])
    assert result.exit_code == 0, result.output
    assert "| sdpa-flash | **200.0** | OOM |" in result.output


def test_cli_table_rejects_bad_metric_and_foreign_file(fixture_csv, tmp_path):
    result = runner.invoke(run.app, ["table", str(fixture_csv), "--metric", "speed"])
    assert result.exit_code == 2 and "metric: 'speed' is not valid; expected one of p50_ms" in result.output
    foreign = tmp_path / "foreign.csv"
    foreign.write_text("a,b\n1,2\n")
    result = runner.invoke(run.app, ["table", str(foreign)])
    assert result.exit_code == 2 and "not an attnbench results file" in result.output


def test_cli_plot_writes_pngs(fixture_csv, tmp_path):
    out = tmp_path / "plots"
    result = runner.invoke(run.app, ["plot", str(fixture_csv), "--out-dir", str(out)])
    assert result.exit_code == 0, result.output
    pngs = list(out.glob("*.png"))
    assert len(pngs) == 1 and pngs[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and pngs[0].stat().st_size > 10_000


def test_cli_list():
    result = runner.invoke(run.app, ["list", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "torch-naive" in result.output and "Qwen3-235B-A22B" in result.output and "readme" in result.output
    assert "needs a cuda device" in result.output  # sdpa-cudnn on a CPU run


def test_cli_sweep_end_to_end(tmp_path):
    out = tmp_path / "s.csv"
    args = ["sweep", "--preset", "smoke", "-m", "Llama-3.1-8B", "-w", "decode,append", "--seq", "64", "--chunk", "16",
            "-b", "torch-naive,sdpa-math", "--iterations", "3", "-o", str(out), "--plot-dir", str(tmp_path / "p")]  # fmt: skip
    result = runner.invoke(run.app, args)
    assert result.exit_code == 0, result.output
    rows = load_rows(out)
    assert len(rows) == 4 and all(r.status is Status.OK for r in rows) and {r.n_iters for r in rows} == {3}
    assert "4 rows: 4 ok" in result.output
    assert len(list((tmp_path / "p").glob("*.png"))) == 1
    again = runner.invoke(run.app, args + ["--resume"])
    assert again.exit_code == 0 and "4 skipped by --resume" in again.output
    assert len(load_rows(out)) == 4


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "GPT-5"], "models: 'GPT-5' is not known; expected one of Llama-3.1-8B"),
        (["--backend", "nope"], "backends: 'nope' not known"),
        (["--batch", "0"], "batch: expected positive integers"),
        (["--workload", "train"], "expected one of prefill, append, decode"),
        (["--seq", "8", "--chunk", "16", "-w", "append"], "has no specs"),
        (["--device", "tpu"], "device: 'tpu' is not valid"),
    ],
)
def test_cli_sweep_bad_input_is_one_clear_line(args, message, tmp_path):
    result = runner.invoke(run.app, ["sweep", "-o", str(tmp_path / "x.csv"), *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_cli_rejects_unknown_preset():
    result = runner.invoke(run.app, ["sweep", "--preset", "huge"])
    assert result.exit_code == 2 and "smoke" in result.output


README_TEMPLATE = """# title

Intro text that must survive.

<!-- attnbench:table files={csv} metric=p95_ms -->
stale table
<!-- /attnbench:table -->

Middle text.

<!-- attnbench:table files={csv} metric=tflops workload=prefill -->
<!-- /attnbench:table -->
Tail.
"""


def test_readme_rewrite_touches_only_its_blocks_and_is_idempotent(fixture_csv, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(README_TEMPLATE.format(csv=fixture_csv.name))
    result = runner.invoke(run.app, ["table", "--readme", str(readme)])
    assert result.exit_code == 0, result.output
    once = readme.read_text()
    assert "stale table" not in once
    assert "| sdpa-flash | **1.000** | OOM |" in once  # p95 block
    assert "| sdpa-flash | **200.0** |" in once and "tiny decode" not in once.split("Middle text.")[1]  # filtered block
    outside = lambda text: [part.split("<!-- /attnbench:table -->")[-1] for part in text.split("<!-- attnbench:table")]  # noqa: E731
    assert outside(once)[0] == "# title\n\nIntro text that must survive.\n\n"
    assert outside(once)[1:] == ["\n\nMiddle text.\n\n", "\nTail.\n"]
    again = runner.invoke(run.app, ["table", "--readme", str(readme)])
    assert again.exit_code == 0 and "already up to date" in again.output
    assert readme.read_text() == once


def test_readme_rewrite_rejects_bad_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("<!-- attnbench:table metric=p50_ms -->\n<!-- /attnbench:table -->\n")
    result = runner.invoke(run.app, ["table", "--readme", str(readme)])
    assert result.exit_code == 2 and "needs files=" in result.output
    readme.write_text("no markers here\n")
    result = runner.invoke(run.app, ["table", "--readme", str(readme)])
    assert result.exit_code == 2 and "has no <!-- attnbench:table" in result.output


def test_plot_writes_roofline_and_speedup_heatmap(fixture_csv, tmp_path):
    rows = [dataclasses.replace(r, ceiling_tflops=500.0, ceiling_gbps=3000.0) if r.status is Status.OK else r for r in load_rows(fixture_csv)]
    calibrated = tmp_path / "calibrated.csv"
    append_rows(calibrated, rows)
    out = tmp_path / "plots"
    result = runner.invoke(run.app, ["plot", str(calibrated), "--out-dir", str(out), "--baseline", "torch-naive"])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == ["h100_roofline.png", "h100_speedup_vs_torch-naive.png", "h100_tiny_b2_bf16.png"]
    bad = runner.invoke(run.app, ["plot", str(calibrated), "--out-dir", str(out), "--baseline", "nobody"])
    assert bad.exit_code == 2 and "baseline: 'nobody' has no rows" in bad.output


def test_cli_compare(fixture_csv, tmp_path):
    result = runner.invoke(run.app, ["compare", str(fixture_csv), str(fixture_csv)])
    assert result.exit_code == 0, result.output
    assert "3 compared: 3 not significant (100%)" in " ".join(result.output.split())
    assert "geometric mean of B/A = 1.0000" in result.output


def test_cli_calibrate_on_cpu(tmp_path, monkeypatch):
    from harness import calibrate as cal

    monkeypatch.setattr(cal, "calibration_file", lambda slug: tmp_path / f"calibration-{slug}.csv")
    result = runner.invoke(run.app, ["calibrate", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert len(cal.load(tmp_path / "calibration-cpu.csv")) == 3 and "bf16" in result.output


def test_cli_check_reports_errors_and_fails_on_a_wrong_backend():
    import tests.fake_backends  # noqa: F401  (registers test-top-left)

    base = ["check", "-m", "Llama-3.1-8B", "-w", "append", "--seq", "64", "--chunk", "16"]
    good = runner.invoke(run.app, base + ["-b", "torch-naive"])
    assert good.exit_code == 0, good.output
    assert "1 ok" in good.output and "e-03" in good.output
    bad = runner.invoke(run.app, base + ["-b", "torch-naive,test-top-left"])
    assert bad.exit_code == 1
    assert "incorrect test-top-left" in " ".join(bad.output.split()) and "relative error" in bad.output
