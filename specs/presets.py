"""Named sweeps as data: a grid of models × workloads × batch sizes × sequence lengths × chunks ×
page sizes, or of models × named serving mixes × page sizes.

A preset is a `SweepGrid`; the CLI narrows it by replacing any axis (`--models`, `--batch`, …)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from .batch import is_generator, parse_mix
from .models import MODELS
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

    def spec(self, model: str, **kw) -> ExperimentSpec:
        workload = self.workload if is_generator(self.mix) else parse_mix(self.mix).kind
        fields = MODELS[model].attention(workload)  # MLA: absorbed or expanded by the workload
        heads = (fields.pop("num_q_heads"), fields.pop("num_kv_heads"), fields.pop("head_dim"))
        if is_generator(self.mix):
            return ExperimentSpec.from_lengths(self.mix, self.workload, self.count, *heads, chunk=self.chunk,
                                               model=model, **fields, **kw)  # fmt: skip
        return ExperimentSpec.from_mix(self.mix, *heads, model=model, **fields, **kw)


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
# the row's mix string (canonical for the grammar) -> the name
MIX_NAMES = {(m.mix if is_generator(m.mix) else parse_mix(m.mix).to_mix()): m.name for m in MIXES.values()}


def resolve_mix(text: str) -> Mix:
    """A mix by name, or a mix string given on the command line (a bad segment is named)."""
    if text in MIXES:
        return MIXES[text]
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
    mixes: tuple[str, ...] = ()  # named mixes or mix strings: when set, models × mixes × page sizes
    lengths: str | None = None  # a length generator: each workload × batch size (requests) × chunk drawn from it
    max_tflop: float | None = None  # leave out specs of more than this many TFLOP a call (None: no cap)
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
        for mix in (*self.mixes, *self.extra_mixes):
            resolve_mix(mix)

    def narrowed(self, **axes) -> SweepGrid:
        """This grid with the given axes replaced; None leaves an axis as it is."""
        return replace(
            self, **{k: (tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in axes.items() if v is not None}
        )

    def specs(self) -> list[ExperimentSpec]:
        specs = self._all_specs()
        if self.max_tflop is None:
            return specs
        return [s for s in specs if s.flops <= self.max_tflop * 1e12]

    def _fp8(self, kv_dtype: str) -> dict:
        """The spec fields of one KV dtype of the sweep."""
        if not kv_dtype:
            return {}
        return dict(kv_dtype=kv_dtype, kv_scale=self.kv_scale, fp8_attention=self.fp8_attention)

    def _mix_specs(self, mixes) -> list[ExperimentSpec]:
        return [
            resolve_mix(mix).spec(model, dtype=self.dtype, page_size=page, **self._fp8(kv))
            for model in self.models
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
                    *_heads(model, w),
                    chunk=chunk,
                    model=model,
                    dtype=self.dtype,
                    page_size=page,
                    **_mla(model, w),
                    **self._fp8(kv),
                )  # fmt: skip
                for model in self.models
                for w in self.workloads
                for count in self.batch_sizes
                for chunk in ([1] if w in (Workload.PREFILL, Workload.DECODE) else self.chunks)
                for page in self.page_sizes
                for kv in self.kv_dtypes
            ]
        out: list[ExperimentSpec] = []
        for model_name in self.models:
            model = MODELS[model_name]
            for workload in self.workloads:
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
                                    **model.attention(workload),
                                    dtype=self.dtype,
                                    page_size=page,
                                    model=model.name,
                                    **self._fp8(kv),
                                )
                                for page in self.page_sizes
                                for kv in self.kv_dtypes
                            )
        return out + self._mix_specs(self.extra_mixes)


ALL_WORKLOADS = (Workload.PREFILL, Workload.APPEND, Workload.DECODE)

PRESETS: dict[str, SweepGrid] = {
    # seconds on a 2-core CPU: tiny sequences, real head shapes (GQA groups 4 and 8)
    "smoke": SweepGrid(
        models=("Llama-3.1-8B", "Qwen3-30B-A3B"),
        workloads=ALL_WORKLOADS,
        batch_sizes=(2,),
        seq_lens=(128,),
        chunks=(32,),
    ),
    # the README comparison: batch 256 × 4096 tokens, append chunk 128, GQA groups 4, 8 and 16, and MLA (the
    # 16-head DeepSeek-V2-Lite: DeepSeek-V3's 128 expanded heads at this batch need 136 GB of inputs)
    "readme": SweepGrid(
        models=("Llama-3.1-8B", "Qwen3-30B-A3B", "Qwen3-235B-A22B", "DeepSeek-V2-Lite"),
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
    # everything; specs that cannot fit in the GPU's memory are recorded as skipped
    "full": SweepGrid(
        models=tuple(MODELS),
        workloads=ALL_WORKLOADS,
        batch_sizes=(1, 16, 64, 256),
        seq_lens=(512, 1024, 2048, 4096, 8192, 16384, 32768),
        chunks=(128, 512),
    ),
}


def _heads(model: str, workload) -> tuple[int, int, int]:
    fields = MODELS[model].attention(workload)
    return fields["num_q_heads"], fields["num_kv_heads"], fields["head_dim"]


def _mla(model: str, workload) -> dict:
    """The MLA fields of a model's spec for this workload ({} for other models)."""
    fields = MODELS[model].attention(workload)
    return {k: fields[k] for k in ("kv_lora_rank", "rope_dim", "v_head_dim") if k in fields}


def get_preset(name: str) -> SweepGrid:
    try:
        return PRESETS[name]
    except KeyError:
        raise SpecError(f"preset: {name!r} is not known; expected one of {', '.join(PRESETS)}") from None
