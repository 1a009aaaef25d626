"""Named sweeps as data: a grid of models × workloads × batch sizes × sequence lengths × chunks ×
page sizes, or of models × named serving mixes (or drawn batches, `draw:SEED`) × page sizes.

A preset is a `SweepGrid`; the CLI narrows it by replacing any axis (`--models`, `--batch`, …)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from .batch import is_generator, parse_mix
from .draw import draw_batch, expand_draws, is_draw, seed_of_draw
from .models import LAYER_NAMES, MODELS, LayerKind, ModelShape, layer_kinds
from .spec import DType, ExperimentSpec, SpecError, Workload, parse_enum


@dataclass(frozen=True)
class Mix:
    """A named batch of requests: a mix string, or a length generator with the workload and the
    number of requests it draws (and the chunk, for append and spec-decode)."""

    name: str
    mix: str
    workload: str | None = None  # generators only
    count: int | None = None
    chunk: int = 1

    def spec(self, model: str, layer: LayerKind | None = None, tp: int = 1, **kw) -> ExperimentSpec:
        """This mix on one GPU's heads of `model` (tp-way sharded), in the form of one of its layer kinds
        (default: its first, full attention); MLA absorbed or expanded by the batch's workload."""
        shape = MODELS[model]
        workload = self.workload if is_generator(self.mix) else parse_mix(self.mix).kind
        fields = shape.spec_fields(layer or shape.layers[0], tp, workload)
        if is_generator(self.mix):
            return ExperimentSpec.from_lengths(self.mix, self.workload, self.count, *_heads(fields), chunk=self.chunk,
                                               **_form(fields), **kw)  # fmt: skip
        return ExperimentSpec.from_mix(self.mix, *_heads(fields), **_form(fields), **kw)


# traffic a serving engine runs, by name (the table shows the name; the row keeps the mix string)
MIXES: dict[str, Mix] = {
    m.name: m
    for m in (
        # one 512-token chunk of a 4k prompt beside 127 decodes on 1k-8k caches
        Mix("decode-heavy", "q512s4k_32q1s1k_32q1s2k_32q1s4k_31q1s8k"),
        # whole prompts of 1k-4k tokens with a few decodes
        Mix("prefill-heavy", "2q4k_2q2k_4q1k_8q1s2k"),
        # chunked-prefill steady state: a 2k chunk of a 16k prompt beside 64 decodes on 4k caches
        Mix("chunked-prefill", "q2ks16k_64q1s4k"),
        # long context: decodes on 32k-128k caches
        Mix("long-decode", "q1s128k_2q1s64k_4q1s32k"),
        # speculative decoding: 64 requests verifying 4 draft tokens on 4k caches
        Mix("spec-decode", "64q4s4k"),
        # 16 prompts with lognormal lengths around 2k tokens
        Mix("prefill-lognormal", "lognormal:2048:0.8@0", workload="prefill", count=16),
    )
}
# the drawn batches of the `generalization` preset (specs/draw.py): draw:0 … draw:N-1
GENERALIZATION_DRAWS = 105  # 15 of each of the seven regimes
# the row's mix string (canonical for the grammar) -> the name; a drawn batch of the preset is named by its seed
MIX_NAMES = {(m.mix if is_generator(m.mix) else parse_mix(m.mix).to_mix()): m.name for m in MIXES.values()}
MIX_NAMES.update({draw_batch(seed): f"draw:{seed}" for seed in reversed(range(GENERALIZATION_DRAWS))})


def resolve_mix(text: str) -> Mix:
    """A mix by name, a drawn batch (`draw:SEED`, its concrete mix string), or a mix string given on the
    command line (a bad segment is named)."""
    if text in MIXES:
        return MIXES[text]
    if is_draw(text):
        return Mix(text, draw_batch(seed_of_draw(text)))
    if is_generator(text):
        raise SpecError(f"mix: {text!r} is a length generator; give it as --lengths with --workload and --batch")
    parse_mix(text)
    return Mix(text, text)


@dataclass(frozen=True)
class SweepGrid:
    models: tuple[str, ...]
    workloads: tuple[Workload, ...]
    batch_sizes: tuple[int, ...]
    seq_lens: tuple[int, ...]  # kv_len of every workload (prefill: q_len = kv_len too)
    chunks: tuple[int, ...]  # append q_len; chunks longer than the sequence are skipped
    dtype: DType = DType.BF16
    page_sizes: tuple[int | None, ...] = (None,)  # None: dense KV
    mixes: tuple[str, ...] = ()  # named mixes, mix strings or draw:SEED[-LAST]: when set, models × mixes × page sizes
    lengths: str | None = None  # a length generator: each workload × batch size (requests) × chunk drawn from it
    max_tflop: float | None = None  # leave out specs of more than this many TFLOP a call (None: no cap)
    layers: tuple[str, ...] = ()  # layer kinds of each model ('full', 'window'); () = every kind it has
    tps: tuple[int, ...] = (1,)  # tensor-parallel degrees: each spec holds one GPU's share of the heads
    kv_dtypes: tuple[str, ...] = ("",)  # KV cache dtypes: "" (the dtype's) and/or "fp8_e4m3"; every spec in each
    kv_scale: str = ""  # FP8 specs: "tensor" (default) or "head"
    fp8_attention: bool = False  # FP8 specs: Q in e4m3 too (FA3's FP8 form)
    extra_mixes: tuple[str, ...] = ()  # named mixes measured beside a grid (models × these × page sizes × kv dtypes)

    def __post_init__(self) -> None:
        for name in self.models:
            if name not in MODELS:
                raise SpecError(f"models: {name!r} is not known; expected one of {', '.join(MODELS)}")
        object.__setattr__(self, "workloads", tuple(parse_enum(Workload, w, "workloads") for w in self.workloads))
        object.__setattr__(self, "dtype", parse_enum(DType, self.dtype, "dtype"))
        for axis in ("models", "workloads", "batch_sizes", "seq_lens", "chunks", "page_sizes", "kv_dtypes"):
            if not getattr(self, axis):
                raise SpecError(f"{axis}: the sweep needs at least one value")
        object.__setattr__(self, "mixes", tuple(m for text in self.mixes for m in expand_draws(text)))
        for mix in (*self.mixes, *self.extra_mixes):
            resolve_mix(mix)
        for name in self.layers:
            if name not in LAYER_NAMES:
                raise SpecError(f"layers: {name!r} is not valid; expected one of {', '.join(LAYER_NAMES)}")
        if not self.tps:
            raise SpecError("tps: the sweep needs at least one value")
        for model in self.models:
            for tp in self.tps:
                MODELS[model].heads(tp)  # a tp that does not divide a model's heads: one line naming both

    def narrowed(self, **axes) -> SweepGrid:
        """This grid with the given axes replaced; None leaves an axis as it is."""
        return replace(
            self, **{k: (tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in axes.items() if v is not None}
        )

    def specs(self) -> list[ExperimentSpec]:
        specs = list(dict.fromkeys(self._all_specs()))  # once each (two seeds may draw one batch)
        if self.max_tflop is None:
            return specs
        return [s for s in specs if s.flops <= self.max_tflop * 1e12]

    def shapes(self, model: str, workload=None) -> list[dict]:
        """The ExperimentSpec fields (heads, head dim, form, tp; MLA: the workload's latent dims) of each
        layer kind × tp of `model`."""
        shape = MODELS[model]
        return [shape.spec_fields(kind, tp, workload) for kind in layer_kinds(model, self.layers) for tp in self.tps]

    def _fp8(self, kv_dtype: str) -> dict:
        """The spec fields of one KV dtype of the sweep."""
        if not kv_dtype:
            return {}
        return dict(kv_dtype=kv_dtype, kv_scale=self.kv_scale, fp8_attention=self.fp8_attention)

    def _mix_specs(self, mixes) -> list[ExperimentSpec]:
        return [
            resolve_mix(mix).spec(model, kind, tp, dtype=self.dtype, page_size=page, **self._fp8(kv))
            for model in self.models
            for kind in layer_kinds(model, self.layers)
            for tp in self.tps
            for mix in mixes
            for page in self.page_sizes
            for kv in self.kv_dtypes
        ]

    def _all_specs(self) -> list[ExperimentSpec]:
        if self.mixes:
            return self._mix_specs(self.mixes)
        if self.lengths:
            return [
                ExperimentSpec.from_lengths(
                    self.lengths,
                    w,
                    count,
                    *_heads(fields),
                    chunk=chunk,
                    dtype=self.dtype,
                    page_size=page,
                    **_form(fields),
                    **self._fp8(kv),
                )  # fmt: skip
                for model in self.models
                for kind in layer_kinds(model, self.layers)
                for tp in self.tps
                for w in self.workloads
                for fields in (MODELS[model].spec_fields(kind, tp, w),)
                for count in self.batch_sizes
                for chunk in ([1] if w in (Workload.PREFILL, Workload.DECODE) else self.chunks)
                for page in self.page_sizes
                for kv in self.kv_dtypes
            ]
        uniform = [
            spec
            for model in self.models
            for kind in layer_kinds(model, self.layers)
            for tp in self.tps
            for spec in self._uniform(MODELS[model], kind, tp)
        ]
        return uniform + self._mix_specs(self.extra_mixes)

    def _uniform(self, model: ModelShape, kind: LayerKind, tp: int) -> list[ExperimentSpec]:
        """Workloads × batch sizes × lengths × chunks × page sizes × KV dtypes of one layer kind of one model
        under tp (its head shape and form; MLA: absorbed or expanded by the workload)."""
        out: list[ExperimentSpec] = []
        for workload in self.workloads:
            fields = model.spec_fields(kind, tp, workload)
            for batch in self.batch_sizes:
                for seq in self.seq_lens:
                    if workload is Workload.PREFILL:
                        q_lens = [seq]
                    elif workload is Workload.DECODE:
                        q_lens = [1]
                    elif workload is Workload.SPEC_DECODE:  # chunks are the draft lengths here
                        q_lens = [c for c in self.chunks if 2 <= c <= min(16, seq)]
                    else:
                        q_lens = [c for c in self.chunks if c <= seq]
                    for q_len in q_lens:
                        out.extend(
                            ExperimentSpec(
                                workload=workload,
                                batch_size=batch,
                                q_len=q_len,
                                kv_len=seq,
                                dtype=self.dtype,
                                page_size=page,
                                **fields,
                                **self._fp8(kv),
                            )  # fmt: skip
                            for page in self.page_sizes
                            for kv in self.kv_dtypes
                        )
        return out


ALL_WORKLOADS = (Workload.PREFILL, Workload.APPEND, Workload.DECODE)

PRESETS: dict[str, SweepGrid] = {
    # about a minute on a 2-core CPU, compiles included: tiny sequences, a real head shape (GQA group 4); -m adds
    # others (-m Qwen3-30B-A3B: group 8)
    "smoke": SweepGrid(
        models=("Llama-3.1-8B",),
        workloads=ALL_WORKLOADS,
        batch_sizes=(2,),
        seq_lens=(128,),
        chunks=(32,),
    ),
    # the README comparison: batch 256 × 4096 tokens, append chunk 128, GQA groups 2, 4, 8 and 16, head dims
    # 64, 128 and 256; gpt-oss and Gemma once a layer kind (full and sliding-window; sinks, soft-cap); and MLA
    # (the 16-head DeepSeek-V2-Lite: DeepSeek-V3's 128 expanded heads at this batch need 136 GB of inputs)
    "readme": SweepGrid(
        models=(
            "Llama-3.1-8B",
            "Qwen3-30B-A3B",
            "Qwen3-235B-A22B",
            "gpt-oss-120b",
            "gpt-oss-20b",
            "Gemma-3-27B",
            "Gemma-2-9B",
            "DeepSeek-V2-Lite",
        ),  # fmt: skip
        workloads=ALL_WORKLOADS,
        batch_sizes=(256,),
        seq_lens=(4096,),
        chunks=(128,),
    ),
    # the batches serving engines run: named mixes, dense and paged with 16-token pages
    "serving": SweepGrid(
        models=("Llama-3.1-8B", "Qwen3-30B-A3B", "Qwen3-235B-A22B", "DeepSeek-V3"),
        workloads=(Workload.MIXED,),
        batch_sizes=(1,),
        seq_lens=(1,),
        chunks=(1,),
        page_sizes=(None, 16),
        mixes=tuple(MIXES),
    ),
    # how often each library is the best, over drawn serving batches (specs/draw.py: seven regimes, 1-256
    # requests, caches of a few tokens to 128k, one long cache among short ones, tiny batches), each dense and
    # in 16-token pages, for `run.py table FILE --verdict`. About 20 min of GPU time with
    # `-b triton,flash-attn3,flashinfer,flash-attn4 --max-seconds 0.25` (docs/perf-notes.md, "Split-KV by
    # work", has the estimate); resumable with --resume
    "generalization": SweepGrid(
        models=("Llama-3.1-8B",),
        workloads=(Workload.MIXED,),
        batch_sizes=(1,),
        seq_lens=(1,),
        chunks=(1,),
        page_sizes=(None, 16),
        mixes=(f"draw:0-{GENERALIZATION_DRAWS - 1}",),
    ),
    # latency, TFLOP/s and GB/s against context length and batch, sized to fit one GPU in a session's
    # device time: calls of more than 20 TFLOP are left out (causal prefill of 128k tokens, or of 32k at
    # batch 16: a quarter second a call or more, which with warm-up and repetition would double the
    # sweep; narrow `full` to reach them). 62 specs, about 15 min on one H100 for every backend (47 of them
    # took 11 min on 2026-11-23, half of it torch.compile's recompiles: docs/perf-notes.md). Specs whose
    # inputs cannot fit are recorded as skipped (oom) at once
    "scaling": SweepGrid(
        models=("Llama-3.1-8B", "Qwen3-30B-A3B", "Qwen3-235B-A22B"),
        workloads=ALL_WORKLOADS,
        batch_sizes=(1, 16),
        seq_lens=(1024, 8192, 32768, 131072),
        chunks=(512,),
        max_tflop=20,
    ),
    # latent attention (MLA) decode in the absorbed form (576-wide queries against one latent head, 512-wide
    # values) on pages of 64 tokens, as vLLM runs FlashMLA: batches 1-128 against caches of 1k-64k tokens
    "mla": SweepGrid(
        models=("DeepSeek-V3", "Kimi-K2", "DeepSeek-V2-Lite"),
        workloads=(Workload.DECODE,),
        batch_sizes=(1, 8, 32, 128),
        seq_lens=(1024, 4096, 16384, 65536),
        chunks=(1,),
        page_sizes=(64,),
    ),
    # an FP8 (e4m3, per-tensor scales) KV cache beside the bf16 one: decode against 1k-64k caches (the plot of
    # decode time against context), a 512-token chunk, and the decode-heavy serving mix, on pages of 16
    "fp8": SweepGrid(
        models=("Llama-3.1-8B", "Qwen3-30B-A3B"),
        workloads=(Workload.DECODE, Workload.APPEND),
        batch_sizes=(1, 16),
        seq_lens=(1024, 4096, 16384, 65536),
        chunks=(512,),
        page_sizes=(16,),
        kv_dtypes=("", "fp8_e4m3"),
        extra_mixes=("decode-heavy",),
    ),
    # decode against 1k-128k caches at a fixed window, full and windowed layers side by side: a windowed
    # layer reads window + 1 keys whatever the context, so its cost stays flat while the full layer's grows
    "windowed": SweepGrid(
        models=("gpt-oss-120b", "Gemma-3-27B"),
        workloads=(Workload.DECODE,),
        batch_sizes=(1, 16),
        seq_lens=(1024, 4096, 16384, 32768, 65536, 131072),
        chunks=(1,),
    ),
    # everything; specs that cannot fit in the GPU's memory are recorded as skipped
    "full": SweepGrid(
        models=tuple(MODELS),
        workloads=ALL_WORKLOADS,
        batch_sizes=(1, 16, 64, 256),
        seq_lens=(512, 1024, 2048, 4096, 8192, 16384, 32768),
        chunks=(128, 512),
    ),
}


HEAD_FIELDS = ("num_q_heads", "num_kv_heads", "head_dim")


def _heads(fields: dict) -> tuple[int, int, int]:
    """The head shape of a model's spec fields (positional arguments of the spec builders)."""
    return tuple(fields[name] for name in HEAD_FIELDS)


def _form(fields: dict) -> dict:
    """A model's spec fields but the head shape: model, form, tp, and MLA's latent dims."""
    return {k: v for k, v in fields.items() if k not in HEAD_FIELDS}


def specs_for(model: str, layer: str = "full", tp: int = 1, **spec) -> ExperimentSpec:
    """One GPU's spec of one layer kind ('full' or 'window') of `model` under `tp`-way tensor parallelism;
    `spec` gives the rest (workload, batch_size, q_len, kv_len, …; an MLA model takes the workload's form).
    A model without that kind, or a tp that does not divide its heads, is a SpecError."""
    if model not in MODELS:
        raise SpecError(f"model: {model!r} is not known; expected one of {', '.join(MODELS)}")
    kind = MODELS[model].layer(layer)
    if kind is None:
        have = ", ".join(k.name for k in MODELS[model].layers)
        raise SpecError(f"layer: {model} has no {layer} layers; it has {have}")
    return ExperimentSpec(**MODELS[model].spec_fields(kind, tp, spec.get("workload")), **spec)


def get_preset(name: str) -> SweepGrid:
    try:
        return PRESETS[name]
    except KeyError:
        raise SpecError(f"preset: {name!r} is not known; expected one of {', '.join(PRESETS)}") from None
