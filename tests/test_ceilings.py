"""Ceilings a kernel cannot beat: the tuned read-only stream of the calibration, percent of peak against the
GPU's best measured ceiling, and rows still above 100% marked and never the best."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from harness import calibrate
from harness.ceilings import rebase
from harness.report.tables import OVER, pivot
from harness.store import as_frame, labelled, load_frame

from .helpers import tiny_spec
from .test_store import ok_row

ROOT = Path(__file__).resolve().parent.parent


def test_the_reader_is_tuned_over_the_grid_and_shapes_a_gpu_cannot_run_are_passed_over():
    times = {shape: 1.0 + i / 100 for i, shape in enumerate(calibrate.READER_GRID)}
    fastest = calibrate.READER_GRID[7]
    times[fastest] = 0.5

    def time_shape(shape):
        if shape == calibrate.READER_GRID[0]:
            raise RuntimeError("out of resources: shared memory")
        return times[shape]

    chosen = calibrate.tune_reader(time_shape)
    assert chosen[0] == fastest and len(chosen) == 3 and calibrate.READER_GRID[0] not in chosen
    assert set(calibrate.READER_SHAPES) <= set(calibrate.READER_GRID)  # the shapes tried before tuning are in it


def test_the_calibration_names_its_reader_and_older_files_still_load(tmp_path):
    from harness.env import collect

    rows = calibrate.measure(torch.device("cpu"), collect(torch.device("cpu"), "test"), timestamp="t")
    assert {r.read_kernel for r in rows} == {"torch-sum"} and rows[0].read_gbps > 0
    path = tmp_path / "calibration-cpu.csv"
    calibrate.save(rows, path)
    assert calibrate.load(path) == rows
    old = tmp_path / "old.csv"  # a file from before read_kernel
    lines = path.read_text().splitlines()
    old.write_text("\n".join(line.rsplit(",", 1)[0] for line in lines) + "\n")
    assert [r.read_kernel for r in calibrate.load(old)] == ["", "", ""]


def test_percent_of_peak_is_against_the_best_ceiling_and_rows_above_it_are_never_best(tmp_path):
    (tmp_path / "calibration-h200.csv").write_text(
        ",".join(calibrate.COLUMNS) + "\n"
        + "NVIDIA H200,bf16,800,4250,8192,2147483648,t,d,c,t,g,h,4700,triton:4096/64/8/4\n"
    )  # fmt: skip
    base = dataclasses.replace(ok_row(tiny_spec("decode")), device="NVIDIA H200", ceiling_gbps=4250.0)
    over_copy = dataclasses.replace(base, gbps=4500.0, pct_peak_gbps=105.9, p50_ms=1.0, backend="torch-compile")
    impossible = dataclasses.replace(base, gbps=5000.0, pct_peak_gbps=117.6, p50_ms=0.9, backend="sdpa")
    frame = rebase(as_frame([over_copy, impossible]), tmp_path)
    assert list(frame["ceiling_gbps"]) == [4700.0, 4700.0]  # the tuned reader's, not that day's copy
    assert round(frame["pct_peak_gbps"].iloc[0], 1) == 95.7
    assert list(frame["over_ceiling"]) == [False, True]
    p = pivot([over_copy, impossible], "p50_ms")
    (col,) = p.col_labels
    assert p.best[col] == "torch-compile"  # the faster row stands above every ceiling: not the best
    assert p.cells[("sdpa", col)].endswith(OVER)


def test_no_committed_row_stands_above_its_gpus_best_ceiling_unmarked():
    """Every row of the committed tables is at most 100% of its GPU's best measured ceiling, or marked."""
    files = [p for p in sorted((ROOT / "results").glob("*.csv")) if not p.name.startswith(("calibration", "spread"))]
    frame = rebase(labelled(load_frame(files)))
    over = frame[frame["over_ceiling"]]
    assert len(over) <= 3, over[["file", "device", "backend", "gbps", "ceiling_gbps"]]
    peak = frame.loc[~frame["over_ceiling"], ["pct_peak_gbps", "pct_peak_tflops"]].max()
    assert (peak.fillna(0) <= 100).all()
