"""FP8 (e4m3) quantization as serving engines store a KV cache: scaled into e4m3's range by an fp32 scale
per tensor or per KV head (value ≈ e4m3 · scale), and back. Shared by the harness (drawing the inputs, the
reference on the dequantized cache) and the adapters that dequantize in their call (torch-naive)."""

from __future__ import annotations

import torch

E4M3 = torch.float8_e4m3fn
E4M3_MAX = 448.0  # the largest finite e4m3fn value


def quantize(t: torch.Tensor, per_head: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """t [..., H, D] -> (e4m3 tensor of t's shape, fp32 scale: 0-d per tensor, [H] per head) with the
    largest magnitude (of the tensor or of each head) mapped to e4m3's largest value."""
    if per_head:
        amax = t.abs().amax(dim=tuple(d for d in range(t.dim()) if d != t.dim() - 2)).float()
    else:
        amax = t.abs().amax().float()
    scale = (amax / E4M3_MAX).clamp_min(torch.finfo(torch.float32).tiny)
    quantized = (t.float() / _broadcast(scale)).clamp(-E4M3_MAX, E4M3_MAX).to(E4M3)
    return quantized, scale


def dequantize(t: torch.Tensor, scale: torch.Tensor | None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """e4m3 [..., H, D] back to `dtype` with its scale (0-d or [H]); a tensor without a scale is only cast."""
    if scale is None:
        return t.to(dtype)
    return t.to(dtype) * _broadcast(scale).to(dtype)


def _broadcast(scale: torch.Tensor) -> torch.Tensor:
    """A per-head scale [H] against [..., H, D]."""
    return scale if scale.dim() == 0 else scale[:, None]
