"""Seeded inputs in one canonical layout, shared by every backend of a spec."""

from __future__ import annotations

import zlib
from dataclasses import fields

import torch

from frameworks import AttentionInputs
from specs import ExperimentSpec

# spec fields that leave the inputs' shapes alone: the attention form and the tensor-parallel degree
FORM_FIELDS = ("window", "sinks", "softcap", "tp")


def spec_seed(spec: ExperimentSpec) -> int:
    """A seed that depends only on the spec's shape, so every run and backend sees the same numbers. The
    form fields (window, sinks, softcap, tp) are left out: a windowed layer and a full one of the same
    shape attend over the same Q, K and V, and every spec keeps the seed it had before forms existed."""
    key = tuple(v for f, v in zip((f.name for f in fields(spec)), spec.key) if f not in FORM_FIELDS)
    key = key if spec.mix else key[:-1]  # uniform specs keep the seeds they had before mixes existed
    return zlib.crc32(repr(key).encode())


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
        cu = (offsets(batch.cu_seqlens_q), offsets(batch.cu_seqlens_k))
        return AttentionInputs(q, k, v, *cu, sinks=draw_sinks(spec, gen, device))
    q = draw(spec.batch_size, spec.q_len, spec.num_q_heads, d)
    k = draw(spec.batch_size, spec.kv_len, spec.num_kv_heads, d)
    v = draw(spec.batch_size, spec.kv_len, spec.num_kv_heads, d)
    return AttentionInputs(q=q, k=k, v=v, sinks=draw_sinks(spec, gen, device))


def draw_sinks(spec: ExperimentSpec, gen: torch.Generator, device: torch.device) -> torch.Tensor | None:
    """One sink logit a query head, fp32 [Hq], drawn after Q, K and V from the same generator (so they
    keep their numbers); None without sinks. Standard normal: the scale of a score (q·k / √D of
    unit-normal q and k), so the sink takes a real share of each row's softmax."""
    if not spec.sinks:
        return None
    return torch.randn(spec.num_q_heads, generator=gen, device=device, dtype=torch.float32)
