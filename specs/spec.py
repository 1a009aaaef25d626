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


# the largest batch, length or head count a spec may hold: 32-bit (the kernels' indices); a batch's token total
# is then below 2**62, so every integer a row stores stays an integer (int64) when the CSV is read back
MAX_SIZE = 2**31 - 1


def parse_enum(enum_cls: type[Enum], value, field_name: str):
    """`value` as a member of `enum_cls`, or a SpecError naming the field and the allowed values."""
    if isinstance(value, enum_cls):
        return value
    try:
        return enum_cls(value)
    except ValueError:
        allowed = ", ".join(m.value for m in enum_cls)
        raise SpecError(f"{field_name}: {value!r} is not valid; expected one of {allowed}") from None


KV_DTYPES = ("", "fp8_e4m3")  # "": the KV cache in the spec's dtype
KV_SCALES = ("tensor", "head")  # FP8 scales: one a tensor, or one a KV head


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
    # ---- FP8 and latent attention (MLA); the defaults keep every earlier spec and row as they were
    kv_dtype: str = ""  # "" = K/V in `dtype`; "fp8_e4m3": K and V stored as e4m3 with fp32 scales (Q stays in dtype)
    fp8_attention: bool = False  # Q in e4m3 too, with its descale (FA3's and cuDNN's FP8 attention); needs fp8 K/V
    kv_scale: str = ""  # FP8 scale granularity: "tensor" (one a tensor, the default) or "head" (one a KV head)
    kv_lora_rank: int | None = None  # MLA: the latent width (DeepSeek: 512); None = not latent attention
    rope_dim: int | None = None  # MLA: the decoupled rope width (64)
    v_head_dim: int | None = None  # MLA: the value and output width (absorbed: kv_lora_rank; expanded: 128)

    def __post_init__(self) -> None:
        object.__setattr__(self, "workload", parse_enum(Workload, self.workload, "workload"))
        object.__setattr__(self, "dtype", parse_enum(DType, self.dtype, "dtype"))
        for name in ("batch_size", "q_len", "kv_len", "num_q_heads", "num_kv_heads", "head_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SpecError(f"{name}: must be a positive integer, got {value!r}")
            if value > MAX_SIZE:  # a row's integers must stay integers in the CSV (int64) and index the kernels
                raise SpecError(f"{name}: must be at most {MAX_SIZE:,} (a 32-bit size), got {value:,}")
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
        self._check_fp8()
        self._check_mla()
        if self.mix:
            self._check_batch()  # its requests, lengths and count each within MAX_SIZE (the fields above)
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

    def _check_fp8(self) -> None:
        if self.kv_dtype not in KV_DTYPES:
            raise SpecError(
                f"kv_dtype: {self.kv_dtype!r} is not valid; expected one of '' (the spec's dtype), fp8_e4m3"
            )
        if not isinstance(self.fp8_attention, bool):
            raise SpecError(f"fp8_attention: must be true or false, got {self.fp8_attention!r}")
        if not self.kv_dtype:
            if self.fp8_attention:
                raise SpecError("fp8_attention: Q, K and V all in e4m3 needs kv_dtype=fp8_e4m3")
            if self.kv_scale:
                raise SpecError(f"kv_scale: {self.kv_scale!r} applies to an FP8 cache only (kv_dtype=fp8_e4m3)")
            return
        if self.kv_scale not in ("", *KV_SCALES):
            raise SpecError(f"kv_scale: {self.kv_scale!r} is not valid; expected one of {', '.join(KV_SCALES)}")
        object.__setattr__(self, "kv_scale", self.kv_scale or "tensor")

    def _check_mla(self) -> None:
        """MLA comes in two forms, told apart by head_dim: absorbed (decode: head_dim = kv_lora_rank + rope_dim,
        one latent KV head, values the latent's first kv_lora_rank columns) and expanded (prefill: per-head
        K and V, head_dim the q/k width, v_head_dim the value width)."""
        mla = {"kv_lora_rank": self.kv_lora_rank, "rope_dim": self.rope_dim, "v_head_dim": self.v_head_dim}
        for name, value in mla.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise SpecError(f"{name}: must be a positive integer or None (not MLA), got {value!r}")
        if self.kv_lora_rank is None:
            for name in ("rope_dim", "v_head_dim"):
                if mla[name] is not None:
                    raise SpecError(f"{name}: applies to MLA only (give kv_lora_rank too)")
            return
        for name in ("rope_dim", "v_head_dim"):
            if mla[name] is None:
                raise SpecError(f"{name}: MLA (kv_lora_rank={self.kv_lora_rank}) needs {name} too")
        if self.head_dim == self.kv_lora_rank + self.rope_dim:  # absorbed
            if self.num_kv_heads != 1 or self.v_head_dim != self.kv_lora_rank:
                raise SpecError(
                    f"num_kv_heads: absorbed MLA (head_dim {self.head_dim} = kv_lora_rank + rope_dim) reads one latent "
                    f"head with values of width kv_lora_rank; got num_kv_heads={self.num_kv_heads}, "
                    f"v_head_dim={self.v_head_dim}"
                )
        elif self.num_kv_heads != self.num_q_heads or self.head_dim <= self.rope_dim:
            raise SpecError(
                f"head_dim: MLA takes head_dim = kv_lora_rank + rope_dim ({self.kv_lora_rank + self.rope_dim}, "
                f"absorbed, one KV head) or the expanded form (num_kv_heads = num_q_heads, head_dim > rope_dim); got "
                f"head_dim={self.head_dim}, num_kv_heads={self.num_kv_heads}"
            )

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
    def form(self) -> str:
        """'mha' (MHA, GQA, MQA), 'mla-absorbed' (queries of kv_lora_rank + rope_dim against one latent head)
        or 'mla-expanded' (per-head K of head_dim and V of v_head_dim)."""
        if self.kv_lora_rank is None:
            return "mha"
        return "mla-absorbed" if self.head_dim == self.kv_lora_rank + self.rope_dim else "mla-expanded"

    @property
    def value_dim(self) -> int:
        """Width of V and O: v_head_dim where given (MLA), else head_dim."""
        return self.v_head_dim or self.head_dim

    @property
    def kv_itemsize(self) -> int:
        return 1 if self.kv_dtype else self.dtype.itemsize

    @property
    def q_itemsize(self) -> int:
        return 1 if self.fp8_attention else self.dtype.itemsize

    @property
    def scale_bytes(self) -> int:
        """The fp32 scales an FP8 call reads: K and V (one latent tensor when absorbed), per tensor or per KV
        head, and Q's with fp8_attention."""
        if not self.kv_dtype:
            return 0
        kv = (1 if self.form == "mla-absorbed" else 2) * (self.num_kv_heads if self.kv_scale == "head" else 1)
        return 4 * (kv + int(self.fp8_attention))

    @property
    def flops(self) -> int:
        """2 FLOPs per multiply-add for Q·Kᵀ (head_dim) and for P·V (value_dim), per visible pair (only the
        windowed band under a window) and query head: 4 · head_dim for MHA; absorbed MLA 2 · (576 + 512);
        expanded MLA 2 · (192 + 128). A soft-cap (a tanh a score) and sinks (one more term a row's
        denominator) add no matmul work."""
        return 2 * (self.head_dim + self.value_dim) * self.num_q_heads * self.visible_pairs

    @property
    def ideal_bytes(self) -> int:
        """Q, K and V read once, O written once, summed over the requests, at the bytes an element they are
        stored in (FP8: one, plus the scales); under a window only the keys some query sees (a windowed
        decode reads window + 1 keys). Absorbed MLA reads its latent cache once: the values are its first
        kv_lora_rank columns, shared by every query head. The sinks (Hq fp32 logits) are left out: a few
        hundred bytes beside megabytes."""
        q = self.total_q * self.num_q_heads * self.head_dim * self.q_itemsize
        o = self.total_q * self.num_q_heads * self.value_dim * self.dtype.itemsize
        touched = self.total_kv if self.window is None else self.batch.touched_kv(self.window)
        kv_width = self.head_dim if self.form == "mla-absorbed" else self.head_dim + self.value_dim
        kv = touched * self.num_kv_heads * kv_width * self.kv_itemsize
        return q + o + kv + self.scale_bytes

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
        if self.kv_dtype:
            page += f" kv={self.kv_dtype}/{self.kv_scale}" + (" fp8-attention" if self.fp8_attention else "")
        if self.kv_lora_rank is not None:
            page += f" {self.form} latent={self.kv_lora_rank}+{self.rope_dim} v={self.value_dim}"
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
