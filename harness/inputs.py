"""Seeded inputs in one canonical layout, shared by every backend of a spec."""

from __future__ import annotations

import zlib
from dataclasses import fields

import torch

from frameworks import AttentionInputs
from frameworks._fp8 import quantize
from specs import ExperimentSpec

# the spec's fields up to `mix`: the key seeds were drawn from before later fields existed
_SEED_FIELDS = [f.name for f in fields(ExperimentSpec)]
_SEED_FIELDS = _SEED_FIELDS[: _SEED_FIELDS.index("mix") + 1]
# later spec fields that leave Q, K and V alone: the attention form and the tensor-parallel degree
FORM_FIELDS = ("window", "sinks", "softcap", "tp")


def spec_seed(spec: ExperimentSpec) -> int:
    """A seed that depends only on the spec's shape, so every run and backend sees the same numbers.
    Specs keep the seeds they had before later fields existed: uniform ones leave `mix` out, and a field
    added after `mix` counts only where it differs from its default (an FP8 cache, MLA's dims). The form
    fields (window, sinks, softcap, tp) never count: a windowed layer and a full one of the same shape
    attend over the same Q, K and V (the sinks are drawn after them)."""
    key = tuple(spec.key[: len(_SEED_FIELDS)])
    key = key if spec.mix else key[:-1]
    later = tuple((f.name, getattr(spec, f.name)) for f in fields(ExperimentSpec)[len(_SEED_FIELDS) :]
                  if f.name not in FORM_FIELDS and getattr(spec, f.name) != f.default)  # fmt: skip
    return zlib.crc32(repr(key + later if later else key).encode())


def make_inputs(spec: ExperimentSpec, device: torch.device) -> AttentionInputs:
    gen = torch.Generator(device=device)
    gen.manual_seed(spec_seed(spec))
    dtype = spec.dtype.torch_dtype
    d = spec.head_dim

    def draw(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=gen, device=device, dtype=dtype)

    if spec.form != "mha" or spec.kv_dtype:
        return _form_inputs(spec, device, draw, gen)
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


def _form_inputs(spec: ExperimentSpec, device: torch.device, draw, gen: torch.Generator) -> AttentionInputs:
    """Inputs of an FP8 or MLA spec. MLA absorbed: q [..., Hq, 576] against the latent cache [..., 1, 576]
    (k), whose first kv_lora_rank columns are the values (v, a view of k); expanded: v of v_head_dim.
    FP8: K and V (the latent once) drawn in the spec's dtype, then quantized to e4m3 with fp32 scales per
    tensor or per KV head (Q too with fp8_attention, per tensor); `unquantized` keeps what was drawn."""
    if spec.is_ragged:
        batch = spec.batch
        lead_q, lead_kv = (batch.total_q,), (batch.total_kv,)
        offsets = lambda values: torch.tensor(values, dtype=torch.int32, device=device)  # noqa: E731
        ragged = dict(cu_seqlens_q=offsets(batch.cu_seqlens_q), cu_seqlens_k=offsets(batch.cu_seqlens_k))
    else:
        lead_q, lead_kv = (spec.batch_size, spec.q_len), (spec.batch_size, spec.kv_len)
        ragged = {}
    q = draw(*lead_q, spec.num_q_heads, spec.head_dim)
    k = draw(*lead_kv, spec.num_kv_heads, spec.head_dim)
    absorbed = spec.form == "mla-absorbed"
    v = k[..., : spec.kv_lora_rank] if absorbed else draw(*lead_kv, spec.num_kv_heads, spec.value_dim)
    sinks = draw_sinks(spec, gen, device)  # after Q, K and V, as in plain attention
    drawn = AttentionInputs(q, k, v, **ragged, sinks=sinks)
    if not spec.kv_dtype:
        return drawn
    per_head = spec.kv_scale == "head"
    k8, k_scale = quantize(k, per_head)
    v8, v_scale = (k8[..., : spec.kv_lora_rank], k_scale) if absorbed else quantize(v, per_head)
    q8, q_scale = quantize(q) if spec.fp8_attention else (q, None)
    scales = dict(q_scale=q_scale, k_scale=k_scale, v_scale=v_scale)
    return AttentionInputs(q8, k8, v8, **ragged, sinks=sinks, **scales, unquantized=drawn)


def draw_sinks(spec: ExperimentSpec, gen: torch.Generator, device: torch.device) -> torch.Tensor | None:
    """One sink logit a query head, fp32 [Hq], drawn after Q, K and V from the same generator (so they
    keep their numbers); None without sinks. Standard normal: the scale of a score (q·k / √D of
    unit-normal q and k), so the sink takes a real share of each row's softmax."""
    if not spec.sinks:
        return None
    return torch.randn(spec.num_q_heads, generator=gen, device=device, dtype=torch.float32)
