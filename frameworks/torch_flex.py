"""FlexAttention, compiled, with a block mask for bottom-right causal and native GQA. For short query
lengths (decode, small append chunks) PyTorch routes to its flex-decoding kernel by itself."""

from __future__ import annotations

import functools

from ._compile import configure_dynamo
from .base import Backend, register


@functools.cache
def _compiled_flex():
    import torch
    from torch.nn.attention.flex_attention import flex_attention

    configure_dynamo()
    return torch.compile(flex_attention, dynamic=False, fullgraph=True)


@register("flex")
class Flex(Backend):
    devices = ("cuda", "cpu")
    upstream = "torch.nn.attention.flex_attention"

    def supports(self, spec):
        if spec.head_dim & (spec.head_dim - 1) or spec.head_dim < 16:
            return f"head_dim {spec.head_dim}: FlexAttention's kernels need a power of two >= 16"
        return None

    def prepare(self, spec, inputs):
        from torch.nn.attention.flex_attention import create_block_mask

        q, k, v = (t.transpose(1, 2) for t in (inputs.q, inputs.k, inputs.v))  # [B, H, S, D] views
        block_mask = None
        if spec.is_masked:
            offset = spec.causal_offset

            def bottom_right_causal(b, h, q_idx, kv_idx):
                return q_idx + offset >= kv_idx

            block_mask = create_block_mask(
                bottom_right_causal, None, None, spec.q_len, spec.kv_len, device=inputs.device
            )
        flex = _compiled_flex()
        gqa = spec.gqa_group > 1
        return lambda: flex(q, k, v, block_mask=block_mask, enable_gqa=gqa).transpose(1, 2)
