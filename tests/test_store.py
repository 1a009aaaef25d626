import dataclasses

import pytest

from harness.env import Environment
from harness.measure import MeasureConfig, make_row
from harness.store import COLUMNS, ResultRow, Status, StoreError, append_rows, done_keys, latest, load_rows

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
