"""Transformer Engine `DotProductAttention` with qkv_format="bshd": causal (Sq = Sk), bottom-right
causal for append, no mask for decode; GQA through num_gqa_groups. TE picks its own backend
(FusedAttention = cuDNN, FlashAttention, or unfused): the one that ran, read from the kernel names,
goes in backend_info. If TE cannot be imported (for instance because a broken FlashAttention-4 it
probes at import raises), the backend is unavailable with TE's own error.
Upstream: https://github.com/NVIDIA/TransformerEngine"""

from __future__ import annotations

from specs import DType

from ._profile import kernel_names
from .base import Backend, Caps, register


def te_backend_from_kernels(names: list[str]) -> str:
    """Which of TE's attention backends launched these kernels."""
    text = " ".join(names).lower()
    if "cudnn" in text or "fmha" in text or "fprop" in text:
        return "FusedAttention (cuDNN)"
    if "flash" in text:
        return "FlashAttention"
    return "UnfusedDotProductAttention" if names else "unknown"


@register("transformer-engine")
class TransformerEngine(Backend):
    library = "transformer_engine.pytorch"
    min_compute_capability = (8, 0)
    upstream = "transformer_engine.pytorch.DotProductAttention"
    distribution = "transformer_engine"
    # dense only: TE's paged path needs its InferenceParams cache; ragged batches in the THD format
    caps = Caps(dtypes={DType.BF16, DType.FP16}, ragged=True)

    def prepare(self, spec, inputs):
        import transformer_engine.pytorch as te

        kw = {}
        if inputs.ragged:  # packed tokens with cu_seqlens and TE's bottom-right causal padding mask
            layout, mask = "thd", "padding_causal_bottom_right" if spec.causal else "padding"
            kw = dict(cu_seqlens_q=inputs.cu_seqlens_q, cu_seqlens_kv=inputs.cu_seqlens_k,
                      max_seqlen_q=spec.batch.max_q, max_seqlen_kv=spec.batch.max_kv)  # fmt: skip
        elif not spec.is_masked:
            layout, mask = "bshd", "no_mask"
        else:
            layout, mask = "bshd", "causal" if spec.q_len == spec.kv_len else "causal_bottom_right"
        attention = te.DotProductAttention(
            num_attention_heads=spec.num_q_heads,
            kv_channels=spec.head_dim,
            num_gqa_groups=spec.num_kv_heads,
            attention_dropout=0.0,
            qkv_format=layout,
            attn_mask_type=mask,
        )
        q, k, v = inputs.q, inputs.k, inputs.v
        shape = tuple(q.shape)

        def call():
            return attention(q, k, v, **kw).view(shape)  # TE returns [..., Hq · D]

        prefix = "thd;" if inputs.ragged else ""  # uniform rows keep the backend_info of earlier runs
        self._info = f"{prefix}mask={mask};backend=" + te_backend_from_kernels(kernel_names(call))
        return call

    def run_info(self) -> str:
        return getattr(self, "_info", "")
