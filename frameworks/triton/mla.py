"""A split-KV MLA decode kernel in Triton: the absorbed form, queries [tokens, heads, kv_lora_rank + rope_dim]
against the latent cache in pages ([pages, page_size, 1, kv_lora_rank + rope_dim]), values the cache's first
kv_lora_rank columns. vLLM's Triton MLA decode (`decode_attention_fwd_grouped`) is the reference point.

Stage 1 (`mla_decode_split_kernel`): one program per (query token, block of BLOCK_H heads, part of the value
columns, KV split). It keeps the block's queries in parts, q_nope [BLOCK_H, LATENT] and q_pe [BLOCK_H, ROPE],
and walks its split of the request's cache in tiles of BLOCK_N tokens, each tile read once for the whole head
block: scores are q_nope · latentᵀ + q_pe · ropeᵀ (dot products over the 512 + 64 columns), the online softmax
runs in fp32, and P · latent[:, cols] accumulates the values from the same tile. With BLOCK_DV = LATENT / 2
(vLLM's BLOCK_DV, FlashMLA's two warpgroups) a program accumulates half the value columns, [BLOCK_H, 256]
fp32, so 64 heads fit one warpgroup's registers: its scores are the sum over its own half of the latent and
the other half (both loaded, neither twice) and the rope. It writes its partial output and the log-sum-exp of
its split, or with DIRECT (one split) the output itself. HEADS_INNER puts the programs of one token's head
blocks (and value halves) next to each other in the launch, so they run side by side and the L2 serves the
cache they all read to all but the first.

Stage 2 merges the splits by their log-sum-exps and writes O in the input dtype: `mla_combine_kernel`, one
program per (token, head), all splits loaded at once (today's); `mla_combine_loop_kernel` (the `splits=work`
variant), the splits in a loop, so a request cut into many pieces keeps one [LATENT] accumulator.

Every query token carries its request and the number of keys it sees (bottom-right causal for speculative
steps and chunks), so decodes, speculative steps and ragged batches are one launch. A dense cache is read as
pages of one token. Runs under TRITON_INTERPRET=1 on a CPU (tests)."""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _dot(a, b, INTERPRETED: tl.constexpr):
    if INTERPRETED:  # Triton 3.6's interpreter multiplies bf16 operands as raw bits
        return tl.dot(a.to(tl.float32), b.to(tl.float32))
    return tl.dot(a, b)


@triton.jit
def _latent_tile(
    acc, m_i, l_i, q_mine, q_other, q_pe, Cache, BlockTable, request, first, stop, sm_scale, stride_cache,
    stride_table, mine, other,
    LATENT: tl.constexpr, ROPE: tl.constexpr, PAGE: tl.constexpr, BLOCK_N: tl.constexpr,
    SPLIT_DV: tl.constexpr, INTERPRETED: tl.constexpr,
):  # fmt: skip
    """One tile of BLOCK_N cache tokens first … first + BLOCK_N − 1 (those < stop): its latent rows read once,
    scores over every part, the online softmax update and P · latent[:, mine]. `mine` are the value columns
    this program accumulates (all LATENT without SPLIT_DV), `other` the rest of the latent (SPLIT_DV only)."""
    pos = first + tl.arange(0, BLOCK_N)
    pos_ok = pos < stop
    page = tl.load(BlockTable + request * stride_table + pos // PAGE, mask=pos_ok, other=0)
    rows = Cache + (page.to(tl.int64) * PAGE + pos % PAGE) * stride_cache
    latent = tl.load(rows[:, None] + mine[None, :], mask=pos_ok[:, None], other=0.0)  # [BLOCK_N, BLOCK_DV]
    rope = tl.load(rows[:, None] + LATENT + tl.arange(0, ROPE)[None, :], mask=pos_ok[:, None], other=0.0)
    scores = _dot(q_mine, tl.trans(latent), INTERPRETED) + _dot(q_pe, tl.trans(rope), INTERPRETED)
    if SPLIT_DV:
        rest = tl.load(rows[:, None] + other[None, :], mask=pos_ok[:, None], other=0.0)
        scores += _dot(q_other, tl.trans(rest), INTERPRETED)
    scores = tl.where(pos_ok[None, :], scores * sm_scale, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(scores, 1))
    alpha = tl.exp(m_i - m_new)
    p = tl.exp(scores - m_new[:, None])
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None] + _dot(p.to(latent.dtype), latent, INTERPRETED)
    return acc, m_new, l_i


@triton.jit
def mla_decode_split_kernel(
    Q, Cache, BlockTable, TokenRequest, TokenVisible, PartialO, PartialLse, Out,
    sm_scale, num_heads, split_len,
    stride_qt, stride_qh, stride_cache, stride_table, stride_pt, stride_ph, stride_ps, stride_ot, stride_oh,
    LATENT: tl.constexpr, ROPE: tl.constexpr, PAGE: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_DV: tl.constexpr, HEADS_INNER: tl.constexpr, DIRECT: tl.constexpr, INTERPRETED: tl.constexpr,
):  # fmt: skip
    """Grid (tokens, head blocks × value parts, splits), or (head blocks × value parts, tokens, splits) with
    HEADS_INNER; value parts: LATENT // BLOCK_DV, one or two."""
    SPLIT_DV: tl.constexpr = BLOCK_DV < LATENT
    if HEADS_INNER:
        part = tl.program_id(0)
        token = tl.program_id(1)
    else:
        token = tl.program_id(0)
        part = tl.program_id(1)
    split = tl.program_id(2)
    head_block = part // (LATENT // BLOCK_DV)
    half = part % (LATENT // BLOCK_DV)  # 0 without SPLIT_DV
    request = tl.load(TokenRequest + token)
    visible = tl.load(TokenVisible + token)

    heads = head_block * BLOCK_H + tl.arange(0, BLOCK_H)
    head_ok = heads < num_heads
    mine = half * BLOCK_DV + tl.arange(0, BLOCK_DV)
    other = (1 - half) * BLOCK_DV + tl.arange(0, BLOCK_DV)  # read only with SPLIT_DV (then BLOCK_DV = LATENT / 2)
    q_rows = Q + token * stride_qt + heads[:, None] * stride_qh
    q_mine = tl.load(q_rows + mine[None, :], mask=head_ok[:, None], other=0.0)
    q_other = q_mine
    if SPLIT_DV:
        q_other = tl.load(q_rows + other[None, :], mask=head_ok[:, None], other=0.0)
    q_pe = tl.load(q_rows + LATENT + tl.arange(0, ROPE)[None, :], mask=head_ok[:, None], other=0.0)

    start = split * split_len
    stop = tl.minimum(start + split_len, visible)
    m_i = tl.full([BLOCK_H], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_H], dtype=tl.float32)
    acc = tl.zeros([BLOCK_H, BLOCK_DV], dtype=tl.float32)
    if INTERPRETED:  # the interpreter's `range` takes no run-time tensor bounds (Triton 3.6): a while loop
        first = start
        while first < stop:
            acc, m_i, l_i = _latent_tile(acc, m_i, l_i, q_mine, q_other, q_pe, Cache, BlockTable, request, first,
                                         stop, sm_scale, stride_cache, stride_table, mine, other, LATENT, ROPE,
                                         PAGE, BLOCK_N, SPLIT_DV, INTERPRETED)  # fmt: skip
            first += BLOCK_N
    else:
        for first in tl.range(start, stop, BLOCK_N):
            acc, m_i, l_i = _latent_tile(acc, m_i, l_i, q_mine, q_other, q_pe, Cache, BlockTable, request, first,
                                         stop, sm_scale, stride_cache, stride_table, mine, other, LATENT, ROPE,
                                         PAGE, BLOCK_N, SPLIT_DV, INTERPRETED)  # fmt: skip

    out = acc / tl.maximum(l_i, 1e-30)[:, None]
    if DIRECT:  # one split: the output itself
        o_rows = Out + token * stride_ot + heads * stride_oh
        tl.store(o_rows[:, None] + mine[None, :], out.to(Out.dtype.element_ty), mask=head_ok[:, None])
    else:
        lse = tl.where(l_i > 0, m_i + tl.log(tl.maximum(l_i, 1e-30)), float("-inf"))  # -inf: an empty split
        base = token * stride_pt + heads * stride_ph + split * stride_ps
        tl.store(PartialO + base[:, None] + mine[None, :], out, mask=head_ok[:, None])
        # [T, H, S]: PartialO's index without its columns; one value part writes it
        tl.store(PartialLse + base // LATENT, lse, mask=head_ok & (half == 0))


@triton.jit
def mla_combine_kernel(
    PartialO, PartialLse, Out, num_splits, stride_pt, stride_ph, stride_ps, stride_ot, stride_oh,
    LATENT: tl.constexpr, SPLITS: tl.constexpr,
):  # fmt: skip
    token = tl.program_id(0)
    head = tl.program_id(1)
    splits = tl.arange(0, SPLITS)
    split_ok = splits < num_splits
    base = token * stride_pt + head * stride_ph + splits * stride_ps
    lse = tl.load(PartialLse + base // LATENT, mask=split_ok, other=float("-inf"))
    weights = tl.exp(lse - tl.max(lse, 0))
    weights = tl.where(split_ok, weights, 0.0)
    cols = tl.arange(0, LATENT)
    parts = tl.load(PartialO + base[:, None] + cols[None, :], mask=split_ok[:, None], other=0.0)
    out = tl.sum(parts * weights[:, None], 0) / tl.sum(weights, 0)
    tl.store(Out + token * stride_ot + head * stride_oh + cols, out.to(Out.dtype.element_ty))


@triton.jit
def mla_combine_loop_kernel(
    PartialO, PartialLse, Out, TokenVisible, split_len, stride_pt, stride_ph, stride_ps, stride_ot, stride_oh,
    LATENT: tl.constexpr, INTERPRETED: tl.constexpr,
):  # fmt: skip
    """One program per (token, head): the token's non-empty splits (its visible keys in pieces of split_len)
    merged one after another, an online softmax over their log-sum-exps with one [LATENT] accumulator. Split
    0 is never empty (a token sees at least one key), so the running maximum is finite from the first."""
    token = tl.program_id(0)
    head = tl.program_id(1)
    pieces = tl.cdiv(tl.load(TokenVisible + token), split_len)
    base = token * stride_pt + head * stride_ph
    cols = tl.arange(0, LATENT)
    m_i = float("-inf")
    l_i = 0.0
    acc = tl.zeros([LATENT], dtype=tl.float32)
    if INTERPRETED:  # the interpreter's `range` takes no run-time tensor bounds (Triton 3.6): a while loop
        split = 0
        while split < pieces:
            acc, m_i, l_i = _merge(acc, m_i, l_i, PartialO, PartialLse, base + split * stride_ps, cols, LATENT)
            split += 1
    else:
        for split in tl.range(0, pieces):
            acc, m_i, l_i = _merge(acc, m_i, l_i, PartialO, PartialLse, base + split * stride_ps, cols, LATENT)
    tl.store(Out + token * stride_ot + head * stride_oh + cols, (acc / l_i).to(Out.dtype.element_ty))


@triton.jit
def _merge(acc, m_i, l_i, PartialO, PartialLse, at, cols, LATENT: tl.constexpr):
    lse = tl.load(PartialLse + at // LATENT)
    m_new = tl.maximum(m_i, lse)
    alpha = tl.exp(m_i - m_new)
    weight = tl.exp(lse - m_new)
    acc = acc * alpha + tl.load(PartialO + at + cols) * weight
    return acc, m_new, l_i * alpha + weight
