"""CPU stand-ins for the FlashAttention-3 (`flash_attn_interface`) and FlashAttention-4
(`flash_attn.cute`) calls the adapters make over a KV cache, for testing the plumbing (page tables,
lengths, the scheduler variant's arguments) without a GPU. They check their inputs the way the
libraries document them and compute plain fp32 attention per request (fake_flashinfer._attend):
the math, not the library; the GPU conformance tests check the real ones."""

from __future__ import annotations

import torch

from .fake_flashinfer import _attend

calls: list[tuple[str, dict]] = []  # (function, the keyword arguments that matter), for the tests


def _request_kv(k, v, b: int, length: int, page_table):
    if page_table is None:
        return k[b, :length], v[b, :length]
    assert page_table.dtype == torch.int32, "page_table must be int32"
    page = k.shape[1]
    pages = page_table[b, : -(-length // page)].long()
    return k[pages].flatten(0, 1)[:length], v[pages].flatten(0, 1)[:length]


def _over_requests(q, k, v, lengths, page_table, causal, cu_seqlens_q=None):
    out = torch.empty_like(q, dtype=torch.float32)
    for b, length in enumerate(lengths.tolist()):
        kb, vb = _request_kv(k, v, b, length, page_table)
        if cu_seqlens_q is None:
            out[b] = _attend(q[b], kb, vb, causal)
        else:
            lo, hi = cu_seqlens_q[b].item(), cu_seqlens_q[b + 1].item()
            out[lo:hi] = _attend(q[lo:hi], kb, vb, causal)
    return out.to(q.dtype)


# ---- flash_attn_interface (FA3) ------------------------------------------------------------------


def get_scheduler_metadata(batch_size, max_seqlen_q, max_seqlen_k, num_heads_q, num_heads_kv, headdim,
                           cache_seqlens, qkv_dtype=torch.bfloat16, cu_seqlens_q=None, page_size=None,
                           causal=False, **kw):  # fmt: skip
    assert cache_seqlens.dtype == torch.int32 and cache_seqlens.shape == (batch_size,)
    assert max_seqlen_k == int(cache_seqlens.max()), "max_seqlen_k must be the longest cache"
    calls.append(("get_scheduler_metadata", {"page_size": page_size, "batch_size": batch_size}))
    return torch.zeros(batch_size + 1, dtype=torch.int32)  # stands for FA3's tile-scheduler metadata


def flash_attn_with_kvcache(q, k, v, cache_seqlens=None, page_table=None, cu_seqlens_q=None, max_seqlen_q=None,
                            causal=False, num_splits=0, scheduler_metadata=None, **kw):  # fmt: skip
    calls.append(("flash_attn_with_kvcache", {"num_splits": num_splits, "metadata": scheduler_metadata is not None}))
    return _over_requests(q, k, v, cache_seqlens, page_table, causal, cu_seqlens_q), None


def flash_attn_func(q, k, v, causal=False, **kw):
    calls.append(("flash_attn_func", {}))
    lengths = torch.full((q.shape[0],), k.shape[1], dtype=torch.int32)
    return _over_requests(q, k, v, lengths, None, causal), None


def flash_attn_varlen_func(q, k, v, cu_seqlens_q=None, cu_seqlens_k=None, max_seqlen_q=None, max_seqlen_k=None,
                           seqused_k=None, page_table=None, causal=False, num_splits=1, **kw):  # fmt: skip
    """FA3's dense varlen call, and FA4's (which also takes a page table with seqused_k)."""
    calls.append(("flash_attn_varlen_func", {"page_table": page_table is not None, "num_splits": num_splits}))
    if page_table is not None:
        assert cu_seqlens_k is None and seqused_k is not None, "a page table goes with seqused_k, not cu_seqlens_k"
        return _over_requests(q, k, v, seqused_k, page_table, causal, cu_seqlens_q), None
    out = torch.empty_like(q)
    for b in range(len(cu_seqlens_q) - 1):
        lq, hq = cu_seqlens_q[b].item(), cu_seqlens_q[b + 1].item()
        lk, hk = cu_seqlens_k[b].item(), cu_seqlens_k[b + 1].item()
        out[lq:hq] = _attend(q[lq:hq], k[lk:hk], v[lk:hk], causal).to(q.dtype)
    return out, None
