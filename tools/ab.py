"""Interleaved A/B of two backend variants (e.g. `triton[mixed_streams=1]` against `triton`, the defaults),
in one process, at one power state: the same spec is measured A, B, B, A, A, B, … so a GPU that heats up or
hits its power cap during the run weighs on both sides alike. Separate sweeps do not give that: two sweeps
minutes apart can differ by the card's state alone (docs/perf-notes.md, the Triton schedule A/B). A
development tool beside `run.py compare`.

    python3 -m tools.ab --a 'triton[mixed_streams=1]' --b triton --preset serving \\
        --mix chunked-prefill,decode-heavy [--rounds 3] [--out DIR]

Each side is a backend as `run.py sweep -b` names one: NAME or NAME[key=value,...] (`run.py list` shows the
variant keys); the two may also be two backends. Every measurement is a full `Measurer.measure` (reference
check, adaptive timing, telemetry). Prints, a spec, the median p50 of each side, B ÷ A and the range of the
per-round ratios, and writes ab.csv with every measurement (side, round, backend, p50, SM clock, power,
backend_info)."""

from __future__ import annotations

import argparse
import os
import statistics
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from frameworks import Backend, get_backend, info_dict, label, load_all
from harness.env import collect
from harness.measure import MeasureConfig, Measurer
from harness.timer import Repetition
from tools.narrow import preset_specs, spec_label

FIELDS = ["spec", "side", "round", "backend", "status", "p50_ms", "sm_clock_end_mhz", "power_end_w", "backend_info"]


def side_backend(text: str, option: str = "--a/--b") -> Backend:
    """The backend (set to its variant) a side names; a one-line error naming the option and what is allowed."""
    try:
        return get_backend(text)
    except ValueError as error:  # VariantError too: a bad key or value, with the allowed ones
        raise SystemExit(f"error: {option}: {error}") from None


def order(rounds: int) -> list[tuple[int, str]]:
    """(round, side) in ABBA order: A B, B A, A B, … so neither side always runs first."""
    return [(r, side) for r in range(rounds) for side in (("a", "b") if r % 2 == 0 else ("b", "a"))]


def run_ab(specs, backend_a: str, backend_b: str, rounds: int, measurer: Measurer) -> list[dict]:
    """Every spec measured under each side's backend variant, in ABBA order; a fresh backend each measurement
    (as a sweep task makes one), so nothing one side prepared carries over to the other."""
    texts = {"a": backend_a, "b": backend_b}
    for side, text in texts.items():
        side_backend(text, f"--{side}")  # a bad variant stops the run before anything is measured
    rows = []
    for spec in specs:
        for r, side in order(rounds):
            backend = side_backend(texts[side], f"--{side}")
            row = measurer.measure(spec, backend)
            rows.append({
                "spec": spec_label(spec), "side": side, "round": r, "backend": label(backend.name, backend.variant),
                "status": row.status.value, "p50_ms": row.p50_ms, "sm_clock_end_mhz": row.sm_clock_end_mhz,
                "power_end_w": row.power_end_w, "backend_info": row.backend_info,
            })  # fmt: skip
    return rows


def _launch_config(launch: Mapping) -> str:
    """One launch's configuration: its tiles and other constexpr choices (the upper-case keys: BLOCK_M, BLOCK_N,
    QK_AHEAD, …), warps, stages and register cap, e.g. 'BLOCK_M=128,BLOCK_N=64,warps=8,stages=2,maxnreg=128';
    a Gluon kernel's with its name first ('gluon-pp;BLOCK_M=128,…'); '' for a launch that says none."""
    if "warps" not in launch:
        return ""
    parts = [f"{k}={v}" for k, v in launch.items() if k.isupper()]
    parts += [f"{k}={launch[k]}" for k in ("warps", "stages", "maxnreg") if k in launch]
    kernel = str(launch.get("kernel", ""))
    return (f"{kernel};" if kernel.startswith("gluon") else "") + ",".join(parts)


def configs(backend_info: Mapping | str | None) -> str:
    """The kernel configurations a row ran (Triton's backend_info: a JSON object, or a dict), in launch order
    (a mixed batch's `launches`), joined by ' + ': e.g. 'BLOCK_M=128,BLOCK_N=64,warps=8,stages=2,maxnreg=128 +
    BLOCK_N=64,warps=4,stages=3', or a Gluon kernel's with its name: 'gluon-pp;BLOCK_M=128,BLOCK_N=128,…'."""
    info = info_dict(backend_info if isinstance(backend_info, (Mapping, str)) else None)
    launches = info.get("launches", [info])
    return " + ".join(filter(None, (_launch_config(launch) for launch in launches if isinstance(launch, Mapping))))


def summarise(rows: list[dict]) -> pd.DataFrame:
    """A line a spec: median p50 of each side, B ÷ A of the medians, and the per-round ratios' range; and
    `configs`: "same" where both sides ran the same kernel configurations, else each side's. A variant that
    also changes the autotuner's pick measures the pick too (docs/perf-notes.md, the tiles A/B): pin the
    config (triton[varlen_config=<name>] on both sides) to measure the variant alone."""
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
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", required=True, help="side A: a backend variant, NAME or NAME[key=value,...]")
    ap.add_argument("--b", required=True, help="side B: a backend variant, e.g. the defaults, NAME")
    ap.add_argument("--preset", default="serving")
    ap.add_argument("-m", "--model", default="")
    ap.add_argument("--mix", default="")
    ap.add_argument("-w", "--workload", default="")
    ap.add_argument("--page-size", default="", help="dense,16,…; default: the preset's")
    ap.add_argument("--batch", default="", help="batch sizes, e.g. 1,16; default: the preset's")
    ap.add_argument("--seq-len", default="", help="sequence lengths, e.g. 131072; default: the preset's")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-seconds", type=float, default=0.5)
    ap.add_argument("--l2-flush", default="zero", help="zero or read, as run.py sweep --l2-flush")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    a = ap.parse_args()
    load_all()
    sides = {side: side_backend(text, f"--{side}") for side, text in (("a", a.a), ("b", a.b))}
    import torch

    from harness.timer import check_l2_flush

    try:
        flush = check_l2_flush(a.l2_flush)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    device = torch.device(a.device)
    config = MeasureConfig(device=a.device, repetition=Repetition(max_seconds=a.max_seconds), run_id="ab",
                           l2_flush=flush)  # fmt: skip
    measurer = Measurer(config, collect(device, "ab"))
    specs = preset_specs(a.preset, a.model, a.mix, a.workload, a.page_size, a.batch, a.seq_len)
    if not specs:
        raise SystemExit("error: no spec matches --preset/--model/--mix/--page-size")
    rows = run_ab(specs, a.a, a.b, a.rounds, measurer)
    Path(a.out).mkdir(parents=True, exist_ok=True)  # a new folder for this run is fine
    pd.DataFrame(rows, columns=FIELDS).to_csv(Path(a.out) / "ab.csv", index=False)
    table = summarise(rows)
    names = {side: label(b.name, b.variant) for side, b in sides.items()}
    print(f"A = {names['a']}   B = {names['b']}   ({a.rounds} rounds, ABBA order)")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))


if __name__ == "__main__":
    main()
