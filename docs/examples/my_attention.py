"""A backend in one file: copy it to frameworks/my_attention.py and it is picked up (`run.py list`)."""

from __future__ import annotations

import torch

from frameworks.base import Backend, Caps, KVLayout, register
from specs import DType


@register("my-attention")
class MyAttention(Backend):
    library = "torch"  # the module whose import decides availability (and whose version rows carry)
    upstream = "torch.nn.functional.scaled_dot_product_attention"
    caps = Caps(  # what it can run, as data: a spec outside it is an `unsupported` row with the reason
        dtypes={DType.BF16, DType.FP16, DType.FP32},
        head_dims={64, 128},
        layouts={KVLayout.DENSE},
        devices={"cpu", "cuda"},  # the default is CUDA only
    )

    def prepare(self, spec, inputs):  # inputs.q [B, Sq, Hq, D], inputs.k/v [B, Sk, Hkv, D]
        from torch.nn.attention.bias import causal_lower_right

        q, k, v = (t.transpose(1, 2) for t in (inputs.q, inputs.k, inputs.v))  # layout, plan(), workspaces: here
        mask = causal_lower_right(spec.q_len, spec.kv_len) if spec.is_masked else None
        sdpa = torch.nn.functional.scaled_dot_product_attention
        return lambda: sdpa(q, k, v, attn_mask=mask, enable_gqa=True).transpose(1, 2)  # timed: O [B, Sq, Hq, D]
