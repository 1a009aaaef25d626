"""Time pinned configurations of the Triton kernels at real shapes, one GPU call for many variants.

    python3 -m tools.triton_explore prefill [--models …] [--out DIR]
    python3 -m tools.triton_explore decode  [--batch 1 --seq 32768]

Each variant is checked against the fp32 reference (two batch elements) and timed with the
harness's timer (CUDA events, L2 flushed); the autotuned backend and any backends named with --libs
(variants allowed: 'flash-attn3,triton[gluon=off]') are timed beside it. Prints a table and writes
explore-<part>.csv. A development tool for docs/perf-notes.md, not a benchmark: published numbers come from
`run.py sweep`."""

from __future__ import annotations

import argparse
import itertools
import os
import time
from pathlib import Path

import pandas as pd
import torch
import triton

from frameworks import get_backend
from frameworks.triton import ops
from harness.env import collect
from harness.inputs import make_inputs
from harness.measure import MeasureConfig, Measurer
from harness.options import split_items
from harness.reference import check_output, reference_attention
from harness.timer import Repetition, TimingMode, time_callable
from specs import ExperimentSpec
from specs.models import MODELS

FIELDS = ["shape", "variant", "p50_ms", "tflops", "gbps", "rel_err", "note"]


def spec_for(model: str, workload: str, batch: int, seq: int, chunk: int) -> ExperimentSpec:
    m = MODELS[model]
    q_len = {"prefill": seq, "append": chunk, "decode": 1}[workload]
    return ExperimentSpec(
        workload=workload, batch_size=batch, q_len=q_len, kv_len=seq, num_q_heads=m.num_q_heads,
        num_kv_heads=m.num_kv_heads, head_dim=m.head_dim, model=m.name,
    )  # fmt: skip


def prefill_variants():
    shapes = [(128, 128, 8, 3), (128, 64, 8, 3), (128, 128, 8, 2), (256, 64, 8, 2), (64, 128, 4, 3)]
    for tma, (bm, bn, w, s) in [(True, c) for c in shapes] + [(False, shapes[0])]:
        yield (
            f"tma={int(tma)} {bm}x{bn} w{w} s{s}",
            tma,
            triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s),
        )
    # more than one CTA an SM (ncu: one 8-warp CTA an SM, 36% of stalls at its barrier; docs/perf-notes.md):
    # tiles whose shared memory leaves room for a second CTA, and a register cap that lets two 8-warp CTAs in
    # session 5 (H100): the capped 128 × 64 won (+10% prefill, +3.5% append) and joined the autotuner. Next,
    # the tiles around it that tools/aot_check says hold more CTAs without spilling: 128 × 32 capped (121
    # registers, 2 CTAs, 3 stages) and 64 × 32 with 4 warps (3 CTAs); a 3-stage or tighter cap on 128 × 64
    # holds one CTA or spills 684 bytes, so it is not tried
    for bm, bn, w, s, regs in [(64, 64, 4, 2, None), (64, 64, 4, 3, None), (64, 128, 4, 2, None),
                               (128, 64, 8, 2, None), (128, 64, 8, 2, 128), (128, 32, 8, 3, 128),
                               (64, 32, 4, 3, None)]:  # fmt: skip
        yield (
            f"tma=1 {bm}x{bn} w{w} s{s}{f' maxnreg{regs}' if regs else ''} occ",
            True,
            triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s, maxnreg=regs),
        )
    # the next tile's Q·Kᵀ issued before this tile's softmax (kernels.QK_AHEAD; docs/perf-notes.md)
    for bm, bn, w, s in [(128, 128, 8, 2), (128, 64, 8, 3), (128, 64, 8, 2)]:
        yield (
            f"tma=1 {bm}x{bn} w{w} s{s} qk-ahead",
            True,
            triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "QK_AHEAD": True}, num_warps=w, num_stages=s),
        )


def gluon_variants():
    """The Gluon kernels (tools/gluon_overlap.py: FA3's intra-warpgroup overlap through explicit MMA
    waits) in the prefill variants' shape: (name, TMA, config), the config marked GLUON."""
    for bm, bn, w in [(128, 128, 8), (128, 64, 8), (64, 128, 4), (64, 64, 4)]:
        yield f"gluon {bm}x{bn} w{w}", True, triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "GLUON": True}, num_warps=w)
    # two consumer warpgroups taking turns (gluon_pp_prefill_kernel): 4 warps each, 64 rows each
    for bn, st in [(128, 2), (64, 3), (64, 2)]:
        config = triton.Config({"BLOCK_M": 128, "BLOCK_N": bn, "GLUON": True, "STAGES": st, "PINGPONG": True},
                               num_warps=4)  # fmt: skip
        yield f"gluon-pp 128x{bn} w4+4 st{st}", True, config
    # the same in a persistent grid (gluon_pp_persistent_kernel): one CTA an SM walking the work items
    for bn, st in [(128, 2), (64, 2), (64, 3)]:
        config = triton.Config({"BLOCK_M": 128, "BLOCK_N": bn, "GLUON": True, "STAGES": st, "PINGPONG": True,
                                "PERSISTENT": True}, num_warps=4)  # fmt: skip
        yield f"gluon-pp-persistent 128x{bn} w4+4 st{st}", True, config


def decode_variants(splits_list):
    for tma, (bn, w, s), splits in itertools.product(
        (True, False), [(64, 4, 3), (128, 4, 3), (128, 8, 3), (64, 4, 4), (128, 4, 4)], splits_list
    ):
        yield (
            f"tma={int(tma)} n{bn} w{w} s{s} splits={splits}",
            tma,
            splits,
            triton.Config({"BLOCK_N": bn}, num_warps=w, num_stages=s),
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("part", choices=["prefill", "decode"])
    ap.add_argument("--models", default="Llama-3.1-8B,Qwen3-30B-A3B,Qwen3-235B-A22B")
    ap.add_argument("--workloads", default=None)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--seq", type=int, default=4096)
    ap.add_argument("--chunk", type=int, default=128)
    ap.add_argument("--splits", default="auto,16,32,64")
    ap.add_argument("--only", default="", help="comma-separated substrings: keep variants whose name has one")
    ap.add_argument("--libs", default="", help="backends timed beside the variants, e.g. flash-attn3,triton[gluon=off]")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    a = ap.parse_args()
    device = torch.device("cuda")
    rep = Repetition(iterations=a.iters, warmup=2)
    workloads = (a.workloads or ("prefill,append" if a.part == "prefill" else "decode")).split(",")
    env = collect(device, "explore")
    measurer = Measurer(
        MeasureConfig(device="cuda", repetition=Repetition(ci_target=0.01, max_seconds=5), run_id="explore"), env
    )
    rows = []

    def record(shape, variant, spec, ms, err, note=""):
        r = {
            "shape": shape, "variant": variant, "p50_ms": f"{ms:.4f}", "tflops": f"{spec.flops / ms / 1e9:.1f}",
            "gbps": f"{spec.ideal_bytes / ms / 1e6:.1f}", "rel_err": f"{err:.2e}" if err is not None else "",
            "note": note,
        }  # fmt: skip
        rows.append(r)
        print(
            f"{shape:34s} {variant:40s} {r['p50_ms']:>9s} ms {r['tflops']:>7s} TF/s {r['gbps']:>7s} GB/s "
            f"{r['rel_err']:>9s} {note}",
            flush=True,
        )

    for model, workload in itertools.product(a.models.split(","), workloads):
        spec = spec_for(model, workload, a.batch, a.seq, a.chunk)
        shape = f"{model} {workload} B{a.batch} S{a.seq}"
        inputs = make_inputs(spec, device)
        idx = [0, a.batch - 1]
        ref = reference_attention(spec, inputs, idx)
        for name in filter(None, split_items(a.libs)):
            row = measurer.measure(spec, get_backend(name))
            if row.status.value == "ok":
                record(shape, f"[{name}]", spec, row.p50_ms, row.rel_err, row.backend_info or "")
            else:
                print(f"{shape:34s} [{name}] {row.status.value}: {row.reason}", flush=True)
        row = measurer.measure(spec, get_backend("triton"))
        if row.status.value == "ok":
            record(shape, "[triton autotuned]", spec, row.p50_ms, row.rel_err, row.backend_info)
        else:
            print(f"{shape:34s} [triton] {row.status.value}: {row.reason}", flush=True)
        if a.part == "prefill":
            variants = ((n, tma, None, c) for n, tma, c in (*prefill_variants(), *gluon_variants()))
        else:
            variants = decode_variants([None if s == "auto" else int(s) for s in a.splits.split(",")])
        for name, tma, splits, config in variants:
            if a.only and not any(o in name for o in a.only.split(",")):
                continue
            t0 = time.time()
            try:
                if config.kwargs.get("GLUON"):  # tools/gluon_overlap.py, or the backend's ping-pong kernels
                    from tools.gluon_overlap import gluon_op

                    kw = config.kwargs
                    blocks = (
                        kw["BLOCK_M"],
                        kw["BLOCK_N"],
                        config.num_warps,
                        kw.get("STAGES", 0),
                        kw.get("PINGPONG", False),
                        kw.get("PERSISTENT", False),
                    )
                    op = gluon_op(inputs.q, inputs.k, inputs.v, spec.kv_len, spec.is_masked, *blocks)
                elif a.part == "prefill":
                    op = ops.Prefill(
                        inputs.q, inputs.k, inputs.v, spec.kv_len, spec.is_masked, use_tma=tma, config=config
                    )
                else:
                    op = ops.Decode(
                        inputs.q, inputs.k, inputs.v, spec.kv_len, num_splits=splits, use_tma=tma, config=config
                    )
                    name = name.replace("splits=None", f"splits=auto({op.splits})")
                check = check_output(spec, op(), ref, idx)
                timing = time_callable(op, device, rep, TimingMode.EVENTS)
            except Exception as exc:  # noqa: BLE001  (a variant that does not compile or run is reported, not fatal)
                print(f"{shape:34s} {name:40s} FAILED {type(exc).__name__}: {str(exc)[:160]}", flush=True)
                continue
            record(
                shape,
                name,
                spec,
                timing.p50_ms,
                check.rel_err,
                ("" if check.ok else f"WRONG {check.problem} ") + f"{time.time() - t0:.0f}s",
            )
        del inputs, ref
        torch.cuda.empty_cache()
    out = Path(a.out) / f"explore-{a.part}.csv"
    pd.DataFrame(rows, columns=FIELDS).to_csv(out, index=False)
    print(f"wrote {out} ({env.device}, torch {torch.__version__}, triton {triton.__version__})")


if __name__ == "__main__":
    main()
