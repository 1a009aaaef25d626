"""In-repo Triton attention kernels.

- `prefill_kernel`: FlashAttention-2 style forward for prefill and append. One program owns
  BLOCK_M rows of the *packed* (query position × GQA group member) axis of one KV head, so each K/V
  tile is loaded once for the whole group. Online softmax in fp32 (exp2, the scale folded into one
  fused multiply-add), causal bottom-right aligned: tiles every row sees in full run without a mask,
  tiles above the diagonal are never visited, the heaviest row blocks of a head start first.
- `decode_kernel` + `combine_kernel`: FlashDecoding. Programs = (batch × KV head) × KV splits; each
  computes its group's attention over one slice of the cache and writes a normalised partial output
  and its log-sum-exp; the combine step merges the splits. With one split the decode kernel writes
  the output itself.

K/V tiles come in through tensor descriptors (TMA on Hopper) when the cache is dense, or paged with
pages that hold whole tiles; otherwise (pages of 16 tokens, say) through gathered pointer loads.
Autotuned (block sizes, warps, stages) on CUDA; a single small configuration under the
interpreter (TRITON_INTERPRET=1), which runs these kernels on the CPU for the tests."""

from __future__ import annotations

import triton
import triton.language as tl
from triton import knobs

INTERPRET = bool(knobs.runtime.interpret)  # Triton's own switch (TRITON_INTERPRET=1), read by Triton
LOG2E = 1.4426950408889634


def _set_block_shapes(nargs):
    """Autotuner pre-hook: a tensor descriptor's box is the tile the chosen config loads."""
    for name in ("KD", "VD"):
        if nargs.get(name) is not None:
            nargs[name].block_shape = [nargs["BLOCK_N"], nargs["HEAD_DIM"]]


def _config(blocks: dict, warps: int, stages: int, maxnreg: int | None = None) -> triton.Config:
    return triton.Config(blocks, num_warps=warps, num_stages=stages, maxnreg=maxnreg, pre_hook=_set_block_shapes)


def _prefill_configs():
    if INTERPRET:
        return [_config({"BLOCK_M": 32, "BLOCK_N": 16}, 4, 1)]
    # H100, v2 (docs/perf-notes.md): 128 × 128, 8 warps, 3 stages won at every readme shape; the
    # others stay for shapes where it may not (short sequences, head dim 64). v6: 128 × 64, 8 warps,
    # 2 stages capped at 128 registers a thread fits two CTAs on an SM (each one's softmax hides behind
    # the other's GEMMs): 495 against 449 TF/s at the readme prefill on the H100 (tools/triton_explore)
    shapes = [(128, 128, 8, 3, None), (128, 64, 8, 3, None), (256, 64, 8, 2, None), (64, 128, 4, 3, None),
              (128, 64, 8, 2, 128)]  # fmt: skip
    return [_config({"BLOCK_M": m, "BLOCK_N": n}, w, s, r) for m, n, w, s, r in shapes]


def config_name(config: triton.Config) -> str:
    """A configuration's short name, e.g. 128x64w8s2r128 (BLOCK_M × BLOCK_N, warps, stages, register cap)."""
    blocks = "x".join(str(config.kwargs[k]) for k in ("BLOCK_M", "BLOCK_N"))
    return f"{blocks}w{config.num_warps}s{config.num_stages}" + (f"r{config.maxnreg}" if config.maxnreg else "")


def prefill_configs_by_name() -> dict[str, triton.Config]:
    """The prefill/varlen autotuner's configurations by short name (the variant varlen_config pins one)."""
    return {config_name(c): c for c in _prefill_configs()}


def _decode_configs():
    if INTERPRET:
        return [_config({"BLOCK_N": 16}, 4, 1)]
    shapes = [(64, 4, 3), (128, 4, 3), (128, 8, 3), (64, 4, 4)]
    return [_config({"BLOCK_N": n}, w, s) for n, w, s in shapes]


@triton.jit
def _tile_pages(BT, b, start, s_btb, SK, PAGE: tl.constexpr, BLOCK_N: tl.constexpr):
    """The page id of each key row of the tile at `start` (gathered loads of a paged cache): loaded once
    a tile and shared by its K and V loads."""
    cols = start + tl.arange(0, BLOCK_N)
    return tl.load(BT + b * s_btb + cols // PAGE, mask=cols < SK, other=0).to(tl.int64)


@triton.jit
def _load_tile(
    X, XD, BT, b, hkv, start, s_xb, s_xs, s_xh, s_btb, SK, SK_ROWS, pages,
    HEAD_DIM: tl.constexpr, PAGED: tl.constexpr, PAGE: tl.constexpr, BLOCK_N: tl.constexpr,
    TMA: tl.constexpr, MASKED: tl.constexpr,
):  # fmt: skip
    """The [BLOCK_N, HEAD_DIM] K or V tile of keys start … start + BLOCK_N − 1. Through the tensor
    descriptor XD when TMA (dense: rows b·SK_ROWS + start of the [B·Sk, Hkv·D] view; paged: a page
    holds the whole tile), else gathered pointer loads (any page size; `pages` from _tile_pages).
    Keys ≥ SK read as zero or as the next sequence's keys: callers mask their scores."""
    if TMA:
        if PAGED:
            page = tl.load(BT + b * s_btb + start // PAGE)
            row = page * PAGE + start % PAGE
        else:
            row = b * SK_ROWS + start
        return XD.load([row, hkv * HEAD_DIM])
    cols = start + tl.arange(0, BLOCK_N)
    d = tl.arange(0, HEAD_DIM)
    if PAGED:
        rows = pages * s_xb + (cols % PAGE) * s_xs
    else:
        rows = b.to(tl.int64) * s_xb + cols.to(tl.int64) * s_xs
    ptrs = X + rows[:, None] + hkv * s_xh + d[None, :]
    if MASKED:
        return tl.load(ptrs, mask=(cols < SK)[:, None], other=0.0)
    return tl.load(ptrs)


@triton.jit
def _full_tile(
    X, XD, BT, b, hkv, start, s_xb, s_xs, s_xh, s_btb, SK, SK_ROWS,
    HEAD_DIM: tl.constexpr, PAGED: tl.constexpr, PAGE: tl.constexpr, BLOCK_N: tl.constexpr, TMA: tl.constexpr,
):  # fmt: skip
    """The unmasked K or V tile at `start` with its own page ids (the QK_AHEAD variant loads K and V of
    different tiles, so they share none)."""
    pages = 0
    if PAGED and not TMA:
        pages = _tile_pages(BT, b, start, s_btb, SK, PAGE, BLOCK_N)
    return _load_tile(
        X, XD, BT, b, hkv, start, s_xb, s_xs, s_xh, s_btb, SK, SK_ROWS, pages, HEAD_DIM, PAGED, PAGE, BLOCK_N, TMA,
        False,
    )  # fmt: skip


@triton.jit
def _scores(q, k, INTERPRETED: tl.constexpr):
    if INTERPRETED:  # Triton 3.6's interpreter multiplies bf16 operands as raw bits
        return tl.dot(q.to(tl.float32), tl.trans(k.to(tl.float32)))
    return tl.dot(q, tl.trans(k))


@triton.jit
def _attend_tile(
    acc, m_i, l_i, ahead, q, K, V, KD, VD, BT, b, hkv, start, pos, qk_scale,
    s_kb, s_ks, s_kh, s_vb, s_vs, s_vh, s_btb, SK, SK_ROWS, offset,
    HEAD_DIM: tl.constexpr, PAGED: tl.constexpr, PAGE: tl.constexpr, BLOCK_N: tl.constexpr,
    MASKED: tl.constexpr, CAUSAL: tl.constexpr, TMA: tl.constexpr, INTERPRETED: tl.constexpr,
    PREFETCH: tl.constexpr,
):  # fmt: skip
    """One K/V tile of online softmax: returns the updated (acc, m_i, l_i, ahead); m_i is in log2 units.
    Gathered paged tiles load their page ids here, or with PREFETCH take them from `ahead` and load the
    next tile's into it. Under the interpreter the dots run in fp32: Triton 3.6's interpreter multiplies
    bf16 operands as raw bits."""
    pages = 0
    if PAGED and not TMA:
        if PREFETCH:
            pages = ahead
            ahead = _tile_pages(BT, b, start + BLOCK_N, s_btb, SK, PAGE, BLOCK_N)
        else:
            pages = _tile_pages(BT, b, start, s_btb, SK, PAGE, BLOCK_N)
    k = _load_tile(
        K, KD, BT, b, hkv, start, s_kb, s_ks, s_kh, s_btb, SK, SK_ROWS, pages, HEAD_DIM, PAGED, PAGE, BLOCK_N, TMA,
        MASKED,
    )  # fmt: skip
    qk = _scores(q, k, INTERPRETED)
    if MASKED:
        cols = start + tl.arange(0, BLOCK_N)
        keep = (cols < SK)[None, :]
        if CAUSAL:
            keep = keep & (cols[None, :] <= pos[:, None] + offset)
        qk = tl.where(keep, qk, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(qk, 1) * qk_scale)
    if MASKED:
        m_use = tl.where(m_new == float("-inf"), 0.0, m_new)  # a row that has seen no key yet
    else:
        m_use = m_new  # no score is masked, so the maximum is finite
    alpha = tl.exp2(m_i - m_use)
    p = tl.exp2(qk * qk_scale - m_use[:, None])  # one fused multiply-add a score
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None]
    v = _load_tile(
        V, VD, BT, b, hkv, start, s_vb, s_vs, s_vh, s_btb, SK, SK_ROWS, pages, HEAD_DIM, PAGED, PAGE, BLOCK_N, TMA,
        MASKED,
    )  # fmt: skip
    if INTERPRETED:
        acc = acc + tl.dot(p, v.to(tl.float32))
    else:
        acc = tl.dot(p.to(v.dtype), v, acc)
    return acc, m_new, l_i, ahead


@triton.jit
def _attend_range(
    acc, m_i, l_i, q, K, V, KD, VD, BT, b, hkv, lo, hi, pos, qk_scale,
    s_kb, s_ks, s_kh, s_vb, s_vs, s_vh, s_btb, SK, SK_ROWS, offset,
    HEAD_DIM: tl.constexpr, PAGED: tl.constexpr, PAGE: tl.constexpr, BLOCK_N: tl.constexpr,
    MASKED: tl.constexpr, CAUSAL: tl.constexpr, TMA: tl.constexpr, INTERPRETED: tl.constexpr,
    PREFETCH: tl.constexpr,
):  # fmt: skip
    """K/V tiles lo, lo + BLOCK_N, … < hi. A `tl.range` loop (software-pipelined over num_stages)
    when compiled; a `while` loop under the interpreter, whose `range` takes no run-time tensor
    bounds (Triton 3.6). Gathered paged tiles load their page ids in the tile's own step, or with
    PREFETCH one step ahead (carried through the loop), so that the chain page id → address → K/V
    load does not begin with a load the step must wait for."""
    ahead = 0
    if PAGED and not TMA and PREFETCH:
        ahead = _tile_pages(BT, b, lo, s_btb, SK, PAGE, BLOCK_N)
    if INTERPRETED:
        start = lo
        while start < hi:
            acc, m_i, l_i, ahead = _attend_tile(
                acc, m_i, l_i, ahead, q, K, V, KD, VD, BT, b, hkv, start, pos, qk_scale, s_kb, s_ks, s_kh, s_vb,
                s_vs, s_vh, s_btb, SK, SK_ROWS, offset, HEAD_DIM, PAGED, PAGE, BLOCK_N, MASKED, CAUSAL, TMA,
                INTERPRETED, PREFETCH,
            )  # fmt: skip
            start += BLOCK_N
    else:
        for start in tl.range(lo, hi, BLOCK_N):
            start = tl.multiple_of(start, BLOCK_N)
            acc, m_i, l_i, ahead = _attend_tile(
                acc, m_i, l_i, ahead, q, K, V, KD, VD, BT, b, hkv, start, pos, qk_scale, s_kb, s_ks, s_kh, s_vb,
                s_vs, s_vh, s_btb, SK, SK_ROWS, offset, HEAD_DIM, PAGED, PAGE, BLOCK_N, MASKED, CAUSAL, TMA,
                INTERPRETED, PREFETCH,
            )  # fmt: skip
    return acc, m_i, l_i


@triton.jit
def _softmax_pv(acc, m_i, l_i, qk, v, qk_scale, INTERPRETED: tl.constexpr):
    """Online softmax of one unmasked tile's scores and its P·V: (acc, m_i, l_i) updated."""
    m_new = tl.maximum(m_i, tl.max(qk, 1) * qk_scale)
    alpha = tl.exp2(m_i - m_new)
    p = tl.exp2(qk * qk_scale - m_new[:, None])
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None]
    if INTERPRETED:
        acc = acc + tl.dot(p, v.to(tl.float32))
    else:
        acc = tl.dot(p.to(v.dtype), v, acc)
    return acc, m_new, l_i


@triton.jit
def _attend_full_qk_ahead(
    acc, m_i, l_i, q, K, V, KD, VD, BT, b, hkv, lo, hi, qk_scale,
    s_kb, s_ks, s_kh, s_vb, s_vs, s_vh, s_btb, SK, SK_ROWS,
    HEAD_DIM: tl.constexpr, PAGED: tl.constexpr, PAGE: tl.constexpr, BLOCK_N: tl.constexpr,
    TMA: tl.constexpr, INTERPRETED: tl.constexpr,
):  # fmt: skip
    """The unmasked tiles lo … hi − 1 with the next tile's Q·Kᵀ issued before this tile's softmax (FA3's
    intra-warpgroup overlap, written in the source): the tensor cores can run that GEMM while the
    softmax runs, if the compiler keeps it in flight. Needs lo < hi."""
    k = _full_tile(K, KD, BT, b, hkv, lo, s_kb, s_ks, s_kh, s_btb, SK, SK_ROWS, HEAD_DIM, PAGED, PAGE, BLOCK_N, TMA)
    qk = _scores(q, k, INTERPRETED)
    prev = lo
    if INTERPRETED:
        start = lo + BLOCK_N
        while start < hi:
            acc, m_i, l_i, qk, prev = _qk_ahead_step(
                acc, m_i, l_i, qk, prev, q, K, V, KD, VD, BT, b, hkv, start, qk_scale, s_kb, s_ks, s_kh, s_vb,
                s_vs, s_vh, s_btb, SK, SK_ROWS, HEAD_DIM, PAGED, PAGE, BLOCK_N, TMA, INTERPRETED,
            )  # fmt: skip
            start += BLOCK_N
    else:
        for start in tl.range(lo + BLOCK_N, hi, BLOCK_N):
            start = tl.multiple_of(start, BLOCK_N)
            acc, m_i, l_i, qk, prev = _qk_ahead_step(
                acc, m_i, l_i, qk, prev, q, K, V, KD, VD, BT, b, hkv, start, qk_scale, s_kb, s_ks, s_kh, s_vb,
                s_vs, s_vh, s_btb, SK, SK_ROWS, HEAD_DIM, PAGED, PAGE, BLOCK_N, TMA, INTERPRETED,
            )  # fmt: skip
    v = _full_tile(V, VD, BT, b, hkv, prev, s_vb, s_vs, s_vh, s_btb, SK, SK_ROWS, HEAD_DIM, PAGED, PAGE, BLOCK_N, TMA)
    return _softmax_pv(acc, m_i, l_i, qk, v, qk_scale, INTERPRETED)


@triton.jit
def _qk_ahead_step(
    acc, m_i, l_i, qk, prev, q, K, V, KD, VD, BT, b, hkv, start, qk_scale,
    s_kb, s_ks, s_kh, s_vb, s_vs, s_vh, s_btb, SK, SK_ROWS,
    HEAD_DIM: tl.constexpr, PAGED: tl.constexpr, PAGE: tl.constexpr, BLOCK_N: tl.constexpr,
    TMA: tl.constexpr, INTERPRETED: tl.constexpr,
):  # fmt: skip
    """Issue Q·Kᵀ of the tile at `start`, then the softmax and P·V of the tile at `prev` (its scores `qk`)."""
    k = _full_tile(K, KD, BT, b, hkv, start, s_kb, s_ks, s_kh, s_btb, SK, SK_ROWS, HEAD_DIM, PAGED, PAGE, BLOCK_N, TMA)
    qk_next = _scores(q, k, INTERPRETED)
    v = _full_tile(V, VD, BT, b, hkv, prev, s_vb, s_vs, s_vh, s_btb, SK, SK_ROWS, HEAD_DIM, PAGED, PAGE, BLOCK_N, TMA)
    acc, m_i, l_i = _softmax_pv(acc, m_i, l_i, qk, v, qk_scale, INTERPRETED)
    return acc, m_i, l_i, qk_next, start


@triton.jit
def _key_bounds(
    pid_m, q_len, kv_len, G: tl.constexpr, CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr
):
    """(full, hi) for row block pid_m of the packed (position × group member) rows: keys 0 … full − 1
    are seen by every row (whole tiles, no mask needed), no row sees a key ≥ hi. Causal is bottom-right:
    tiles above the diagonal are skipped whole."""
    if CAUSAL:
        offset = kv_len - q_len
        pos_first = (pid_m * BLOCK_M) // G
        pos_last = tl.minimum((pid_m * BLOCK_M + BLOCK_M - 1) // G, q_len - 1)
        hi = tl.minimum(kv_len, offset + pos_last + 1)
        full = (tl.minimum(offset + pos_first + 1, kv_len) // BLOCK_N) * BLOCK_N
    else:
        hi = kv_len
        full = (kv_len // BLOCK_N) * BLOCK_N
    return full, hi


@triton.autotune(
    configs=_prefill_configs(),
    key=["SQ", "SK", "B", "HKV", "G", "HEAD_DIM", "PAGED", "PAGE", "CAUSAL", "TMA", "PREFETCH_PAGES"],
)
@triton.jit(do_not_specialize=["B"])
def prefill_kernel(
    Q, K, V, O, KD, VD, BT,
    s_qb, s_qs, s_qh, s_kb, s_ks, s_kh, s_vb, s_vs, s_vh, s_ob, s_os, s_oh, s_btb,
    SQ, SK, SK_ROWS, HKV, qk_scale,
    G: tl.constexpr, HEAD_DIM: tl.constexpr, PAGED: tl.constexpr, PAGE: tl.constexpr, CAUSAL: tl.constexpr,
    TMA: tl.constexpr, INTERPRETED: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    QK_AHEAD: tl.constexpr = False, PREFETCH_PAGES: tl.constexpr = False, B=1,
):  # fmt: skip
    # causal row blocks near the end of the sequence see the most keys: launch those first
    pid_m = tl.num_programs(0) - 1 - tl.program_id(0) if CAUSAL else tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // HKV
    hkv = pid_bh % HKV
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # packed (position, group member)
    pos = rows // G
    head = hkv * G + rows % G
    row_ok = rows < SQ * G
    d = tl.arange(0, HEAD_DIM)
    q_ptrs = Q + b.to(tl.int64) * s_qb + pos.to(tl.int64)[:, None] * s_qs + head[:, None] * s_qh + d[None, :]
    q = tl.load(q_ptrs, mask=row_ok[:, None], other=0.0)
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    offset = SK - SQ
    full, hi = _key_bounds(pid_m, SQ, SK, G, CAUSAL, BLOCK_M, BLOCK_N)
    # tiles every row sees in full: no mask; then the diagonal and the ragged tail, masked
    if QK_AHEAD:  # a pinned variant (tools/triton_explore.py): the next tile's Q·Kᵀ before this one's softmax
        if full > 0:
            acc, m_i, l_i = _attend_full_qk_ahead(
                acc, m_i, l_i, q, K, V, KD, VD, BT, b, hkv, 0, full, qk_scale, s_kb, s_ks, s_kh, s_vb, s_vs, s_vh,
                s_btb, SK, SK_ROWS, HEAD_DIM, PAGED, PAGE, BLOCK_N, TMA, INTERPRETED,
            )  # fmt: skip
    else:
        acc, m_i, l_i = _attend_range(
            acc, m_i, l_i, q, K, V, KD, VD, BT, b, hkv, 0, full, pos, qk_scale, s_kb, s_ks, s_kh, s_vb, s_vs, s_vh,
            s_btb, SK, SK_ROWS, offset, HEAD_DIM, PAGED, PAGE, BLOCK_N, False, CAUSAL, TMA, INTERPRETED, PREFETCH_PAGES,
        )  # fmt: skip
    acc, m_i, l_i = _attend_range(
        acc, m_i, l_i, q, K, V, KD, VD, BT, b, hkv, full, hi, pos, qk_scale, s_kb, s_ks, s_kh, s_vb, s_vs, s_vh, s_btb,
        SK, SK_ROWS, offset, HEAD_DIM, PAGED, PAGE, BLOCK_N, True, CAUSAL, TMA, INTERPRETED, PREFETCH_PAGES,
    )  # fmt: skip
    out = acc / l_i[:, None]
    o_ptrs = O + b.to(tl.int64) * s_ob + pos.to(tl.int64)[:, None] * s_os + head[:, None] * s_oh + d[None, :]
    tl.store(o_ptrs, out.to(O.dtype.element_ty), mask=row_ok[:, None])


@triton.autotune(
    configs=_prefill_configs(),
    key=["MAX_Q", "NUM_REQ", "HKV", "G", "HEAD_DIM", "PAGED", "PAGE", "CAUSAL", "PREFETCH_PAGES", "TILES", "TMA"],
)
@triton.jit
def varlen_kernel(
    Q, K, V, O, KD, VD, BT, CU_Q, CU_K, SEQ_K, ORDER,
    s_qs, s_qh, s_ks, s_kh, s_vs, s_vh, s_os, s_oh, s_kb, s_vb, s_btb,
    MAX_Q, HKV, qk_scale, NUM_REQ,
    G: tl.constexpr, HEAD_DIM: tl.constexpr, PAGED: tl.constexpr, PAGE: tl.constexpr, CAUSAL: tl.constexpr,
    LAST_ROWS_FIRST: tl.constexpr, INTERPRETED: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    PREFETCH_PAGES: tl.constexpr = False, TILES: tl.constexpr = False, BLOCK_R: tl.constexpr = 1,
    TMA: tl.constexpr = False,
):  # fmt: skip
    """A ragged batch in one launch: program (row block, request × KV head) over the packed queries of
    its request (rows CU_Q[b] …) against that request's keys: dense packed (rows CU_K[b] …) or paged
    (row b of the block table, SEQ_K[b] keys). Bottom-right causal per request; a program past its
    request's rows returns at once (decodes and short chunks beside long ones). ORDER maps the grid's
    request axis to requests: heaviest first when the host sorted it (`ops.Varlen`'s schedule), so the
    GPU starts the longest work first and the short requests fill the tail; with LAST_ROWS_FIRST causal
    row blocks run last first within a request (the last rows see the most keys).
    TILES: a one-dimensional grid of the row blocks that hold rows, (block, KV head) with the head fastest:
    program p takes block p // HKV of the requests in ORDER, found from their block counts (a cumulative
    sum over the NUM_REQ ≤ BLOCK_R requests), so no program is launched past its request's rows.
    TMA (dense only): K/V tiles through descriptors KD, VD over the packed [Σ kv_len, Hkv·D] view, from the
    request's first key row CU_K[b]; a tile past the request's end reads the next request's keys (or zeros at
    the end), which the key mask drops as it drops them in the uniform kernel."""
    if TILES:
        pid = tl.program_id(0) // HKV
        hkv = tl.program_id(0) % HKV
        r = tl.arange(0, BLOCK_R)
        r_ok = r < NUM_REQ
        req = tl.load(ORDER + r, mask=r_ok, other=0)
        lens = tl.load(CU_Q + req + 1, mask=r_ok, other=0) - tl.load(CU_Q + req, mask=r_ok, other=0)
        blocks = tl.where(r_ok, (lens * G + BLOCK_M - 1) // BLOCK_M, 0)
        ends = tl.cumsum(blocks, 0)
        i = tl.sum((ends <= pid).to(tl.int32), 0)  # the request (its place in ORDER) that holds block pid
        local = pid - tl.sum(tl.where(r == i, ends - blocks, 0), 0)
        pid_m = tl.sum(tl.where(r == i, blocks, 0), 0) - 1 - local if LAST_ROWS_FIRST else local
        b = tl.load(ORDER + i)
    else:
        pid_m = tl.num_programs(0) - 1 - tl.program_id(0) if LAST_ROWS_FIRST else tl.program_id(0)
        pid_bh = tl.program_id(1)
        b = tl.load(ORDER + pid_bh // HKV)
        hkv = pid_bh % HKV
    q_start = tl.load(CU_Q + b)
    q_len = tl.load(CU_Q + b + 1) - q_start
    if pid_m * BLOCK_M < q_len * G:
        kv_len = tl.load(SEQ_K + b)
        kv_b = b  # the paged tiles' block-table row, or (dense through TMA) the descriptor's first row
        if PAGED:
            k_base, v_base = K, V  # pages through row b of the block table
        else:
            k_start = tl.load(CU_K + b).to(tl.int64)
            k_base, v_base = K + k_start * s_ks, V + k_start * s_vs
            if TMA:
                kv_b = tl.load(CU_K + b)
        rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        pos = rows // G
        head = hkv * G + rows % G
        row_ok = rows < q_len * G
        d = tl.arange(0, HEAD_DIM)
        q_rows = (q_start + pos).to(tl.int64)
        q = tl.load(Q + q_rows[:, None] * s_qs + head[:, None] * s_qh + d[None, :], mask=row_ok[:, None], other=0.0)
        m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_M], tl.float32)
        acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
        offset = kv_len - q_len
        full, hi = _key_bounds(pid_m, q_len, kv_len, G, CAUSAL, BLOCK_M, BLOCK_N)
        acc, m_i, l_i = _attend_range(
            acc, m_i, l_i, q, k_base, v_base, KD, VD, BT, kv_b, hkv, 0, full, pos, qk_scale, s_kb, s_ks, s_kh, s_vb,
            s_vs, s_vh, s_btb, kv_len, 1, offset, HEAD_DIM, PAGED, PAGE, BLOCK_N, False, CAUSAL, TMA, INTERPRETED,
            PREFETCH_PAGES,
        )  # fmt: skip
        acc, m_i, l_i = _attend_range(
            acc, m_i, l_i, q, k_base, v_base, KD, VD, BT, kv_b, hkv, full, hi, pos, qk_scale, s_kb, s_ks, s_kh, s_vb,
            s_vs, s_vh, s_btb, kv_len, 1, offset, HEAD_DIM, PAGED, PAGE, BLOCK_N, True, CAUSAL, TMA, INTERPRETED,
            PREFETCH_PAGES,
        )  # fmt: skip
        out = acc / l_i[:, None]
        tl.store(O + q_rows[:, None] * s_os + head[:, None] * s_oh + d[None, :], out.to(O.dtype.element_ty),
                 mask=row_ok[:, None])  # fmt: skip


@triton.autotune(
    configs=_decode_configs(),
    key=["SK", "B", "NUM_SPLITS", "HKV", "G", "HEAD_DIM", "PAGED", "PAGE", "SPLIT", "TMA", "PREFETCH_PAGES"],
)
@triton.jit(do_not_specialize=["B"])
def decode_kernel(
    Q, K, V, O, KD, VD, O_PART, LSE_PART, BT,
    s_qb, s_qh, s_kb, s_ks, s_kh, s_vb, s_vs, s_vh, s_ob, s_oh, s_btb,
    SK, SK_ROWS, HKV, NUM_SPLITS, tokens_per_split, qk_scale,
    G: tl.constexpr, BLOCK_G: tl.constexpr, HEAD_DIM: tl.constexpr, PAGED: tl.constexpr, PAGE: tl.constexpr,
    SPLIT: tl.constexpr, TMA: tl.constexpr, INTERPRETED: tl.constexpr, BLOCK_N: tl.constexpr,
    PREFETCH_PAGES: tl.constexpr = False, B=1,
):  # fmt: skip
    pid_bh = tl.program_id(0)
    split = tl.program_id(1)
    b = pid_bh // HKV
    hkv = pid_bh % HKV
    g = tl.arange(0, BLOCK_G)  # the group's query heads, padded to a tensor-core tile
    g_ok = g < G
    head = hkv * G + g
    d = tl.arange(0, HEAD_DIM)
    q = tl.load(Q + b.to(tl.int64) * s_qb + head[:, None] * s_qh + d[None, :], mask=g_ok[:, None], other=0.0)
    m_i = tl.full([BLOCK_G], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_G], tl.float32)
    acc = tl.zeros([BLOCK_G, HEAD_DIM], tl.float32)
    lo = split * tokens_per_split
    hi = tl.minimum(SK, lo + tokens_per_split)
    full = lo + ((hi - lo) // BLOCK_N) * BLOCK_N  # whole tiles; only the last split has a ragged tail
    acc, m_i, l_i = _attend_range(
        acc, m_i, l_i, q, K, V, KD, VD, BT, b, hkv, lo, full, g, qk_scale, s_kb, s_ks, s_kh, s_vb, s_vs, s_vh, s_btb,
        SK, SK_ROWS, 0, HEAD_DIM, PAGED, PAGE, BLOCK_N, False, False, TMA, INTERPRETED, PREFETCH_PAGES,
    )  # fmt: skip
    acc, m_i, l_i = _attend_range(
        acc, m_i, l_i, q, K, V, KD, VD, BT, b, hkv, full, hi, g, qk_scale, s_kb, s_ks, s_kh, s_vb, s_vs, s_vh, s_btb,
        hi, SK_ROWS, 0, HEAD_DIM, PAGED, PAGE, BLOCK_N, True, False, TMA, INTERPRETED, PREFETCH_PAGES,
    )  # fmt: skip
    out = acc / l_i[:, None]
    if SPLIT:
        part = (b * HKV + hkv).to(tl.int64) * NUM_SPLITS + split
        tl.store(O_PART + (part * BLOCK_G + g)[:, None] * HEAD_DIM + d[None, :], out, mask=g_ok[:, None])
        tl.store(LSE_PART + part * BLOCK_G + g, m_i + tl.log2(l_i), mask=g_ok)
    else:
        tl.store(
            O + b.to(tl.int64) * s_ob + head[:, None] * s_oh + d[None, :],
            out.to(O.dtype.element_ty),
            mask=g_ok[:, None],
        )


@triton.autotune(
    configs=_decode_configs(),
    key=["MAX_K", "B", "NUM_SPLITS", "HKV", "G", "HEAD_DIM", "PAGED", "PAGE", "PREFETCH_PAGES"],
)
@triton.jit(do_not_specialize=["B"])
def ragged_decode_kernel(
    Q, K, V, O_PART, LSE_PART, BT, CU_K, SEQ_K,
    s_qb, s_qh, s_ks, s_kh, s_vs, s_vh, s_kb, s_vb, s_btb,
    MAX_K, HKV, NUM_SPLITS, tokens_per_split, qk_scale,
    G: tl.constexpr, BLOCK_G: tl.constexpr, HEAD_DIM: tl.constexpr, PAGED: tl.constexpr, PAGE: tl.constexpr,
    INTERPRETED: tl.constexpr, BLOCK_N: tl.constexpr, PREFETCH_PAGES: tl.constexpr = False, B=1,
):  # fmt: skip
    """Decodes on caches of different lengths: program (request × KV head, split). The splits cut the
    longest cache; a request uses as many as its own length needs (its split count), and a split past
    its end writes an empty partial (log-sum-exp −inf, output 0) that the combine weighs by zero."""
    pid_bh = tl.program_id(0)
    split = tl.program_id(1)
    b = pid_bh // HKV
    hkv = pid_bh % HKV
    kv_len = tl.load(SEQ_K + b)
    g = tl.arange(0, BLOCK_G)
    g_ok = g < G
    d = tl.arange(0, HEAD_DIM)
    part = (b * HKV + hkv).to(tl.int64) * NUM_SPLITS + split
    lo = split * tokens_per_split
    hi = tl.minimum(kv_len, lo + tokens_per_split)
    out = tl.zeros([BLOCK_G, HEAD_DIM], tl.float32)
    lse = tl.full([BLOCK_G], float("-inf"), tl.float32)
    if lo < hi:
        if PAGED:
            k_base, v_base = K, V
        else:
            k_start = tl.load(CU_K + b).to(tl.int64)
            k_base, v_base = K + k_start * s_ks, V + k_start * s_vs
        q = tl.load(Q + b.to(tl.int64) * s_qb + (hkv * G + g)[:, None] * s_qh + d[None, :], mask=g_ok[:, None],
                    other=0.0)  # fmt: skip
        m_i = tl.full([BLOCK_G], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_G], tl.float32)
        acc = tl.zeros([BLOCK_G, HEAD_DIM], tl.float32)
        full = lo + ((hi - lo) // BLOCK_N) * BLOCK_N
        acc, m_i, l_i = _attend_range(
            acc, m_i, l_i, q, k_base, v_base, None, None, BT, b, hkv, lo, full, g, qk_scale, s_kb, s_ks, s_kh, s_vb,
            s_vs, s_vh, s_btb, kv_len, 1, 0, HEAD_DIM, PAGED, PAGE, BLOCK_N, False, False, False, INTERPRETED,
            PREFETCH_PAGES,
        )  # fmt: skip
        acc, m_i, l_i = _attend_range(
            acc, m_i, l_i, q, k_base, v_base, None, None, BT, b, hkv, full, hi, g, qk_scale, s_kb, s_ks, s_kh, s_vb,
            s_vs, s_vh, s_btb, hi, 1, 0, HEAD_DIM, PAGED, PAGE, BLOCK_N, True, False, False, INTERPRETED,
            PREFETCH_PAGES,
        )  # fmt: skip
        out = acc / l_i[:, None]
        lse = m_i + tl.log2(l_i)
    tl.store(O_PART + (part * BLOCK_G + g)[:, None] * HEAD_DIM + d[None, :], out, mask=g_ok[:, None])
    tl.store(LSE_PART + part * BLOCK_G + g, lse, mask=g_ok)


@triton.jit
def combine_kernel(
    O_PART, LSE_PART, O, s_ob, s_oh, HKV, NUM_SPLITS,
    G: tl.constexpr, BLOCK_G: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_S: tl.constexpr,
):  # fmt: skip
    """out = Σ_s 2^(lse_s − max) · o_s / Σ_s 2^(lse_s − max): exact, overflow-free for any logits."""
    pid = tl.program_id(0)  # (batch, query head)
    hq = pid % (HKV * G)
    b = pid // (HKV * G)
    hkv = hq // G
    g = hq % G
    s = tl.arange(0, BLOCK_S)
    s_ok = s < NUM_SPLITS
    d = tl.arange(0, HEAD_DIM)
    part = (b * HKV + hkv).to(tl.int64) * NUM_SPLITS + s
    lse = tl.load(LSE_PART + part * BLOCK_G + g, mask=s_ok, other=float("-inf"))
    m = tl.max(lse, 0)
    w = tl.where(s_ok, tl.exp2(lse - m), 0.0)
    o = tl.load(O_PART + (part * BLOCK_G + g)[:, None] * HEAD_DIM + d[None, :], mask=s_ok[:, None], other=0.0)
    out = tl.sum(o * w[:, None], 0) / tl.sum(w, 0)
    tl.store(O + b.to(tl.int64) * s_ob + hq * s_oh + d, out.to(O.dtype.element_ty))


@triton.autotune(
    configs=_decode_configs(),
    key=["NUM_ITEMS", "ITEM_TOKENS", "HKV", "G", "HEAD_DIM", "PAGED", "PAGE", "PREFETCH_PAGES"],
)
@triton.jit(do_not_specialize=["NUM_ITEMS", "ITEM_TOKENS"])
def work_decode_kernel(
    Q, K, V, O, O_PART, LSE_PART, BT, CU_K, WORK, COUNTERS,
    s_qb, s_qh, s_ob, s_oh, s_ks, s_kh, s_vs, s_vh, s_kb, s_vb, s_btb,
    HKV, qk_scale, NUM_ITEMS, ITEM_TOKENS,
    G: tl.constexpr, BLOCK_G: tl.constexpr, HEAD_DIM: tl.constexpr, PAGED: tl.constexpr, PAGE: tl.constexpr,
    INTERPRETED: tl.constexpr, BLOCK_N: tl.constexpr, PREFETCH_PAGES: tl.constexpr = False,
    FUSED: tl.constexpr = False,
):  # fmt: skip
    """Decodes scheduled by work (schedule.py): program p takes item p of the work list WORK, int32 [N, 8]
    (request, KV head, lo, hi, part, first, pieces, counter), longest first: keys lo … hi − 1 of the request's
    cache (dense packed from row CU_K[request], or row `request` of the block table) for the KV head's query
    group. An item whose request is one piece (part −1) writes the output itself; the pieces of a split request
    write a partial output and log-sum-exp at `part`, merged by `work_combine_kernel`, or with FUSED by the
    last of the (request, KV head)'s pieces to finish (COUNTERS[counter] counts them, and is set back to 0 for
    the next call), so that the call is one launch. NUM_ITEMS and ITEM_TOKENS (the longest item) only key the
    autotuner. Boundaries lo are multiples of the largest BLOCK_N (the planner's granule)."""
    item = WORK + tl.program_id(0) * 8
    b = tl.load(item)
    hkv = tl.load(item + 1)
    lo = tl.load(item + 2)
    hi = tl.load(item + 3)
    part = tl.load(item + 4)
    g = tl.arange(0, BLOCK_G)
    g_ok = g < G
    d = tl.arange(0, HEAD_DIM)
    head = hkv * G + g
    out = tl.zeros([BLOCK_G, HEAD_DIM], tl.float32)
    lse = tl.full([BLOCK_G], float("-inf"), tl.float32)
    if lo < hi:
        if PAGED:
            k_base, v_base = K, V
        else:
            k_start = tl.load(CU_K + b).to(tl.int64)
            k_base, v_base = K + k_start * s_ks, V + k_start * s_vs
        q = tl.load(Q + b.to(tl.int64) * s_qb + head[:, None] * s_qh + d[None, :], mask=g_ok[:, None], other=0.0)
        m_i = tl.full([BLOCK_G], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_G], tl.float32)
        acc = tl.zeros([BLOCK_G, HEAD_DIM], tl.float32)
        full = lo + ((hi - lo) // BLOCK_N) * BLOCK_N
        acc, m_i, l_i = _attend_range(
            acc, m_i, l_i, q, k_base, v_base, None, None, BT, b, hkv, lo, full, g, qk_scale, s_kb, s_ks, s_kh, s_vb,
            s_vs, s_vh, s_btb, hi, 1, 0, HEAD_DIM, PAGED, PAGE, BLOCK_N, False, False, False, INTERPRETED,
            PREFETCH_PAGES,
        )  # fmt: skip
        acc, m_i, l_i = _attend_range(
            acc, m_i, l_i, q, k_base, v_base, None, None, BT, b, hkv, full, hi, g, qk_scale, s_kb, s_ks, s_kh, s_vb,
            s_vs, s_vh, s_btb, hi, 1, 0, HEAD_DIM, PAGED, PAGE, BLOCK_N, True, False, False, INTERPRETED,
            PREFETCH_PAGES,
        )  # fmt: skip
        out = acc / l_i[:, None]
        lse = m_i + tl.log2(l_i)
    if part < 0:
        o_ptrs = O + b.to(tl.int64) * s_ob + head[:, None] * s_oh + d[None, :]
        tl.store(o_ptrs, out.to(O.dtype.element_ty), mask=g_ok[:, None])
    else:
        slot = part.to(tl.int64) * BLOCK_G + g
        tl.store(O_PART + slot[:, None] * HEAD_DIM + d[None, :], out, mask=g_ok[:, None])
        tl.store(LSE_PART + slot, lse, mask=g_ok)
        if FUSED:
            first = tl.load(item + 5)
            pieces = tl.load(item + 6)
            counter = COUNTERS + tl.load(item + 7)
            tl.debug_barrier()  # every thread's partial stored before the count says so (released at GPU scope)
            done = tl.atomic_add(counter, 1, sem="acq_rel", scope="gpu")
            if done == pieces - 1:  # the last piece: every other one is stored and visible (acquired)
                merged = _merge_pieces(O_PART, LSE_PART, first, pieces, g, g_ok, d, BLOCK_G, HEAD_DIM, INTERPRETED)
                o_ptrs = O + b.to(tl.int64) * s_ob + head[:, None] * s_oh + d[None, :]
                tl.store(o_ptrs, merged.to(O.dtype.element_ty), mask=g_ok[:, None])
                tl.store(counter, 0)  # for the next call: every piece of this launch has counted


@triton.jit
def _merge_pieces(
    O_PART, LSE_PART, first, pieces, g, g_ok, d, BLOCK_G: tl.constexpr, HEAD_DIM: tl.constexpr,
    INTERPRETED: tl.constexpr,
):  # fmt: skip
    """The query group's output from its pieces first … first + pieces − 1, one at a time with a running
    maximum (as work_combine_kernel); loads through L2 (.cg), where the other SMs' partials are."""
    m = tl.full([BLOCK_G], float("-inf"), tl.float32)
    total = tl.zeros([BLOCK_G], tl.float32)
    acc = tl.zeros([BLOCK_G, HEAD_DIM], tl.float32)
    if INTERPRETED:
        p = 0
        while p < pieces:
            acc, m, total = _merge_step(O_PART, LSE_PART, acc, m, total, first + p, g, g_ok, d, BLOCK_G, HEAD_DIM)
            p += 1
    else:
        for p in tl.range(0, pieces):
            acc, m, total = _merge_step(O_PART, LSE_PART, acc, m, total, first + p, g, g_ok, d, BLOCK_G, HEAD_DIM)
    return acc / tl.where(total > 0, total, 1.0)[:, None]  # padding rows of the group (total 0) stay finite


@triton.jit
def _merge_step(
    O_PART, LSE_PART, acc, m, total, part, g, g_ok, d, BLOCK_G: tl.constexpr, HEAD_DIM: tl.constexpr
):  # fmt: skip
    slot = part.to(tl.int64) * BLOCK_G + g
    lse = tl.load(LSE_PART + slot, mask=g_ok, other=float("-inf"), cache_modifier=".cg")
    o = tl.load(O_PART + slot[:, None] * HEAD_DIM + d[None, :], mask=g_ok[:, None], other=0.0, cache_modifier=".cg")
    m_new = tl.maximum(m, lse)
    m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
    alpha = tl.exp2(m - m_use)
    w = tl.exp2(lse - m_use)
    return acc * alpha[:, None] + o * w[:, None], m_new, total * alpha + w


@triton.jit
def work_combine_kernel(
    O_PART, LSE_PART, O, COMBINED, s_ob, s_oh, HQ,
    G: tl.constexpr, BLOCK_G: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_S: tl.constexpr,
    INTERPRETED: tl.constexpr,
):  # fmt: skip
    """The pieces of each split request merged: program (row r of COMBINED, int32 [R, 3] (request, first part,
    pieces), query head). A request's pieces for KV head h sit at first + h · pieces + 0 … pieces − 1; any
    number of them, BLOCK_S at a time with a running maximum (exact and overflow-free, as combine_kernel)."""
    pid = tl.program_id(0)
    row = COMBINED + (pid // HQ) * 3
    hq = pid % HQ
    b = tl.load(row)
    pieces = tl.load(row + 2)
    first = tl.load(row + 1) + (hq // G) * pieces
    g = hq % G
    d = tl.arange(0, HEAD_DIM)
    s = tl.arange(0, BLOCK_S)
    m = tl.max(tl.full([BLOCK_S], float("-inf"), tl.float32), 0)
    total = tl.sum(tl.zeros([BLOCK_S], tl.float32), 0)
    acc = tl.zeros([HEAD_DIM], tl.float32)
    if INTERPRETED:  # the interpreter's range takes no run-time tensor bounds (Triton 3.6)
        start = 0
        while start < pieces:
            acc, m, total = _combine_step(O_PART, LSE_PART, acc, m, total, first, start, pieces, g, s, d, BLOCK_G,
                                          HEAD_DIM)  # fmt: skip
            start += BLOCK_S
    else:
        for start in tl.range(0, pieces, BLOCK_S):
            acc, m, total = _combine_step(O_PART, LSE_PART, acc, m, total, first, start, pieces, g, s, d, BLOCK_G,
                                          HEAD_DIM)  # fmt: skip
    tl.store(O + b.to(tl.int64) * s_ob + hq * s_oh + d, (acc / total).to(O.dtype.element_ty))


@triton.jit
def _combine_step(
    O_PART, LSE_PART, acc, m, total, first, start, pieces, g, s, d, BLOCK_G: tl.constexpr, HEAD_DIM: tl.constexpr
):
    """BLOCK_S more pieces into the running (acc, m, total): weights 2^(lse − running maximum)."""
    ok = start + s < pieces
    slot = (first + start + s).to(tl.int64) * BLOCK_G + g
    lse = tl.load(LSE_PART + slot, mask=ok, other=float("-inf"))
    m_new = tl.maximum(m, tl.max(lse, 0))
    m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
    alpha = tl.exp2(m - m_use)
    w = tl.where(ok, tl.exp2(lse - m_use), 0.0)
    o = tl.load(O_PART + slot[:, None] * HEAD_DIM + d[None, :], mask=ok[:, None], other=0.0)
    return acc * alpha + tl.sum(o * w[:, None], 0), m_new, total * alpha + tl.sum(w, 0)
