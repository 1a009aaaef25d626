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
Autotuned (block sizes, warps, stages) on CUDA, head dims above 128 over configurations of their own
(_WIDE_PREFILL, _WIDE_DECODE); a single small configuration under the interpreter (TRITON_INTERPRET=1), which
runs these kernels on the CPU for the tests.

Forms, each a constexpr flag whose off state compiles the plain kernel: HAS_WINDOW (a left window: the tiles
before it skipped, a decode's splits cut from the tile that holds its first key), HAS_SINKS (a logit a query
head in each row's denominator: in the epilogue, or once in the combine of a split), SOFTCAP (c·tanh(s / c)
of the scaled score, before the masks) and IS_FP8 (K and V read as e4m3 with fp32 scales a KV head)."""

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
    return [_config({"BLOCK_M": m, "BLOCK_N": n}, w, s, r) for m, n, w, s, r in (*shapes, *_WIDE_PREFILL)]


# head dims above 128 (Gemma-2's 256) tile with these only, the others with the rest (_by_head_dim): at 256 a
# 128-key K and V tile of three stages is 384 KiB, beyond the 227 KiB of shared memory an H100 SM has; these
# hold Q (BLOCK_M × 256) and two or three stages of K and V (2 × BLOCK_N × 256), 128-192 KiB in bf16
_WIDE_PREFILL = ((128, 64, 8, 2, None), (64, 64, 4, 2, None), (64, 32, 4, 3, None))
_WIDE_DECODE = ((64, 4, 2), (32, 4, 3), (64, 8, 2))
WIDE_HEAD_DIM = 128  # head dims above this take the _WIDE configurations


def _wide(config: triton.Config) -> bool:
    kw = config.kwargs
    key = (kw.get("BLOCK_M"), kw.get("BLOCK_N"), config.num_warps, config.num_stages, config.maxnreg)
    return key in {*_WIDE_PREFILL, *((None, *c, None) for c in _WIDE_DECODE)}


def _by_head_dim(configs, named_args, **kwargs):
    """Autotuner pruning: the configurations for the launch's head dim (the wide ones above WIDE_HEAD_DIM)."""
    wide = kwargs.get("HEAD_DIM", named_args.get("HEAD_DIM")) > WIDE_HEAD_DIM
    return [c for c in configs if _wide(c) == wide] or configs


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
    return [_config({"BLOCK_N": n}, w, s) for n, w, s in (*shapes, *_WIDE_DECODE)]


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
def _tanh(x):
    """tanh through exp2 (the interpreter has no libdevice): ±1 at the extremes, never NaN."""
    return 1.0 - 2.0 / (tl.exp2(x * 2.8853900817779268) + 1.0)  # 2·log2(e)


@triton.jit
def _attend_tile(
    acc, m_i, l_i, ahead, q, K, V, KD, VD, BT, b, hkv, start, pos, qk_scale,
    s_kb, s_ks, s_kh, s_vb, s_vs, s_vh, s_btb, SK, SK_ROWS, offset,
    HEAD_DIM: tl.constexpr, PAGED: tl.constexpr, PAGE: tl.constexpr, BLOCK_N: tl.constexpr,
    MASKED: tl.constexpr, CAUSAL: tl.constexpr, TMA: tl.constexpr, INTERPRETED: tl.constexpr,
    PREFETCH: tl.constexpr, first=0, cap=1.0, WINDOW: tl.constexpr = False, SOFTCAP: tl.constexpr = False,
    FP8: tl.constexpr = False,
):  # fmt: skip
    """One K/V tile of online softmax: returns the updated (acc, m_i, l_i, ahead); m_i is in log2 units.
    Gathered paged tiles load their page ids here, or with PREFETCH take them from `ahead` and load the
    next tile's into it. Under the interpreter the dots run in fp32: Triton 3.6's interpreter multiplies
    bf16 operands as raw bits. The forms, each a constexpr flag (off: the code without it): WINDOW hides, in a
    masked tile, the keys before each row's `first`; SOFTCAP maps the scaled score s to c·tanh(s / c), before
    the masks, with qk_scale = scale / c and cap = c·log2(e) (scores then in log2 units); FP8 tiles are
    loaded as e4m3 and converted to Q's dtype (exact: e4m3 values are bf16 and fp16 values), their scales
    folded in by the caller (the K scale into qk_scale, the V scale into the output)."""
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
    if FP8:
        k = k.to(q.dtype)
    qk = _scores(q, k, INTERPRETED)
    scale = qk_scale
    if SOFTCAP:
        qk = _tanh(qk * qk_scale) * cap
        scale = 1.0
    if MASKED:
        cols = start + tl.arange(0, BLOCK_N)
        keep = (cols < SK)[None, :]
        if CAUSAL:
            keep = keep & (cols[None, :] <= pos[:, None] + offset)
        if WINDOW:
            keep = keep & (cols[None, :] >= first[:, None])
        qk = tl.where(keep, qk, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(qk, 1) * scale)
    if MASKED:
        m_use = tl.where(m_new == float("-inf"), 0.0, m_new)  # a row that has seen no key yet
    else:
        m_use = m_new  # no score is masked, so the maximum is finite
    alpha = tl.exp2(m_i - m_use)
    p = tl.exp2(qk * scale - m_use[:, None])  # one fused multiply-add a score
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None]
    v = _load_tile(
        V, VD, BT, b, hkv, start, s_vb, s_vs, s_vh, s_btb, SK, SK_ROWS, pages, HEAD_DIM, PAGED, PAGE, BLOCK_N, TMA,
        MASKED,
    )  # fmt: skip
    if FP8:
        v = v.to(q.dtype)
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
    PREFETCH: tl.constexpr, first=0, cap=1.0, WINDOW: tl.constexpr = False, SOFTCAP: tl.constexpr = False,
    FP8: tl.constexpr = False,
):  # fmt: skip
    """K/V tiles lo, lo + BLOCK_N, … < hi (the forms as _attend_tile takes them). A `tl.range` loop
    (software-pipelined over num_stages) when compiled; a `while` loop under the interpreter, whose `range`
    takes no run-time tensor bounds (Triton 3.6). Gathered paged tiles load their page ids in the tile's own
    step, or with PREFETCH one step ahead (carried through the loop), so that the chain page id → address → K/V
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
                INTERPRETED, PREFETCH, first, cap, WINDOW, SOFTCAP, FP8,
            )  # fmt: skip
            start += BLOCK_N
    else:
        for start in tl.range(lo, hi, BLOCK_N):
            start = tl.multiple_of(start, BLOCK_N)
            acc, m_i, l_i, ahead = _attend_tile(
                acc, m_i, l_i, ahead, q, K, V, KD, VD, BT, b, hkv, start, pos, qk_scale, s_kb, s_ks, s_kh, s_vb,
                s_vs, s_vh, s_btb, SK, SK_ROWS, offset, HEAD_DIM, PAGED, PAGE, BLOCK_N, MASKED, CAUSAL, TMA,
                INTERPRETED, PREFETCH, first, cap, WINDOW, SOFTCAP, FP8,
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


@triton.jit
def _window_edge(lo, full, first, BLOCK_N: tl.constexpr):
    """The first tile start on lo's grid (lo + i·BLOCK_N) at or after key `first`, at most `full`: the tiles
    lo … edge − 1 hold keys before some row's window (masked), the tiles edge … full − 1 none."""
    return tl.minimum(lo + tl.cdiv(tl.maximum(first - lo, 0), BLOCK_N) * BLOCK_N, full)


@triton.jit
def _window_bounds(pid_m, q_len, kv_len, window, full, G: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """(lo, edge) for row block pid_m under a left window (bottom-right: the row at query position i is key
    position p = kv_len − q_len + i and sees keys p − window … p): no row sees a key before the tile at lo;
    from edge on (up to `full`, _key_bounds') every row sees every key. Tiles lo … edge − 1 are masked."""
    offset = kv_len - q_len
    pos_first = (pid_m * BLOCK_M) // G
    pos_last = tl.minimum((pid_m * BLOCK_M + BLOCK_M - 1) // G, q_len - 1)
    lo = (tl.maximum(offset + pos_first - window, 0) // BLOCK_N) * BLOCK_N
    return lo, _window_edge(lo, full, offset + pos_last - window, BLOCK_N)


@triton.jit
def _sink_share(SINKS, head, ok, m_i, l_i):
    """The share of a row's softmax its keys keep beside its sink logit (SINKS: log2 units, one a query head):
    1 / (1 + 2^(sink − lse)), lse = log2 Σ 2^score of the keys (m_i + log2 l_i)."""
    sink = tl.load(SINKS + head, mask=ok, other=0.0)
    return 1.0 / (1.0 + tl.exp2(sink - (m_i + tl.log2(l_i))))


FORM_KEYS = ["HAS_WINDOW", "HAS_SINKS", "SOFTCAP", "IS_FP8"]  # each form a specialization, tuned on itself


@triton.autotune(
    configs=_prefill_configs(),
    key=["SQ", "SK", "B", "HKV", "G", "HEAD_DIM", "PAGED", "PAGE", "CAUSAL", "TMA", "PREFETCH_PAGES", *FORM_KEYS],
    prune_configs_by={"early_config_prune": _by_head_dim},
)
@triton.jit(do_not_specialize=["B"])
def prefill_kernel(
    Q, K, V, O, KD, VD, BT,
    s_qb, s_qs, s_qh, s_kb, s_ks, s_kh, s_vb, s_vs, s_vh, s_ob, s_os, s_oh, s_btb,
    SQ, SK, SK_ROWS, HKV, qk_scale,
    G: tl.constexpr, HEAD_DIM: tl.constexpr, PAGED: tl.constexpr, PAGE: tl.constexpr, CAUSAL: tl.constexpr,
    TMA: tl.constexpr, INTERPRETED: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    QK_AHEAD: tl.constexpr = False, PREFETCH_PAGES: tl.constexpr = False, B=1,
    SINKS=None, K_SCALE=None, V_SCALE=None, window=None, softcap=None, HAS_WINDOW: tl.constexpr = False,
    HAS_SINKS: tl.constexpr = False, SOFTCAP: tl.constexpr = False, IS_FP8: tl.constexpr = False,
):  # fmt: skip
    """The forms, each a constexpr flag whose off state compiles the plain kernel: HAS_WINDOW (a left window of
    `window` keys: the tiles before it skipped, its edge masked), HAS_SINKS (SINKS, log2 units, [Hq]: each row's
    share beside its sink at the end), SOFTCAP (qk_scale = scale / c, softcap = c·log2(e): _attend_tile),
    IS_FP8 (K and V in e4m3, K_SCALE and V_SCALE fp32 [Hkv]: the K scale folded into qk_scale, the V scale
    into the output). QK_AHEAD (a pinned exploration variant) takes none of them."""
    tl.static_assert(not (QK_AHEAD and (HAS_WINDOW or SOFTCAP or IS_FP8)), "QK_AHEAD: plain attention only")
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
    if IS_FP8:
        qk_scale = qk_scale * tl.load(K_SCALE + hkv)
    full, hi = _key_bounds(pid_m, SQ, SK, G, CAUSAL, BLOCK_M, BLOCK_N)
    start = 0
    first = pos  # the window's first key a row (used only with HAS_WINDOW)
    if HAS_WINDOW:  # the tiles before the window are never visited; those across its edge are masked
        first = pos + offset - window
        lo, start = _window_bounds(pid_m, SQ, SK, window, full, G, BLOCK_M, BLOCK_N)
        acc, m_i, l_i = _attend_range(
            acc, m_i, l_i, q, K, V, KD, VD, BT, b, hkv, lo, start, pos, qk_scale, s_kb, s_ks, s_kh, s_vb, s_vs,
            s_vh, s_btb, SK, SK_ROWS, offset, HEAD_DIM, PAGED, PAGE, BLOCK_N, True, CAUSAL, TMA, INTERPRETED,
            PREFETCH_PAGES, first, softcap, HAS_WINDOW, SOFTCAP, IS_FP8,
        )  # fmt: skip
    # tiles every row sees in full: no mask; then the diagonal and the ragged tail, masked
    if QK_AHEAD:  # a pinned variant (tools/triton_explore.py): the next tile's Q·Kᵀ before this one's softmax
        if full > start:
            acc, m_i, l_i = _attend_full_qk_ahead(
                acc, m_i, l_i, q, K, V, KD, VD, BT, b, hkv, start, full, qk_scale, s_kb, s_ks, s_kh, s_vb, s_vs,
                s_vh, s_btb, SK, SK_ROWS, HEAD_DIM, PAGED, PAGE, BLOCK_N, TMA, INTERPRETED,
            )  # fmt: skip
    else:
        acc, m_i, l_i = _attend_range(
            acc, m_i, l_i, q, K, V, KD, VD, BT, b, hkv, start, full, pos, qk_scale, s_kb, s_ks, s_kh, s_vb, s_vs,
            s_vh, s_btb, SK, SK_ROWS, offset, HEAD_DIM, PAGED, PAGE, BLOCK_N, False, CAUSAL, TMA, INTERPRETED,
            PREFETCH_PAGES, first, softcap, HAS_WINDOW, SOFTCAP, IS_FP8,
        )  # fmt: skip
    acc, m_i, l_i = _attend_range(
        acc, m_i, l_i, q, K, V, KD, VD, BT, b, hkv, full, hi, pos, qk_scale, s_kb, s_ks, s_kh, s_vb, s_vs, s_vh, s_btb,
        SK, SK_ROWS, offset, HEAD_DIM, PAGED, PAGE, BLOCK_N, True, CAUSAL, TMA, INTERPRETED, PREFETCH_PAGES, first,
        softcap, HAS_WINDOW, SOFTCAP, IS_FP8,
    )  # fmt: skip
    out = acc / l_i[:, None]
    if HAS_SINKS:
        out = out * _sink_share(SINKS, head, row_ok, m_i, l_i)[:, None]
    if IS_FP8:
        out = out * tl.load(V_SCALE + hkv)
    o_ptrs = O + b.to(tl.int64) * s_ob + pos.to(tl.int64)[:, None] * s_os + head[:, None] * s_oh + d[None, :]
    tl.store(o_ptrs, out.to(O.dtype.element_ty), mask=row_ok[:, None])


@triton.autotune(
    configs=_prefill_configs(),
    key=[
        "MAX_Q",
        "NUM_REQ",
        "HKV",
        "G",
        "HEAD_DIM",
        "PAGED",
        "PAGE",
        "CAUSAL",
        "PREFETCH_PAGES",
        "TILES",
        "TMA",
        *FORM_KEYS,
    ],
    prune_configs_by={"early_config_prune": _by_head_dim},
)
@triton.jit
def varlen_kernel(
    Q, K, V, O, KD, VD, BT, CU_Q, CU_K, SEQ_K, ORDER,
    s_qs, s_qh, s_ks, s_kh, s_vs, s_vh, s_os, s_oh, s_kb, s_vb, s_btb,
    MAX_Q, HKV, qk_scale, NUM_REQ,
    G: tl.constexpr, HEAD_DIM: tl.constexpr, PAGED: tl.constexpr, PAGE: tl.constexpr, CAUSAL: tl.constexpr,
    LAST_ROWS_FIRST: tl.constexpr, INTERPRETED: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    PREFETCH_PAGES: tl.constexpr = False, TILES: tl.constexpr = False, BLOCK_R: tl.constexpr = 1,
    TMA: tl.constexpr = False, SINKS=None, K_SCALE=None, V_SCALE=None, window=None, softcap=None,
    HAS_WINDOW: tl.constexpr = False, HAS_SINKS: tl.constexpr = False, SOFTCAP: tl.constexpr = False,
    IS_FP8: tl.constexpr = False,
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
    the end), which the key mask drops as it drops them in the uniform kernel.
    The forms as prefill_kernel takes them, the window per request (bottom-right in its own keys)."""
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
        scale = qk_scale
        if IS_FP8:
            scale = qk_scale * tl.load(K_SCALE + hkv)
        full, hi = _key_bounds(pid_m, q_len, kv_len, G, CAUSAL, BLOCK_M, BLOCK_N)
        start = 0
        first = pos  # the window's first key a row (used only with HAS_WINDOW)
        if HAS_WINDOW:
            first = pos + offset - window
            lo, start = _window_bounds(pid_m, q_len, kv_len, window, full, G, BLOCK_M, BLOCK_N)
            acc, m_i, l_i = _attend_range(
                acc, m_i, l_i, q, k_base, v_base, KD, VD, BT, kv_b, hkv, lo, start, pos, scale, s_kb, s_ks, s_kh,
                s_vb, s_vs, s_vh, s_btb, kv_len, 1, offset, HEAD_DIM, PAGED, PAGE, BLOCK_N, True, CAUSAL, TMA,
                INTERPRETED, PREFETCH_PAGES, first, softcap, HAS_WINDOW, SOFTCAP, IS_FP8,
            )  # fmt: skip
        acc, m_i, l_i = _attend_range(
            acc, m_i, l_i, q, k_base, v_base, KD, VD, BT, kv_b, hkv, start, full, pos, scale, s_kb, s_ks, s_kh, s_vb,
            s_vs, s_vh, s_btb, kv_len, 1, offset, HEAD_DIM, PAGED, PAGE, BLOCK_N, False, CAUSAL, TMA, INTERPRETED,
            PREFETCH_PAGES, first, softcap, HAS_WINDOW, SOFTCAP, IS_FP8,
        )  # fmt: skip
        acc, m_i, l_i = _attend_range(
            acc, m_i, l_i, q, k_base, v_base, KD, VD, BT, kv_b, hkv, full, hi, pos, scale, s_kb, s_ks, s_kh, s_vb,
            s_vs, s_vh, s_btb, kv_len, 1, offset, HEAD_DIM, PAGED, PAGE, BLOCK_N, True, CAUSAL, TMA, INTERPRETED,
            PREFETCH_PAGES, first, softcap, HAS_WINDOW, SOFTCAP, IS_FP8,
        )  # fmt: skip
        out = acc / l_i[:, None]
        if HAS_SINKS:
            out = out * _sink_share(SINKS, head, row_ok, m_i, l_i)[:, None]
        if IS_FP8:
            out = out * tl.load(V_SCALE + hkv)
        tl.store(O + q_rows[:, None] * s_os + head[:, None] * s_oh + d[None, :], out.to(O.dtype.element_ty),
                 mask=row_ok[:, None])  # fmt: skip


@triton.autotune(
    configs=_decode_configs(),
    key=[
        "SK",
        "B",
        "NUM_SPLITS",
        "HKV",
        "G",
        "HEAD_DIM",
        "PAGED",
        "PAGE",
        "SPLIT",
        "TMA",
        "PREFETCH_PAGES",
        *FORM_KEYS,
    ],
    prune_configs_by={"early_config_prune": _by_head_dim},
)
@triton.jit(do_not_specialize=["B"])
def decode_kernel(
    Q, K, V, O, KD, VD, O_PART, LSE_PART, BT,
    s_qb, s_qh, s_kb, s_ks, s_kh, s_vb, s_vs, s_vh, s_ob, s_oh, s_btb,
    SK, SK_ROWS, HKV, NUM_SPLITS, tokens_per_split, qk_scale,
    G: tl.constexpr, BLOCK_G: tl.constexpr, HEAD_DIM: tl.constexpr, PAGED: tl.constexpr, PAGE: tl.constexpr,
    SPLIT: tl.constexpr, TMA: tl.constexpr, INTERPRETED: tl.constexpr, BLOCK_N: tl.constexpr,
    PREFETCH_PAGES: tl.constexpr = False, B=1, SINKS=None, K_SCALE=None, V_SCALE=None, window=None, softcap=None,
    HAS_WINDOW: tl.constexpr = False, HAS_SINKS: tl.constexpr = False, SOFTCAP: tl.constexpr = False,
    IS_FP8: tl.constexpr = False,
):  # fmt: skip
    """One query a request: program (request × KV head, split) over keys split · tokens_per_split …, or with
    HAS_WINDOW over the window's keys only, from the tile that holds its first key (SK − 1 − window): the
    splits cut those, so the time does not grow with the cache; a split past them writes an empty partial.
    The sinks join in the combine when SPLIT (once, there), else here; the other forms as prefill_kernel's."""
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
    if IS_FP8:
        qk_scale = qk_scale * tl.load(K_SCALE + hkv)
    lo = split * tokens_per_split
    hi = tl.minimum(SK, lo + tokens_per_split)
    first = g  # the window's first key (used only with HAS_WINDOW)
    if HAS_WINDOW:
        key0 = tl.maximum(SK - 1 - window, 0)
        first = tl.zeros([BLOCK_G], tl.int32) + key0
        lo = (key0 // BLOCK_N) * BLOCK_N + split * tokens_per_split
        hi = tl.maximum(lo, tl.minimum(SK, lo + tokens_per_split))  # empty past the window's end
    full = lo + ((hi - lo) // BLOCK_N) * BLOCK_N  # whole tiles; only the last split has a ragged tail
    start = lo
    if HAS_WINDOW:
        start = _window_edge(lo, full, key0, BLOCK_N)
        acc, m_i, l_i = _attend_range(
            acc, m_i, l_i, q, K, V, KD, VD, BT, b, hkv, lo, start, g, qk_scale, s_kb, s_ks, s_kh, s_vb, s_vs, s_vh,
            s_btb, hi, SK_ROWS, 0, HEAD_DIM, PAGED, PAGE, BLOCK_N, True, False, TMA, INTERPRETED, PREFETCH_PAGES,
            first, softcap, HAS_WINDOW, SOFTCAP, IS_FP8,
        )  # fmt: skip
    acc, m_i, l_i = _attend_range(
        acc, m_i, l_i, q, K, V, KD, VD, BT, b, hkv, start, full, g, qk_scale, s_kb, s_ks, s_kh, s_vb, s_vs, s_vh,
        s_btb, SK, SK_ROWS, 0, HEAD_DIM, PAGED, PAGE, BLOCK_N, False, False, TMA, INTERPRETED, PREFETCH_PAGES, first,
        softcap, HAS_WINDOW, SOFTCAP, IS_FP8,
    )  # fmt: skip
    acc, m_i, l_i = _attend_range(
        acc, m_i, l_i, q, K, V, KD, VD, BT, b, hkv, full, hi, g, qk_scale, s_kb, s_ks, s_kh, s_vb, s_vs, s_vh, s_btb,
        hi, SK_ROWS, 0, HEAD_DIM, PAGED, PAGE, BLOCK_N, True, False, TMA, INTERPRETED, PREFETCH_PAGES, first,
        softcap, HAS_WINDOW, SOFTCAP, IS_FP8,
    )  # fmt: skip
    if HAS_WINDOW:  # an empty split: output 0, log-sum-exp −inf (weighed by zero in the combine)
        out = acc / tl.where(l_i > 0, l_i, 1.0)[:, None]
    else:
        out = acc / l_i[:, None]
    if IS_FP8:
        out = out * tl.load(V_SCALE + hkv)
    if SPLIT:
        part = (b * HKV + hkv).to(tl.int64) * NUM_SPLITS + split
        tl.store(O_PART + (part * BLOCK_G + g)[:, None] * HEAD_DIM + d[None, :], out, mask=g_ok[:, None])
        tl.store(LSE_PART + part * BLOCK_G + g, m_i + tl.log2(l_i), mask=g_ok)
    else:
        if HAS_SINKS:
            out = out * _sink_share(SINKS, head, g_ok, m_i, l_i)[:, None]
        tl.store(
            O + b.to(tl.int64) * s_ob + head[:, None] * s_oh + d[None, :],
            out.to(O.dtype.element_ty),
            mask=g_ok[:, None],
        )


@triton.jit
def _attend_keys(
    acc, m_i, l_i, q, K, V, BT, b, hkv, lo, full, hi, g, qk_scale, K_SCALE, window, softcap,
    s_kb, s_ks, s_kh, s_vb, s_vs, s_vh, s_btb, SK, kv_len,
    BLOCK_G: tl.constexpr, HEAD_DIM: tl.constexpr, PAGED: tl.constexpr, PAGE: tl.constexpr, BLOCK_N: tl.constexpr,
    INTERPRETED: tl.constexpr, PREFETCH: tl.constexpr, WINDOW: tl.constexpr, SOFTCAP: tl.constexpr,
    FP8: tl.constexpr, offset=0, CAUSAL: tl.constexpr = False,
):  # fmt: skip
    """Keys lo … hi − 1 of one request's gathered cache for a decode's query group (ragged and work-list
    decodes): whole tiles lo … full − 1 unmasked (their page ids bounded by SK), the tail masked; with WINDOW
    the tiles before the one that holds the first key of the window of a kv_len-key cache masked too.
    CAUSAL (a speculative step's rows, work_decode_kernel's Q_LEN > 1): g holds each row's query token, the
    first at key `offset` (kv_len − q_len); the caller ends `full` before the first key some row must not see,
    the tail hides each row's keys past offset + g, and a window starts at each row's own first key (the
    edge of the masked tiles at the last token's, the latest)."""
    if FP8:
        qk_scale = qk_scale * tl.load(K_SCALE + hkv)
    start = lo
    first = g  # the window's first key (used only with WINDOW)
    if WINDOW:
        key0 = tl.maximum(kv_len - 1 - window, 0)
        first = tl.zeros([BLOCK_G], tl.int32) + key0
        if CAUSAL:
            first = g + offset - window
        start = _window_edge(lo, full, key0, BLOCK_N)
        acc, m_i, l_i = _attend_range(
            acc, m_i, l_i, q, K, V, None, None, BT, b, hkv, lo, start, g, qk_scale, s_kb, s_ks, s_kh, s_vb, s_vs,
            s_vh, s_btb, hi, 1, 0, HEAD_DIM, PAGED, PAGE, BLOCK_N, True, False, False, INTERPRETED, PREFETCH, first,
            softcap, WINDOW, SOFTCAP, FP8,
        )  # fmt: skip
    acc, m_i, l_i = _attend_range(
        acc, m_i, l_i, q, K, V, None, None, BT, b, hkv, start, full, g, qk_scale, s_kb, s_ks, s_kh, s_vb, s_vs, s_vh,
        s_btb, SK, 1, 0, HEAD_DIM, PAGED, PAGE, BLOCK_N, False, False, False, INTERPRETED, PREFETCH, first, softcap,
        WINDOW, SOFTCAP, FP8,
    )  # fmt: skip
    return _attend_range(
        acc, m_i, l_i, q, K, V, None, None, BT, b, hkv, full, hi, g, qk_scale, s_kb, s_ks, s_kh, s_vb, s_vs, s_vh,
        s_btb, hi, 1, offset, HEAD_DIM, PAGED, PAGE, BLOCK_N, True, CAUSAL, False, INTERPRETED, PREFETCH, first,
        softcap, WINDOW, SOFTCAP, FP8,
    )  # fmt: skip


@triton.autotune(
    configs=_decode_configs(),
    key=["MAX_K", "B", "NUM_SPLITS", "HKV", "G", "HEAD_DIM", "PAGED", "PAGE", "PREFETCH_PAGES", *FORM_KEYS],
    prune_configs_by={"early_config_prune": _by_head_dim},
)
@triton.jit(do_not_specialize=["B"])
def ragged_decode_kernel(
    Q, K, V, O_PART, LSE_PART, BT, CU_K, SEQ_K,
    s_qb, s_qh, s_ks, s_kh, s_vs, s_vh, s_kb, s_vb, s_btb,
    MAX_K, HKV, NUM_SPLITS, tokens_per_split, qk_scale,
    G: tl.constexpr, BLOCK_G: tl.constexpr, HEAD_DIM: tl.constexpr, PAGED: tl.constexpr, PAGE: tl.constexpr,
    INTERPRETED: tl.constexpr, BLOCK_N: tl.constexpr, PREFETCH_PAGES: tl.constexpr = False, B=1,
    SINKS=None, K_SCALE=None, V_SCALE=None, window=None, softcap=None, HAS_WINDOW: tl.constexpr = False,
    HAS_SINKS: tl.constexpr = False, SOFTCAP: tl.constexpr = False, IS_FP8: tl.constexpr = False,
):  # fmt: skip
    """Decodes on caches of different lengths: program (request × KV head, split). The splits cut the
    longest cache; a request uses as many as its own length needs (its split count), and a split past
    its end writes an empty partial (log-sum-exp −inf, output 0) that the combine weighs by zero.
    HAS_WINDOW: the splits cut each request's window only, from the tile that holds its first key (as
    decode_kernel). The sinks join in the combine; the other forms as prefill_kernel's."""
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
    if HAS_WINDOW:
        key0 = tl.maximum(kv_len - 1 - window, 0)
        lo = (key0 // BLOCK_N) * BLOCK_N + split * tokens_per_split
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
        acc, m_i, l_i = _attend_keys(
            acc, m_i, l_i, q, k_base, v_base, BT, b, hkv, lo, full, hi, g, qk_scale, K_SCALE, window, softcap, s_kb,
            s_ks, s_kh, s_vb, s_vs, s_vh, s_btb, kv_len, kv_len, BLOCK_G, HEAD_DIM, PAGED, PAGE, BLOCK_N, INTERPRETED,
            PREFETCH_PAGES, HAS_WINDOW, SOFTCAP, IS_FP8,
        )  # fmt: skip
        out = acc / l_i[:, None]
        if IS_FP8:
            out = out * tl.load(V_SCALE + hkv)
        lse = m_i + tl.log2(l_i)
    tl.store(O_PART + (part * BLOCK_G + g)[:, None] * HEAD_DIM + d[None, :], out, mask=g_ok[:, None])
    tl.store(LSE_PART + part * BLOCK_G + g, lse, mask=g_ok)


@triton.jit
def combine_kernel(
    O_PART, LSE_PART, O, s_ob, s_oh, HKV, NUM_SPLITS,
    G: tl.constexpr, BLOCK_G: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_S: tl.constexpr,
    SINKS=None, HAS_SINKS: tl.constexpr = False,
):  # fmt: skip
    """out = Σ_s 2^(lse_s − max) · o_s / Σ_s 2^(lse_s − max): exact, overflow-free for any logits. HAS_SINKS:
    the query head's sink (SINKS, log2 units) is one more term of the denominator, here and nowhere else."""
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
    if HAS_SINKS:
        sink = tl.load(SINKS + hq)
        m = tl.maximum(m, sink)
    w = tl.where(s_ok, tl.exp2(lse - m), 0.0)
    o = tl.load(O_PART + (part * BLOCK_G + g)[:, None] * HEAD_DIM + d[None, :], mask=s_ok[:, None], other=0.0)
    total = tl.sum(w, 0)
    if HAS_SINKS:
        total += tl.exp2(sink - m)
    out = tl.sum(o * w[:, None], 0) / total
    tl.store(O + b.to(tl.int64) * s_ob + hq * s_oh + d, out.to(O.dtype.element_ty))


@triton.autotune(
    configs=_decode_configs(),
    key=["NUM_ITEMS", "ITEM_TOKENS", "HKV", "G", "HEAD_DIM", "PAGED", "PAGE", "PREFETCH_PAGES", "Q_LEN", "TILE_Q",
         *FORM_KEYS],
    prune_configs_by={"early_config_prune": _by_head_dim},
)  # fmt: skip
@triton.jit(do_not_specialize=["NUM_ITEMS", "ITEM_TOKENS"])
def work_decode_kernel(
    Q, K, V, O, O_PART, LSE_PART, BT, CU_K, WORK, COUNTERS,
    s_qb, s_qh, s_ob, s_oh, s_ks, s_kh, s_vs, s_vh, s_kb, s_vb, s_btb,
    HKV, qk_scale, NUM_ITEMS, ITEM_TOKENS,
    G: tl.constexpr, BLOCK_G: tl.constexpr, HEAD_DIM: tl.constexpr, PAGED: tl.constexpr, PAGE: tl.constexpr,
    INTERPRETED: tl.constexpr, BLOCK_N: tl.constexpr, PREFETCH_PAGES: tl.constexpr = False,
    FUSED: tl.constexpr = False, SEQ_K=None, SINKS=None, K_SCALE=None, V_SCALE=None, window=None, softcap=None,
    HAS_WINDOW: tl.constexpr = False, HAS_SINKS: tl.constexpr = False, SOFTCAP: tl.constexpr = False,
    IS_FP8: tl.constexpr = False, CU_Q=None, Q_LEN: tl.constexpr = 1, TILE_Q: tl.constexpr = 1,
    ROW_TILES: tl.constexpr = 1, PACKED_ROWS: tl.constexpr = False,
):  # fmt: skip
    """Decodes scheduled by work (schedule.py): program p takes item p of the work list WORK, int32 [N, 8]
    (request, KV head, lo, hi, part, first, pieces, counter), longest first: keys lo … hi − 1 of the request's
    cache (dense packed from row CU_K[request], or row `request` of the block table) for the KV head's query
    group. An item whose request is one piece (part −1) writes the output itself; the pieces of a split request
    write a partial output and log-sum-exp at `part`, merged by `work_combine_kernel`, or with FUSED by the
    last of the (request, KV head)'s pieces to finish (COUNTERS[counter] counts them, and is set back to 0 for
    the next call), so that the call is one launch. NUM_ITEMS and ITEM_TOKENS (the longest item) only key the
    autotuner. Boundaries lo are multiples of the largest BLOCK_N (the planner's granule).
    HAS_WINDOW: the planner cut each request's window only (schedule.window_starts), and the item that holds
    its first key (SEQ_K[request] − 1 − window) masks the keys before it. The sinks join where a request's
    output is written: by a request of one piece, by the fused merge or by work_combine_kernel.
    Q_LEN > 1 (speculative steps of up to Q_LEN query tokens, each request's from CU_Q; 1: one query a request,
    the decode as it compiled before): a program's rows are (query token, query head of the group) pairs, row
    r being token tile · TILE_Q + r // G of the request's row tile `tile`, the item's KV-head column holding
    KV head · ROW_TILES + tile; each row sees keys up to its own, bottom-right (token i of q_len on kv_len keys:
    0 … kv_len − q_len + i, from SEQ_K and CU_Q), and under a window from its own first key.
    A subset of a packed batch (ops.WorkDecode's requests: the short requests of a mixed one, beside the varlen
    launch of its longer ones): the items' requests are the batch's own indices, so CU_K, the block table, SEQ_K
    and CU_Q are the whole batch's, and a step's rows sit at CU_Q[request] as they do. PACKED_ROWS (Q_LEN = 1 only:
    decodes among longer requests) reads a decode's one query and output row from CU_Q[request] too, not from the
    request's index; off, the decode as it compiled before."""
    item = WORK + tl.program_id(0) * 8
    b = tl.load(item)
    hkv = tl.load(item + 1)
    lo = tl.load(item + 2)
    hi = tl.load(item + 3)
    part = tl.load(item + 4)
    g = tl.arange(0, BLOCK_G)
    g_ok = g < G
    d = tl.arange(0, HEAD_DIM)
    pos = g  # the rows' query tokens (a decode's one query: unused)
    q_start = b  # the request's first query row (a decode's: the request)
    q_len = 1
    tile = 0
    if Q_LEN > 1:  # the row tile's tokens of this request: rows past them (or past TILE_Q tokens) are padding
        tile = hkv % ROW_TILES
        hkv = hkv // ROW_TILES
        q_start = tl.load(CU_Q + b)
        q_len = tl.load(CU_Q + b + 1) - q_start
        pos = tile * TILE_Q + g // G
        g_ok = (g < TILE_Q * G) & (pos < q_len)
        head = hkv * G + g % G
    else:
        head = hkv * G + g
        if PACKED_ROWS:  # a decode beside longer requests of a packed batch: its one row where CU_Q puts it
            q_start = tl.load(CU_Q + b)
    out = tl.zeros([BLOCK_G, HEAD_DIM], tl.float32)
    lse = tl.full([BLOCK_G], float("-inf"), tl.float32)
    live = lo < hi
    if Q_LEN > 1:  # a row tile past the request's tokens reads nothing
        live = live & (tile * TILE_Q < q_len)
    if live:
        if PAGED:
            k_base, v_base = K, V
        else:
            k_start = tl.load(CU_K + b).to(tl.int64)
            k_base, v_base = K + k_start * s_ks, V + k_start * s_vs
        q_ptrs = Q + _rows(q_start, pos, s_qb, Q_LEN) + head[:, None] * s_qh + d[None, :]
        q = tl.load(q_ptrs, mask=g_ok[:, None], other=0.0)
        m_i = tl.full([BLOCK_G], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_G], tl.float32)
        acc = tl.zeros([BLOCK_G, HEAD_DIM], tl.float32)
        full = lo + ((hi - lo) // BLOCK_N) * BLOCK_N
        kv_len = hi  # the request's length: read only for a window or a step's causal mask
        offset = 0
        if HAS_WINDOW or Q_LEN > 1:
            kv_len = tl.load(SEQ_K + b)
        if Q_LEN > 1:  # unmasked: the whole tiles before the first key the first token does not see
            offset = kv_len - q_len
            full = lo + ((tl.minimum(hi, tl.maximum(offset + 1, lo)) - lo) // BLOCK_N) * BLOCK_N
        acc, m_i, l_i = _attend_keys(
            acc, m_i, l_i, q, k_base, v_base, BT, b, hkv, lo, full, hi, pos, qk_scale, K_SCALE, window, softcap,
            s_kb, s_ks, s_kh, s_vb, s_vs, s_vh, s_btb, hi, kv_len, BLOCK_G, HEAD_DIM, PAGED, PAGE, BLOCK_N,
            INTERPRETED, PREFETCH_PAGES, HAS_WINDOW, SOFTCAP, IS_FP8, offset, Q_LEN > 1,
        )  # fmt: skip
        if Q_LEN > 1:  # a row that sees no key of this piece (causal, or before its window): output 0, lse −inf
            out = acc / tl.where(l_i > 0, l_i, 1.0)[:, None]
        else:
            out = acc / l_i[:, None]
        if IS_FP8:
            out = out * tl.load(V_SCALE + hkv)
        lse = m_i + tl.log2(l_i)
    if part < 0:
        if HAS_SINKS:  # 1 / (1 + 2^(sink − lse)): as _sink_share, from the log-sum-exp
            out = out / (1.0 + tl.exp2(tl.load(SINKS + head, mask=g_ok, other=0.0) - lse))[:, None]
        o_ptrs = O + _rows(q_start, pos, s_ob, Q_LEN) + head[:, None] * s_oh + d[None, :]
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
                merged = _merge_pieces(O_PART, LSE_PART, first, pieces, g, g_ok, d, BLOCK_G, HEAD_DIM, INTERPRETED,
                                       SINKS, head, HAS_SINKS)  # fmt: skip
                o_ptrs = O + _rows(q_start, pos, s_ob, Q_LEN) + head[:, None] * s_oh + d[None, :]
                tl.store(o_ptrs, merged.to(O.dtype.element_ty), mask=g_ok[:, None])
                tl.store(counter, 0)  # for the next call: every piece of this launch has counted


@triton.jit
def _rows(q_start, pos, s_row, Q_LEN: tl.constexpr):
    """Where a work item's query (or output) rows start in a tensor of row stride s_row: a decode's one row
    q_start (the request itself, or with PACKED_ROWS its CU_Q entry); with Q_LEN > 1 each row's token,
    q_start + pos ([BLOCK_G, 1])."""
    if Q_LEN > 1:
        return ((q_start + pos).to(tl.int64) * s_row)[:, None]
    else:
        return q_start.to(tl.int64) * s_row


@triton.jit
def _merge_pieces(
    O_PART, LSE_PART, first, pieces, g, g_ok, d, BLOCK_G: tl.constexpr, HEAD_DIM: tl.constexpr,
    INTERPRETED: tl.constexpr, SINKS=None, head=None, HAS_SINKS: tl.constexpr = False,
):  # fmt: skip
    """The query group's output from its pieces first … first + pieces − 1, one at a time with a running
    maximum (as work_combine_kernel); loads through L2 (.cg), where the other SMs' partials are. HAS_SINKS:
    each head's sink (SINKS[head], log2 units) joins the denominator once, after the pieces."""
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
    if HAS_SINKS:
        sink = tl.load(SINKS + head, mask=g_ok, other=0.0)
        m_new = tl.maximum(m, sink)
        alpha = tl.exp2(m - m_new)
        acc = acc * alpha[:, None]
        total = total * alpha + tl.exp2(sink - m_new)
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
    INTERPRETED: tl.constexpr, SINKS=None, HAS_SINKS: tl.constexpr = False, CU_Q=None, Q_LEN: tl.constexpr = 1,
    TILE_Q: tl.constexpr = 1, ROW_TILES: tl.constexpr = 1, PACKED_ROWS: tl.constexpr = False,
):  # fmt: skip
    """The pieces of each split request merged: program (row r of COMBINED, int32 [R, 3] (request, first part,
    pieces), query head). A request's pieces for KV head h sit at first + h · pieces + 0 … pieces − 1; any
    number of them, BLOCK_S at a time with a running maximum (exact and overflow-free, as combine_kernel).
    HAS_SINKS: the head's sink (SINKS, log2 units) joins the denominator once, after the pieces.
    Q_LEN > 1 (work_decode_kernel's speculative steps): program (row r, query token t, query head), the pieces
    of row tile h · ROW_TILES + t // TILE_Q, its row (t % TILE_Q) · G + the head's place in the group, written to
    query row CU_Q[request] + t; a token past the request's own q_len writes nothing. PACKED_ROWS (Q_LEN = 1): a
    decode's row CU_Q[request], as work_decode_kernel's."""
    pid = tl.program_id(0)
    r = pid // HQ
    tok = 0
    if Q_LEN > 1:
        tok = r % Q_LEN
        r = r // Q_LEN
    row = COMBINED + r * 3
    hq = pid % HQ
    b = tl.load(row)
    pieces = tl.load(row + 2)
    if Q_LEN > 1:
        first = tl.load(row + 1) + ((hq // G) * ROW_TILES + tok // TILE_Q) * pieces
        g = (tok % TILE_Q) * G + hq % G
    else:
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
    if HAS_SINKS:
        sink = tl.load(SINKS + hq)
        m_new = tl.maximum(m, sink)
        alpha = tl.exp2(m - m_new)
        acc = acc * alpha
        total = total * alpha + tl.exp2(sink - m_new)
    if Q_LEN > 1:
        q_start = tl.load(CU_Q + b)
        mine = tok < tl.load(CU_Q + b + 1) - q_start
        o_ptrs = O + (q_start + tok).to(tl.int64) * s_ob + hq * s_oh + d
        tl.store(o_ptrs, (acc / total).to(O.dtype.element_ty), mask=mine & (d < HEAD_DIM))
    else:
        out_row = b
        if PACKED_ROWS:
            out_row = tl.load(CU_Q + b)
        tl.store(O + out_row.to(tl.int64) * s_ob + hq * s_oh + d, (acc / total).to(O.dtype.element_ty))


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
