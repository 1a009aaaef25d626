"""Attention shapes of real models: query heads, KV heads and head dim, from each model's config.json."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelShape:
    name: str
    num_q_heads: int
    num_kv_heads: int
    head_dim: int

    @property
    def gqa_group(self) -> int:
        return self.num_q_heads // self.num_kv_heads


MODELS: dict[str, ModelShape] = {
    m.name: m
    for m in (
        ModelShape("Llama-3.1-8B", 32, 8, 128),
        ModelShape("Qwen3-30B-A3B", 32, 4, 128),
        ModelShape("Qwen3-235B-A22B", 64, 4, 128),
        ModelShape("Llama-3.1-70B", 64, 8, 128),
        ModelShape("Qwen3-8B", 32, 8, 128),
    )
}
