"""Attention shapes of real models: query heads, KV heads and head dim, from each model's config.json,
and the kinds of attention layer a model stacks (full or sliding-window, sinks, soft-cap)."""

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


@dataclass(frozen=True)
class ModelShape:
    name: str
    num_q_heads: int
    num_kv_heads: int
    head_dim: int
    layers: tuple[LayerKind, ...] = ()  # every attention layer, by kind (at most one kind of each name)

    @property
    def gqa_group(self) -> int:
        return self.num_q_heads // self.num_kv_heads

    @property
    def num_layers(self) -> int:
        return sum(kind.count for kind in self.layers)

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

    def spec_fields(self, layer: LayerKind, tp: int = 1) -> dict:
        """The ExperimentSpec fields of one GPU's share of one kind of layer: heads, head dim, form, tp, model."""
        hq, hkv = self.heads(tp)
        return dict(num_q_heads=hq, num_kv_heads=hkv, head_dim=self.head_dim, model=self.name, tp=tp, **layer.form())


def _model(name, hq, hkv, d, *layers: LayerKind) -> ModelShape:
    return ModelShape(name, hq, hkv, d, tuple(layers))


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
    )
}


def layer_kinds(model: str, names: tuple[str, ...] = ()) -> list[LayerKind]:
    """The model's layer kinds, narrowed to `names` ('full', 'window'; () = all); a model without any of
    them gives none (a sweep over it then skips the model)."""
    shape = MODELS[model]
    if not names:
        return list(shape.layers)
    return [kind for name in names if (kind := shape.layer(name)) is not None]
