"""FlashAttention-4 (`flash_attn.cute`, the CuTe DSL build; Hopper and Blackwell): `flash_attn_func`
for prefill, append (causal is bottom-right) and decode (split-KV by FA4's own heuristic), dense
K/V. Upstream: https://github.com/Dao-AILab/flash-attention/tree/main/flash_attn/cute"""

from __future__ import annotations

from specs import DType, Workload

from .base import Backend, first_output, register


@register("flash-attn4")
class FlashAttn4(Backend):
    library = "flash_attn.cute"
    min_compute_capability = (9, 0)
    upstream = "flash_attn.cute.flash_attn_func (FA4, CuTe DSL)"
    distribution = "flash-attn-4"

    def availability(self, device):
        from .transformer_engine import FA4_IMPORT_ERROR

        if FA4_IMPORT_ERROR:  # hidden from Transformer Engine in this process: give the real reason
            return f"cannot import flash_attn.cute: {FA4_IMPORT_ERROR}"
        return super().availability(device)

    def supports(self, spec):
        if spec.dtype not in (DType.BF16, DType.FP16):
            return f"dtype {spec.dtype}: FlashAttention-4 takes bf16 and fp16"
        if spec.head_dim not in (64, 96, 128):
            return f"head_dim {spec.head_dim}: FlashAttention-4 on Hopper takes 64, 96 and 128"
        if spec.page_size is not None:
            return "paged KV: not wired for FlashAttention-4 in this adapter yet"
        return None

    def prepare(self, spec, inputs):
        from flash_attn.cute import flash_attn_func

        q, k, v, causal = inputs.q, inputs.k, inputs.v, spec.is_masked
        # decode: let FA4 split the KV length across CTAs (its heuristic, num_splits < 1), as FA3's
        # flash_attn_with_kvcache does by default; prefill and append need no split
        splits = 0 if spec.workload is Workload.DECODE else 1
        return lambda: first_output(flash_attn_func(q, k, v, causal=causal, num_splits=splits))
