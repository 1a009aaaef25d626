"""Attention shapes of real models: query heads, KV heads and head dim, from each model's config.json,
and the kinds of attention layer a model stacks (full or sliding-window, sinks, soft-cap).

Latent attention (MLA: DeepSeek-V2/V3, Kimi-K2) is run as engines run it: decode, speculative steps and
mixed batches in the absorbed form (queries of kv_lora_rank + rope_dim = 576 columns against one latent
head, values its first 512 columns), prompts and chunks in the expanded form (per-head q/k of
qk_nope + rope = 192, values of 128). `attention(workload)` gives the spec's fields for either."""

from __future__ import annotations

from dataclasses import dataclass

from .spec_errors import SpecError


@dataclass(frozen=True)
class LayerKind:
    """`count` layers of one attention form: a left window (None: full causal attention), learned sinks,
    a logit soft-cap."""

    count: int
    window: int | None = None
    sinks: bool = False
    softcap: float | None = None

    @property
    def name(self) -> str:
        """'full' or 'window': what `--layer` picks."""
        return "full" if self.window is None else "window"

    def form(self) -> dict:
        """The ExperimentSpec fields of this kind."""
        return {"window": self.window, "sinks": self.sinks, "softcap": self.softcap}


LAYER_NAMES = ("full", "window")
EXPANDED_WORKLOADS = ("prefill", "append")  # MLA: the expanded form; every other workload runs absorbed


@dataclass(frozen=True)
class ModelShape:
    name: str
    num_q_heads: int
    num_kv_heads: int  # MLA: the expanded form's (one per query head)
    head_dim: int  # MLA: the expanded q/k width, qk_nope_head_dim + qk_rope_head_dim
    layers: tuple[LayerKind, ...] = ()  # every attention layer, by kind (at most one kind of each name)
    kv_lora_rank: int | None = None  # MLA only: the latent width
    rope_dim: int | None = None  # MLA only: qk_rope_head_dim
    v_head_dim: int | None = None  # MLA only: the expanded value width

    @property
    def gqa_group(self) -> int:
        return self.num_q_heads // self.num_kv_heads

    @property
    def num_layers(self) -> int:
        return sum(kind.count for kind in self.layers)

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank is not None

    def layer(self, name: str) -> LayerKind | None:
        """The kind called `name` ('full' or 'window'), or None when the model has no such layers."""
        if name not in LAYER_NAMES:
            raise SpecError(f"layer: {name!r} is not valid; expected one of {', '.join(LAYER_NAMES)}")
        return next((kind for kind in self.layers if kind.name == name), None)

    def heads(self, tp: int = 1) -> tuple[int, int]:
        """(query heads, KV heads) one GPU holds when an engine shards the model over `tp` GPUs: the query
        heads divided by tp; the KV heads divided by tp, or one (replicated) once tp exceeds them."""
        if isinstance(tp, bool) or not isinstance(tp, int) or tp < 1 or self.num_q_heads % tp:
            allowed = ", ".join(str(d) for d in range(1, self.num_q_heads + 1) if self.num_q_heads % d == 0)
            raise SpecError(
                f"tp: {tp!r} does not divide {self.name}'s {self.num_q_heads} query heads; expected one of {allowed}"
            )
        if tp >= self.num_kv_heads:
            return self.num_q_heads // tp, 1
        if self.num_kv_heads % tp:
            raise SpecError(f"tp: {tp} does not divide {self.name}'s {self.num_kv_heads} KV heads")
        return self.num_q_heads // tp, self.num_kv_heads // tp

    def attention(self, workload=None, tp: int = 1) -> dict:
        """The spec's head fields of one GPU's share (tp-way sharded) for a workload (MLA: absorbed or
        expanded by the workload; no workload: absorbed)."""
        hq, hkv = self.heads(tp)
        heads = dict(num_q_heads=hq, num_kv_heads=hkv, head_dim=self.head_dim)
        if not self.is_mla:
            return heads
        mla = dict(kv_lora_rank=self.kv_lora_rank, rope_dim=self.rope_dim)
        if workload is not None and str(workload) in EXPANDED_WORKLOADS:
            return heads | mla | dict(v_head_dim=self.v_head_dim)
        absorbed = dict(num_kv_heads=1, head_dim=self.kv_lora_rank + self.rope_dim, v_head_dim=self.kv_lora_rank)
        return heads | mla | absorbed

    def spec_fields(self, layer: LayerKind, tp: int = 1, workload=None) -> dict:
        """The ExperimentSpec fields of one GPU's share of one kind of layer: heads, head dim, form, tp, model
        (MLA: the latent dims of the workload's form)."""
        return self.attention(workload, tp) | dict(model=self.name, tp=tp, **layer.form())


def _model(name, hq, hkv, d, *layers: LayerKind) -> ModelShape:
    return ModelShape(name, hq, hkv, d, tuple(layers))


def _mla(name: str, heads: int, layers: int) -> ModelShape:
    """DeepSeek's MLA dims (kv_lora_rank 512, qk_rope 64, qk_nope 128, v_head_dim 128), as Kimi-K2 keeps them;
    every layer full causal attention."""
    return ModelShape(name, heads, heads, 128 + 64, (LayerKind(layers),), kv_lora_rank=512, rope_dim=64, v_head_dim=128)


MODELS: dict[str, ModelShape] = {
    m.name: m
    for m in (
        _model("Llama-3.1-8B", 32, 8, 128, LayerKind(32)),
        _model("Qwen3-30B-A3B", 32, 4, 128, LayerKind(48)),
        _model("Qwen3-235B-A22B", 64, 4, 128, LayerKind(94)),
        _model("Llama-3.1-70B", 64, 8, 128, LayerKind(80)),
        _model("Qwen3-8B", 32, 8, 128, LayerKind(36)),
        # every other layer a 128-token sliding window; learned sinks in every layer
        _model("gpt-oss-120b", 64, 8, 64, LayerKind(18, sinks=True), LayerKind(18, window=128, sinks=True)),
        _model("gpt-oss-20b", 64, 8, 64, LayerKind(12, sinks=True), LayerKind(12, window=128, sinks=True)),
        # 5 of every 6 layers a 1024-token window: 52 local and 10 global of 62
        _model("Gemma-3-27B", 32, 16, 128, LayerKind(10), LayerKind(52, window=1024)),
        # every other layer a 4096-token window; logits soft-capped at 50 everywhere
        _model("Gemma-2-9B", 16, 8, 256, LayerKind(21, softcap=50.0), LayerKind(21, window=4096, softcap=50.0)),
        _mla("DeepSeek-V3", 128, 61),  # and R1: the same attention
        _mla("Kimi-K2", 64, 61),
        _mla("DeepSeek-V2-Lite", 16, 27),
    )
}


def layer_kinds(model: str, names: tuple[str, ...] = ()) -> list[LayerKind]:
    """The model's layer kinds, narrowed to `names` ('full', 'window'; () = all); a model without any of
    them gives none (a sweep over it then skips the model)."""
    shape = MODELS[model]
    if not names:
        return list(shape.layers)
    return [kind for name in names if (kind := shape.layer(name)) is not None]
