"""PyTorch naive attention: explicit matmul, fp32 softmax, matmul. GQA folds each group's query heads
into the row dimension, so K and V are read as they are (never repeated). Also the body that
`torch-compile` compiles."""

from __future__ import annotations

import torch

from specs import ExperimentSpec

from .base import Backend, Caps, register


def grouped_layout(spec: ExperimentSpec, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
    """q [B, Sq, Hq, D] -> [B, Hkv, Sq·G, D] (row = position·G + group member); k, v -> [B, Hkv, Sk, D];
    and the bottom-right causal mask over those rows, [Sq·G, Sk] (True = hidden), or None."""
    b, sq, d = spec.batch_size, spec.q_len, spec.head_dim
    hkv, g = spec.num_kv_heads, spec.gqa_group
    q_grouped = q.view(b, sq, hkv, g, d).permute(0, 2, 1, 3, 4).reshape(b, hkv, sq * g, d).contiguous()
    k_bhsd = k.transpose(1, 2).contiguous()
    v_bhsd = v.transpose(1, 2).contiguous()
    hidden = None
    if spec.is_masked:
        query_pos = torch.arange(sq, device=q.device).repeat_interleave(g) + spec.causal_offset
        hidden = torch.arange(spec.kv_len, device=q.device)[None, :] > query_pos[:, None]
    return q_grouped, k_bhsd, v_bhsd, hidden


def naive_attention(q_grouped, k_bhsd, v_bhsd, hidden, scale: float, out_shape: tuple[int, int, int, int]):
    scores = torch.matmul(q_grouped, k_bhsd.transpose(-1, -2)) * scale  # [B, Hkv, Sq·G, Sk]
    if hidden is not None:
        scores = scores.masked_fill(hidden, float("-inf"))
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(v_bhsd.dtype)
    out = torch.matmul(probs, v_bhsd)  # [B, Hkv, Sq·G, D]
    b, sq, hq, d = out_shape
    return out.view(b, k_bhsd.shape[1], sq, hq // k_bhsd.shape[1], d).permute(0, 2, 1, 3, 4).reshape(out_shape)


@register("torch-naive")
class TorchNaive(Backend):
    caps = Caps(devices={"cuda", "cpu"})
    upstream = "explicit torch.matmul / torch.softmax"

    def prepare(self, spec, inputs):
        q, k, v, hidden = grouped_layout(spec, inputs.q, inputs.k, inputs.v)
        shape = tuple(inputs.q.shape)
        scale = inputs.scale
        return lambda: naive_attention(q, k, v, hidden, scale, shape)
