"""PyTorch scaled_dot_product_attention, with each kernel forced as its own backend
(`sdpa-flash`, `sdpa-efficient`, `sdpa-cudnn`, `sdpa-math`) and `sdpa` letting PyTorch choose.

Append uses PyTorch's own bottom-right causal bias (`causal_lower_right`); GQA is native
(`enable_gqa=True`). A sliding window is an explicit boolean mask (the math and memory-efficient
kernels take it; flash declines, and PyTorch says so); SDPA has no sinks and no soft-cap. Whether a
forced kernel takes a spec is PyTorch's decision: if it has no kernel for it, the reasons PyTorch
gives become the `unsupported` reason."""

from __future__ import annotations

import re
import warnings
from typing import ClassVar

import torch

from .base import Backend, Caps, Unsupported, register


class _Sdpa(Backend):
    kernel: ClassVar[str | None] = None  # torch.nn.attention.SDPBackend member, None = PyTorch's choice
    upstream = "torch.nn.functional.scaled_dot_product_attention"

    def prepare(self, spec, inputs):
        from torch.nn.attention import SDPBackend, sdpa_kernel

        F = torch.nn.functional
        # [B, S, H, D] -> [B, H, S, D] as views: the kernels take strided inputs (flash wants BSHD anyway)
        q, k, v = (t.transpose(1, 2) for t in (inputs.q, inputs.k, inputs.v))
        kwargs = {"enable_gqa": spec.gqa_group > 1}
        if spec.window is not None:  # an explicit boolean mask (True = attend): kernels that take none decline
            kwargs["attn_mask"] = window_mask(spec.q_len, spec.kv_len, spec.window, inputs.device)
        elif spec.is_masked and spec.q_len == spec.kv_len:
            kwargs["is_causal"] = True  # top-left == bottom-right when Sq == Sk
        elif spec.is_masked:  # torch.nn.attention.bias imports Dynamo (a second): only where its bias is needed
            from torch.nn.attention.bias import causal_lower_right

            kwargs["attn_mask"] = causal_lower_right(spec.q_len, spec.kv_len)
        kernels = [getattr(SDPBackend, self.kernel)] if self.kernel else list(SDPBackend.__members__.values())
        kernels = [kern for kern in kernels if kern.name != "OVERRIDEABLE"] or kernels

        def call():
            with sdpa_kernel(kernels):
                return F.scaled_dot_product_attention(q, k, v, **kwargs).transpose(1, 2)

        # ask PyTorch once, outside the timed region, whether it has a kernel for this spec, and
        # which one it runs (the aten op names say flash / efficient / cudnn / math)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                self._kernels = sdpa_ops_called(call)
            except RuntimeError as exc:
                if "No available kernel" not in str(exc):
                    raise
                raise Unsupported(why_no_kernel([str(w.message) for w in caught]) or str(exc)) from None
        return call

    def run_info(self) -> str:
        return "kernel=" + "+".join(getattr(self, "_kernels", [])) if getattr(self, "_kernels", None) else ""


def window_mask(q_len: int, kv_len: int, window: int, device) -> torch.Tensor:
    """[Sq, Sk] booleans, True where a query sees a key: bottom-right causal with a left window (query i at
    key position p = kv_len − q_len + i sees keys p − window … p)."""
    position = torch.arange(q_len, device=device)[:, None] + (kv_len - q_len)
    key = torch.arange(kv_len, device=device)[None, :]
    return (key <= position) & (key >= position - window)


_SDPA_OP = re.compile(r"^aten::(_scaled_dot_product_\w+|_efficient_attention_forward|_flash_attention_forward)$")


def sdpa_ops_called(fn) -> list[str]:
    """Call fn once under the profiler; the SDPA kernel ops it ran, outermost first. The autograd profiler with
    Kineto: what torch.profiler.profile(activities=[CPU]) runs, without its check for torch._inductor, which
    imports Inductor and Dynamo (a second of CPU, in each worker whose first task is an SDPA backend)."""
    from torch.autograd.profiler import profile

    with profile(use_kineto=True) as prof:
        fn()
    names = [e.name for e in prof.function_events if _SDPA_OP.match(e.name)]
    return [n.removeprefix("aten::") for n in dict.fromkeys(names)]


def why_no_kernel(messages: list[str]) -> str:
    """PyTorch's warnings, without the 'not used because:' headers and source locations."""
    reasons = []
    for message in messages:
        text = re.sub(r"\(Triggered internally at [^)]*\)", "", message)
        text = " ".join(text.split())
        if not text or text.endswith("not used because:"):
            continue
        reasons.append(text)
    return "; ".join(dict.fromkeys(reasons))


_EXPANDED = frozenset({"mla-expanded"})  # V narrower than Q and K: PyTorch's kernels decide, as for any spec


@register("sdpa")
class Sdpa(_Sdpa):
    caps = Caps(devices={"cuda", "cpu"}, windows=True, mla=_EXPANDED)


@register("sdpa-flash")
class SdpaFlash(_Sdpa):
    kernel = "FLASH_ATTENTION"
    caps = Caps(devices={"cuda", "cpu"}, windows=True, mla=_EXPANDED)


@register("sdpa-efficient")
class SdpaEfficient(_Sdpa):
    kernel = "EFFICIENT_ATTENTION"
    caps = Caps(gqa=False, windows=True, mla=_EXPANDED)  # PyTorch's memory-efficient kernel needs Hq == Hkv


@register("sdpa-cudnn")
class SdpaCudnn(_Sdpa):
    kernel = "CUDNN_ATTENTION"
    min_compute_capability = (8, 0)
    caps = Caps(windows=True, mla=_EXPANDED)


@register("sdpa-math")
class SdpaMath(_Sdpa):
    kernel = "MATH"
    caps = Caps(devices={"cuda", "cpu"}, windows=True, mla=_EXPANDED)
