"""`ExperimentSpec`: one attention workload, validated, with its FLOPs and ideal bytes derived."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from enum import Enum


class SpecError(ValueError):
    """An invalid spec or sweep option; the message names the field and the allowed values."""


class Workload(str, Enum):
    PREFILL = "prefill"  # Sq = Sk = L, causal
    APPEND = "append"  # chunked prefill: Sq = chunk, Sk = cached + chunk, causal bottom-right
    DECODE = "decode"  # Sq = 1 against a KV cache of Sk
    SPEC_DECODE = "spec-decode"  # speculative decoding: Sq = 2 … 16 draft tokens, causal bottom-right

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
    """One attention forward pass: Q is [batch_size, q_len, num_q_heads, head_dim], K and V are
    [batch_size, kv_len, num_kv_heads, head_dim]. `causal` means bottom-right aligned: query i sees
    keys 0 … kv_len − q_len + i (the same as top-left when q_len == kv_len)."""

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
        if self.workload is Workload.DECODE and self.q_len != 1:
            raise SpecError(f"q_len: decode needs q_len = 1, got {self.q_len}")
        if self.workload is Workload.PREFILL and self.q_len != self.kv_len:
            raise SpecError(f"q_len: prefill needs q_len = kv_len, got q_len={self.q_len}, kv_len={self.kv_len}")
        if self.workload is Workload.SPEC_DECODE and not 2 <= self.q_len <= min(16, self.kv_len):
            raise SpecError(f"q_len: spec-decode needs 2 <= q_len <= 16 (and <= kv_len), got {self.q_len}")
        if self.workload is Workload.APPEND and not 1 <= self.q_len <= self.kv_len:
            raise SpecError(f"q_len: append needs 1 <= q_len <= kv_len, got q_len={self.q_len}, kv_len={self.kv_len}")

    # ---- derived values -------------------------------------------------------------------------
    @property
    def gqa_group(self) -> int:
        """Query heads that share one K/V head."""
        return self.num_q_heads // self.num_kv_heads

    @property
    def causal_offset(self) -> int:
        """Bottom-right alignment: query i sees keys 0 … causal_offset + i."""
        return self.kv_len - self.q_len

    @property
    def is_masked(self) -> bool:
        """True when the causal mask hides some (query, key) pair (a decode step sees every key)."""
        return self.causal and self.q_len > 1

    @property
    def visible_pairs(self) -> int:
        """(query, key) pairs one head of one sequence computes: only the visible triangle when causal."""
        if not self.causal:
            return self.q_len * self.kv_len
        # query i sees causal_offset + i + 1 keys
        return self.q_len * self.causal_offset + self.q_len * (self.q_len + 1) // 2

    @property
    def flops(self) -> int:
        """2 FLOPs per multiply-add for Q·Kᵀ and for P·V: 4 · head_dim per visible pair and head."""
        return 4 * self.head_dim * self.num_q_heads * self.visible_pairs * self.batch_size

    @property
    def ideal_bytes(self) -> int:
        """Q, K and V read once, O written once."""
        q_and_o = 2 * self.batch_size * self.q_len * self.num_q_heads * self.head_dim
        k_and_v = 2 * self.batch_size * self.kv_len * self.num_kv_heads * self.head_dim
        return (q_and_o + k_and_v) * self.dtype.itemsize

    @property
    def tokens(self) -> int:
        """Query tokens processed by one call."""
        return self.batch_size * self.q_len

    @property
    def key(self) -> tuple:
        """Identity of the spec, for resume and joins: every field, as plain values."""
        return tuple(str(v) if isinstance(v, Enum) else v for v in asdict(self).values())

    def describe(self) -> str:
        page = f" page={self.page_size}" if self.page_size else ""
        return (
            f"{self.model} {self.workload} B={self.batch_size} q={self.q_len} kv={self.kv_len} "
            f"H={self.num_q_heads}/{self.num_kv_heads} D={self.head_dim} {self.dtype}{page}"
        )

    def to_dict(self) -> dict:
        return {f.name: (str(v) if isinstance(v := getattr(self, f.name), Enum) else v) for f in fields(self)}
