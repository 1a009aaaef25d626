"""Host side of the Triton kernels: argument set-up done once (in prepare), launches per call."""

from __future__ import annotations

from itertools import accumulate
from typing import NamedTuple

import torch
import triton

from specs.batch import MAX_SPEC_DECODE, trailing_decodes

from .kernels import (
    INTERPRET,
    LOG2E,
    _set_block_shapes,
    combine_kernel,
    decode_kernel,
    prefill_kernel,
    ragged_decode_kernel,
    varlen_kernel,
    work_combine_kernel,
    work_decode_kernel,
)
from .schedule import (  # noqa: F401 - re-exported: callers and tests read them as ops.*
    GLUON_GRIDS,
    SPLIT_KV_KEYS_A_TOKEN,
    SPLIT_KV_MAX_CHUNK,
    gluon_pages_fit,
    gluon_varlen_tiles,
    heaviest_first,
    on_work_list,
    plan_work,
    sm_count,
    subset,
    window_lens,
    work_tensors,
)

# the varlen kernel's order of requests (`Varlen`): heaviest first on a grid of (row block, request × head),
# batch order on it, or heaviest first on a grid of only the row blocks that hold rows ("tiles")
SCHEDULES = ("longest-first", "simple", "tiles")
SPLIT_GRANULE = 128  # tokens: a split covers a multiple of the largest decode BLOCK_N
PROGRAMS_PER_SM = 1  # decode splits until about one program a multiprocessor (H100, v2: 4 a SM was slower)
# the largest tile any configuration loads: a paged cache goes through TMA only if its pages hold it
MAX_BLOCK_N = max(c.kwargs["BLOCK_N"] for c in (*prefill_kernel.configs, *decode_kernel.configs))
DECODE_BLOCK_N = max(c.kwargs["BLOCK_N"] for c in decode_kernel.configs)  # the largest tile a decode reads


def window_keys(kv_lens, window: int | None, granule: int) -> list[int]:
    """The keys each decode of a split-KV launch reads under a left window: from the tile that holds the
    window's first key, the kernels' tiles being any of the decode BLOCK_N (powers of two), so counted from
    the start of the granule or of the largest tile (the coarser) that holds it: never fewer than the kernel
    reads, whichever configuration the autotuner picks."""
    return window_lens(kv_lens, window, max(granule, DECODE_BLOCK_N))


def choose_splits(batch: int, kv_heads: int, kv_len: int, sms: int, granule: int = SPLIT_GRANULE) -> tuple[int, int]:
    """(number of splits, tokens per split) so that batch × kv_heads × splits fills the GPU: no split
    when the batch already does (batch 256), many for batch 1 × 32k tokens. No split is empty."""
    programs = batch * kv_heads
    granules = triton.cdiv(kv_len, granule)
    wanted = max(1, min(granules, triton.cdiv(PROGRAMS_PER_SM * sms, programs)))
    tokens = triton.cdiv(granules, wanted) * granule
    return triton.cdiv(kv_len, tokens), tokens


# how the split-KV decode sizes its splits: "fill" (enough programs for about one a multiprocessor, sized by
# the longest cache) or "waves" (the split length that minimises whole waves × split length, counting each
# request's own splits: choose_splits_waves). WORK_RULES are another launch, WorkDecode (schedule.plan_work)
SPLIT_RULES = ("fill", "waves")
WORK_RULES = ("work", "work-fused")  # WorkDecode, its pieces merged by a second launch or by the last piece
# the most query tokens of a speculative step on the split-KV work list (WorkDecode's q_lens, the `spec=split-kv`
# variant): specs.batch.MAX_SPEC_DECODE, 16, so every spec-decode batch; beyond it the list takes only a chunk of at
# most SPLIT_KV_MAX_CHUNK (64) tokens on a cache of 64 keys a token or more (schedule.on_work_list). Why there: a
# program reads its keys once for all its rows (tokens × group), and a row costs 4·D FLOPs a key against that key's
# 4·D bytes (K and V in bf16), so the loop runs `rows` FLOPs a byte: 64 for Llama's group of 4 at 16 tokens, a fifth
# of an H100's balance point (989 TFLOP/s ÷ 3.35 TB/s ≈ 295): bound by memory as a decode is, where splitting the
# keys pays (a 64-token chunk: 256 rows in 4 row tiles, still under it when L2 serves the tiles' repeated reads). A
# chunk of hundreds of tokens is bound by the tensor cores; it belongs to the varlen kernel's 128-row blocks.
SPLIT_KV_MAX_Q = MAX_SPEC_DECODE
# the rows (query tokens × the group) one work-list program holds at most: a [64, D] fp32 accumulator and a
# [64, BLOCK_N] score tile (tools/aot_check `work-decode spec`); more tokens × group (Qwen3-30B's group of 8 at 16
# tokens) are cut into row tiles of whole tokens, each an item reading the same keys
SPLIT_KV_ROWS = 64
# a decode program's cost besides its keys, in granules' worth of time (a guess to be measured: starting the
# program and writing its partial output and log-sum-exp, about 2-3 µs, as long as an SM streams ~256 keys)
SPLIT_OVERHEAD_GRANULES = 2


def choose_splits_waves(kv_lens, kv_heads: int, sms: int, granule: int = SPLIT_GRANULE) -> tuple[int, int]:
    """(splits of the longest cache, tokens a split) for caches of the given lengths: the tokens a split
    (whole granules) that minimise waves × (tokens + SPLIT_OVERHEAD_GRANULES granules), where a wave is `sms` programs
    (one a multiprocessor at a time: a 3-stage 128-key tile leaves room for no second), the programs are
    kv_heads × Σ ceil(kv_i / tokens), the splits each request needs, and the overhead is what a program
    costs besides its keys (its start, its partial output, its share of the combine). Ties go to fewer
    programs. A batch whose unsplit programs (requests × KV heads) fill a wave is not split, as under
    "fill": splitting it only adds partials and the combine. Against "fill": no second wave of a few
    programs (Llama-3.1-8B, batch 1 × 128k: 17 splits × 8 heads = 136 programs on 132 SMs) and, for
    uneven caches, splits sized by the work, not by the longest cache alone."""
    lens = [int(n) for n in kv_lens if n > 0] or [1]
    granules = triton.cdiv(max(lens), granule)
    if kv_heads * len(lens) >= sms:  # a wave or more unsplit: splitting only adds the combine (H200 A/B of
        return 1, granules * granule  # 2026-11-29: decode-heavy's 127 caches took 1.04-1.08x the time split)
    best = None
    for tokens in sorted({triton.cdiv(granules, n) * granule for n in range(1, min(granules, 4 * sms) + 1)}):
        programs = kv_heads * sum(triton.cdiv(n, tokens) for n in lens)
        key = (triton.cdiv(programs, sms) * (tokens + SPLIT_OVERHEAD_GRANULES * granule), programs)
        if best is None or key < best[0]:
            best = (key, tokens)
    tokens = best[1]
    return triton.cdiv(max(lens), tokens), tokens


class Forms(NamedTuple):
    """The attention forms a launch computes (the spec's window, sinks and soft-cap; an FP8 cache's scales),
    as the kernels take them: `kernel_kw` gives every launch its keyword arguments, built once (prepare). The
    default, no form, gives the plain kernels: every flag False, every form argument None."""

    window: int | None = None  # left window in keys (spec.window)
    sinks: torch.Tensor | None = None  # fp32 [Hq] logits (AttentionInputs.sinks)
    softcap: float | None = None  # scores -> softcap · tanh(scores / softcap), the scale applied first
    k_scale: torch.Tensor | None = None  # FP8 (e4m3) K and V: fp32 scales, 0-d (a tensor) or [Hkv] (a KV head)
    v_scale: torch.Tensor | None = None

    def kernel_kw(self, head_dim: int, kv_heads: int) -> dict:
        """qk_scale and the forms' arguments: the sinks in log2 units, the scales one a KV head (a tensor's
        scale repeated), the soft-cap as qk_scale = scale / c (on the raw Q·Kᵀ) and softcap = c · log2(e)."""
        scale = head_dim**-0.5
        kw = {"qk_scale": scale * LOG2E, "HAS_WINDOW": self.window is not None, "HAS_SINKS": self.sinks is not None,
              "SOFTCAP": self.softcap is not None, "IS_FP8": self.k_scale is not None}  # fmt: skip
        if self.window is not None:
            kw["window"] = int(self.window)
        if self.softcap is not None:
            kw["qk_scale"], kw["softcap"] = scale / self.softcap, self.softcap * LOG2E
        if self.sinks is not None:
            kw["SINKS"] = (self.sinks.float() * LOG2E).contiguous()
        if self.k_scale is not None:
            per_head = lambda t: t.float().reshape(-1).expand(kv_heads).contiguous()  # noqa: E731
            kw["K_SCALE"], kw["V_SCALE"] = per_head(self.k_scale), per_head(self.v_scale)
        return kw


def _block_table_args(block_table):
    return (block_table, block_table.stride(0)) if block_table is not None else (None, 0)


def tma_capable(device: torch.device) -> bool:
    """Tensor descriptors lower to TMA on sm90+; the interpreter emulates them on the CPU."""
    if INTERPRET:
        return True
    return device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 9


def gluon_varlen_worth_it(q_lens) -> bool:
    """The Gluon varlen kernel's unit is a 128-row block a query head, with no GQA packing: worth it when the
    requests average a block of rows (prompts and chunks), not for decodes or speculative steps."""
    return sum(q_lens) >= 128 * len(q_lens)


def gluon_capable(device: torch.device) -> bool:
    """The Gluon kernels (gluon_prefill.py) are written for Hopper's warpgroup MMA and have no interpreter."""
    if INTERPRET or device.type != "cuda" or torch.cuda.get_device_capability(device) != (9, 0):
        return False
    try:
        from . import gluon_prefill  # noqa: F401  (Triton's experimental Gluon: absent from older Tritons)
    except ImportError:
        return False
    return True


def kv_descriptors(k, v, page_size: int | None, use_tma: bool | None = None):
    """(K descriptor, V descriptor, K/V rows per sequence) for tile loads through TMA, or
    (None, None, rows) when the layout does not allow it: a non-contiguous cache, or pages smaller
    than a tile (a tile must sit inside one page). The box is set per configuration by the
    autotuner's pre-hook."""
    from triton.tools.tensor_descriptor import TensorDescriptor

    rows = k.shape[1]  # tokens a sequence (dense) or a page (paged) holds
    if use_tma is None:
        use_tma = tma_capable(k.device)
    fits = page_size is None or page_size % MAX_BLOCK_N == 0
    if not (use_tma and fits and k.is_contiguous() and v.is_contiguous()):
        return None, None, rows
    d = k.shape[3]
    descs = [
        TensorDescriptor(x, [x.shape[0] * x.shape[1], x.shape[2] * d], [x.shape[2] * d, 1], [MAX_BLOCK_N, d])
        for x in (k, v)
    ]  # fmt: skip
    return descs[0], descs[1], rows


class Prefill:
    """Prefill / append: q [B, Sq, Hq, D]; k, v [B, Sk, Hkv, D] or pages [P, page, Hkv, D] with block_table."""

    def __init__(
        self, q, k, v, kv_len: int, causal: bool, block_table=None, page_size: int | None = None,
        use_tma: bool | None = None, config: triton.Config | None = None, prefetch_pages: bool = False,
        forms: Forms = Forms(),
    ):  # fmt: skip
        """config pins one configuration (BLOCK_M, BLOCK_N, warps, stages) instead of autotuning.
        prefetch_pages: gathered paged tiles load the next tile's page ids a step ahead (kernels._attend_range).
        forms: a window, sinks, a soft-cap, an FP8 cache (K and V in e4m3 with their scales)."""
        b, sq, hq, d = q.shape
        self.pinned = config
        hkv = k.shape[2]
        self.q, self.k, self.v = q, k, v
        self.out_shape, self.group, self.kv_heads, self.batch = (b, sq, hq, d), hq // hkv, hkv, b
        self.bt, self.s_btb = _block_table_args(block_table)
        self.kd, self.vd, rows = kv_descriptors(k, v, page_size, use_tma)
        self.kw = {
            "SQ": sq, "SK": kv_len, "SK_ROWS": rows, "B": b, "HKV": hkv, "G": hq // hkv,
            "HEAD_DIM": d, "PAGED": block_table is not None, "PAGE": page_size or 1, "CAUSAL": causal,
            "TMA": self.kd is not None, "INTERPRETED": INTERPRET,
            "PREFETCH_PAGES": _prefetching(prefetch_pages, block_table, self.kd), **forms.kernel_kw(d, hkv),
        }  # fmt: skip

    def __call__(self) -> torch.Tensor:
        q, k, v = self.q, self.k, self.v
        o = torch.empty(self.out_shape, dtype=q.dtype, device=q.device)
        rows = self.out_shape[1] * self.group
        grid = lambda meta: (triton.cdiv(rows, meta["BLOCK_M"]), self.batch * self.kv_heads)
        args = (
            q, k, v, o, self.kd, self.vd, self.bt,
            q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
            v.stride(0), v.stride(1), v.stride(2), o.stride(0), o.stride(1), o.stride(2), self.s_btb,
        )  # fmt: skip
        _launch(prefill_kernel, grid, self.pinned, args, self.kw)
        return o

    def info(self) -> dict:
        return {"kernel": "prefill", **_launch_info(self.pinned or prefill_kernel, self.kw)}


class Decode:
    """Decode: q [B, 1, Hq, D] against k, v [B, Sk, Hkv, D] or pages with block_table."""

    def __init__(
        self, q, k, v, kv_len: int, block_table=None, page_size: int | None = None,
        num_splits: int | None = None, granule: int = SPLIT_GRANULE, use_tma: bool | None = None,
        config: triton.Config | None = None, prefetch_pages: bool = False, split_rule: str = "fill",
        forms: Forms = Forms(),
    ):  # fmt: skip
        """forms.window: the splits cut the window's keys only (window_keys), from the granule that
        holds its first key on."""
        b, _, hq, d = q.shape
        hkv = k.shape[2]
        group = hq // hkv
        self.pinned = config
        self.q, self.k, self.v = q, k, v
        self.batch, self.kv_heads, self.group, self.head_dim = b, hkv, group, d
        self.split_rule = _one_of("split_rule", split_rule, SPLIT_RULES) if num_splits is None else "fixed"
        (keys,) = window_keys([kv_len], forms.window, granule)  # the keys each request reads
        if num_splits is None and split_rule == "waves":  # b requests of one length: b × hkv programs a split
            self.splits, tokens = choose_splits_waves([keys], b * hkv, sm_count(q.device), granule)
        elif num_splits is None:
            self.splits, tokens = choose_splits(b, hkv, keys, sm_count(q.device), granule)
        else:  # granule must be a multiple of the decode BLOCK_N in use (16 under the interpreter)
            tokens = triton.cdiv(triton.cdiv(keys, num_splits), granule) * granule
            self.splits = triton.cdiv(keys, tokens)
        self.block_g = max(16, triton.next_power_of_2(group))
        self.bt, self.s_btb = _block_table_args(block_table)
        # decode reads each tile once, for 16 query rows: gathered loads measured as fast or faster than TMA
        self.kd, self.vd, rows = kv_descriptors(k, v, page_size, False if use_tma is None else use_tma)
        split = self.splits > 1
        # partial outputs and log-sum-exps, allocated once: [B·Hkv·splits, BLOCK_G, D] and [B·Hkv·splits, BLOCK_G]
        parts = b * hkv * self.splits if split else 1
        self.o_part = torch.empty(parts, self.block_g, d, dtype=torch.float32, device=q.device)
        self.lse_part = torch.empty(parts, self.block_g, dtype=torch.float32, device=q.device)
        self.kw = {
            "SK": kv_len, "SK_ROWS": rows, "B": b, "HKV": hkv, "NUM_SPLITS": self.splits, "tokens_per_split": tokens,
            "G": group, "BLOCK_G": self.block_g, "HEAD_DIM": d,
            "PAGED": block_table is not None, "PAGE": page_size or 1, "SPLIT": split, "TMA": self.kd is not None,
            "INTERPRETED": INTERPRET, "PREFETCH_PAGES": _prefetching(prefetch_pages, block_table, self.kd),
            **forms.kernel_kw(d, hkv),
        }  # fmt: skip

    def __call__(self) -> torch.Tensor:
        q, k, v = self.q, self.k, self.v
        o = torch.empty_like(q)
        args = (
            q, k, v, o, self.kd, self.vd, self.o_part, self.lse_part, self.bt,
            q.stride(0), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
            v.stride(0), v.stride(1), v.stride(2), o.stride(0), o.stride(2), self.s_btb,
        )  # fmt: skip
        _launch(decode_kernel, (self.batch * self.kv_heads, self.splits), self.pinned, args, self.kw)
        if self.splits > 1:
            combine(self.o_part, self.lse_part, o, self.kv_heads, self.group, self.splits, self.kw.get("SINKS"))
        return o

    def info(self) -> dict:
        launch = _launch_info(self.pinned or decode_kernel, self.kw)
        return {"kernel": "decode", "splits": self.splits, "split_rule": self.split_rule, **launch}


def _packed_kv(k, v, cu_seqlens_k, block_table, placeholder):
    """Kernel arguments of a ragged K/V cache: (cu_seqlens_k, block table, its row stride, K/V strides
    (token, head, page)). Dense: packed [Σ kv_len, Hkv, D] located by cu_seqlens_k; paged: pages
    located by the block table (the placeholder tensor stands in for the unused cu_seqlens_k)."""
    paged = block_table is not None
    strides = (k.stride(-3), k.stride(-2), v.stride(-3), v.stride(-2), k.stride(0) if paged else 0,
               v.stride(0) if paged else 0)  # fmt: skip
    return (placeholder if cu_seqlens_k is None else cu_seqlens_k, *_block_table_args(block_table), strides)


class Varlen:
    """A ragged batch (prefills, chunks and decodes together) in one launch: q packed [Σ q_len, Hq, D]
    with cu_seqlens_q; k, v packed [Σ kv_len, Hkv, D] with cu_seqlens_k (dense), or pages with a
    block table and each request's KV length (paged). Gathered K/V loads, or (use_tma, a dense cache on
    sm90+) tiles through tensor descriptors over the packed [Σ kv_len, Hkv·D] view."""

    def __init__(
        self, q, k, v, cu_seqlens_q, kv_lens, max_q: int, causal: bool, cu_seqlens_k=None, block_table=None,
        page_size: int | None = None, config: triton.Config | None = None, out=None, schedule: str = "longest-first",
        prefetch_pages: bool = False, use_tma: bool = False, forms: Forms = Forms(), requests=None,
    ):  # fmt: skip
        """out: write into this [Σ q_len, Hq, D] tensor (rows at cu_seqlens_q) instead of a new one.
        schedule: "longest-first" launches the requests heaviest first (query × key pairs, computed here,
        outside any timed call), "simple" in batch order; "tiles" heaviest first too, over a grid of the row
        blocks that hold rows only: the (max_q-sized) grid of the others launches a program for every row
        block of the longest request for each request, and those past a shorter request's rows return at once.
        requests: the indices of the requests this launch takes (a mixed batch's longer ones, beside the work list
        of its short ones; max_q theirs), None: all. The kernel reaches a request only through ORDER, so a launch
        of some is an ORDER of only them, its grid and NUM_REQ sized by them; the other arrays are the batch's."""
        total, hq, d = q.shape
        self.schedule = _one_of("schedule", schedule, SCHEDULES)
        all_q = (cu_seqlens_q[1:] - cu_seqlens_q[:-1]).tolist()
        order = list(range(len(all_q))) if requests is None else subset(requests, len(all_q))
        self.subset = requests is not None
        q_lens = [all_q[i] for i in order]
        if schedule in ("longest-first", "tiles"):
            order = heaviest_first(all_q, kv_lens.tolist(), order)
        self.order = torch.tensor(order, dtype=torch.int32, device=q.device)
        self.out = out
        hkv = k.shape[-2]
        self.pinned = config
        self.q, self.k, self.v = q, k, v
        self.requests = len(order)
        self.group, self.kv_heads, self.max_q = hq // hkv, hkv, max_q
        self.cu_q, self.seq_k = cu_seqlens_q, kv_lens
        self.cu_k, self.bt, self.s_btb, self.strides = _packed_kv(k, v, cu_seqlens_k, block_table, cu_seqlens_q)
        paged = block_table is not None
        self.kd = self.vd = None
        if use_tma and not paged:  # a dense packed cache: one [Σ kv_len, Hkv·D] descriptor each for K and V
            self.kd, self.vd, _ = kv_descriptors(k.unsqueeze(0), v.unsqueeze(0), None, True)
        self.q_lens = q_lens
        self.blocks: dict[int, int] = {}  # BLOCK_M -> row blocks that hold rows (the "tiles" grid)
        self.kw = {
            "MAX_Q": max_q, "HKV": hkv, "NUM_REQ": self.requests, "G": hq // hkv,
            "HEAD_DIM": d, "PAGED": paged, "PAGE": page_size or 1, "CAUSAL": causal,
            "LAST_ROWS_FIRST": causal and schedule != "simple", "INTERPRETED": INTERPRET,
            "PREFETCH_PAGES": _prefetching(prefetch_pages, block_table), "TILES": schedule == "tiles",
            "BLOCK_R": triton.next_power_of_2(self.requests), "TMA": self.kd is not None, **forms.kernel_kw(d, hkv),
        }  # fmt: skip

    def __call__(self) -> torch.Tensor:
        q = self.q
        o = self.out if self.out is not None else torch.empty_like(q)
        s_ks, s_kh, s_vs, s_vh, s_kb, s_vb = self.strides
        if self.schedule == "tiles":
            grid = lambda meta: (self._blocks(meta["BLOCK_M"]) * self.kv_heads,)  # noqa: E731
        else:
            grid = lambda meta: (triton.cdiv(self.max_q * self.group, meta["BLOCK_M"]), self.requests * self.kv_heads)  # noqa: E731
        args = (
            q, self.k, self.v, o, self.kd, self.vd, self.bt, self.cu_q, self.cu_k, self.seq_k, self.order,
            q.stride(0), q.stride(1), s_ks, s_kh, s_vs, s_vh, o.stride(0), o.stride(1), s_kb, s_vb, self.s_btb,
        )  # fmt: skip
        _launch(varlen_kernel, grid, self.pinned, args, self.kw)
        return o

    def _blocks(self, block_m: int) -> int:
        """Row blocks that hold rows at this BLOCK_M (counted once a block size, on the host)."""
        if block_m not in self.blocks:
            self.blocks[block_m] = sum(triton.cdiv(n * self.group, block_m) for n in self.q_lens)
        return self.blocks[block_m]

    def info(self) -> dict:
        pinned = {"pinned": True} if self.pinned is not None else {}  # a pinned config: the autotuner did not pick it
        some = {"requests": self.requests} if self.subset else {}  # a launch of some of the batch's requests
        return {
            "kernel": "varlen",
            "schedule": self.schedule,
            **some,
            **pinned,
            **_launch_info(self.pinned or varlen_kernel, self.kw),
        }


class RaggedDecode:
    """Decodes on caches of different lengths: q packed [B, Hq, D] (one query a request); k, v packed
    [Σ kv_len, Hkv, D] with cu_seqlens_k, or pages with a block table; kv_lens [B]. Split-KV sized by
    the longest cache, each request using the splits its length needs, merged by the LSE combine."""

    def __init__(
        self, q, k, v, kv_lens, max_kv: int, cu_seqlens_k=None, block_table=None, page_size: int | None = None,
        num_splits: int | None = None, granule: int = SPLIT_GRANULE, config: triton.Config | None = None, out=None,
        prefetch_pages: bool = False, split_rule: str = "fill", forms: Forms = Forms(),
    ):  # fmt: skip
        """forms.window: the splits cut each request's window only (window_keys), sized on the longest."""
        b, hq, d = q.shape
        self.out = out  # write into this [B, Hq, D] tensor instead of a new one
        hkv = k.shape[-2]
        group = hq // hkv
        self.pinned = config
        self.q, self.k, self.v, self.kv_lens = q, k, v, kv_lens
        self.batch, self.kv_heads, self.group = b, hkv, group
        self.split_rule = _one_of("split_rule", split_rule, SPLIT_RULES) if not num_splits else "fixed"
        waves = not num_splits and split_rule == "waves"
        # the keys each request reads (its length read once, before any timing) where the split needs them
        reads = window_keys(kv_lens.tolist(), forms.window, granule) if waves or forms.window is not None else None
        keys = max(reads, default=0) if forms.window is not None else max_kv  # the most keys a request reads
        if waves:
            wanted = choose_splits_waves(reads, hkv, sm_count(q.device), granule)[0]
        else:
            wanted = num_splits or choose_splits(b, hkv, keys, sm_count(q.device), granule)[0]
        tokens = triton.cdiv(triton.cdiv(keys, wanted), granule) * granule
        self.splits, self.tokens = triton.cdiv(keys, tokens), tokens
        self.block_g = max(16, triton.next_power_of_2(group))
        self.cu_k, self.bt, self.s_btb, self.strides = _packed_kv(k, v, cu_seqlens_k, block_table, kv_lens)
        paged = block_table is not None
        parts = b * hkv * self.splits
        self.o_part = torch.empty(parts, self.block_g, d, dtype=torch.float32, device=q.device)
        self.lse_part = torch.empty(parts, self.block_g, dtype=torch.float32, device=q.device)
        self.kw = {
            "MAX_K": max_kv, "B": b, "HKV": hkv, "NUM_SPLITS": self.splits, "tokens_per_split": tokens,
            "G": group, "BLOCK_G": self.block_g, "HEAD_DIM": d, "PAGED": paged,
            "PAGE": page_size or 1, "INTERPRETED": INTERPRET,
            "PREFETCH_PAGES": _prefetching(prefetch_pages, block_table), **forms.kernel_kw(d, hkv),
        }  # fmt: skip

    def __call__(self) -> torch.Tensor:
        q = self.q
        o = self.out if self.out is not None else torch.empty_like(q)
        s_ks, s_kh, s_vs, s_vh, s_kb, s_vb = self.strides
        args = (
            q, self.k, self.v, self.o_part, self.lse_part, self.bt, self.cu_k, self.kv_lens,
            q.stride(0), q.stride(1), s_ks, s_kh, s_vs, s_vh, s_kb, s_vb, self.s_btb,
        )  # fmt: skip
        _launch(ragged_decode_kernel, (self.batch * self.kv_heads, self.splits), self.pinned, args, self.kw)
        combine(self.o_part, self.lse_part, o.view(self.batch, 1, *o.shape[1:]), self.kv_heads, self.group, self.splits,
                self.kw.get("SINKS"))  # fmt: skip
        return o

    def info(self) -> dict:
        launch = _launch_info(self.pinned or ragged_decode_kernel, self.kw)
        return {"kernel": "ragged-decode", "splits": self.splits, "split_rule": self.split_rule, **launch}


class WorkDecode:
    """Decodes scheduled by work (the `splits=work` variant; schedule.py): one program an item of a flat work
    list of (request, KV head, key range), longest first, the split length chosen by the work on `sms` slots;
    a request of one piece written directly, the pieces of a split request merged by a second launch (none when
    no request splits). q packed [B, Hq, D] or uniform [B, 1, Hq, D]; k, v packed [Σ kv_len, Hkv, D] with
    cu_seqlens_k, uniform dense [B, Sk, Hkv, D] (cu_seqlens_k left out), or pages with a block table.
    Speculative steps too (the `spec=split-kv` variant): requests of up to SPLIT_KV_MAX_Q query tokens each, and
    chunks of up to SPLIT_KV_MAX_CHUNK on long caches (schedule.on_work_list), q packed [Σ q_len, Hq, D] with
    q_lens, or uniform [B, Sq, Hq, D]; a program's rows are (token, query head)
    pairs of one request and KV head (or of a row tile of its tokens), each causal bottom-right, and the combine
    merges the pieces a (token, query head) row. Some of a packed batch's requests (`requests`: a mixed batch's
    short ones, beside the varlen launch of its longer ones): each reads its rows where they sit in the packed q and
    writes its own rows of the one output."""

    def __init__(
        self, q, k, v, kv_lens, cu_seqlens_k=None, block_table=None, page_size: int | None = None,
        granule: int = SPLIT_GRANULE, sms: int | None = None, config: triton.Config | None = None, out=None,
        prefetch_pages: bool = False, fused: bool = False, forms: Forms = Forms(), q_lens=None,
        max_rows: int = SPLIT_KV_ROWS, requests=None,
    ):  # fmt: skip
        """kv_lens: a list of ints or a tensor (read once, here). granule: split boundaries at its multiples, a
        multiple of every decode BLOCK_N (16 under the interpreter). out: write into this tensor (q's shape).
        fused: the last piece of a split (request, KV head) to finish merges its pieces (one launch, counters
        in a zeroed int32 buffer that each merge sets back) instead of the combine launch. forms.window: the
        planner cuts each request's window only (schedule.plan_work's window). q_lens: each request's query
        tokens for a packed q (None: one each; a uniform q's Sq gives them). max_rows: the rows (tokens × group)
        a program holds at most; a request's tokens are cut into row tiles of whole tokens past it.
        requests: the indices of the requests this list takes, each of at most SPLIT_KV_MAX_CHUNK query tokens, of a
        packed batch whose kv_lens, q_lens, cu_seqlens_k or block table and q (and out) are the whole batch's; None:
        every request. Planned on theirs alone, the items carry the batch's indices (schedule.work_tensors), so
        nothing is gathered: a step's rows come from CU_Q as ever, a decode's one row from CU_Q (PACKED_ROWS)."""
        self.uniform = q.dim() == 4
        b, hq, d = (q.shape[0], q.shape[2], q.shape[3]) if self.uniform else (len(kv_lens), q.shape[1], q.shape[2])
        if self.uniform and q.shape[1] > 1:
            q_lens = [q.shape[1]] * b
        hkv = k.shape[-2]
        lens = kv_lens.tolist() if isinstance(kv_lens, torch.Tensor) else [int(n) for n in kv_lens]
        self.pinned, self.out = config, out
        self.q, self.k, self.v = q, k, v
        self.kv_heads, self.group = hkv, hq // hkv
        if requests is not None and self.uniform:
            raise ValueError("WorkDecode: requests takes some of a packed batch's requests, not of a uniform q")
        self.requests = None if requests is None else subset(requests, b)
        mine = self.requests or range(b)  # the requests the list takes
        self.q_len, tile_q, self.row_tiles, self.cu_q = self._steps(q_lens, lens, mine, max_rows, q.device)
        self._query_rows(q)  # a uniform step's [B, Sq] rows must merge into one axis without a copy
        my_q = None if q_lens is None else [q_lens[i] for i in mine]
        tiled = tile_q if self.row_tiles > 1 else None  # items only in the row tiles that hold a request's tokens
        self.plan = plan_work([lens[i] for i in mine], hkv * self.row_tiles, sms or sm_count(q.device), granule,
                              window=forms.window, q_lens=my_q, tile_q=tiled)  # fmt: skip
        self.work, self.combined = work_tensors(self.plan, q.device, self.requests)
        self.fused = fused and self.combined is not None
        self.counters = torch.zeros(max(1, self.plan.kv_heads * len(self.plan.combined)), dtype=torch.int32,
                                    device=q.device)  # fmt: skip
        if cu_seqlens_k is None and block_table is None:  # a uniform dense cache: request i from row i × rows
            if k.stride(0) != k.shape[1] * k.stride(1) or v.stride(0) != v.shape[1] * v.stride(1):
                raise ValueError("WorkDecode: a uniform dense cache needs its sequences one after another")
            cu_seqlens_k = torch.arange(b + 1, dtype=torch.int32, device=q.device) * k.shape[1]
        self.cu_k, self.bt, self.s_btb, self.strides = _packed_kv(k, v, cu_seqlens_k, block_table, self.work)
        self.block_g = max(16, triton.next_power_of_2(tile_q * self.group))
        parts = max(1, self.plan.num_parts)
        self.o_part = torch.empty(parts, self.block_g, d, dtype=torch.float32, device=q.device)
        self.lse_part = torch.empty(parts, self.block_g, dtype=torch.float32, device=q.device)
        most = max((n for _, _, n in self.plan.combined), default=1)
        self.block_s = max(2, min(16, triton.next_power_of_2(most)))
        # a step's rows: its tokens (CU_Q) in row tiles of TILE_Q; a decode passes none (the kernels' defaults), or
        # among longer requests its one row from CU_Q (PACKED_ROWS)
        self.rows_kw = {}
        if self.q_len > 1:
            self.rows_kw = {"CU_Q": self.cu_q, "Q_LEN": self.q_len, "TILE_Q": tile_q, "ROW_TILES": self.row_tiles}
        elif self.requests is not None:
            self.rows_kw = {"CU_Q": self.cu_q, "PACKED_ROWS": True}
        self.kw = {
            "HKV": hkv, "NUM_ITEMS": self.plan.num_items,
            "ITEM_TOKENS": self.plan.items[0].tokens, "G": self.group, "BLOCK_G": self.block_g, "HEAD_DIM": d,
            "PAGED": block_table is not None, "PAGE": page_size or 1, "INTERPRETED": INTERPRET,
            "PREFETCH_PAGES": _prefetching(prefetch_pages, block_table), "FUSED": self.fused,
            **forms.kernel_kw(d, hkv), **self.rows_kw,
        }  # fmt: skip
        if forms.window is not None or self.q_len > 1:  # a window's first key and a step's causal mask need kv_len
            self.kw["SEQ_K"] = torch.tensor(lens, dtype=torch.int32, device=q.device)

    def _steps(self, q_lens, kv_lens, mine, max_rows: int, device):
        """(most query tokens a request of the list, tokens a row tile, row tiles a KV head, CU_Q on the device or
        None) for these query lengths (None: decodes, one query each) and the requests the list takes (`mine`). A
        row tile holds whole tokens, as many as max_rows rows (tokens × group) allow, at least one. CU_Q covers
        the whole batch: decodes get it too when the list takes some of a batch's requests (self.requests)."""
        some = self.requests is not None
        if not some and (q_lens is None or max(q_lens, default=1) <= 1):
            return 1, 1, 1, None
        q_lens = [1] * len(kv_lens) if q_lens is None else [int(n) for n in q_lens]
        if len(q_lens) != len(kv_lens) or not all(1 <= q <= n for q, n in zip(q_lens, kv_lens)):
            raise ValueError(f"WorkDecode: q_lens {q_lens} do not fit kv_lens {kv_lens} (1 <= q_len <= kv_len each)")
        most = max(q_lens[i] for i in mine)
        if most > SPLIT_KV_MAX_CHUNK:
            raise ValueError(f"WorkDecode: a request of {most} query tokens; the split-KV work list takes at most "
                             f"{SPLIT_KV_MAX_CHUNK} (SPLIT_KV_MAX_CHUNK: a chunk on a long cache)")  # fmt: skip
        tile_q = max(1, min(most, max_rows // self.group))
        cu_q = torch.tensor([0, *accumulate(q_lens)], dtype=torch.int32, device=device)
        return most, tile_q, triton.cdiv(most, tile_q), cu_q

    def _query_rows(self, x):
        """q or the output as the kernels index it: [rows, Hq, D], a decode's request or a step's token a row."""
        if not self.uniform:
            return x
        if self.q_len == 1:
            return x[:, 0]
        return x.view(-1, *x.shape[2:])

    def __call__(self) -> torch.Tensor:
        q = self.q
        o = self.out if self.out is not None else torch.empty_like(q)
        q3, o3 = self._query_rows(q), self._query_rows(o)
        s_ks, s_kh, s_vs, s_vh, s_kb, s_vb = self.strides
        args = (
            q3, self.k, self.v, o3, self.o_part, self.lse_part, self.bt, self.cu_k, self.work, self.counters,
            q3.stride(0), q3.stride(1), o3.stride(0), o3.stride(1), s_ks, s_kh, s_vs, s_vh, s_kb, s_vb, self.s_btb,
        )  # fmt: skip
        _launch(work_decode_kernel, (self.plan.num_items,), self.pinned, args, self.kw)
        if self.combined is not None and not self.fused:
            hq = self.kv_heads * self.group
            work_combine_kernel[(self.combined.shape[0] * self.q_len * hq,)](
                self.o_part, self.lse_part, o3, self.combined, o3.stride(0), o3.stride(1), hq, G=self.group,
                BLOCK_G=self.block_g, HEAD_DIM=o3.shape[-1], BLOCK_S=self.block_s, INTERPRETED=INTERPRET,
                SINKS=self.kw.get("SINKS"), HAS_SINKS=self.kw["HAS_SINKS"], **self.rows_kw,
            )  # fmt: skip
        return o

    def info(self) -> dict:
        launch = _launch_info(self.pinned or work_decode_kernel, self.kw)
        fused = {"combine": "fused"} if self.fused else {}
        # a step's rows: its most query tokens, the rows a program holds, and the row tiles a KV head is read by
        steps = {"q_len": self.q_len, "rows": self.block_g, "row_tiles": self.row_tiles} if self.q_len > 1 else {}
        some = {"requests": len(self.requests)} if self.requests is not None else {}  # some of a batch's requests
        return {"kernel": "work-decode", "split_rule": "work", **steps, **some, **fused, **self.plan.info(), **launch}


def _one_of(name: str, value: str, allowed: tuple[str, ...]) -> str:
    """`value` if allowed, else the one-line error that names the argument and what it takes."""
    if value not in allowed:
        raise ValueError(f"{name}: {value!r} is not valid; expected one of {', '.join(allowed)}")
    return value


class PagePrefetch(NamedTuple):
    """Where gathered paged tiles load the next tile's page ids a step ahead: in the prefill/varlen
    launches, in the split-KV decode launches."""

    prefill: bool = False
    decode: bool = False


class _TwoLaunches:
    """Two launches of one batch writing one output, no synchronisation between them: `chunks` (the varlen
    launch) on the caller's stream and `decodes` (a split-KV launch) before it, on a side stream where there is
    one (streams=2 on a GPU), forked from and joined to the caller's. A subclass sets chunks, decodes and out."""

    def _streams(self, streams: int, q) -> None:
        if streams not in (1, 2):
            raise ValueError(f"streams: {streams!r} is not valid; expected 1 or 2")
        self.side = torch.cuda.Stream(q.device) if streams == 2 and q.is_cuda else None

    def __call__(self) -> torch.Tensor:
        if self.side is None:
            self.chunks()
            self.decodes()
            return self.out
        main = torch.cuda.current_stream(self.out.device)
        self.side.wait_stream(main)  # the inputs and the output exist before the decodes read or write them
        with torch.cuda.stream(self.side):
            self.decodes()  # first: short and memory-bound, its programs start before the chunks' fill the SMs
        self.chunks()
        main.wait_stream(self.side)  # the call ends when both have (and a CUDA graph captures the join)
        return self.out

    def info(self) -> dict:
        streams = 1 if self.side is None else 2
        return {"kernel": "two launches", "streams": streams, "launches": [self.chunks.info(), self.decodes.info()]}


class Mixed(_TwoLaunches):
    """Chunks and decodes of one batch in two launches on one stream, no synchronisation between
    them: the varlen kernel for the requests before the decodes, the ragged split-KV decode for the
    decodes, both writing into one output. Serving engines order a batch this way (decodes together
    at its end); the decodes' rows and keys are then contiguous, so neither launch copies anything."""

    def __init__(self, q, k, v, cu_q_list, kv_lens_list, causal: bool, cu_seqlens_k=None, block_table=None,
                 page_size: int | None = None, schedule: str = "longest-first", streams: int = 1,
                 prefetch_pages: PagePrefetch = PagePrefetch(), split_rule: str = "fill",
                 varlen_tma: bool = False, varlen_config: triton.Config | None = None,
                 gluon: bool = False, gluon_grid: str = "blocks", forms: Forms = Forms(),
                 gluon_balance: str = "lpt"):  # fmt: skip
        """streams=2: the decodes on a second CUDA stream (forked from and joined to the caller's), so the
        memory-bound decode launch can fill the SMs the chunks leave idle; one stream on a CPU.
        prefetch_pages: page ids a step ahead in the chunks' launch and in the decodes' launch.
        varlen_config: the chunks' launch with this configuration instead of the autotuner's pick.
        gluon: the chunks through the ping-pong Gluon kernel (gluon_prefill.GluonVarlen) where the cache is
        dense or its pages fit the kernel's TMA loads (gluon_pages_fit) and the chunks average a 128-row block
        (the caller checks the GPU: gluon_capable), launched on gluon_grid (GluonVarlen's grid) with gluon_balance
        (its balance); the caller leaves it off for a form (the Gluon kernels have none). forms: both launches'."""
        self._streams(streams, q)
        first = split_point(cu_q_list)
        device = q.device
        ints = lambda values: torch.tensor(values, dtype=torch.int32, device=device)  # noqa: E731
        self.out = torch.empty_like(q)
        rows = cu_q_list[first]
        dense = block_table is None
        q_lens = [b - a for a, b in zip(cu_q_list, cu_q_list[1 : first + 1])]
        max_q = max(q_lens)
        if gluon and (dense or gluon_pages_fit(page_size)) and gluon_varlen_worth_it(q_lens):
            from .gluon_prefill import GluonVarlen

            self.chunks = GluonVarlen(q, k, v, ints(cu_q_list[: first + 1]),
                                      cu_seqlens_k[: first + 1] if dense else None, max_q, causal, out=self.out,
                                      block_table=None if dense else block_table[:first], page_size=page_size,
                                      kv_lens=None if dense else ints(kv_lens_list[:first]),
                                      grid=gluon_grid, balance=gluon_balance)  # fmt: skip
        else:
            self.chunks = Varlen(q, k, v, ints(cu_q_list[: first + 1]), ints(kv_lens_list[:first]), max_q, causal,
                                 cu_seqlens_k=cu_seqlens_k[: first + 1] if dense else None,
                                 block_table=None if dense else block_table[:first], page_size=page_size,
                                 out=self.out, schedule=schedule, prefetch_pages=prefetch_pages.prefill,
                                 use_tma=varlen_tma, config=varlen_config, forms=forms)  # fmt: skip
        tail = kv_lens_list[first:]
        if split_rule in WORK_RULES:
            self.decodes = WorkDecode(q[rows:], k, v, tail, cu_seqlens_k=cu_seqlens_k[first:] if dense else None,
                                      block_table=None if dense else block_table[first:], page_size=page_size,
                                      out=self.out[rows:], prefetch_pages=prefetch_pages.decode,
                                      fused=split_rule == "work-fused", forms=forms)  # fmt: skip
            return
        self.decodes = RaggedDecode(q[rows:], k, v, ints(tail), max(tail),
                                    cu_seqlens_k=cu_seqlens_k[first:] if dense else None,
                                    block_table=None if dense else block_table[first:], page_size=page_size,
                                    out=self.out[rows:], prefetch_pages=prefetch_pages.decode,
                                    split_rule=split_rule, forms=forms)  # fmt: skip


class MixedWork(_TwoLaunches):
    """A mixed batch's short requests (schedule.on_work_list: at most SPLIT_KV_MAX_Q query tokens, decodes and
    speculative steps, and chunks of at most SPLIT_KV_MAX_CHUNK tokens on caches of 64 keys a token or more,
    wherever they sit in the packed batch) on the split-KV work list, and its longer ones (other chunks, prompts)
    through the varlen kernel, two launches writing one output (the `spec=split-kv` variant): a step or a short
    chunk on a long cache beside a prompt gets its keys split over the SMs instead of one varlen program a KV head
    and row block reading them all. Neither launch copies anything: the varlen launch's ORDER holds only the long
    requests, the work list's items the short ones' own indices (WorkDecode's requests), and both read the batch's
    packed q, offsets, lengths and cache."""

    def __init__(self, q, k, v, q_lens, kv_lens, causal: bool, cu_seqlens_k=None, block_table=None,
                 page_size: int | None = None, schedule: str = "longest-first", streams: int = 1,
                 prefetch_pages: PagePrefetch = PagePrefetch(), varlen_tma: bool = False,
                 varlen_config: triton.Config | None = None, forms: Forms = Forms(), granule: int = SPLIT_GRANULE,
                 sms: int | None = None, gluon: bool = False, gluon_grid: str = "tiles",
                 gluon_balance: str = "lpt"):  # fmt: skip
        """q_lens, kv_lens: the batch's, lists of ints. streams, prefetch_pages, varlen_config: as Mixed's. gluon,
        gluon_grid, gluon_balance: as Mixed's, for the long requests' launch (the Gluon varlen kernel over them where
        the cache fits it and they average a 128-row block, else the Triton one: H100, draw:103, a 744-token chunk on
        13.9k keys took 1.26x the time in the Triton kernel). granule, sms: the work list's (WorkDecode's)."""
        self._streams(streams, q)
        q_lens, kv_lens = [int(n) for n in q_lens], [int(n) for n in kv_lens]
        short, long = short_and_long(q_lens, kv_lens)
        if not short or not long:
            raise ValueError(f"MixedWork: needs requests the work list takes (at most {SPLIT_KV_MAX_Q} query tokens, "
                             f"or {SPLIT_KV_MAX_CHUNK} on {SPLIT_KV_KEYS_A_TOKEN} keys a token) and others; got q_lens "
                             f"{q_lens}, kv_lens {kv_lens}")  # fmt: skip
        ints = lambda values: torch.tensor(values, dtype=torch.int32, device=q.device)  # noqa: E731
        self.out = torch.empty_like(q)
        cache = {"cu_seqlens_k": cu_seqlens_k, "block_table": block_table, "page_size": page_size}
        cu_q, longest = ints([0, *accumulate(q_lens)]), max(q_lens[i] for i in long)
        dense = block_table is None
        if gluon and (dense or gluon_pages_fit(page_size)) and gluon_varlen_worth_it([q_lens[i] for i in long]):
            from .gluon_prefill import GluonVarlen

            self.chunks = GluonVarlen(q, k, v, cu_q, cu_seqlens_k if dense else None, longest, causal, out=self.out,
                                      block_table=block_table, page_size=page_size,
                                      kv_lens=None if dense else ints(kv_lens), grid=gluon_grid,
                                      requests=long, balance=gluon_balance)  # fmt: skip
        else:
            self.chunks = Varlen(q, k, v, cu_q, ints(kv_lens), longest, causal, config=varlen_config, out=self.out,
                                 schedule=schedule, prefetch_pages=prefetch_pages.prefill, use_tma=varlen_tma,
                                 forms=forms, requests=long, **cache)  # fmt: skip
        self.decodes = WorkDecode(q, k, v, kv_lens, granule=granule, sms=sms, out=self.out,
                                  prefetch_pages=prefetch_pages.decode, forms=forms, q_lens=q_lens, requests=short,
                                  **cache)  # fmt: skip
        self.listed_chunks = sum(q_lens[i] > SPLIT_KV_MAX_Q for i in short)

    def info(self) -> dict:
        """Mixed's, and where the short requests went (the second launch: the work list), with the number of chunks
        among them (requests of more than SPLIT_KV_MAX_Q tokens on long caches) where there are any."""
        chunks = {"work_list_chunks": self.listed_chunks} if self.listed_chunks else {}
        return {**super().info(), "short_requests": "work-list", **chunks}


def short_and_long(q_lens, kv_lens) -> tuple[list[int], list[int]]:
    """The indices of the requests the work list takes (schedule.on_work_list: steps and decodes, chunks on long
    caches) and of the others (the varlen kernel's)."""
    short = [i for i, (q, n) in enumerate(zip(q_lens, kv_lens)) if on_work_list(q, n)]
    return short, [i for i in range(len(q_lens)) if i not in short]


def split_point(cu_q_list) -> int | None:
    """`specs.batch.trailing_decodes` of the query lengths these cumulative offsets hold."""
    return trailing_decodes([b - a for a, b in zip(cu_q_list, cu_q_list[1:])])


def combine(o_part, lse_part, out, kv_heads: int, group: int, splits: int, sinks=None) -> torch.Tensor:
    """Merge split partials into out [B, 1, Hq, D]: o_part [B·Hkv·splits, BLOCK_G, D] (normalised per
    split), lse_part [B·Hkv·splits, BLOCK_G] (log2 domain); each head's sink (sinks: [Hq], log2 units, as
    Forms.kernel_kw gives them) joins the denominator here, the one place a split request's output is normalised."""
    b, _, hq, d = out.shape
    combine_kernel[(b * hq,)](
        o_part, lse_part, out, out.stride(0), out.stride(2), kv_heads, splits,
        G=group, BLOCK_G=o_part.shape[1], HEAD_DIM=d, BLOCK_S=max(2, triton.next_power_of_2(splits)), SINKS=sinks,
        HAS_SINKS=sinks is not None,
    )  # fmt: skip
    return out


def _launch(kernel, grid, config: triton.Config | None, args: tuple, kw: dict) -> None:
    """Launch an autotuned kernel, or its plain jitted function with one pinned configuration."""
    if config is None:
        kernel[grid](*args, **kw)
        return
    names = kernel.fn.arg_names
    nargs = {**dict(zip(names, args)), **kw, **config.kwargs}
    _set_block_shapes(nargs)
    extra = {"maxnreg": config.maxnreg} if config.maxnreg else {}  # a register cap, for occupancy variants
    kernel.fn[grid](*args, **kw, **config.kwargs, num_warps=config.num_warps, num_stages=config.num_stages, **extra)


def _prefetching(asked: bool, block_table, descriptor=None) -> bool:
    """Page ids a step ahead apply to gathered paged tiles only (a dense cache has none; TMA pages hold a tile)."""
    return bool(asked and block_table is not None and descriptor is None)


def _launch_info(kernel, kw: dict) -> dict:
    """The configuration that ran (pinned, or the autotuner's pick) and how K/V came in, from the launch's
    keyword arguments `kw` (the ragged decode kernel has no TMA argument: it always gathers)."""
    config = kernel if isinstance(kernel, triton.Config) else getattr(kernel, "best_config", None)
    forms = "+".join(name for name, flag in (("window", "HAS_WINDOW"), ("sinks", "HAS_SINKS"), ("softcap", "SOFTCAP"))
                     if kw.get(flag))  # fmt: skip
    computed = {"forms": forms} if forms else {}  # what the kernel computed beside plain attention
    if kw.get("IS_FP8"):
        computed["kv_dtype"] = "fp8_e4m3"  # K and V read as e4m3, converted in the kernel
    if config is None:
        return computed
    regs = {"maxnreg": config.maxnreg} if config.maxnreg else {}
    ahead = {"page_ids_ahead": True} if kw["PREFETCH_PAGES"] else {}
    return {**config.kwargs, "warps": config.num_warps, "stages": config.num_stages, **regs,
            "kv_loads": "tma" if kw.get("TMA") else "gather", **ahead, **computed}  # fmt: skip
