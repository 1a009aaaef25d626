"""Tables, plots and the CLI, on a fixture CSV and through typer's test runner."""

import dataclasses
import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import harness.sweep
import run
from harness.measure import make_row
from harness.report.tables import pivot, render_markdown
from harness.store import Status, append_rows, load_rows
from specs import ExperimentSpec

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


def test_column_labels_of_fp8_specs_say_only_what_is_set():
    rows = [ok_row(tiny_spec("decode")), ok_row(tiny_spec("decode", kv_dtype="fp8_e4m3", kv_scale="tensor")),
            ok_row(tiny_spec("decode", kv_dtype="fp8_e4m3", kv_scale="head", fp8_attention=True))]  # fmt: skip
    assert pivot(rows).col_labels == [
        "tiny decode", "tiny decode fp8_e4m3 tensor", "tiny decode fp8_e4m3 fp8-attention head"
    ]  # fmt: skip


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
    assert result.exit_code == 2 and "foreign.csv skipped: not a results file (columns a, b)" in result.output
    assert result.output.strip().splitlines()[-1] == "error: files: none of them is a results CSV"
    broken = tmp_path / "broken.csv"  # a results header over a bad row is refused, never skipped
    broken.write_text(fixture_csv.read_text().replace(",ok,", ",fine,", 1))
    result = runner.invoke(run.app, ["table", str(broken)])
    assert result.exit_code == 2 and "not a Status" in result.output


def test_cli_plot_writes_pngs(fixture_csv, tmp_path):
    out = tmp_path / "plots"
    result = runner.invoke(run.app, ["plot", str(fixture_csv), "--out-dir", str(out)])
    assert result.exit_code == 0, result.output
    pngs = sorted(out.glob("*.png"))
    assert [p.name for p in pngs] == ["h100_tiny_b2_bf16.png", "h100_verdict.png"]  # two libraries: a verdict
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000 for p in pngs)


def test_cli_list():
    result = runner.invoke(run.app, ["list", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "torch-naive" in result.output and "Qwen3-235B-A22B" in result.output and "readme" in result.output
    assert "needs a cuda device" in result.output  # sdpa-cudnn on a CPU run
    # the variants table's title keeps its brackets (Rich markup would eat them), the capabilities table each
    # backend's whole name
    assert "-b 'NAME[key=value,...]'" in result.output
    assert all(name in result.output for name in ("flash-attn2", "flash-attn3", "flash-attn4", "flashinfer"))


def test_cli_sweep_end_to_end(tmp_path):
    out = tmp_path / "s.csv"
    args = ["sweep", "--preset", "smoke", "-m", "Llama-3.1-8B", "-w", "decode,append", "--seq", "64", "--chunk",
            "16", "-b", "torch-naive,sdpa-math", "--iterations", "3", "-o", str(out),
            "--plot-dir", str(tmp_path / "p")]  # fmt: skip
    result = runner.invoke(run.app, args)
    assert result.exit_code == 0, result.output
    rows = load_rows(out)
    assert len(rows) == 4 and all(r.status is Status.OK for r in rows) and {r.n_iters for r in rows} == {3}
    assert "4 tasks in the file (4 measured now): 4 ok" in result.output
    assert len(list((tmp_path / "p").glob("*.png"))) == 1
    again = runner.invoke(run.app, args + ["--resume"])
    assert again.exit_code == 0, again.output
    # the summary after a resume covers the whole file, not only the (zero) rows of this run
    assert "4 tasks in the file (0 measured now): 4 ok; 4 kept from earlier runs by --resume" in again.output
    assert len(load_rows(out)) == 4
    none = runner.invoke(run.app, [*args[:-2], "--no-plots", "-o", str(tmp_path / "n.csv")])
    assert none.exit_code == 0 and "plot:" not in none.output


BAD_SWEEP_INPUT = [
    (["--model", "GPT-5"], "--model: 'GPT-5' not known; expected any of Llama-3.1-8B"),
    (["--backend", "nope"], "--backend: 'nope' not known; expected any of flash-attn2"),
    (["--batch", "0"], "--batch: expected positive integers, got 0"),
    (["--batch", "two"], "--batch: expected positive integers, got two"),
    (["--workload", "train"], "--workload: 'train' not known; expected any of prefill, append, decode, spec-decode"),
    (["--seq", "8", "--chunk", "16", "-w", "append"], "has no specs"),
    (
        ["-w", "decode", "--chunk", "16"],
        "--chunk: applies to append and spec-decode only; this sweep's workloads are decode",
    ),
    (["--device", "tpu"], "--device: 'tpu' is not valid; expected one of cuda, cpu"),
    (["--device", "cuda"], "--device: cuda was asked for, but PyTorch sees no CUDA GPU here"),
    (["--timeout", "0"], "--timeout: must be a finite number > 0, got 0.0"),
    (["--timeout", "nan"], "--timeout: must be a finite number > 0, got nan"),
    (["--timeout", "-5"], "--timeout: must be a finite number > 0, got -5.0"),
    (["--max-seconds", "inf"], "--max-seconds: must be a finite number > 0, got inf"),
    (["--warmup", "-1"], "--warmup: must be a finite number >= 0, got -1"),
    (["--iterations", "0"], "--iterations: must be a finite number >= 1, got 0"),
    (["--min-iterations", "0"], "--min-iterations: must be a finite number >= 1, got 0"),
    (["--min-iterations", "50", "--max-iterations", "10"], "--max-iterations: must be a finite number >= 50, got 10"),
    (["--ci-target", "0"], "--ci-target: must be a finite number > 0, got 0.0"),
    (["--ci-target", "1.5"], "--ci-target: must be below 1"),
    (["--page-size", "0"], "--page-size: '0' is not valid; expected positive integers or 'dense'"),
    (["--mix", "2q2k_32x1s1k"], "mix: segment 2 '32x1s1k' is not [count]q<q_len>[k][s<kv_len>[k]]"),
    (["--mix", "q4", "--lengths", "uniform:1:8"], "--mix and --lengths: give one of them"),
    (["--lengths", "normal:1:2"], "lengths: 'normal:1:2' is not valid; expected uniform:LOW:HIGH or lognormal"),
    (["--keep-failed"], "--keep-failed: only means something with --resume"),
    (["--retry-unavailable"], "--retry-unavailable: only means something with --resume"),
    (["--timing", "graph"], "timing: graph needs a CUDA device"),
    (
        ["--l2-flush", "read", "--device", "cpu"],
        "--l2-flush: read flushes a GPU's L2; this sweep is timed by the wall clock",
    ),
]


@pytest.mark.parametrize("args, message", BAD_SWEEP_INPUT)
def test_cli_sweep_bad_input_is_one_clear_line(args, message, tmp_path):
    out = tmp_path / "x.csv"
    result = runner.invoke(run.app, ["sweep", "-b", "torch-naive", "-o", str(out), "--no-plots", *args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.output
    assert not out.exists()  # refused before anything was measured


def test_cli_path_options_are_checked_before_measuring(tmp_path):
    a_file = tmp_path / "file.txt"
    a_file.write_text("not a folder")
    cases = [
        (["-o", str(tmp_path)], f"--output: {tmp_path} is a directory; give a .csv file path"),
        (
            ["-o", str(a_file / "r.csv")],
            f"--output: {a_file} is a file, so {a_file / 'r.csv'} cannot be created under it",
        ),
        (["-o", str(tmp_path / "r.csv"), "--plot-dir", str(a_file)], f"--plot-dir: {a_file} is a file, not a folder"),
    ]
    for args, message in cases:
        result = runner.invoke(run.app, ["sweep", "-b", "torch-naive", *args])
        assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output
    assert not (tmp_path / "r.csv").exists()


def test_cli_refuses_to_append_to_a_foreign_or_broken_results_file(tmp_path):
    foreign = tmp_path / "foreign.csv"
    foreign.write_text("a,b\n1,2\n")
    result = runner.invoke(run.app, ["sweep", "-b", "torch-naive", "-o", str(foreign), "--no-plots"])
    assert result.exit_code == 2 and "not an attnbench results file" in result.output
    assert foreign.read_text() == "a,b\n1,2\n"  # untouched


@pytest.mark.skipif(__import__("os").geteuid() == 0, reason="root writes through file permissions")
def test_cli_read_only_output_is_refused(tmp_path):
    out = tmp_path / "ro.csv"
    out.write_text("")
    out.chmod(0o444)
    result = runner.invoke(run.app, ["sweep", "-b", "torch-naive", "-o", str(out), "--no-plots"])
    assert result.exit_code == 2 and "cannot be written" in result.output


def test_cli_duplicate_names_are_measured_once(tmp_path):
    out = tmp_path / "d.csv"
    args = ["sweep", "-m", "Llama-3.1-8B,Llama-3.1-8B", "-w", "decode", "-w", "decode", "--seq", "32,32",
            "-b", "torch-naive,torch-naive", "--iterations", "2", "-o", str(out), "--no-plots"]  # fmt: skip
    result = runner.invoke(run.app, args)
    assert result.exit_code == 0, result.output
    assert len(load_rows(out)) == 1


def test_cli_ctrl_c_says_how_to_resume(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(harness.sweep, "run_with_progress", interrupted)
    result = runner.invoke(run.app, ["sweep", "-b", "torch-naive", "-o", str(tmp_path / "r.csv"), "--no-plots"])
    assert result.exit_code == 130
    assert "interrupted" in result.output and "--resume" in result.output


def test_cli_table_names_an_unknown_filter_value(fixture_csv):
    result = runner.invoke(run.app, ["table", str(fixture_csv), "-b", "torch-naive,flash-attn9"])
    assert result.exit_code == 2
    assert "--backend: 'flash-attn9' not known; expected any of flex, sdpa-flash, torch-naive" in " ".join(
        result.output.split()
    )
    missing = runner.invoke(run.app, ["table", str(fixture_csv) + ".nope"])
    assert missing.exit_code == 2 and "no such file" in missing.output


def test_help_names_only_options_that_exist():
    result = runner.invoke(run.app, ["sweep", "--help"])
    text = " ".join(result.output.split())
    assert "--no-plots" in text and "--no-plot-dir" not in text and "--keep-failed" in text


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
    outside = lambda text: [part.split("<!-- /attnbench:table -->")[-1] for part in text.split("<!-- attnbench:table")]
    assert outside(once)[0] == "# title\n\nIntro text that must survive.\n\n"
    assert outside(once)[1:] == ["\n\nMiddle text.\n\n", "\nTail.\n"]
    again = runner.invoke(run.app, ["table", "--readme", str(readme)])
    assert again.exit_code == 0 and "already up to date" in again.output
    assert readme.read_text() == once


def test_readme_check_says_how_many_blocks_it_checked_in_which_files(fixture_csv, tmp_path):
    """`readme --check` of files without a block printed nothing, as if it had checked something: it says 0."""
    bare = tmp_path / "bare.md"
    bare.write_text("# no blocks here\n")
    result = runner.invoke(run.app, ["readme", "--check", str(bare)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"checked 0 blocks: no <!-- attnbench:table ... --> block in {bare}"
    readme = tmp_path / "README.md"
    readme.write_text(README_TEMPLATE.format(csv=fixture_csv.name))
    assert runner.invoke(run.app, ["readme", str(readme)]).exit_code == 0
    result = runner.invoke(run.app, ["readme", "--check", str(bare), str(readme)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == f"checked 2 block(s) in 1 file(s): {readme}"


def test_readme_rewrite_rejects_bad_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("<!-- attnbench:table metric=p50_ms -->\n<!-- /attnbench:table -->\n")
    result = runner.invoke(run.app, ["table", "--readme", str(readme)])
    assert result.exit_code == 2 and "needs files=" in result.output
    readme.write_text("no markers here\n")
    result = runner.invoke(run.app, ["table", "--readme", str(readme)])
    assert result.exit_code == 2 and "has no <!-- attnbench:table" in result.output


def test_plot_writes_roofline_and_speedup_heatmap(fixture_csv, tmp_path):
    rows = [
        dataclasses.replace(r, ceiling_tflops=500.0, ceiling_gbps=3000.0) if r.status is Status.OK else r
        for r in load_rows(fixture_csv)
    ]
    calibrated = tmp_path / "calibrated.csv"
    append_rows(calibrated, rows)
    out = tmp_path / "plots"
    result = runner.invoke(run.app, ["plot", str(calibrated), "--out-dir", str(out), "--baseline", "torch-naive"])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == [
        "h100_roofline.png", "h100_speedup_vs_torch-naive.png", "h100_tiny_b2_bf16.png", "h100_verdict.png"
    ]  # fmt: skip
    fresh = tmp_path / "fresh"  # a bad baseline is refused before any plot is written
    bad = runner.invoke(run.app, ["plot", str(calibrated), "--out-dir", str(fresh), "--baseline", "nobody"])
    assert bad.exit_code == 2 and "--baseline: 'nobody' has no rows" in bad.output
    assert not list(fresh.glob("*.png"))
    # a baseline with rows but none ok (SDPA on latent attention): a map of empty cells is not drawn
    declined = tmp_path / "declined.csv"
    from harness.store import OK_ONLY_OPTIONAL, TIMED_FIELDS

    no_timing = dict.fromkeys(TIMED_FIELDS + OK_ONLY_OPTIONAL)
    append_rows(declined, [dataclasses.replace(r, status=Status.UNSUPPORTED, reason="no", **no_timing)
                           if r.backend == "torch-naive" else r for r in rows])  # fmt: skip
    assert runner.invoke(run.app, ["plot", str(declined), "--out-dir", str(tmp_path / "p2"), "--baseline",
                                   "torch-naive"]).exit_code == 0  # fmt: skip
    assert not list((tmp_path / "p2").glob("*speedup*"))


def test_cli_compare(fixture_csv, tmp_path):
    result = runner.invoke(run.app, ["compare", str(fixture_csv), str(fixture_csv)])
    assert result.exit_code == 0, result.output
    assert "3 compared: 0 faster, 0 slower, 3 same (not significant, 100%)" in " ".join(result.output.split())
    assert "geometric mean of B/A = 1.0000" in result.output


def test_cli_compare_between_the_gpus_of_one_file(fixture_csv, tmp_path):
    """One sweep over two GPUs of a host (one file): --a-gpu and --b-gpu pick each side's rows by UUID prefix
    ("GPU-" and case ignored); a prefix no row has is one line naming the GPUs the file does have."""
    two = tmp_path / "two-gpus.csv"
    rows = load_rows(fixture_csv)
    first = [dataclasses.replace(r, gpu_uuid="a3726b80-c31b-022a-e983-4cf9f655a42d") for r in rows]
    second = [dataclasses.replace(r, gpu_uuid="f5b8ca0f-1465-4178-e70d-a8af3a4e8173") for r in rows[:2]]
    second = [dataclasses.replace(second[0], p50_ms=1.2, p50_ci_low_ms=1.19, p50_ci_high_ms=1.21), second[1]]
    append_rows(two, first + second)
    args = ["compare", str(two), str(two), "--no-spread"]
    result = runner.invoke(run.app, [*args, "--a-gpu", "GPU-A3726B80", "--b-gpu", "f5b8"])
    assert result.exit_code == 0, result.output
    assert "2 compared: 1 faster, 0 slower, 1 same (not significant, 50%)" in " ".join(result.output.split())
    bad = runner.invoke(run.app, [*args, "--a-gpu", "0000"])
    lines = [line for line in bad.output.splitlines() if line.strip()]
    assert bad.exit_code == 2 and len(lines) == 1, bad.output
    assert "--a-gpu: no row of" in lines[0] and "its rows name a3726b80, f5b8ca0f" in " ".join(bad.output.split())
    old = runner.invoke(run.app, ["compare", str(fixture_csv), str(fixture_csv), "--b-gpu", "a372"])
    assert old.exit_code == 2 and "no GPU (written before rows named theirs)" in " ".join(old.output.split())


def test_cli_compare_lists_only_rows_in_both_files_unless_all(fixture_csv, tmp_path):
    extra = tmp_path / "extra.csv"
    append_rows(extra, load_rows(fixture_csv) + [ok_row(tiny_spec("decode", kv_len=96), p95_ms=0.7)])
    default = runner.invoke(run.app, ["compare", str(fixture_csv), str(extra), "--no-spread"])
    assert default.exit_code == 0, default.output
    assert "1 rows are in only one of the files" in default.output
    assert "1 only in B" in " ".join(default.output.split())  # counted, not listed
    assert "│ only in B" not in default.output
    listed = runner.invoke(run.app, ["compare", str(fixture_csv), str(extra), "--all", "--no-spread"])
    assert "│ only in B" in listed.output


def test_cli_calibrate_on_cpu(tmp_path, monkeypatch):
    from harness import calibrate as cal

    monkeypatch.setattr(cal, "calibration_file", lambda slug: tmp_path / f"calibration-{slug}.csv")
    result = runner.invoke(run.app, ["calibrate", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert len(cal.load(tmp_path / "calibration-cpu.csv")) == 3 and "bf16" in result.output


def test_cli_sweep_says_why_a_backend_is_unavailable_and_counts_variants(tmp_path):
    """A backend this machine lacks: one line a reason at the sweep's end (not only in the CSV); the header counts
    a backend's variants where -b names several."""
    out = tmp_path / "u.csv"
    args = ["sweep", "--preset", "smoke", "-m", "Llama-3.1-8B", "-w", "decode", "--seq", "64", "-b",
            "torch-naive,sdpa-cudnn,flashinfer[*]", "--iterations", "2", "--device", "cpu", "-o", str(out),
            "--no-plots"]  # fmt: skip
    result = runner.invoke(run.app, args)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    # flashinfer[*]: its defaults and two contenders, which a plain decode does not plan
    assert "1 specs × 3 backends (5 variants) = 3 tasks" in text and "2 (spec, variant) pairs not planned" in text
    assert "unavailable (needs a cuda device, this run is on cpu): flashinfer, sdpa-cudnn" in text


def test_cli_check_reports_errors_and_fails_on_a_wrong_backend():
    import tests.fake_backends  # noqa: F401  (registers test-top-left)

    base = ["check", "-m", "Llama-3.1-8B", "-w", "append", "--seq", "64", "--chunk", "16"]
    good = runner.invoke(run.app, base + ["-b", "torch-naive"])
    assert good.exit_code == 0, good.output
    assert "1 ok" in good.output and "e-03" in good.output
    bad = runner.invoke(run.app, base + ["-b", "torch-naive,test-top-left"])
    assert bad.exit_code == 1
    assert "incorrect test-top-left" in " ".join(bad.output.split()) and "relative error" in bad.output
    # a backend's variants are rows of their own, named as -b takes them
    both = runner.invoke(run.app, base + ["-b", "torch-naive,torch-naive[gqa=repeat]"])
    assert both.exit_code == 0 and "2 ok" in both.output, both.output
    assert "torch-naive[gqa=repeat]" in both.output


def test_cli_check_says_why_a_backend_is_unsupported(monkeypatch):
    from tests.test_store import CONFIG, ENV

    def measured(tasks, *args, **kw):  # what the workers return, without starting one
        why = "sinks: this backend does not take attention sinks"
        return [make_row(t.spec, t.backend, "2.13", ENV, CONFIG, Status.UNSUPPORTED, why) for t in tasks], 0

    monkeypatch.setattr(harness.sweep, "run_with_progress", measured)
    argv = ["check", "-m", "gpt-oss-20b", "-w", "decode", "--seq", "16", "-b", "sdpa", "--device", "cpu"]
    result = runner.invoke(run.app, argv)
    assert result.exit_code == 0, result.output
    assert "unsupported × 2: sdpa: sinks: this backend does not take attention sinks" in result.output


@pytest.mark.parametrize(
    "spec",
    [
        tiny_spec("decode"),
        tiny_spec("append", page_size=16),
        ExperimentSpec.from_mix("q20_3q1s17_2q4s25", 32, 8, 128, model="Llama-3.1-8B"),
        ExperimentSpec.from_lengths("lognormal:64:0.5@3", "append", 5, 32, 8, 128, chunk=4, model="Llama-3.1-8B"),
        ExperimentSpec("prefill", 2, 64, 64, 32, 4, 128, model="Qwen3-30B-A3B", page_size=64),
    ],
)
def test_the_reports_command_measures_the_same_spec_again(spec, tmp_path, monkeypatch):
    import shlex

    from harness.report.html import reproduce_command
    from harness.store import rows_frame

    if spec.model == "tiny":
        spec = dataclasses.replace(spec, model="Llama-3.1-8B", num_q_heads=32, num_kv_heads=8, head_dim=128)
    row = next(rows_frame([ok_row(spec)]).itertuples())
    command = reproduce_command(row)
    captured = []
    monkeypatch.setattr(harness.sweep, "run_with_progress", lambda tasks, *a, **k: captured.extend(tasks) or ([], 0))
    monkeypatch.setattr(harness.sweep, "summarize_file", lambda *a, **k: None)
    args = shlex.split(command)[2:] + ["--device", "cpu", "-o", str(tmp_path / "x.csv"), "--no-plots"]
    result = runner.invoke(run.app, args)
    assert result.exit_code == 0, result.output
    assert [t.spec for t in captured] == [spec] and captured[0].backend == row.backend


@pytest.mark.parametrize(
    "where",
    [
        "model == 'gpt-oss-120b' and tp == 2 and window.notna() and workload == 'decode'",  # a windowed tp shard
        "model == 'gpt-oss-20b' and window.isna() and workload == 'prefill'",  # full layers, sinks
        "model == 'Gemma-2-9B' and window.notna() and workload == 'append'",  # a window and soft-cap
        "model == 'Llama-3.1-70B' and tp == 8",
        "kv_dtype == 'fp8_e4m3' and workload == 'decode' and model == 'Qwen3-30B-A3B'",
        "kv_dtype == 'fp8_e4m3' and fp8_attention == True",
    ],
)
def test_the_reports_command_measures_a_committed_forms_row_again(where, tmp_path, monkeypatch):
    """A committed row of another layer kind, tp shard or FP8 form: its reproduce command plans that spec (the
    rows of one mix on a model's two layer kinds, or four tp shards, no longer share one command)."""
    import shlex

    from harness.report.html import reproduce_command
    from harness.store import SPEC_COLUMNS, load_frame

    results = Path(__file__).resolve().parent.parent / "results"
    frame = load_frame([results / "h100-forms.csv", results / "h100-fp8.csv"])
    row = next(frame.query(where, engine="python").itertuples())
    captured = []
    monkeypatch.setattr(harness.sweep, "run_with_progress", lambda tasks, *a, **k: captured.extend(tasks) or ([], 0))
    monkeypatch.setattr(harness.sweep, "summarize_file", lambda *a, **k: None)
    args = shlex.split(reproduce_command(row))[2:] + ["--device", "cpu", "-o", str(tmp_path / "x.csv"), "--no-plots"]
    result = runner.invoke(run.app, args)
    assert result.exit_code == 0, result.output
    wanted = {c: getattr(row, c) for c in SPEC_COLUMNS}
    planned = [{c: getattr(t.spec, c) for c in SPEC_COLUMNS} for t in captured]
    assert len(planned) == 1, [reproduce_command(row), planned]
    assert all(str(planned[0][c]) == str(v) or (pd.isna(v) and planned[0][c] is None) for c, v in wanted.items()), (
        reproduce_command(row), planned[0], wanted)  # fmt: skip


def serving_rows():
    """Two models on the decode-heavy mix (dense) and one ad-hoc mix with 16-token pages."""
    heavy = "q512s4k_32q1s1k_32q1s2k_32q1s4k_31q1s8k"
    llama = ExperimentSpec.from_mix(heavy, 32, 8, 128, model="Llama-3.1-8B")
    qwen = ExperimentSpec.from_mix(heavy, 64, 4, 128, model="Qwen3-235B-A22B")
    paged = ExperimentSpec.from_mix("q20_3q1s17", 8, 2, 64, model="Llama-3.1-8B", page_size=16)
    rows = []
    for spec, times in (
        (llama, {"a": 1.0, "b": 2.0, "triton": 1.25}),
        (qwen, {"a": 1.0, "b": 0.5}),
        (paged, {"triton": 0.3}),
    ):
        rows += [dataclasses.replace(ok_row(spec, p50_ms=t), backend=b) for b, t in times.items()]
    failed = make_row(qwen, "c", "", ENV, CONFIG, Status.ERROR, "boom")  # never a winner
    return rows + [failed]


def test_winners_rank_each_mix_and_model_apart():
    from harness.report.tables import winners

    table = winners(serving_rows()).set_index(["model", "mix", "kv"])
    llama = table.loc[("Llama-3.1-8B", "decode-heavy", "dense")]
    assert (llama.winner, llama.p50_ms, llama.runner_up, llama.runner_up_p50_ms) == ("a", 1.0, "triton", 1.25)
    assert llama.margin == pytest.approx(1.25) and llama.best_library_over_triton == pytest.approx(0.8)
    qwen = table.loc[("Qwen3-235B-A22B", "decode-heavy", "dense")]
    assert (qwen.winner, qwen.runner_up, qwen.backends) == ("b", "a", 2)  # the error row does not count
    assert qwen.margin == pytest.approx(2.0) and pd.isna(qwen.best_library_over_triton)  # no triton row
    alone = table.loc[("Llama-3.1-8B", "q20_3q1s17", "page 16")]
    assert alone.winner == "triton" and pd.isna(alone.runner_up) and pd.isna(alone.margin)
    assert list(table.index.get_level_values("model")) == ["Llama-3.1-8B", "Llama-3.1-8B", "Qwen3-235B-A22B"]


def test_a_mix_on_another_layer_kind_or_shard_is_a_mix_of_its_own():
    """Rows of one mix whose spec differs in form (a window, a soft-cap, a tp shard, an FP8 cache) never share a
    winners line or a heat-map cell: a windowed layer's fast row is not the full layer's winner."""
    from harness.report.plots import mix_ratios
    from harness.report.tables import winners

    heavy = "q512s4k_32q1s1k_32q1s2k_32q1s4k_31q1s8k"
    full = ExperimentSpec.from_mix(heavy, 64, 8, 64, model="gpt-oss-120b", sinks=True)
    window = dataclasses.replace(full, window=128)
    shard = dataclasses.replace(full, num_q_heads=16, num_kv_heads=2, tp=4)
    fp8 = dataclasses.replace(full, kv_dtype="fp8_e4m3")
    rows = [dataclasses.replace(ok_row(spec, p50_ms=t), backend=b)
            for spec, b, t in ((full, "a", 1.0), (full, "b", 1.5), (window, "b", 0.1), (shard, "a", 0.3),
                               (fp8, "b", 0.6))]  # fmt: skip
    table = winners(rows).set_index(["mix", "kv"])
    assert table.loc[("decode-heavy", "dense")].winner == "a"  # not b's windowed 0.1
    assert table.loc[("decode-heavy window=128", "dense")].winner == "b"
    assert table.loc[("decode-heavy tp=4", "dense")].winner == "a"
    assert table.loc[("decode-heavy fp8_e4m3", "dense")].winner == "b"
    ratios = mix_ratios(rows)[("NVIDIA H100 80GB HBM3", "gpt-oss-120b")]
    assert list(ratios.columns)[0] == "decode-heavy · dense" and ratios.loc["b", "decode-heavy · dense"] == 1.5
    assert ratios.loc["b", "decode-heavy window=128 · dense"] == 1.0 and len(ratios.columns) == 4


def test_winners_compare_the_reference_with_other_libraries_not_with_its_own_variants():
    """best_library_over_triton: the fastest row of another library over Triton's fastest, any variant of either;
    a Triton variant is Triton's, never a library (—, NaN, where no library ran)."""
    from harness.report.tables import winners

    spec = ExperimentSpec.from_mix("q20_3q1s17", 8, 2, 64, model="Llama-3.1-8B")
    times = {"triton": 0.5, "triton[splits=work]": 0.4, "flash-attn4": 0.8}
    rows = [dataclasses.replace(ok_row(spec, p50_ms=t), backend=b) for b, t in times.items()]
    line = winners(rows).iloc[0]
    assert line.winner == "triton[splits=work]" and line.best_library_over_triton == pytest.approx(2.0)
    alone = winners(rows[:2]).iloc[0]  # Triton and its variant only
    assert pd.isna(alone.best_library_over_triton)


def test_readme_winners_block_and_table_winners(tmp_path):
    path = tmp_path / "serving.csv"
    append_rows(path, serving_rows())
    readme = tmp_path / "README.md"
    readme.write_text(f"<!-- attnbench:table files={path.name} view=winners -->\n<!-- /attnbench:table -->\n")
    result = runner.invoke(run.app, ["table", "--readme", str(readme)])
    assert result.exit_code == 0, result.output
    text = readme.read_text()
    assert "| Llama-3.1-8B | decode-heavy | dense | **a** | 1.000 | triton (1.250) | 1.25× | 0.80 |" in text
    assert "| Qwen3-235B-A22B | decode-heavy | dense | **b** | 0.500 | a (1.000) | 2.00× | — |" in text
    shown = runner.invoke(run.app, ["table", str(path), "--winners", "--format", "markdown"])
    assert shown.exit_code == 0, shown.output
    assert "| Llama-3.1-8B | q20_3q1s17 | page 16 | **triton** | 0.300 | — | — | — |" in shown.output
    readme.write_text(f"<!-- attnbench:table files={path.name} view=nope -->\n<!-- /attnbench:table -->\n")
    bad = runner.invoke(run.app, ["table", "--readme", str(readme)])
    assert bad.exit_code == 2, bad.output
    assert "view='nope' is not valid; expected pivot, winners, best, verdict or steps" in bad.output


def test_table_winners_without_mix_rows_is_one_line(fixture_csv):
    result = runner.invoke(run.app, ["table", str(fixture_csv), "--winners"])
    assert result.exit_code == 2 and "--winners: no ok rows of a serving mix" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_plot_draws_the_serving_mixes_apart(tmp_path):
    from harness.report.plots import mix_ratios

    ratios = mix_ratios(serving_rows())
    assert sorted(ratios) == [("NVIDIA H100 80GB HBM3", "Llama-3.1-8B"), ("NVIDIA H100 80GB HBM3", "Qwen3-235B-A22B")]
    llama = ratios[("NVIDIA H100 80GB HBM3", "Llama-3.1-8B")]
    assert list(llama.columns) == ["decode-heavy · dense", "q20_3q1s17 · page 16"]
    assert llama.loc["triton", "decode-heavy · dense"] == pytest.approx(1.25)
    assert llama.loc["b", "decode-heavy · dense"] == pytest.approx(2.0)
    assert pd.isna(llama.loc["a", "q20_3q1s17 · page 16"])  # a did not run it
    qwen = ratios[("NVIDIA H100 80GB HBM3", "Qwen3-235B-A22B")]
    assert qwen.loc["a", "decode-heavy · dense"] == pytest.approx(2.0) and "c" not in qwen.index  # the error row
    path = tmp_path / "mix.csv"
    append_rows(path, serving_rows())
    result = runner.invoke(run.app, ["plot", str(path), "--out-dir", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "p" / "h100_serving_mixes.png").stat().st_size > 5_000


def test_more_mixes_than_a_heat_map_can_show_get_the_verdict_plot_instead(tmp_path, monkeypatch):
    """A model with more columns than MAX_MIX_COLUMNS (the 210 drawn batches of `generalization`) gets no heat
    map; the verdict plot of its libraries is drawn."""
    from harness.report import plots

    monkeypatch.setattr(plots, "MAX_MIX_COLUMNS", 2)  # Llama has 2 mix columns here, Qwen one
    assert plots.plot_mixes(serving_rows(), tmp_path) == [tmp_path / "h100_serving_mixes.png"]
    monkeypatch.setattr(plots, "MAX_MIX_COLUMNS", 1)
    path = tmp_path / "mix.csv"
    append_rows(path, serving_rows())
    result = runner.invoke(run.app, ["plot", str(path), "--out-dir", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    drawn = sorted(p.name for p in (tmp_path / "p").iterdir())
    assert "h100_serving_mixes.png" not in drawn and "h100_verdict.png" in drawn


def test_the_html_report_shows_who_wins_each_mix_and_a_heat_map_a_model(tmp_path):
    from harness.report.html import _figures, write_report
    from harness.store import as_frame

    frame = as_frame(serving_rows())
    text = write_report(frame, tmp_path / "r").read_text()
    winners_table = text.split('id="winners"')[1].split("</table>")[0]
    assert winners_table.count("<tr") == 1 + 3  # the header and one line a model × mix × KV layout
    assert "<td>triton</td>" in winners_table and "<td>1.25×</td>" in winners_table
    # the figures' titles are the page's headings (html-escaped, not plotly's JSON escaping of '·')
    headings = re.findall(r"<h3 [^>]*>Serving mixes · NVIDIA H100 80GB HBM3 · ([^:]*):", text)
    assert headings == ["Llama-3.1-8B", "Qwen3-235B-A22B"]  # a heat map a model
    titles = [f.layout.title.text or "" for f in _figures(frame.reset_index(drop=True))]
    assert text.count('class="plotly-graph-div"') == len(titles)  # every figure is on the page


def test_results_glob_passes_over_ceilings_and_spread_files(fixture_csv, tmp_path):
    from harness.calibrate import COLUMNS as CALIBRATION
    from harness.compare import SPREAD_COLUMNS

    ceilings, spread = tmp_path / "calibration-h100.csv", tmp_path / "spread.csv"
    ceilings.write_text(",".join(CALIBRATION) + "\n")
    spread.write_text(",".join(SPREAD_COLUMNS) + "\n")
    result = runner.invoke(run.app, ["report", str(fixture_csv), str(ceilings), str(spread), "-o", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert "calibration-h100.csv passed over: measured ceilings" in result.output
    assert "spread.csv passed over: spread" in result.output
    alone = runner.invoke(run.app, ["table", str(ceilings)])
    assert alone.exit_code == 2
    assert alone.output.strip().splitlines()[-1] == "error: files: none of them is a results CSV"
    foreign = tmp_path / "other.csv"
    foreign.write_text("a,b\n1,2\n")
    kept = runner.invoke(run.app, ["table", str(fixture_csv), str(foreign)])
    assert kept.exit_code == 0 and "other.csv skipped: not a results file (columns a, b)" in kept.output


def test_throughput_panels_draw_tflops_for_prefill_and_gbps_for_decode(tmp_path, monkeypatch):
    from harness.report import plots

    rows = [ok_row(tiny_spec(w, kv_len=kv), p95_ms=1.0, tflops=5.0) for w in ("prefill", "decode") for kv in (32, 64)]
    figures = []
    monkeypatch.setattr(plots, "_save", lambda plt, fig, path: figures.append(fig) or path)
    plots.plot(rows, tmp_path)  # default metrics: p50_ms, throughput
    (fig,) = figures
    labels = [[ax.get_ylabel() for ax in row] for row in (fig.axes[0:2], fig.axes[2:4])]
    assert labels == [["p50_ms", "p50_ms"], ["tflops", "gbps"]]
    lines = fig.axes[3].get_lines()
    assert [list(line.get_ydata()) for line in lines] == [[r.gbps for r in rows if r.workload == "decode"]]
    with pytest.raises(ValueError, match="metric: 'speed' is not valid; expected one of throughput, "):
        plots.plot(rows, tmp_path, ("speed",))


def test_the_report_draws_a_scaling_curve_a_model_and_batch(tmp_path):
    from harness.report.html import _scaling_figures
    from harness.store import as_frame

    rows = [ok_row(tiny_spec(w, kv_len=kv, batch=b), p95_ms=1.0, tflops=5.0)
            for w in ("prefill", "decode") for kv in (32, 64) for b in (1, 2)]  # fmt: skip
    rows.append(ok_row(tiny_spec("decode", kv_len=48, batch=3), p95_ms=1.0))  # one length: no curve
    figures = _scaling_figures(as_frame(rows))
    assert len(figures) == 2  # one GPU: latency, throughput
    latency, throughput = figures
    assert {t.name for t in latency.data} == {"torch-naive"}
    rows_of_panels = {a.text for a in latency.layout.annotations if a.text.startswith("group=")}
    assert rows_of_panels == {"group=tiny · B=1", "group=tiny · B=2"}
    assert {y for t in throughput.data for y in t.y} == {5.0, 456.7}  # prefill TFLOP/s, decode GB/s
    assert {y for t in latency.data for y in t.y} == {1.5}


def test_a_terminal_table_of_many_specs_turns_a_spec_a_line():
    """More than WIDE specs and more specs than backends (the `scaling` preset: 62 specs): a spec a line and a
    backend a column, every value where it belongs and the best of each spec in bold; few specs keep a backend
    a line."""
    from rich.console import Console

    from harness.report.tables import WIDE, Pivot, render_rich

    specs = [f"m prefill S{1024 * (i + 1)}" for i in range(WIDE + 3)]
    cells = {(b, s): f"{(i + 1) * k:.3f}" for i, s in enumerate(specs) for b, k in [("fast", 1), ("slow", 2)]}
    p = Pivot("p50_ms", ["fast", "slow"], specs, cells, {s: "fast" for s in specs})
    console = Console(width=200, record=True, color_system="truecolor")
    console.print(render_rich(p))
    text = console.export_text(clear=False)
    lines = [line for line in text.splitlines() if "S5120" in line]
    assert len(lines) == 1 and [c.strip() for c in lines[0].split("│")[2:4]] == ["5.000", "10.000"], lines
    assert "best per line" in text and "spec" in text
    styled = [line for line in console.export_text(styles=True).splitlines() if "S5120" in line][0]
    assert "\x1b[1;32m5.000" in styled and "\x1b[1;32m10.000" not in styled, styled
    few = Pivot("p50_ms", ["fast", "slow"], specs[:3], cells, {})
    console = Console(width=200, record=True)
    console.print(render_rich(few))
    text = console.export_text()
    assert "best per column" in text and "backend" in text


def test_the_report_flags_percent_of_peak_over_100_and_says_why(tmp_path):
    """A decode row above its measured read ceiling but under the datasheet asks for a calibration on this
    GPU; one above the datasheet asks for a look at the byte count; under 100% nothing is flagged."""
    from harness.report.html import above_ceiling, write_report
    from harness.store import as_frame

    base = dataclasses.replace(ok_row(tiny_spec("decode")), device="NVIDIA H200", ceiling_gbps=4478.0)
    recalibrate = dataclasses.replace(base, gbps=4601.0, pct_peak_gbps=102.7)
    impossible = dataclasses.replace(base, gbps=5000.0, pct_peak_gbps=111.7, backend="sdpa")
    fine = dataclasses.replace(base, gbps=4400.0, pct_peak_gbps=98.3, backend="triton")
    assert "above the measured ceiling of 4478" in above_ceiling(recalibrate)
    assert "run.py calibrate" in above_ceiling(recalibrate)
    assert "beats the datasheet's 4800" in above_ceiling(impossible)
    assert above_ceiling(fine) == ""
    text = write_report(as_frame([recalibrate, impossible, fine]), tmp_path / "r").read_text()
    # the page divides by the H200's best measured ceiling (4712 GB/s, results/calibration-h200.csv): the row at
    # 4601 GB/s is under it, the one at 5000 is not, and is marked, underlined, and never the best
    from harness.ceilings import rebase
    from harness.report.html import _table

    rows = _table(rebase(as_frame([recalibrate, impossible, fine])))
    assert rows.count('class="num over"') == 1 and "†" in rows
    assert "<dt>over 100% of peak</dt><dd>1</dd>" in text


def test_compare_refuses_a_spread_file_it_cannot_read(tmp_path):
    """--spread names a missing file, a text file, or a results CSV: one line each, exit 2 (the missing one was
    ignored, the text file gave pandas' tokenizer error, the CSV a line of its 62 columns)."""
    from pathlib import Path

    ROOT = Path(__file__).resolve().parent.parent  # noqa: N806
    path = str(ROOT / "results" / "h200.csv")
    for spread, words in [(tmp_path / "none.csv", "is not a file"), (ROOT / "README.md", "is not a spread table"),
                          (ROOT / "results" / "h200.csv", "is not a spread table")]:  # fmt: skip
        result = runner.invoke(run.app, ["compare", path, path, "--spread", str(spread)])
        assert result.exit_code == 2 and f"--spread: {spread} {words}" in " ".join(result.output.split())


def test_table_takes_one_view_at_a_time():
    """--verdict, --model-step and --winners together: one line naming the clash (the second was ignored)."""
    from pathlib import Path

    path = str(Path(__file__).resolve().parent.parent / "results" / "h200-serving.csv")
    for flags in (["--verdict", "--model-step"], ["--winners", "--verdict"]):
        result = runner.invoke(run.app, ["table", path, *flags])
        assert result.exit_code == 2 and "one view at a time" in result.output, result.output
