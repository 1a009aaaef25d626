"""FlashAttention-2 (`flash_attn`): `flash_attn_func` for dense prefill/append, `flash_attn_with_kvcache`
for decode and for any paged spec (`block_table`). Causal in FA2 is bottom-right aligned.
Upstream: https://github.com/Dao-AILab/flash-attention"""

from __future__ import annotations

import torch

from specs import DType

from ._paged import to_paged
from .base import Backend, Caps, KVLayout, Unsupported, register


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
    )

    def prepare(self, spec, inputs):
        from flash_attn import flash_attn_func, flash_attn_with_kvcache

        q, k, v, causal = inputs.q, inputs.k, inputs.v, spec.is_masked
        try:  # a one-token call: builds limited to some head dims / dtypes refuse here, not in the timed loop
            flash_attn_func(q[:1, :1], k[:1, :1], v[:1, :1])
        except RuntimeError as exc:
            if "build" in str(exc) or "not supported" in str(exc).lower():
                raise Unsupported(f"this build: {exc}") from None
            raise
        if spec.page_size is None and spec.q_len > 1:
            return lambda: flash_attn_func(q, k, v, causal=causal)
        seqlens = torch.full((spec.batch_size,), spec.kv_len, dtype=torch.int32, device=q.device)
        if spec.page_size is None:
            return lambda: flash_attn_with_kvcache(q, k, v, cache_seqlens=seqlens, causal=causal)
        paged = to_paged(k, v, spec.page_size)
        kp, vp, table = paged.k_pages, paged.v_pages, paged.block_table
        return lambda: flash_attn_with_kvcache(q, kp, vp, cache_seqlens=seqlens, block_table=table, causal=causal)
