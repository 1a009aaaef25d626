"""FlashAttention-3 for Hopper (`flash_attn_interface`): `flash_attn_func` for dense prefill/append,
`flash_attn_with_kvcache` for decode and for paged specs (`page_table`). Causal is bottom-right.
Upstream: https://github.com/Dao-AILab/flash-attention/tree/main/hopper"""

from __future__ import annotations

import inspect

import torch

from specs import DType

from ._paged import to_paged
from .base import Backend, Caps, KVLayout, Unsupported, first_output, register


@register("flash-attn3")
class FlashAttn3(Backend):
    library = "flash_attn_interface"
    min_compute_capability = (9, 0)
    upstream = "flash_attn_interface.flash_attn_func / flash_attn_with_kvcache (FA3)"
    distribution = "flash_attn_3"
    caps = Caps(
        dtypes={DType.BF16, DType.FP16},  # fp8 not benchmarked here
        head_dims={64, 96, 128, 192, 256},
        layouts={KVLayout.DENSE, KVLayout.PAGED},
    )

    def prepare(self, spec, inputs):
        import flash_attn_interface as fa3

        q, k, v, causal = inputs.q, inputs.k, inputs.v, spec.is_masked
        try:  # a one-token call: builds limited to some head dims / dtypes refuse here, not in the timed loop
            fa3.flash_attn_func(q[:1, :1], k[:1, :1], v[:1, :1])
        except RuntimeError as exc:
            if "build" in str(exc) or "not supported" in str(exc).lower():
                raise Unsupported(f"this build: {exc}") from None
            raise
        if spec.page_size is None and spec.q_len > 1:
            return lambda: first_output(fa3.flash_attn_func(q, k, v, causal=causal))
        seqlens = torch.full((spec.batch_size,), spec.kv_len, dtype=torch.int32, device=q.device)
        kwargs = dict(cache_seqlens=seqlens, causal=causal)
        if spec.page_size is not None:
            paged = to_paged(k, v, spec.page_size)
            k, v = paged.k_pages, paged.v_pages
            table = (
                "page_table"
                if "page_table" in inspect.signature(fa3.flash_attn_with_kvcache).parameters
                else "block_table"
            )
            kwargs[table] = paged.block_table
        return lambda: first_output(fa3.flash_attn_with_kvcache(q, k, v, **kwargs))
