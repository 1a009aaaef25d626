"""`ExperimentSpec`: one attention workload, validated, with its FLOPs and ideal bytes derived."""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import Enum
from functools import cached_property

from .batch import Batch, Lengths, is_generator, parse_mix
from .spec_errors import SpecError


class Workload(str, Enum):
    PREFILL = "prefill"  # Sq = Sk = L, causal
    APPEND = "append"  # chunked prefill: Sq = chunk, Sk = cached + chunk, causal bottom-right
    DECODE = "decode"  # Sq = 1 against a KV cache of Sk
    SPEC_DECODE = "spec-decode"  # speculative decoding: Sq = 2 … 16 draft tokens, causal bottom-right
    MIXED = "mixed"  # a ragged batch of several of the above (chunks beside decodes): needs a mix

    def __str__(self) -> str:
        return self.value


class DType(str, Enum):
    BF16 = "bf16"
    FP16 = "fp16"
    FP32 = "fp32"

    def __str__(self) -> str:
        return self.value

    @property
    def itemsize(self) -> int:
        return {"bf16": 2, "fp16": 2, "fp32": 4}[self.value]

    @property
    def torch_dtype(self):
        import torch

        return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[self.value]


def parse_enum(enum_cls: type[Enum], value, field_name: str):
    """`value` as a member of `enum_cls`, or a SpecError naming the field and the allowed values."""
    if isinstance(value, enum_cls):
        return value
    try:
        return enum_cls(value)
    except ValueError:
        allowed = ", ".join(m.value for m in enum_cls)
        raise SpecError(f"{field_name}: {value!r} is not valid; expected one of {allowed}") from None


@dataclass(frozen=True)
class ExperimentSpec:
    """One attention forward pass over a batch of requests. Uniform (mix == ""): Q is
    [batch_size, q_len, num_q_heads, head_dim], K and V [batch_size, kv_len, num_kv_heads, head_dim].
    Ragged (mix set): request i has its own q_len and kv_len, from the mix grammar (`2q2k_32q1s1k`)
    or a seeded length generator (`lognormal:2048:0.8@0`, with workload, batch_size and, for append
    and spec-decode, q_len as the chunk); batch_size, q_len and kv_len are then the number of
    requests and the longest query and KV lengths. `causal` means bottom-right aligned within each
    request: query i sees keys 0 … kv_len − q_len + i (the same as top-left when q_len == kv_len).

    The attention form: `window` w keeps, for the query at key position p, keys p − w … p (w + 1 keys,
    FlashAttention's window_size=(w, 0), FlashInfer's window_left=w; still bottom-right causal);
    `sinks` adds per query head a learned logit to the softmax's denominator with no value (gpt-oss);
    `softcap` c maps every score s to c·tanh(s / c) before masking (Gemma-2). `tp` records the
    tensor-parallel degree of the model the heads come from: num_q_heads and num_kv_heads are already
    what one GPU computes (`specs.models.specs_for` divides them)."""

    workload: Workload
    batch_size: int
    q_len: int
    kv_len: int
    num_q_heads: int
    num_kv_heads: int
    head_dim: int
    dtype: DType = DType.BF16
    causal: bool = True
    page_size: int | None = None  # None: dense KV; otherwise paged KV with this many tokens a page
    model: str = "custom"  # a label for reports: the model whose attention shape this is
    mix: str = ""  # "" = uniform batch; else the mix string or length generator the batch is built from
    # ---- the attention form (defaults: plain causal attention, as every spec before forms)
    window: int | None = None  # left window in keys: position p sees keys p − window … p (FA's window_size=(w, 0))
    sinks: bool = False  # a learned logit a query head (drawn with the inputs) joins the softmax's denominator
    softcap: float | None = None  # scores = softcap · tanh(scores / softcap), before masking
    tp: int = 1  # tensor-parallel degree of the model these heads come from (the heads are already one GPU's)

    def __post_init__(self) -> None:
        object.__setattr__(self, "workload", parse_enum(Workload, self.workload, "workload"))
        object.__setattr__(self, "dtype", parse_enum(DType, self.dtype, "dtype"))
        for name in ("batch_size", "q_len", "kv_len", "num_q_heads", "num_kv_heads", "head_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SpecError(f"{name}: must be a positive integer, got {value!r}")
        if self.page_size is not None and (
            isinstance(self.page_size, bool) or not isinstance(self.page_size, int) or self.page_size < 1
        ):
            raise SpecError(f"page_size: must be a positive integer or None (dense KV), got {self.page_size!r}")
        if not isinstance(self.causal, bool):
            raise SpecError(f"causal: must be true or false, got {self.causal!r}")
        if self.num_q_heads % self.num_kv_heads:
            raise SpecError(
                f"num_q_heads: {self.num_q_heads} is not divisible by num_kv_heads={self.num_kv_heads} "
                "(GQA needs whole groups of query heads)"
            )
        self._check_form()
        if not isinstance(self.mix, str):
            raise SpecError(f"mix: must be a string, got {self.mix!r}")
        if self.mix:
            self._check_batch()
            return
        if self.workload is Workload.MIXED:
            raise SpecError("workload: mixed needs a mix of requests (e.g. --mix q512s4k_32q1s2k)")
        if self.workload is Workload.DECODE and self.q_len != 1:
            raise SpecError(f"q_len: decode needs q_len = 1, got {self.q_len}")
        if self.workload is Workload.PREFILL and self.q_len != self.kv_len:
            raise SpecError(f"q_len: prefill needs q_len = kv_len, got q_len={self.q_len}, kv_len={self.kv_len}")
        if self.workload is Workload.SPEC_DECODE and not 2 <= self.q_len <= min(16, self.kv_len):
            raise SpecError(f"q_len: spec-decode needs 2 <= q_len <= 16 (and <= kv_len), got {self.q_len}")
        if self.workload is Workload.APPEND and not 1 <= self.q_len <= self.kv_len:
            raise SpecError(f"q_len: append needs 1 <= q_len <= kv_len, got q_len={self.q_len}, kv_len={self.kv_len}")

    def _check_form(self) -> None:
        """window, sinks, softcap and tp: one SpecError line naming the field and what it takes."""
        if self.window is not None:
            if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 1:
                raise SpecError(f"window: must be a positive number of keys or None (no window), got {self.window!r}")
            if not self.causal:
                raise SpecError("window: a sliding window is causal (window_size=(window, 0)); it needs causal=True")
        if not isinstance(self.sinks, bool):
            raise SpecError(f"sinks: must be true or false, got {self.sinks!r}")
        if self.softcap is not None:
            if isinstance(self.softcap, bool) or not isinstance(self.softcap, (int, float)) or not self.softcap > 0:
                raise SpecError(f"softcap: must be a positive number or None (no soft-cap), got {self.softcap!r}")
            if self.softcap == float("inf"):
                raise SpecError("softcap: must be finite (None means no soft-cap)")
            object.__setattr__(self, "softcap", float(self.softcap))
        if isinstance(self.tp, bool) or not isinstance(self.tp, int) or self.tp < 1:
            raise SpecError(f"tp: must be a positive integer (1 = one GPU holds every head), got {self.tp!r}")

    def _check_batch(self) -> None:
        batch = self.batch
        if not is_generator(self.mix) and batch.kind != self.workload.value:
            raise SpecError(f"workload: the mix {self.mix!r} is a {batch.kind} batch, not {self.workload}")
        given = (self.batch_size, self.q_len, self.kv_len)
        derived = (batch.num_requests, batch.max_q, batch.max_kv)
        if given != derived:
            raise SpecError(
                f"mix: {self.mix!r} has {derived[0]} requests, longest query {derived[1]} and KV {derived[2]}; "
                f"the spec says batch_size={given[0]}, q_len={given[1]}, kv_len={given[2]}"
            )

    @classmethod
    def from_mix(cls, mix: str, num_q_heads: int, num_kv_heads: int, head_dim: int, **kw) -> ExperimentSpec:
        """The spec of a mix string: workload, batch_size, q_len and kv_len come from its requests."""
        batch = parse_mix(mix)
        return cls(batch.kind, batch.num_requests, batch.max_q, batch.max_kv, num_q_heads, num_kv_heads, head_dim,
                   mix=batch.to_mix() if kw.pop("canonical", True) else mix, **kw)  # fmt: skip

    @classmethod
    def from_lengths(
        cls, lengths: str, workload: str, count: int, num_q_heads: int, num_kv_heads: int, head_dim: int,
        chunk: int = 1, **kw,
    ) -> ExperimentSpec:  # fmt: skip
        """A batch of `count` requests of one workload whose KV lengths are drawn from `lengths`."""
        generator = Lengths.parse(lengths, kw.pop("seed", None))
        workload = parse_enum(Workload, workload, "workload")
        if workload is Workload.MIXED:
            raise SpecError("workload: a length generator builds one workload; mixed batches need --mix")
        q = 1 if workload is Workload.DECODE else chunk
        batch = generator.batch(workload.value, count, q)
        return cls(workload, count, batch.max_q, batch.max_kv, num_q_heads, num_kv_heads, head_dim,
                   mix=str(generator), **kw)  # fmt: skip

    @cached_property
    def batch(self) -> Batch:
        """Every request's (q_len, kv_len)."""
        if not self.mix:
            return Batch.uniform(self.batch_size, self.q_len, self.kv_len)
        if is_generator(self.mix):
            return Lengths.parse(self.mix).batch(self.workload.value, self.batch_size, self.q_len)
        return parse_mix(self.mix)

    @property
    def is_ragged(self) -> bool:
        """Requests of different lengths: only backends that declare `ragged` take it."""
        return bool(self.mix) and not self.batch.is_uniform

    # ---- derived values -------------------------------------------------------------------------
    @property
    def gqa_group(self) -> int:
        """Query heads that share one K/V head."""
        return self.num_q_heads // self.num_kv_heads

    @property
    def causal_offset(self) -> int:
        """Bottom-right alignment of a uniform batch: query i sees keys 0 … causal_offset + i."""
        return self.kv_len - self.q_len

    @property
    def is_masked(self) -> bool:
        """True when the causal mask hides some (query, key) pair (a decode step sees every key)."""
        return self.causal and self.q_len > 1

    @property
    def has_form(self) -> bool:
        """A window, sinks or a soft-cap: attention other than plain causal (tp only says where heads come from)."""
        return self.window is not None or self.sinks or self.softcap is not None

    @property
    def visible_pairs(self) -> int:
        """(query, key) pairs one head computes over the whole batch, summed per request: only the
        visible triangle when causal (q·k − q(q−1)/2 a request), only the band under a window."""
        if not self.mix and self.window is None:  # a uniform batch in arithmetic: 10⁹ requests build no list
            q, k = self.q_len, self.kv_len
            return self.batch_size * (q * k - (q * (q - 1) // 2 if self.causal else 0))
        return self.batch.visible_pairs(self.causal, self.window)

    @property
    def total_q(self) -> int:
        """Query tokens of the batch (arithmetic for a uniform batch: no per-request list is built)."""
        return self.batch_size * self.q_len if not self.mix else self.batch.total_q

    @property
    def total_kv(self) -> int:
        return self.batch_size * self.kv_len if not self.mix else self.batch.total_kv

    @property
    def min_kv(self) -> int:
        return self.kv_len if not self.mix else self.batch.min_kv

    @property
    def flops(self) -> int:
        """2 FLOPs per multiply-add for Q·Kᵀ and for P·V: 4 · head_dim per visible pair and head. A
        soft-cap (a tanh a score) and sinks (one more term a row's denominator) add no matmul work."""
        return 4 * self.head_dim * self.num_q_heads * self.visible_pairs

    @property
    def ideal_bytes(self) -> int:
        """Q, K and V read once, O written once, summed over the requests; under a window only the keys
        some query sees (a windowed decode reads window + 1 keys). The sinks (Hq fp32 logits) are left
        out: a few hundred bytes beside megabytes."""
        q_and_o = 2 * self.total_q * self.num_q_heads * self.head_dim
        touched = self.total_kv if self.window is None else self.batch.touched_kv(self.window)
        k_and_v = 2 * touched * self.num_kv_heads * self.head_dim
        return (q_and_o + k_and_v) * self.dtype.itemsize

    @property
    def tokens(self) -> int:
        """Query tokens processed by one call."""
        return self.total_q

    @property
    def key(self) -> tuple:
        """Identity of the spec, for resume and joins: every field, as plain values."""
        return tuple(str(v) if isinstance(v, Enum) else v for v in (getattr(self, f.name) for f in fields(self)))

    @property
    def form_label(self) -> str:
        """' window=128 sinks softcap=50 tp=2' (only what is not the default), for describe()."""
        parts = [
            f"window={self.window}" if self.window is not None else "",
            "sinks" if self.sinks else "",
            f"softcap={self.softcap:g}" if self.softcap is not None else "",
            f"tp={self.tp}" if self.tp > 1 else "",
        ]
        return "".join(f" {p}" for p in parts if p)

    def describe(self) -> str:
        page = f" page={self.page_size}" if self.page_size else ""
        page += self.form_label
        if self.mix:
            return (
                f"{self.model} {self.workload} mix={self.mix} ({self.batch_size} requests, {self.tokens} query tokens) "
                f"H={self.num_q_heads}/{self.num_kv_heads} D={self.head_dim} {self.dtype}{page}"
            )
        return (
            f"{self.model} {self.workload} B={self.batch_size} q={self.q_len} kv={self.kv_len} "
            f"H={self.num_q_heads}/{self.num_kv_heads} D={self.head_dim} {self.dtype}{page}"
        )

    def to_dict(self) -> dict:
        return {f.name: (str(v) if isinstance(v := getattr(self, f.name), Enum) else v) for f in fields(self)}
