"""Compile the in-repo Triton kernels for Hopper (sm_90a) on any machine, no GPU needed, and read what
ptxas and Triton say of each: registers a thread, spilled bytes, shared memory a CTA, how many CTAs of it
an H100/H200 SM can hold, and the warpgroup-MMA waits Triton placed (`pendings`: how many MMAs each wait
leaves in flight). A compile error shows here, not in a GPU session; an occupancy or overlap hypothesis is
checked before it costs device time (docs/perf-notes.md).

    python3 -m tools.aot_check                 # every kernel, dense / paged / TMA / page ids ahead, each config;
                                               # the forms and FP8 at one, head dim 256 at each of its own
    python3 -m tools.aot_check --only prefill  # variants whose name has one of these substrings
    python3 -m tools.aot_check --quick         # one configuration a kernel variant (the tests)
    python3 -m tools.aot_check --only work --ptx DIR  # each variant's PTX into DIR, line markers and debug
                                               # sections left out: `diff -r` two commits' DIRs to show that a
                                               # change leaves the code of the variants it must not touch as it was

Needs Triton with its NVIDIA backend (ptxas ships in the Linux wheel); must run without
TRITON_INTERPRET=1 (the interpreter replaces the kernels). Prints a table; --csv writes it."""

from __future__ import annotations

import argparse
import inspect
import itertools
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass

# Hopper (H100 and H200 alike): per SM
REGISTERS_PER_SM = 65536
SHARED_PER_SM = 228 * 1024  # of which a CTA may take 227 KB; 1 KB a CTA is reserved by the driver
SHARED_RESERVED_PER_CTA = 1024
THREADS_PER_SM = 2048

POINTER_DTYPES = {"Q": "act", "K": "act", "V": "act", "O": "act", "O_PART": "fp32", "LSE_PART": "fp32"}
# requests, pages, order, tiles, work lists
INT_POINTERS = {
    "BT",
    "CU_Q",
    "CU_K",
    "SEQ_K",
    "ORDER",
    "KV_LENS",
    "TILES",
    "WORK",
    "COMBINED",
    "COUNTERS",
    "ITEMS",
    "START",
}
# the forms' arguments (kernels.py): each a constexpr None unless its flag is on, as a plain launch passes them
FORM_ARGS = {"SINKS": ("HAS_SINKS", "*fp32"), "K_SCALE": ("IS_FP8", "*fp32"), "V_SCALE": ("IS_FP8", "*fp32"),
             "window": ("HAS_WINDOW", "i32"), "softcap": ("SOFTCAP", "fp32"),
             "SEQ_K": ("HAS_WINDOW", "*i32")}  # fmt: skip


@dataclass
class Variant:
    name: str
    kernel: object  # the autotuned kernel (its .fn is the JITFunction)
    constexprs: dict
    warps: int
    stages: int
    maxnreg: int | None = None
    tma: bool = False


@dataclass
class Report:
    variant: Variant
    registers: int
    spill_bytes: int
    shared_bytes: int
    mma_waits: str = ""  # the `pendings` of each warpgroup-MMA wait: 0 = nothing left in flight past it
    warps: int = 0  # a CTA's warps as compiled: more than the variant's when warp-specialised partitions add some
    ptx: str = ""  # the code (`code`): what --ptx writes

    @property
    def ctas_per_sm(self) -> int:
        threads = 32 * max(self.warps, self.variant.warps)
        by_regs = REGISTERS_PER_SM // max(1, self.registers * threads)
        by_smem = SHARED_PER_SM // (self.shared_bytes + SHARED_RESERVED_PER_CTA)
        return max(0, min(by_regs, by_smem, THREADS_PER_SM // threads))


def signature(fn, constexprs: dict, dtype: str, tma_block: tuple[int, int] | None) -> dict:
    sig = {}
    kv = "fp8e4nv" if constexprs.get("IS_FP8") else dtype  # an FP8 cache: K and V (and their tiles) in e4m3
    for name in fn.arg_names:
        if name in constexprs:
            sig[name] = "constexpr"
        elif name in FORM_ARGS:
            sig[name] = FORM_ARGS[name][1]  # its flag is on (form_constexprs made the others None)
        elif name in ("KD", "VD"):
            sig[name] = f"tensordesc<{kv}[{tma_block[0]},{tma_block[1]}]>"  # gathered loads: constexpr None
        elif name in ("K", "V"):
            sig[name] = "*" + kv
        elif name in POINTER_DTYPES:
            sig[name] = "*" + (dtype if POINTER_DTYPES[name] == "act" else "fp32")
        elif name in INT_POINTERS:
            sig[name] = "*i32"
        elif name == "qk_scale":
            sig[name] = "fp32"
        else:
            sig[name] = "i32"
    return sig


def gluon_signature(fn, constexprs: dict, dtype: str) -> dict:
    """The Gluon prefill kernel's arguments: TMA descriptors with their shared layouts (q: BLOCK_M rows,
    k and v: BLOCK_N), the output pointer, integer sizes and strides, the fp32 scale."""
    import torch

    from frameworks.triton.gluon_prefill import shared_layout

    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float16
    d = constexprs["HEAD_DIM"]
    sig = {}
    for name in fn.arg_names:
        if name in constexprs:
            sig[name] = "constexpr"
        elif name.endswith("_desc"):
            rows = constexprs["BLOCK_M"] if name == "q_desc" else constexprs["BLOCK_N"]
            if name != "q_desc" and 0 < constexprs.get("PAGE", 0) < rows:
                rows = constexprs["PAGE"]  # a paged ragged cache: a load a page into the tile's rows
            if name == "q_desc" and "STAGES" in constexprs and constexprs["num_warps"] == 4 and rows == 128:
                rows = 64  # the ping-pong kernel: a consumer warpgroup's half of the block
            pack = constexprs.get("PACK", 1) if name == "q_desc" else 1
            block = [rows // pack, pack, d] if pack > 1 else [rows, d]  # GQA packed: positions × heads × d a load
            dims = ", ".join(map(str, block))
            sig[name] = f"tensordesc<{dtype}[{dims}],{shared_layout(block, torch_dtype)!r}>"
        elif name == "O":
            sig[name] = f"*{dtype}"
        elif name in INT_POINTERS:
            sig[name] = "*i32"
        else:
            sig[name] = "fp32" if name == "qk_scale" else "i32"
    return sig


def divisibility(fn, sig: dict) -> dict:
    """What the JIT would specialise at a real launch: pointers and strides 16-aligned."""
    return {
        (i,): [["tt.divisibility", 16]]
        for i, name in enumerate(fn.arg_names)
        if sig[name].startswith("*") or name.startswith("s_")
    }


def with_defaults(fn, constexprs: dict) -> dict:
    """The constexprs with each one the variant leaves out at its default, as a launch passes it."""
    missing = {p.name: p.default for p in fn.params
               if p.is_constexpr and p.name not in constexprs and p.default is not inspect.Parameter.empty}  # fmt: skip
    return {**constexprs, **missing}


def compile_variant(v: Variant, dtype: str = "bf16") -> Report:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.backends.nvidia.compiler import get_ptxas
    from triton.compiler import ASTSource

    if getattr(v.kernel, "is_gluon", lambda: False)():  # a Gluon kernel: its own source class and descriptors
        from triton.experimental.gluon._runtime import GluonASTSource

        fn = v.kernel
        constexprs = {k: val for k, val in v.constexprs.items() if k in fn.arg_names}
        constexprs = with_defaults(fn, constexprs)  # PACK
        sig = gluon_signature(fn, constexprs, dtype)
        src = GluonASTSource(fn, sig, constexprs, divisibility(fn, sig))
    else:
        fn = getattr(v.kernel, "fn", None) if isinstance(v.kernel, triton.runtime.Autotuner) else v.kernel
        constexprs = {k: val for k, val in v.constexprs.items() if k in fn.arg_names}
        for name in ("KD", "VD"):
            if name in fn.arg_names and not v.tma:
                constexprs[name] = None
        constexprs = with_defaults(fn, constexprs)  # a form's flag
        steps = v.constexprs.get("Q_LEN", 1) > 1  # the work list's speculative steps read CU_Q and SEQ_K
        for name, (flag, _) in FORM_ARGS.items():  # a form's argument is None (a constexpr) unless its flag is on
            optional = name != "SEQ_K" or "WORK" in fn.arg_names  # the work list's SEQ_K: a window's or a step's
            if name in fn.arg_names and optional and not (v.constexprs.get(flag) or steps and name == "SEQ_K"):
                constexprs[name] = None
        if "Q_LEN" in fn.arg_names and not steps and not v.constexprs.get("PACKED_ROWS"):
            constexprs["CU_Q"] = None  # the work list's decodes: one query a request, no CU_Q (unless PACKED_ROWS)
        block = (v.constexprs["BLOCK_N"], v.constexprs["HEAD_DIM"]) if v.tma else None
        sig = signature(fn, constexprs, dtype, block)
        src = ASTSource(fn=fn, signature=sig, constexprs=constexprs, attrs=divisibility(fn, sig))
    options = {"num_warps": v.warps, "num_stages": v.stages}
    if v.maxnreg:
        options["maxnreg"] = v.maxnreg
    compiled = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=options)
    with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as f:
        f.write(compiled.asm["ptx"])
    try:
        cmd = [get_ptxas(90).path, "-v", "--gpu-name=sm_90a", "-o", os.devnull, f.name]
        if v.maxnreg:
            cmd[1:1] = [f"--maxrregcount={v.maxnreg}"]
        log = subprocess.run(cmd, capture_output=True, text=True, check=True).stderr
    finally:
        os.unlink(f.name)
    regs = int(re.search(r"Used (\d+) registers", log).group(1))
    spills = sum(int(n) for n in re.findall(r"(\d+) bytes spill (?:stores|loads)", log))
    waits = " ".join(re.findall(r"warp_group_dot_wait .*?pendings = (\d+)", compiled.asm["ttgir"]))
    return Report(
        v, regs, spills, compiled.metadata.shared, waits, compiled.metadata.num_warps, code(compiled.asm["ptx"])
    )


def code(ptx: str) -> str:
    """A kernel's PTX without what moves when only its source lines do: the line markers (.loc, .file) and the
    debug sections after the code (their line tables and DWARF offsets)."""
    lines = []
    for line in ptx.splitlines():
        text = line.strip()
        if text.startswith(".section") and ".debug" in text:
            break
        if not text.startswith((".loc", ".file")):
            lines.append(line)
    return "\n".join(lines) + "\n"


def variants(quick: bool) -> list[Variant]:
    from frameworks.triton import kernels as k

    out = []
    prefill_configs = [
        (c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.num_warps, c.num_stages, c.maxnreg)
        for c in k._prefill_configs()
        if not k._wide(c)
    ]
    decode_configs = [(c.kwargs["BLOCK_N"], c.num_warps, c.num_stages) for c in k._decode_configs() if not k._wide(c)]
    wide_prefill = [(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.num_warps, c.num_stages) for c in k._prefill_configs()
                    if k._wide(c)]  # fmt: skip
    wide_decode = [(c.kwargs["BLOCK_N"], c.num_warps, c.num_stages) for c in k._decode_configs() if k._wide(c)]
    if quick:
        prefill_configs, decode_configs = prefill_configs[:1], decode_configs[:1]
    head = {"HEAD_DIM": 128, "INTERPRETED": False}
    # (label, PAGED, PAGE, TMA, PREFETCH_PAGES): dense through TMA, pages of 16 gathered (ids in their step
    # or a step ahead), pages of 256 through TMA
    layouts = [("dense", False, 1, True, False), ("page16", True, 16, False, False),
               ("page16 ids-ahead", True, 16, False, True), ("page256", True, 256, True, False)]  # fmt: skip
    cap = lambda regs: f" maxnreg{regs}" if regs else ""  # noqa: E731
    for (label, paged, page, tma, ahead), (bm, bn, w, s, regs) in (
        (lay, c) for lay in layouts for c in prefill_configs
    ):
        ce = {**head, "G": 4, "PAGED": paged, "PAGE": page, "CAUSAL": True, "TMA": tma, "BLOCK_M": bm, "BLOCK_N": bn,
              "QK_AHEAD": False, "PREFETCH_PAGES": ahead}  # fmt: skip
        name = f"prefill {label} {bm}x{bn} w{w} s{s}{cap(regs)}"
        out.append(Variant(name, k.prefill_kernel, ce, w, s, maxnreg=regs, tma=tma))
    for label, paged, page, _, ahead in layouts[:3]:
        for bm, bn, w, s, regs in prefill_configs:
            # the (row block, request × head) grid, or the grid of row blocks only; a dense cache also through TMA
            for tiles, tma in ((False, False), (True, False), *(((False, True),) if not paged else ())):
                ce = {**head, "G": 4, "PAGED": paged, "PAGE": page, "CAUSAL": True, "LAST_ROWS_FIRST": True,
                      "BLOCK_M": bm, "BLOCK_N": bn, "PREFETCH_PAGES": ahead, "TILES": tiles,
                      "BLOCK_R": 64 if tiles else 1, "TMA": tma}  # fmt: skip
                kind = "varlen" + (" tiles" if tiles else "")
                name = f"{kind} {label}{' tma' if tma else ''} {bm}x{bn} w{w} s{s}{cap(regs)}"
                out.append(Variant(name, k.varlen_kernel, ce, w, s, maxnreg=regs, tma=tma))
        for bn, w, s in decode_configs:
            ce = {**head, "G": 4, "BLOCK_G": 16, "PAGED": paged, "PAGE": page, "BLOCK_N": bn, "PREFETCH_PAGES": ahead}
            out.append(Variant(f"ragged-decode {label} n{bn} w{w} s{s}", k.ragged_decode_kernel, ce, w, s))
            ce = {**ce, "SPLIT": True, "TMA": False}
            out.append(Variant(f"decode {label} n{bn} w{w} s{s}", k.decode_kernel, ce, w, s))
            ce = {**head, "G": 4, "BLOCK_G": 16, "PAGED": paged, "PAGE": page, "BLOCK_N": bn, "PREFETCH_PAGES": ahead,
                  "FUSED": False}  # fmt: skip
            out.append(Variant(f"work-decode {label} n{bn} w{w} s{s}", k.work_decode_kernel, ce, w, s))
            fused = {**ce, "FUSED": True}
            out.append(Variant(f"work-decode-fused {label} n{bn} w{w} s{s}", k.work_decode_kernel, fused, w, s))
            # a mixed batch's decodes beside longer requests (ops.MixedWork): each one's row from CU_Q (quick: dense)
            if not quick or label == "dense":
                packed = {**ce, "PACKED_ROWS": True}
                name = f"work-decode packed-rows {label} n{bn} w{w} s{s}"
                out.append(Variant(name, k.work_decode_kernel, packed, w, s))
    ce = {"G": 4, "BLOCK_G": 16, "HEAD_DIM": 128, "BLOCK_S": 16, "INTERPRETED": False}
    out.append(Variant("work-combine s16 w4", k.work_combine_kernel, ce, 4, 1))
    out.append(Variant("work-combine packed-rows s16 w4", k.work_combine_kernel, {**ce, "PACKED_ROWS": True}, 4, 1))
    out += step_variants(k, layouts[:3], decode_configs, quick)
    out += form_variants(k, prefill_configs[0], decode_configs[0], wide_prefill, wide_decode, quick)
    # the exploration tool's pinned prefill variants (tools/triton_explore.py): QK_AHEAD and occupancy
    from tools.triton_explore import gluon_variants, prefill_variants

    for name, tma, config in prefill_variants():
        if quick and "qk-ahead" not in name and "maxnreg" not in name:
            continue
        ce = {**head, "G": 4, "PAGED": False, "PAGE": 1, "CAUSAL": True, "TMA": tma, "QK_AHEAD": False,
              "PREFETCH_PAGES": False, **config.kwargs}  # fmt: skip
        out.append(Variant(f"explore {name}", k.prefill_kernel, ce, config.num_warps, config.num_stages,
                           maxnreg=config.maxnreg, tma=tma))  # fmt: skip
    try:  # the Gluon attempt (frameworks/triton/gluon_prefill.py): Triton with Gluon only
        from frameworks.triton.gluon_prefill import (
            gluon_pp_persistent_kernel,
            gluon_pp_prefill_kernel,
            gluon_pp_varlen_kernel,
            gluon_pp_varlen_persistent_kernel,
        )
        from tools.gluon_overlap import gluon_prefill_kernel
    except ImportError:
        return out
    gluon = list(gluon_variants())
    if quick:  # the first of each kernel: explicit waits, ping-pong, ping-pong in the persistent grid
        pp = [v for v in gluon if v[2].kwargs.get("PINGPONG")]
        gluon = [gluon[0], pp[0], next(v for v in pp if v[2].kwargs.get("PERSISTENT"))]
    for name, _, config in gluon:
        kw = config.kwargs
        ce = {"HEAD_DIM": 128, "CAUSAL": True, "BLOCK_M": kw["BLOCK_M"], "BLOCK_N": kw["BLOCK_N"],
              "num_warps": config.num_warps}  # fmt: skip
        kernel = gluon_prefill_kernel
        if kw.get("PINGPONG"):  # the warp-specialised kernel: its ring depth is a constexpr
            ce["STAGES"] = kw["STAGES"]
            kernel = gluon_pp_persistent_kernel if kw.get("PERSISTENT") else gluon_pp_prefill_kernel
            if not kw.get("PERSISTENT") and not quick:  # the one-block grid in both launch orders (gluon_balance)
                out.append(Variant(f"explore {name} static", kernel, {**ce, "LPT": False}, config.num_warps, 1))
                ce["LPT"] = True
            if not kw.get("PERSISTENT"):  # GQA packed (gluon_pack=gqa): Llama's group of 4, Qwen3-30B's 8
                for pack in (4,) if quick else (2, 4, 8, 16):
                    packed = {**ce, "LPT": True, "PACK": pack}
                    out.append(Variant(f"explore {name} pack{pack}", kernel, packed, config.num_warps, 1))
        out.append(Variant(f"explore {name}", kernel, ce, config.num_warps, 1))
    # the ping-pong kernel over a ragged batch: what the backend runs for dense prompt and chunk launches
    # dense; a load a 16-token page (8 a tile); pages that hold whole tiles; each on the block grid and the tiles'
    for page, tiled in ((p, t) for p in (0, 16, 256) for t in (False, True)):
        ce = {"HEAD_DIM": 128, "CAUSAL": True, "BLOCK_M": 128, "BLOCK_N": 128, "STAGES": 2, "PAGE": page,
              "TILED": tiled, "num_warps": 4}  # fmt: skip
        label = (f" page{page}" if page else "") + (" tiles" if tiled else "")
        out.append(Variant(f"gluon-pp varlen{label} 128x128 w4+4 st2", gluon_pp_varlen_kernel, ce, 4, 1))
    for page in (0, 16, 256):  # its persistent grid (gluon_grid=persistent): the tile list walked by one CTA an SM
        ce = {"HEAD_DIM": 128, "CAUSAL": True, "BLOCK_M": 128, "BLOCK_N": 128, "STAGES": 2, "PAGE": page,
              "num_warps": 4}  # fmt: skip
        label = f" page{page}" if page else ""
        out.append(Variant(f"gluon-pp varlen persistent{label} 128x128 w4+4 st2", gluon_pp_varlen_persistent_kernel,
                           ce, 4, 1))  # fmt: skip
    return out


def step_rows(q_len: int, group: int) -> dict:
    """The work list's row constexprs for speculative steps of q_len tokens (ops.WorkDecode's): row tiles of whole
    tokens, at most ops.SPLIT_KV_ROWS rows (tokens × group) each."""
    from frameworks.triton.ops import SPLIT_KV_ROWS

    tile = max(1, min(q_len, SPLIT_KV_ROWS // group))
    block_g = max(16, 1 << (tile * group - 1).bit_length())
    return {"G": group, "BLOCK_G": block_g, "Q_LEN": q_len, "TILE_Q": tile, "ROW_TILES": -(-q_len // tile)}


def step_variants(k, layouts, decode_configs, quick: bool) -> list[Variant]:
    """Speculative steps on the work list (`triton[spec=split-kv]`): Llama's group of 4 at 4, 8 and 16 tokens (16,
    32 and 64 rows) and Qwen3-30B's group of 8 at 16 (two row tiles of 8 tokens), and a chunk on a long cache at
    Llama's group (draw:79's 51 tokens: four row tiles of 16, schedule.on_work_list), in each layout and decode
    configuration; their combine. Quick: 64 rows, dense, at the first configuration."""
    out = []
    steps = [(4, 4), (8, 4), (16, 4), (16, 8), (51, 4)]
    for (label, paged, page, _, ahead), (bn, w, s), (q_len, group) in itertools.product(layouts, decode_configs, steps):
        if quick and (label, q_len, group) != ("dense", 16, 4):
            continue
        ce = {"HEAD_DIM": 128, "INTERPRETED": False, "PAGED": paged, "PAGE": page, "BLOCK_N": bn,
              "PREFETCH_PAGES": ahead, "FUSED": False, **step_rows(q_len, group)}  # fmt: skip
        out.append(Variant(f"work-decode spec q{q_len} g{group} {label} n{bn} w{w} s{s}", k.work_decode_kernel, ce,
                           w, s))  # fmt: skip
    ce = {"HEAD_DIM": 128, "BLOCK_S": 16, "INTERPRETED": False, **step_rows(16, 4)}
    out.append(Variant("work-combine spec q16 g4 s16 w4", k.work_combine_kernel, ce, 4, 1))
    return out


def form_variants(k, prefill, decode, wide_prefill, wide_decode, quick: bool) -> list[Variant]:
    """The forms (kernels.py's HAS_WINDOW, HAS_SINKS, SOFTCAP, IS_FP8) at the first configuration, and head dim
    256 (Gemma-2: soft-cap and window) at each of its own, which must fit the 227 KB of shared memory a CTA.
    Quick: every form at once in the dense prefill and the paged ragged decode (the tests' compile budget)."""
    out = []
    forms = {"HAS_WINDOW": True, "HAS_SINKS": True, "SOFTCAP": True}
    fp8 = {"IS_FP8": True}
    bm, bn, w, s, regs = prefill
    dn, dw, ds = decode
    base = {"HEAD_DIM": 128, "INTERPRETED": False, "G": 4, "CAUSAL": True, "BLOCK_M": bm, "BLOCK_N": bn,
            "PREFETCH_PAGES": False}  # fmt: skip
    dense, page16 = {"PAGED": False, "PAGE": 1, "TMA": True}, {"PAGED": True, "PAGE": 16, "TMA": False}
    for label, extra in (("forms", forms), ("fp8", fp8), ("forms+fp8", {**forms, **fp8})):
        if quick and label != "forms+fp8":
            continue
        for layout, lay in (("dense", dense), ("page16", page16)):
            ce = {**base, **lay, "QK_AHEAD": False, **extra}
            out.append(Variant(f"prefill {layout} {label} {bm}x{bn} w{w} s{s}", k.prefill_kernel, ce, w, s, regs,
                               tma=lay["TMA"]))  # fmt: skip
            ce = {**base, **lay, "TMA": False, "LAST_ROWS_FIRST": True, "TILES": False, "BLOCK_R": 1, **extra}
            out.append(Variant(f"varlen {layout} {label} {bm}x{bn} w{w} s{s}", k.varlen_kernel, ce, w, s, regs))
        ce = {"HEAD_DIM": 128, "INTERPRETED": False, "G": 4, "BLOCK_G": 16, "PAGED": True, "PAGE": 16, "BLOCK_N": dn,
              "PREFETCH_PAGES": True, **extra}  # fmt: skip
        name = f"page16 {label} n{dn} w{dw} s{ds}"
        out.append(Variant(f"decode {name}", k.decode_kernel, {**ce, "SPLIT": True, "TMA": False}, dw, ds))
        out.append(Variant(f"ragged-decode {name}", k.ragged_decode_kernel, ce, dw, ds))
        out.append(Variant(f"work-decode-fused {name}", k.work_decode_kernel, {**ce, "FUSED": True}, dw, ds))
        steps = {**ce, "FUSED": False, **step_rows(8, 4)}  # a speculative step of 8 tokens, group 4: 32 rows
        out.append(Variant(f"work-decode spec q8 g4 {name}", k.work_decode_kernel, steps, dw, ds))
    if quick:
        return [v for v in out if v.name.startswith(("prefill dense", "ragged-decode"))]
    gemma = {"HEAD_DIM": 256, "INTERPRETED": False, "G": 2, "HAS_WINDOW": True, "SOFTCAP": True}
    for bm, bn, w, s in wide_prefill:
        ce = {**gemma, "CAUSAL": True, "BLOCK_M": bm, "BLOCK_N": bn, "PREFETCH_PAGES": False, "QK_AHEAD": False}
        out.append(Variant(f"prefill d256 dense {bm}x{bn} w{w} s{s}", k.prefill_kernel, {**ce, **dense}, w, s,
                           tma=True))  # fmt: skip
        ce = {**ce, **page16, "LAST_ROWS_FIRST": True, "TILES": False, "BLOCK_R": 1}
        out.append(Variant(f"varlen d256 page16 {bm}x{bn} w{w} s{s}", k.varlen_kernel, ce, w, s))
    for bn, w, s in wide_decode:
        ce = {**gemma, "BLOCK_G": 16, "PAGED": True, "PAGE": 16, "BLOCK_N": bn, "PREFETCH_PAGES": True}
        out.append(Variant(f"decode d256 page16 n{bn} w{w} s{s}", k.decode_kernel, {**ce, "SPLIT": True,
                                                                                    "TMA": False}, w, s))  # fmt: skip
        out.append(Variant(f"ragged-decode d256 page16 n{bn} w{w} s{s}", k.ragged_decode_kernel, ce, w, s))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="", help="comma-separated substrings: keep variants whose name has one")
    ap.add_argument("--quick", action="store_true", help="one configuration a kernel variant")
    ap.add_argument("--csv", default="", help="write the table here")
    ap.add_argument("--ptx", default="", help="write each variant's PTX (code only: `code`) into this folder")
    a = ap.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        print("error: TRITON_INTERPRET=1 replaces the kernels with the interpreter's: unset it", file=sys.stderr)
        return 2
    rows, failed = [], 0
    print(f"{'variant':52s} {'regs':>5s} {'spill B':>8s} {'smem KB':>8s} {'CTAs/SM':>8s}  MMA waits", flush=True)
    for v in variants(a.quick):
        if a.only and not any(o in v.name for o in a.only.split(",")):
            continue
        try:
            r = compile_variant(v)
        except Exception as exc:  # noqa: BLE001  (a variant that does not compile is reported, the rest go on)
            failed += 1
            print(f"{v.name:52s} FAILED {type(exc).__name__}: {str(exc).splitlines()[0][:160]}", flush=True)
            continue
        rows.append(r)
        if a.ptx:
            os.makedirs(a.ptx, exist_ok=True)
            with open(os.path.join(a.ptx, re.sub(r"[^\w.+-]+", "_", v.name) + ".ptx"), "w") as f:
                f.write(r.ptx)
        print(f"{v.name:52s} {r.registers:5d} {r.spill_bytes:8d} {r.shared_bytes / 1024:8.1f} {r.ctas_per_sm:8d}  "
              f"{r.mma_waits}", flush=True)  # fmt: skip
    if a.csv:
        import pandas as pd

        pd.DataFrame(
            [
                {
                    "variant": r.variant.name,
                    "warps": r.variant.warps,
                    "cta_warps": max(r.warps, r.variant.warps),
                    "stages": r.variant.stages,
                    "maxnreg": r.variant.maxnreg or "",
                    "registers": r.registers,
                    "spill_bytes": r.spill_bytes,
                    "shared_bytes": r.shared_bytes,
                    "ctas_per_sm": r.ctas_per_sm,
                    "mma_waits": r.mma_waits,
                }
                for r in rows
            ]  # fmt: skip
        ).to_csv(a.csv, index=False)
    print(f"{len(rows)} compiled for sm_90a, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
