"""Percent of peak against ceilings a kernel cannot beat. A row carries the ceilings of the calibration its
sweep read (that day's copy, later the read stream), and a kernel can read faster than a copy: the H200's
torch.compile decode rows stood at 103–106% of a 2 GiB copy. Tables and the report therefore divide by the
best ceiling measured on that GPU kind — the highest of every calibration in results/calibration-<gpu>.csv
(the tuned read-only kernel's, `harness.calibrate`) and of every row's own — and a row still above 100% is
marked `over_ceiling` and left out of "best" (its byte or FLOP count, or its timing, needs a look)."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from .env import REPO_ROOT, device_slug


def calibrated(device: str, folder: Path | str | None = None) -> tuple[float | None, dict[str, float]]:
    """(the best bandwidth in GB/s, dtype -> the best matmul TFLOP/s) over every calibration of `device` in
    FOLDER/calibration-<slug>.csv (default the repository's results/); (None, {}) without one."""
    path = Path(folder or REPO_ROOT / "results") / f"calibration-{device_slug(device)}.csv"
    if not path.exists():
        return None, {}
    bandwidth, matmul = None, {}
    with path.open(newline="") as handle:
        for raw in csv.DictReader(handle):
            if raw.get("device") != device:
                continue
            for value in (raw.get("copy_gbps"), raw.get("read_gbps")):
                if value:
                    bandwidth = max(bandwidth or 0.0, float(value))
            if raw.get("matmul_tflops"):
                matmul[raw["dtype"]] = max(matmul.get(raw["dtype"], 0.0), float(raw["matmul_tflops"]))
    return bandwidth, matmul


def rebase(frame: pd.DataFrame, folder: Path | str | None = None) -> pd.DataFrame:
    """The frame with `ceiling_gbps`, `ceiling_tflops` raised to the best measured on each GPU kind (and,
    for TFLOP/s, dtype), `pct_peak_*` recomputed from them, and `over_ceiling`: True where a row still stands
    above 100% of either."""
    if frame.empty:
        return frame.assign(over_ceiling=pd.Series(dtype=bool))
    out = frame.copy()
    for device in out["device"].unique():
        mine = out["device"] == device
        bandwidth, matmul = calibrated(device, folder)
        best_bw = max(v for v in (out.loc[mine, "ceiling_gbps"].max(), bandwidth or 0.0) if pd.notna(v))
        if best_bw > 0:
            out.loc[mine, "ceiling_gbps"] = best_bw
        for dtype in out.loc[mine, "dtype"].unique():
            rows = mine & (out["dtype"] == dtype)
            best = max(v for v in (out.loc[rows, "ceiling_tflops"].max(), matmul.get(dtype, 0.0)) if pd.notna(v))
            if best > 0:
                out.loc[rows, "ceiling_tflops"] = best
    has = out["gbps"].notna() & out["ceiling_gbps"].notna()
    out.loc[has, "pct_peak_gbps"] = 100 * out.loc[has, "gbps"] / out.loc[has, "ceiling_gbps"]
    has = out["tflops"].notna() & out["ceiling_tflops"].notna()
    out.loc[has, "pct_peak_tflops"] = 100 * out.loc[has, "tflops"] / out.loc[has, "ceiling_tflops"]
    over = (out["pct_peak_gbps"].fillna(0) > 100) | (out["pct_peak_tflops"].fillna(0) > 100)
    return out.assign(over_ceiling=over.astype(bool))
