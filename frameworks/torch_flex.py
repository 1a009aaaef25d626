"""FlexAttention, compiled, with a block mask for bottom-right causal and native GQA. For short query
lengths (decode, small append chunks) PyTorch routes to its flex-decoding kernel by itself."""

from __future__ import annotations

import functools

from ._compile import configure_dynamo
from .base import Backend, Caps, register


@functools.cache
def _compiled_flex():
    import torch
    from torch.nn.attention.flex_attention import flex_attention

    configure_dynamo()
    return torch.compile(flex_attention, dynamic=False, fullgraph=True)


@register("flex")
class Flex(Backend):
    caps = Caps(head_dims={16, 32, 64, 128, 256}, devices={"cuda", "cpu"})  # its kernels need a power of two >= 16
    upstream = "torch.nn.attention.flex_attention"

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
        options = flex_kernel_options(spec.q_len)
        self._info = f"kernel_options={options}" if options else ""
        return lambda: flex(q, k, v, block_mask=block_mask, enable_gqa=gqa, kernel_options=options).transpose(1, 2)

    def run_info(self) -> str:
        return getattr(self, "_info", "")


def flex_kernel_options(q_len: int) -> dict | None:
    """Inductor's flex template has no valid configuration for query lengths above the decode path
    that are not a multiple of its default 128-row block (q_len 127: NoValidChoicesError on H100,
    torch 2.11); 64 × 64 blocks compile and pass the reference there."""
    if q_len > 16 and q_len % 128:
        return {"BLOCK_M": 64, "BLOCK_N": 64}
    return None
