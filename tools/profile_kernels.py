"""Which GPU kernels one call of a backend runs, and how long each takes (the PyTorch profiler's CUDA
activity), for specs of the sweep's presets: the evidence docs/perf-notes.md cites for what limits a
kernel. A development tool, not a benchmark (published numbers come from `run.py sweep`).

    python3 -m tools.profile_kernels --preset serving --mix prefill-heavy -m Llama-3.1-8B \\
        -b 'triton,triton[mixed_streams=1],flash-attn3' --page-size dense,16 [--calls 20] [--out DIR]

Prints a table a (spec, backend): each kernel's launches a call and its mean µs, the sum of the
kernels (GPU busy time) and the wall time of a call between CUDA events; writes profile-kernels.csv. A backend
is named as `run.py sweep -b` names it: NAME or NAME[key=value,...] (a variant; `run.py list` shows the keys)."""

from __future__ import annotations

import argparse
import os
from collections import defaultdict
from pathlib import Path

import pandas as pd
import torch

from frameworks import get_backend, info_text, label, load_all
from harness.inputs import make_inputs
from harness.options import split_items
from tools.narrow import preset_specs, spec_label

FIELDS = ["spec", "backend", "backend_info", "kernel", "launches_per_call", "us_per_call", "share", "call_us"]


def profile_call(fn, calls: int) -> tuple[dict[str, list[float]], float]:
    """Per kernel name, the CUDA µs of each launch over `calls` calls; and the mean µs a call by events."""
    from torch.profiler import ProfilerActivity, profile

    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(calls):
        fn()
    end.record()
    torch.cuda.synchronize()
    call_us = start.elapsed_time(end) * 1e3 / calls
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
    times: dict[str, list[float]] = defaultdict(list)
    for e in prof.events():
        if str(getattr(e, "device_type", "")).endswith("CUDA"):
            times[e.name].append(e.device_time if hasattr(e, "device_time") else e.cuda_time)
    return times, call_us


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="serving")
    ap.add_argument("-m", "--model", default="Llama-3.1-8B")
    ap.add_argument("--mix", default="")
    ap.add_argument("-w", "--workload", default="")
    ap.add_argument("-b", "--backends", default="triton,flash-attn3", help="comma-separated, variants allowed")
    ap.add_argument("--page-size", default="", help="dense,16,…; default: the preset's")
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--plain", type=int, default=0, help="only call each backend this many times (under ncu)")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    a = ap.parse_args()
    load_all()
    device = torch.device("cuda")
    rows = []
    for spec in preset_specs(a.preset, a.model, a.mix, a.workload, a.page_size):
        inputs = make_inputs(spec, device)
        shape = spec_label(spec)
        for text in filter(None, split_items(a.backends)):
            backend = get_backend(text)  # a bad variant stops the tool, naming the allowed values
            name = label(backend.name, backend.variant)
            why = backend.availability(device) or backend.supports(spec)
            if why:
                print(f"{shape:48s} {name:14s} skipped: {why}", flush=True)
                continue
            try:
                fn = backend.prepare(spec, inputs)
                if a.plain:
                    for _ in range(a.plain):
                        fn()
                    torch.cuda.synchronize()
                    print(f"{shape:48s} {name:14s} called {a.plain} times  {info_text(backend.run_info())}", flush=True)
                    continue
                times, call_us = profile_call(fn, a.calls)
            except Exception as exc:  # noqa: BLE001  (one backend that fails is reported, not fatal)
                print(f"{shape:48s} {name:14s} failed: {type(exc).__name__}: {str(exc)[:120]}", flush=True)
                continue
            busy = sum(sum(v) for v in times.values()) / a.calls
            info = info_text(backend.run_info())  # as a row's backend_info: a compact JSON object
            print(f"{shape:48s} {name:14s} call {call_us:9.1f} µs, kernels {busy:9.1f} µs  {info}", flush=True)
            for kernel, ts in sorted(times.items(), key=lambda kv: -sum(kv[1])):
                us = sum(ts) / a.calls
                rows.append({
                    "spec": shape, "backend": name, "backend_info": info, "kernel": kernel[:160],
                    "launches_per_call": f"{len(ts) / a.calls:g}", "us_per_call": f"{us:.1f}",
                    "share": f"{us / busy:.3f}" if busy else "", "call_us": f"{call_us:.1f}",
                })  # fmt: skip
                print(f"    {us:9.1f} µs  ×{len(ts) / a.calls:g}  {kernel[:110]}", flush=True)
        del inputs
        torch.cuda.empty_cache()
    out = Path(a.out) / "profile-kernels.csv"
    pd.DataFrame(rows, columns=FIELDS).to_csv(out, index=False)
    print(f"wrote {out} ({torch.cuda.get_device_name()}, torch {torch.__version__})")


if __name__ == "__main__":
    main()
