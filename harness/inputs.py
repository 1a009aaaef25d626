"""Seeded inputs in one canonical layout, shared by every backend of a spec."""

from __future__ import annotations

import zlib
from dataclasses import fields

import torch

from frameworks import AttentionInputs
from specs import ExperimentSpec

# the spec's fields up to `mix`: the key seeds were drawn from before later fields existed
_SEED_FIELDS = [f.name for f in fields(ExperimentSpec)]
_SEED_FIELDS = _SEED_FIELDS[: _SEED_FIELDS.index("mix") + 1]


def spec_seed(spec: ExperimentSpec) -> int:
    """A seed that depends only on the spec's shape, so every run and backend sees the same numbers.
    Specs keep the seeds they had before later fields existed: uniform ones leave `mix` out, and a field
    added after `mix` counts only where it differs from its default."""
    key = tuple(spec.key[: len(_SEED_FIELDS)])
    key = key if spec.mix else key[:-1]
    later = tuple((f.name, getattr(spec, f.name)) for f in fields(ExperimentSpec)[len(_SEED_FIELDS) :]
                  if getattr(spec, f.name) != f.default)  # fmt: skip
    return zlib.crc32(repr(key + later if later else key).encode())


def make_inputs(spec: ExperimentSpec, device: torch.device) -> AttentionInputs:
    gen = torch.Generator(device=device)
    gen.manual_seed(spec_seed(spec))
    dtype = spec.dtype.torch_dtype
    d = spec.head_dim

    def draw(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=gen, device=device, dtype=dtype)

    if spec.is_ragged:
        batch = spec.batch
        q = draw(batch.total_q, spec.num_q_heads, d)
        k = draw(batch.total_kv, spec.num_kv_heads, d)
        v = draw(batch.total_kv, spec.num_kv_heads, d)
        offsets = lambda values: torch.tensor(values, dtype=torch.int32, device=device)  # noqa: E731
        return AttentionInputs(q, k, v, offsets(batch.cu_seqlens_q), offsets(batch.cu_seqlens_k))
    q = draw(spec.batch_size, spec.q_len, spec.num_q_heads, d)
    k = draw(spec.batch_size, spec.kv_len, spec.num_kv_heads, d)
    v = draw(spec.batch_size, spec.kv_len, spec.num_kv_heads, d)
    return AttentionInputs(q=q, k=k, v=v)
