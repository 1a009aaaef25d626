"""Interleaved A/B of a backend under two environments (an adapter switch such as
ATTNBENCH_TRITON_MIXED_STREAMS=1 against =2), in one process, at one power state: the same spec is
measured A, B, B, A, A, B, … so a GPU that heats up or hits its power cap during the run weighs on both
sides alike. Separate sweeps do not give that: two sweeps minutes apart can differ by the card's state
alone (docs/perf-notes.md, the Triton schedule A/B). A development tool beside `run.py compare`.

    python3 -m tools.ab_env -b triton --preset serving --mix chunked-prefill,decode-heavy \\
        --a ATTNBENCH_TRITON_MIXED_STREAMS=1 --b ATTNBENCH_TRITON_MIXED_STREAMS=2 [--rounds 3] [--out DIR]

Every measurement is a full `Measurer.measure` (reference check, adaptive timing, telemetry). Prints,
a spec, the median p50 of each side, B ÷ A and the range of the per-round ratios, and writes
ab-env.csv with every measurement (side, round, p50, SM clock, power, backend_info)."""

from __future__ import annotations

import argparse
import os
import re
import statistics
from pathlib import Path

import pandas as pd

from frameworks import get_backend, load_all
from harness.env import collect
from harness.measure import MeasureConfig, Measurer
from harness.sweep import environment
from harness.timer import Repetition
from tools.narrow import preset_specs, spec_label

FIELDS = ["spec", "side", "round", "status", "p50_ms", "sm_clock_end_mhz", "power_end_w", "backend_info"]


def parse_env(text: str) -> dict[str, str]:
    """NAME=VALUE[,NAME2=VALUE2] -> {NAME: VALUE, …}; a one-line error naming the bad item."""
    out = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: --a/--b: {item!r} is not NAME=VALUE")
        out[key] = value
    return out


def order(rounds: int) -> list[tuple[int, str]]:
    """(round, side) in ABBA order: A B, B A, A B, … so neither side always runs first."""
    return [(r, side) for r in range(rounds) for side in (("a", "b") if r % 2 == 0 else ("b", "a"))]


def run_ab(specs, backend_name: str, env_a: dict, env_b: dict, rounds: int, measurer: Measurer) -> list[dict]:
    rows = []
    for spec in specs:
        for r, side in order(rounds):
            with environment(env_a if side == "a" else env_b):
                row = measurer.measure(spec, get_backend(backend_name))
            rows.append({
                "spec": spec_label(spec), "side": side, "round": r, "status": row.status.value, "p50_ms": row.p50_ms,
                "sm_clock_end_mhz": row.sm_clock_end_mhz, "power_end_w": row.power_end_w,
                "backend_info": row.backend_info,
            })  # fmt: skip
    return rows


# a Gluon kernel's backend_info names the kernel first (gluon-pp;BLOCK_M=…,warps=4+4+producer,…)
CONFIG = re.compile(r"(?:gluon[\w-]*;)?(?:BLOCK_[A-Z]=\d+,)+warps=[\w+]+,stages=\d+(?:,maxnreg=\d+)?")


def configs(backend_info: str) -> str:
    """The kernel configurations a row ran (tiles, warps, stages, register cap; Triton's backend_info), in
    launch order, e.g. 'BLOCK_M=128,BLOCK_N=64,warps=8,stages=2,maxnreg=128 + BLOCK_N=64,warps=4,stages=3', or a
    Gluon kernel's with its name: 'gluon-pp;BLOCK_M=128,BLOCK_N=128,warps=4+4+producer,stages=2'."""
    return " + ".join(CONFIG.findall(backend_info if isinstance(backend_info, str) else ""))


def summarise(rows: list[dict]) -> pd.DataFrame:
    """A line a spec: median p50 of each side, B ÷ A of the medians, and the per-round ratios' range; and
    `configs`: "same" where both sides ran the same kernel configurations, else each side's. A switch that
    also changes the autotuner's pick measures the pick too (docs/perf-notes.md, the tiles A/B): pin the
    config (ATTNBENCH_TRITON_VARLEN_CONFIG) to measure the switch alone."""
    frame = pd.DataFrame(rows, columns=FIELDS)
    ok = frame[frame["status"] == "ok"]
    out = []
    for spec, group in ok.groupby("spec", sort=False):
        by = group.pivot_table(index="round", columns="side", values="p50_ms")
        if not {"a", "b"} <= set(by.columns):
            continue
        ratios = (by["b"] / by["a"]).dropna()
        out.append({
            "spec": spec, "a_ms": statistics.median(by["a"].dropna()), "b_ms": statistics.median(by["b"].dropna()),
            "b_over_a": statistics.median(by["b"].dropna()) / statistics.median(by["a"].dropna()),
            "round_ratio_min": ratios.min(), "round_ratio_max": ratios.max(), "configs": _config_pair(group),
        })  # fmt: skip
    return pd.DataFrame(out)


def _config_pair(group: pd.DataFrame) -> str:
    seen = {side: sorted({configs(info) for info in g["backend_info"]}) for side, g in group.groupby("side")}
    a, b = (" / ".join(seen.get(side, [])) for side in ("a", "b"))
    return "same" if a == b else f"a: {a} | b: {b}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-b", "--backend", required=True)
    ap.add_argument("--a", required=True, help="environment of side A: NAME=VALUE[,NAME=VALUE]")
    ap.add_argument("--b", required=True, help="environment of side B")
    ap.add_argument("--preset", default="serving")
    ap.add_argument("-m", "--model", default="")
    ap.add_argument("--mix", default="")
    ap.add_argument("-w", "--workload", default="")
    ap.add_argument("--page-size", default="", help="dense,16,…; default: the preset's")
    ap.add_argument("--batch", default="", help="batch sizes, e.g. 1,16; default: the preset's")
    ap.add_argument("--seq-len", default="", help="sequence lengths, e.g. 131072; default: the preset's")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-seconds", type=float, default=0.5)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    a = ap.parse_args()
    env_a, env_b = parse_env(a.a), parse_env(a.b)
    load_all()
    import torch

    device = torch.device(a.device)
    config = MeasureConfig(device=a.device, repetition=Repetition(max_seconds=a.max_seconds), run_id="ab-env")
    measurer = Measurer(config, collect(device, "ab-env"))
    specs = preset_specs(a.preset, a.model, a.mix, a.workload, a.page_size, a.batch, a.seq_len)
    if not specs:
        raise SystemExit("error: no spec matches --preset/--model/--mix/--page-size")
    rows = run_ab(specs, a.backend, env_a, env_b, a.rounds, measurer)
    Path(a.out).mkdir(parents=True, exist_ok=True)  # a new folder for this run is fine
    pd.DataFrame(rows, columns=FIELDS).to_csv(Path(a.out) / "ab-env.csv", index=False)
    table = summarise(rows)
    print(f"A = {a.a}   B = {a.b}   ({a.backend}, {a.rounds} rounds, ABBA order)")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))


if __name__ == "__main__":
    main()
