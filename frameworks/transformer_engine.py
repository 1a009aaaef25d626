"""Transformer Engine `DotProductAttention` with qkv_format="bshd": causal (Sq = Sk), bottom-right
causal for append, no mask for decode; GQA through num_gqa_groups. TE picks its own backend
(FusedAttention = cuDNN, FlashAttention, or unfused): the one that ran, read from the kernel names,
goes in backend_info.

TE probes FlashAttention-4 (`flash_attn.cute`) at import and only tolerates an ImportError; a
FlashAttention-4 that is installed but broken (on the GPU host: flash-attn-4 4.0.0b36 against CUTLASS
DSL 4.8.1 raises AttributeError) would take TE down with it. So a broken `flash_attn.cute` is hidden
from TE as not installed, and the row says so. Upstream: https://github.com/NVIDIA/TransformerEngine"""

from __future__ import annotations

import sys

from specs import DType

from .base import Backend, register


FA4_IMPORT_ERROR = ""  # why flash_attn.cute was hidden, for FlashAttention-4's own rows


def hide_broken_fa4() -> str:
    """If `flash_attn.cute` is installed but fails to import with anything but ImportError, make
    later imports of it raise ImportError instead; returns what was hidden ('' when nothing)."""
    global FA4_IMPORT_ERROR
    try:
        import flash_attn.cute  # noqa: F401
    except ImportError:  # absent, or hidden earlier in this process
        return f"flash_attn.cute hidden from TE ({FA4_IMPORT_ERROR[:80]})" if FA4_IMPORT_ERROR else ""
    except Exception as exc:  # noqa: BLE001  (a broken build raises AttributeError, RuntimeError, ...)
        FA4_IMPORT_ERROR = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
        sys.modules["flash_attn.cute"] = None  # `import flash_attn.cute` now raises ImportError
        return f"flash_attn.cute hidden from TE ({FA4_IMPORT_ERROR[:80]})"
    return ""


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

    def availability(self, device):
        self._hidden = hide_broken_fa4()
        return super().availability(device)

    def supports(self, spec):
        if spec.dtype not in (DType.BF16, DType.FP16):
            return f"dtype {spec.dtype}: TE's fused attention takes bf16 and fp16"
        if spec.page_size is not None:
            return "paged KV: TE's paged path needs its InferenceParams cache, not wired here yet"
        return None

    def prepare(self, spec, inputs):
        import transformer_engine.pytorch as te

        from harness.timer import kernel_names

        if not spec.is_masked:
            mask = "no_mask"
        elif spec.q_len == spec.kv_len:
            mask = "causal"
        else:
            mask = "causal_bottom_right"
        attention = te.DotProductAttention(
            num_attention_heads=spec.num_q_heads,
            kv_channels=spec.head_dim,
            num_gqa_groups=spec.num_kv_heads,
            attention_dropout=0.0,
            qkv_format="bshd",
            attn_mask_type=mask,
        )
        q, k, v = inputs.q, inputs.k, inputs.v
        shape = tuple(q.shape)

        def call():
            return attention(q, k, v).view(shape)  # TE returns [B, Sq, Hq · D]

        self._info = f"mask={mask};backend=" + te_backend_from_kernels(kernel_names(call))
        if getattr(self, "_hidden", ""):
            self._info += ";" + self._hidden
        return call

    def run_info(self) -> str:
        return getattr(self, "_info", "")
