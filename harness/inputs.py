"""Seeded inputs in one canonical layout, shared by every backend of a spec."""

from __future__ import annotations

import zlib

import torch

from frameworks import AttentionInputs
from specs import ExperimentSpec


def spec_seed(spec: ExperimentSpec) -> int:
    """A seed that depends only on the spec's shape, so every run and backend sees the same numbers."""
    return zlib.crc32(repr(spec.key).encode())


def make_inputs(spec: ExperimentSpec, device: torch.device) -> AttentionInputs:
    gen = torch.Generator(device=device)
    gen.manual_seed(spec_seed(spec))
    dtype = spec.dtype.torch_dtype

    def draw(seq: int, heads: int) -> torch.Tensor:
        shape = (spec.batch_size, seq, heads, spec.head_dim)
        return torch.randn(shape, generator=gen, device=device, dtype=dtype)

    q = draw(spec.q_len, spec.num_q_heads)
    k = draw(spec.kv_len, spec.num_kv_heads)
    v = draw(spec.kv_len, spec.num_kv_heads)
    return AttentionInputs(q=q, k=k, v=v)
