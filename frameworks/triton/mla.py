"""A split-KV MLA decode kernel in Triton: the absorbed form, queries [tokens, heads, kv_lora_rank + rope_dim]
against the latent cache in pages ([pages, page_size, 1, kv_lora_rank + rope_dim]), values the cache's first
kv_lora_rank columns. vLLM's Triton MLA decode (`decode_attention_fwd_grouped`) is the reference point.

Stage 1 (`mla_decode_split_kernel`): one program per (query token, block of BLOCK_H heads, KV split). It
keeps the block's queries in two parts, q_nope [BLOCK_H, LATENT] and q_pe [BLOCK_H, ROPE], and walks its split
of the request's cache in tiles of BLOCK_N tokens, each tile read once for the whole head block: scores are
q_nope · latentᵀ + q_pe · ropeᵀ (two dot products over the 512 + 64 columns), the online softmax runs in fp32,
and P · latent[:, :LATENT] accumulates the values from the same tile. It writes its partial output and the
log-sum-exp of its split. Stage 2 (`mla_combine_kernel`): one program per (token, head) merges the splits by
their log-sum-exps and writes O in the input dtype.

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
    acc, m_i, l_i, q_nope, q_pe, Cache, BlockTable, request, first, stop, sm_scale, stride_cache, stride_table,
    LATENT: tl.constexpr, ROPE: tl.constexpr, PAGE: tl.constexpr, BLOCK_N: tl.constexpr, INTERPRETED: tl.constexpr,
):  # fmt: skip
    """One tile of BLOCK_N cache tokens first … first + BLOCK_N − 1 (those < stop): its latent rows read once,
    scores over both parts, the online softmax update and P · latent[:, :LATENT]."""
    pos = first + tl.arange(0, BLOCK_N)
    pos_ok = pos < stop
    page = tl.load(BlockTable + request * stride_table + pos // PAGE, mask=pos_ok, other=0)
    rows = Cache + (page.to(tl.int64) * PAGE + pos % PAGE) * stride_cache
    cols = tl.arange(0, LATENT)
    rope_cols = tl.arange(0, ROPE)
    latent = tl.load(rows[:, None] + cols[None, :], mask=pos_ok[:, None], other=0.0)  # [BLOCK_N, LATENT]
    rope = tl.load(rows[:, None] + LATENT + rope_cols[None, :], mask=pos_ok[:, None], other=0.0)
    scores = _dot(q_nope, tl.trans(latent), INTERPRETED) + _dot(q_pe, tl.trans(rope), INTERPRETED)
    scores = tl.where(pos_ok[None, :], scores * sm_scale, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(scores, 1))
    alpha = tl.exp(m_i - m_new)
    p = tl.exp(scores - m_new[:, None])
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None] + _dot(p.to(latent.dtype), latent, INTERPRETED)
    return acc, m_new, l_i


@triton.jit
def mla_decode_split_kernel(
    Q, Cache, BlockTable, TokenRequest, TokenVisible, PartialO, PartialLse,
    sm_scale, num_heads, split_len,
    stride_qt, stride_qh, stride_cache, stride_table, stride_pt, stride_ph, stride_ps,
    LATENT: tl.constexpr, ROPE: tl.constexpr, PAGE: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr,
    INTERPRETED: tl.constexpr,
):  # fmt: skip
    token = tl.program_id(0)
    head_block = tl.program_id(1)
    split = tl.program_id(2)
    request = tl.load(TokenRequest + token)
    visible = tl.load(TokenVisible + token)

    heads = head_block * BLOCK_H + tl.arange(0, BLOCK_H)
    head_ok = heads < num_heads
    cols = tl.arange(0, LATENT)
    rope_cols = tl.arange(0, ROPE)
    q_rows = Q + token * stride_qt + heads[:, None] * stride_qh
    q_nope = tl.load(q_rows + cols[None, :], mask=head_ok[:, None], other=0.0)
    q_pe = tl.load(q_rows + LATENT + rope_cols[None, :], mask=head_ok[:, None], other=0.0)

    start = split * split_len
    stop = tl.minimum(start + split_len, visible)
    m_i = tl.full([BLOCK_H], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_H], dtype=tl.float32)
    acc = tl.zeros([BLOCK_H, LATENT], dtype=tl.float32)
    if INTERPRETED:  # the interpreter's `range` takes no run-time tensor bounds (Triton 3.6): a while loop
        first = start
        while first < stop:
            acc, m_i, l_i = _latent_tile(acc, m_i, l_i, q_nope, q_pe, Cache, BlockTable, request, first, stop,
                                         sm_scale, stride_cache, stride_table, LATENT, ROPE, PAGE, BLOCK_N,
                                         INTERPRETED)  # fmt: skip
            first += BLOCK_N
    else:
        for first in tl.range(start, stop, BLOCK_N):
            acc, m_i, l_i = _latent_tile(acc, m_i, l_i, q_nope, q_pe, Cache, BlockTable, request, first, stop,
                                         sm_scale, stride_cache, stride_table, LATENT, ROPE, PAGE, BLOCK_N,
                                         INTERPRETED)  # fmt: skip

    lse = tl.where(l_i > 0, m_i + tl.log(tl.maximum(l_i, 1e-30)), float("-inf"))  # -inf: an empty split
    out = acc / tl.maximum(l_i, 1e-30)[:, None]
    base = token * stride_pt + heads * stride_ph + split * stride_ps
    tl.store(PartialO + base[:, None] + cols[None, :], out, mask=head_ok[:, None])
    tl.store(PartialLse + base // LATENT, lse, mask=head_ok)  # [T, H, S]: PartialO's index without its columns


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
