"""PyTorch scaled_dot_product_attention, with each kernel forced as its own backend
(`sdpa-flash`, `sdpa-efficient`, `sdpa-cudnn`, `sdpa-math`) and `sdpa` letting PyTorch choose.

Append uses PyTorch's own bottom-right causal bias (`causal_lower_right`); GQA is native
(`enable_gqa=True`). Whether a forced kernel takes a spec is PyTorch's decision: if it has no kernel
for it, the reasons PyTorch gives become the `unsupported` reason."""

from __future__ import annotations

import warnings
from typing import ClassVar

import torch

from .base import Backend, Unsupported, register


class _Sdpa(Backend):
    kernel: ClassVar[str | None] = None  # torch.nn.attention.SDPBackend member, None = PyTorch's choice
    upstream = "torch.nn.functional.scaled_dot_product_attention"

    def prepare(self, spec, inputs):
        from torch.nn.attention import SDPBackend, sdpa_kernel
        from torch.nn.attention.bias import causal_lower_right

        F = torch.nn.functional
        # [B, S, H, D] -> [B, H, S, D] as views: the kernels take strided inputs (flash wants BSHD anyway)
        q, k, v = (t.transpose(1, 2) for t in (inputs.q, inputs.k, inputs.v))
        kwargs = {"enable_gqa": spec.gqa_group > 1}
        if spec.is_masked and spec.q_len == spec.kv_len:
            kwargs["is_causal"] = True  # top-left == bottom-right when Sq == Sk
        elif spec.is_masked:
            kwargs["attn_mask"] = causal_lower_right(spec.q_len, spec.kv_len)
        kernels = [getattr(SDPBackend, self.kernel)] if self.kernel else list(SDPBackend.__members__.values())
        kernels = [kern for kern in kernels if kern.name != "OVERRIDEABLE"] or kernels

        def call():
            with sdpa_kernel(kernels):
                return F.scaled_dot_product_attention(q, k, v, **kwargs).transpose(1, 2)

        # ask PyTorch once, outside the timed region, whether it has a kernel for this spec
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                call()
            except RuntimeError as exc:
                if "No available kernel" not in str(exc):
                    raise
                said = [str(w.message).split("\n")[0] for w in caught]
                raise Unsupported("PyTorch has no such kernel for this spec: " + " | ".join(said or [str(exc)])) from None
        return call


@register("sdpa")
class Sdpa(_Sdpa):
    devices = ("cuda", "cpu")


@register("sdpa-flash")
class SdpaFlash(_Sdpa):
    kernel = "FLASH_ATTENTION"
    devices = ("cuda", "cpu")


@register("sdpa-efficient")
class SdpaEfficient(_Sdpa):
    kernel = "EFFICIENT_ATTENTION"


@register("sdpa-cudnn")
class SdpaCudnn(_Sdpa):
    kernel = "CUDNN_ATTENTION"
    min_compute_capability = (8, 0)


@register("sdpa-math")
class SdpaMath(_Sdpa):
    kernel = "MATH"
    devices = ("cuda", "cpu")
