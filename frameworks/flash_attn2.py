"""FlashAttention-2 (`flash_attn`): `flash_attn_func` for dense prefill/append, `flash_attn_with_kvcache`
for decode and for any paged spec (`block_table`); a ragged batch (mixed included) in one
`flash_attn_varlen_func` call, paged through its `block_table`. Causal in FA2 is bottom-right aligned.
Upstream: https://github.com/Dao-AILab/flash-attention"""

from __future__ import annotations

import torch

from specs import DType

from ._paged import to_paged, to_paged_ragged
from .base import Backend, Caps, KVLayout, fa_form, probe_build, register


@register("flash-attn2")
class FlashAttn2(Backend):
    library = "flash_attn"
    min_compute_capability = (8, 0)
    upstream = "flash_attn.flash_attn_func / flash_attn_with_kvcache (FA2)"
    caps = Caps(
        dtypes={DType.BF16, DType.FP16},
        head_dims=range(8, 257, 8),
        layouts={KVLayout.DENSE, KVLayout.PAGED},
        page_size_multiple=256,  # FA2's paged KV takes pages of a multiple of 256 tokens
        ragged=True,
        windows=True,  # window_size=(w, 0)
        softcap=True,  # softcap=
    )

    def prepare(self, spec, inputs):
        from flash_attn import flash_attn_func, flash_attn_varlen_func, flash_attn_with_kvcache

        form = fa_form(spec)  # window_size and softcap on every call ({} without a form)
        probe_build(lambda q, k, v: flash_attn_func(q, k, v, **form), inputs)
        q, k, v, causal = inputs.q, inputs.k, inputs.v, spec.is_masked
        if inputs.ragged:  # one varlen call for the whole batch, paged through block_table
            batch, cq, ck = spec.batch, inputs.cu_seqlens_q, inputs.cu_seqlens_k
            kw = dict(max_seqlen_q=batch.max_q, max_seqlen_k=batch.max_kv, causal=spec.causal, **form)
            if spec.page_size is None:
                self._info = "flash_attn_varlen_func"
                return lambda: flash_attn_varlen_func(q, k, v, cq, ck, **kw)
            paged = to_paged_ragged(k, v, batch.kv_lens, spec.page_size)
            kp, vp, table = paged.k_pages, paged.v_pages, paged.block_table
            self._info = f"flash_attn_varlen_func(block_table);page_size={spec.page_size}"
            return lambda: flash_attn_varlen_func(q, kp, vp, cq, ck, block_table=table, **kw)
        if spec.page_size is None and spec.q_len > 1:
            self._info = "flash_attn_func"
            return lambda: flash_attn_func(q, k, v, causal=causal, **form)
        seqlens = torch.full((spec.batch_size,), spec.kv_len, dtype=torch.int32, device=q.device)
        if spec.page_size is None:
            self._info = "flash_attn_with_kvcache"
            return lambda: flash_attn_with_kvcache(q, k, v, cache_seqlens=seqlens, causal=causal, **form)
        paged = to_paged(k, v, spec.page_size)
        kp, vp, table = paged.k_pages, paged.v_pages, paged.block_table
        self._info = f"flash_attn_with_kvcache(block_table);page_size={spec.page_size}"
        return lambda: flash_attn_with_kvcache(
            q, kp, vp, cache_seqlens=seqlens, block_table=table, causal=causal, **form
        )

    def run_info(self) -> str:
        return getattr(self, "_info", "")
