"""Attention shapes of real models: query heads, KV heads and head dim, from each model's config.json.

Latent attention (MLA: DeepSeek-V2/V3, Kimi-K2) is run as engines run it: decode, speculative steps and
mixed batches in the absorbed form (queries of kv_lora_rank + rope_dim = 576 columns against one latent
head, values its first 512 columns), prompts and chunks in the expanded form (per-head q/k of
qk_nope + rope = 192, values of 128). `attention(workload)` gives the spec's fields for either."""

from __future__ import annotations

from dataclasses import dataclass

EXPANDED_WORKLOADS = ("prefill", "append")  # MLA: the expanded form; every other workload runs absorbed


@dataclass(frozen=True)
class ModelShape:
    name: str
    num_q_heads: int
    num_kv_heads: int  # MLA: the expanded form's (one per query head)
    head_dim: int  # MLA: the expanded q/k width, qk_nope_head_dim + qk_rope_head_dim
    kv_lora_rank: int | None = None  # MLA only: the latent width
    rope_dim: int | None = None  # MLA only: qk_rope_head_dim
    v_head_dim: int | None = None  # MLA only: the expanded value width

    @property
    def gqa_group(self) -> int:
        return self.num_q_heads // self.num_kv_heads

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank is not None

    def attention(self, workload) -> dict:
        """The spec's head fields for a workload (MLA: absorbed or expanded by the workload)."""
        heads = dict(num_q_heads=self.num_q_heads, num_kv_heads=self.num_kv_heads, head_dim=self.head_dim)
        if not self.is_mla:
            return heads
        mla = dict(kv_lora_rank=self.kv_lora_rank, rope_dim=self.rope_dim)
        if str(workload) in EXPANDED_WORKLOADS:
            return heads | mla | dict(v_head_dim=self.v_head_dim)
        absorbed = dict(num_kv_heads=1, head_dim=self.kv_lora_rank + self.rope_dim, v_head_dim=self.kv_lora_rank)
        return heads | mla | absorbed


def _mla(name: str, heads: int) -> ModelShape:
    """DeepSeek's MLA dims (kv_lora_rank 512, qk_rope 64, qk_nope 128, v_head_dim 128), as Kimi-K2 keeps them."""
    return ModelShape(name, heads, heads, 128 + 64, kv_lora_rank=512, rope_dim=64, v_head_dim=128)


MODELS: dict[str, ModelShape] = {
    m.name: m
    for m in (
        ModelShape("Llama-3.1-8B", 32, 8, 128),
        ModelShape("Qwen3-30B-A3B", 32, 4, 128),
        ModelShape("Qwen3-235B-A22B", 64, 4, 128),
        ModelShape("Llama-3.1-70B", 64, 8, 128),
        ModelShape("Qwen3-8B", 32, 8, 128),
        _mla("DeepSeek-V3", 128),  # and R1: the same attention
        _mla("Kimi-K2", 64),
        _mla("DeepSeek-V2-Lite", 16),
    )
}
