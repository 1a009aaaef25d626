import csv
import dataclasses
import re

import pytest

from harness.env import Environment
from harness.measure import MeasureConfig, make_row
from harness.store import (
    COLUMNS,
    ResultRow,
    Status,
    StoreError,
    _csv_line,
    append_rows,
    done_keys,
    latest,
    load_frame,
    load_many,
    load_rows,
    read_frame,
)

from .helpers import tiny_spec

ENV = Environment("NVIDIA H100 80GB HBM3", "h100", "580.1", "13.0", "2.11.0", "3.12", "abc", "host")
CONFIG = MeasureConfig(device="cpu", run_id="run1")


def ok_row(spec=None, **kw):
    measured = dict(
        p50_ms=1.5, p95_ms=1.75, mean_ms=1.6, std_ms=0.1, min_ms=1.4, max_ms=2.0, n_iters=10, setup_ms=12.0,
        p50_ci_low_ms=1.45, p50_ci_high_ms=1.55,
        tflops=123.4, gbps=456.7, tokens_per_s=1e6, peak_mem_gib=None, rel_err=1e-3, max_abs_err=2e-3, checked_batch=2,
    )  # fmt: skip
    measured.update(kw)
    return make_row(spec or tiny_spec("decode"), "torch-naive", "2.11.0", ENV, CONFIG, Status.OK, **measured)


def test_columns_are_the_dataclass_fields():
    assert COLUMNS == tuple(f.name for f in dataclasses.fields(ResultRow))
    for needed in ("device", "driver", "cuda", "torch", "backend_version", "git_commit", "timing_mode", "run_id"):
        assert needed in COLUMNS


def test_round_trip_keeps_every_value(tmp_path):
    path = tmp_path / "r.csv"
    rows = [
        ok_row(),
        ok_row(tiny_spec("append", page_size=16), tflops=0.1 + 0.2),
        make_row(
            tiny_spec("prefill"), "sdpa-flash", "", ENV, CONFIG, Status.UNSUPPORTED, "head dim 256, needs a, b; c"
        ),
        make_row(
            tiny_spec("prefill"),
            "x",
            "1",
            ENV,
            CONFIG,
            Status.INCORRECT,
            "relative error 0.3",
            rel_err=0.3,
            max_abs_err=1.0,
            checked_batch=1,
        ),  # fmt: skip
    ]
    append_rows(path, rows[:2])
    append_rows(path, rows[2:])
    assert load_rows(path) == rows


def test_an_output_with_nan_is_stored_without_an_error_value(tmp_path):
    """The check of an output holding NaN gives rel_err nan: the row says incorrect and leaves the errors
    empty, so the file stays loadable (a nan cell is refused on load)."""
    path = tmp_path / "r.csv"
    nan = float("nan")
    row = make_row(
        tiny_spec("decode"), "x", "", ENV, CONFIG, Status.INCORRECT, "output has NaN or Inf",
        rel_err=nan, max_abs_err=nan, checked_batch=1,
    )  # fmt: skip
    assert row.rel_err is None and row.max_abs_err is None
    append_rows(path, [row])
    assert load_rows(path) == [row]


def test_status_invariants():
    with pytest.raises(ValueError, match="carries no timing"):
        make_row(tiny_spec("decode"), "x", "", ENV, CONFIG, Status.ERROR, "boom", p50_ms=1.0)
    with pytest.raises(ValueError, match="needs a reason"):
        make_row(tiny_spec("decode"), "x", "", ENV, CONFIG, Status.OOM, "")
    with pytest.raises(ValueError, match="ok row needs"):
        make_row(tiny_spec("decode"), "x", "", ENV, CONFIG, Status.OK, p50_ms=1.0)


def test_foreign_file_is_refused(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("name,score\nalice,3\n")
    with pytest.raises(StoreError, match="not an attnbench results file.*missing columns: run_id"):
        load_rows(path)
    with pytest.raises(StoreError, match="not an attnbench results file"):
        append_rows(path, [ok_row()])  # never appends to a file of another schema
    assert path.read_text() == "name,score\nalice,3\n"


def test_malformed_cells_name_line_and_column(tmp_path):
    path = tmp_path / "r.csv"
    append_rows(path, [ok_row(), ok_row(tiny_spec("append"))])
    lines = path.read_text().splitlines()
    broken = lines[2].replace(",1.5,", ",fast,", 1)
    path.write_text("\n".join([lines[0], lines[1], broken]) + "\n")
    with pytest.raises(StoreError, match=r"line 3: column 'p50_ms' has 'fast', not a float"):
        load_rows(path)
    path.write_text("\n".join([lines[0], lines[1].replace(",ok,", ",great,", 1)]) + "\n")
    with pytest.raises(StoreError, match=r"line 2: column 'status' has 'great'.*expected one of ok, oom"):
        load_rows(path)
    path.write_text("\n".join([lines[0], lines[1] + ",extra"]) + "\n")
    with pytest.raises(StoreError, match="line 2: .* cells, expected"):
        load_rows(path)
    path.write_text("")
    with pytest.raises(StoreError, match="empty"):
        load_rows(path)


def test_done_keys_and_latest(tmp_path):
    path = tmp_path / "r.csv"
    old = dataclasses.replace(ok_row(), timestamp="2026-01-01T00:00:00+00:00", p50_ms=9.0)
    new = dataclasses.replace(ok_row(), timestamp="2026-02-01T00:00:00+00:00")
    append_rows(path, [new, old])
    assert done_keys(path) == {new.task_key}
    assert done_keys(tmp_path / "absent.csv") == set()
    assert latest(load_rows(path)) == [new]


def _written(tmp_path, rows=None):
    path = tmp_path / "r.csv"
    append_rows(path, rows or [ok_row(tiny_spec("decode")), ok_row(tiny_spec("prefill"))])
    return path


def test_a_torn_last_row_is_refused_before_appending_and_repair_keeps_every_whole_row(tmp_path):
    from typer.testing import CliRunner

    import run

    path = _written(tmp_path)
    whole = path.read_bytes()
    path.write_bytes(whole + whole.splitlines(keepends=True)[-1][:40])  # a writer killed mid-row
    with pytest.raises(StoreError, match=r"r.csv, line 4: the last row is torn.*run.py repair"):
        append_rows(path, [ok_row(tiny_spec("append"))])
    runner = CliRunner()
    refused = runner.invoke(run.app, ["sweep", "-b", "torch-naive", "-o", str(path), "--no-plots"])
    assert refused.exit_code == 2 and "line 4: the last row is torn" in " ".join(refused.output.split())
    fixed = runner.invoke(run.app, ["repair", str(path)])
    assert fixed.exit_code == 0 and "2 whole rows kept" in " ".join(fixed.output.split())
    assert path.read_bytes() == whole and len(load_rows(path)) == 2
    assert (tmp_path / "r.csv.torn").read_bytes() == whole.splitlines(keepends=True)[-1][:40] + b"\n"
    append_rows(path, [ok_row(tiny_spec("append"))])
    assert len(load_rows(path)) == 3


@pytest.mark.parametrize(
    "column, value, message",
    [
        ("p50_ms", "nan", "line 2: column 'p50_ms' is nan"),
        ("p50_ms", "inf", "line 2: a latency or metric is nan or inf"),
        ("p50_ms", "-1.0", "line 2: a latency is zero or negative"),
        ("p50_ms", "fast", "line 2: column 'p50_ms' has 'fast', not a float"),
        ("throttled", "maybe", "line 2: column 'throttled' has 'maybe', not a bool"),
    ],
)
def test_values_that_cannot_be_true_are_refused_with_file_and_line(tmp_path, column, value, message):
    path = _written(tmp_path)
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[1].split(",")
    cells[header.index(column)] = value
    path.write_text("\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n")
    with pytest.raises(StoreError, match=re.escape(f"{path}, {message}")):
        load_rows(path)


def test_a_failed_row_with_metrics_is_refused(tmp_path):
    failed = make_row(tiny_spec("decode"), "x", "", ENV, CONFIG, Status.ERROR, "boom")
    path = _written(tmp_path, [failed])
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[1].split(",")
    cells[header.index("tflops")] = "12.5"
    path.write_text("\n".join([lines[0], ",".join(cells)]) + "\n")
    with pytest.raises(StoreError, match="line 2: a error row carries no timing or metrics, got tflops"):
        load_rows(path)


def test_the_pandas_pivot_reproduces_the_committed_readme_tables():
    """The dated tables (moved from the README to docs/results-history.md) render the same text from the same
    committed CSVs, as `run.py readme` writes them."""
    from pathlib import Path

    from harness.report.readme import BLOCK, rewrite_readme
    from harness.store import labelled

    history = Path(__file__).resolve().parent.parent / "docs" / "results-history.md"
    text = history.read_text()
    assert len(BLOCK.findall(text)) >= 8
    assert rewrite_readme(text, history.parent, lambda paths: labelled(load_many(paths)))[0] == text


def test_frames_load_typed_and_latest_keeps_the_newest_per_device_and_task(tmp_path):
    import dataclasses

    first = ok_row(tiny_spec("decode"), p50_ms=2.0)
    again = dataclasses.replace(first, timestamp="2099-01-01T00:00:00+00:00", p50_ms=1.0)
    other_gpu = dataclasses.replace(first, device="NVIDIA H200")
    path = _written(tmp_path, [first, again, other_gpu])
    frame = load_frame([path])
    assert str(frame["p50_ms"].dtype) == "float64" and str(frame["n_iters"].dtype) == "Int64"
    assert list(frame["line"]) == [2, 3, 4] and set(frame["file"]) == {str(path)}
    newest = latest(frame)
    assert sorted(newest["p50_ms"]) == [1.0, 2.0] and len(newest) == 2


def test_rows_name_their_gpu_and_files_from_before_the_column_load_and_upgrade(tmp_path):
    """gpu_uuid tells the GPUs of one host apart (a --gpus all sweep). A file written before the column
    existed loads with it empty, and the first append rewrites it in this schema, every old value kept."""
    env = dataclasses.replace(ENV, gpu_uuid="GPU-a3726b80-c31b-022a-e983-4cf9f655a42d")
    new = make_row(tiny_spec("decode"), "torch-naive", "2.11.0", env, CONFIG, Status.UNSUPPORTED, "not here")
    assert new.gpu_uuid == env.gpu_uuid
    old_rows = [ok_row(), ok_row(tiny_spec("append", page_size=16))]
    path = tmp_path / "old.csv"
    older = [c for c in COLUMNS if c not in ("gpu_uuid", "variant")]
    keep = [COLUMNS.index(c) for c in older]
    with path.open("w", newline="") as handle:  # an earlier schema: every column but gpu_uuid and variant
        writer = csv.writer(handle)
        writer.writerow(older)
        for row in old_rows:
            cells = next(csv.reader([_csv_line(row)]))
            writer.writerow([cells[i] for i in keep])
    assert load_rows(path) == old_rows and read_frame(path)["gpu_uuid"].eq("").all()
    assert read_frame(path)["variant"].eq("").all()
    append_rows(path, [new])
    assert path.read_text().splitlines()[0] == ",".join(COLUMNS)
    assert load_rows(path) == [*old_rows, new]
