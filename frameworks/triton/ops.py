"""Host side of the Triton kernels: argument set-up done once (in prepare), launches per call."""

from __future__ import annotations

import torch
import triton

from .kernels import INTERPRET, LOG2E, combine_kernel, decode_kernel, prefill_kernel

SPLIT_GRANULE = 128  # tokens: a split covers a multiple of the largest decode BLOCK_N
PROGRAMS_PER_SM = 4  # decode splits until about this many programs per multiprocessor


def sm_count(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 4


def choose_splits(batch: int, kv_heads: int, kv_len: int, sms: int, granule: int = SPLIT_GRANULE) -> tuple[int, int]:
    """(number of splits, tokens per split) so that batch × kv_heads × splits fills the GPU: no split
    when the batch already does (batch 256), many for batch 1 × 32k tokens. No split is empty."""
    programs = batch * kv_heads
    granules = triton.cdiv(kv_len, granule)
    wanted = max(1, min(granules, triton.cdiv(PROGRAMS_PER_SM * sms, programs)))
    tokens = triton.cdiv(granules, wanted) * granule
    return triton.cdiv(kv_len, tokens), tokens


def _block_table_args(block_table):
    return (block_table, block_table.stride(0)) if block_table is not None else (None, 0)


class Prefill:
    """Prefill / append: q [B, Sq, Hq, D]; k, v [B, Sk, Hkv, D] or pages [P, page, Hkv, D] with block_table."""

    def __init__(self, q, k, v, kv_len: int, causal: bool, block_table=None, page_size: int | None = None):
        b, sq, hq, d = q.shape
        hkv = k.shape[2]
        self.q, self.k, self.v = q, k, v
        self.out_shape, self.group, self.kv_heads, self.batch = (b, sq, hq, d), hq // hkv, hkv, b
        self.bt, self.s_btb = _block_table_args(block_table)
        self.kw = dict(
            SQ=sq, SK=kv_len, HKV=hkv, qk_scale=d**-0.5 * LOG2E, G=hq // hkv, HEAD_DIM=d,
            PAGED=block_table is not None, PAGE=page_size or 1, CAUSAL=causal, INTERPRETED=INTERPRET,
        )  # fmt: skip

    def __call__(self) -> torch.Tensor:
        q, k, v = self.q, self.k, self.v
        o = torch.empty(self.out_shape, dtype=q.dtype, device=q.device)
        rows = self.out_shape[1] * self.group
        grid = lambda meta: (triton.cdiv(rows, meta["BLOCK_M"]), self.batch * self.kv_heads)  # noqa: E731
        prefill_kernel[grid](
            q, k, v, o, self.bt,
            q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
            v.stride(0), v.stride(1), v.stride(2), o.stride(0), o.stride(1), o.stride(2), self.s_btb,
            **self.kw,
        )  # fmt: skip
        return o

    def config(self) -> str:
        return _config_text(prefill_kernel)


class Decode:
    """Decode: q [B, 1, Hq, D] against k, v [B, Sk, Hkv, D] or pages with block_table."""

    def __init__(
        self, q, k, v, kv_len: int, block_table=None, page_size: int | None = None,
        num_splits: int | None = None, granule: int = SPLIT_GRANULE,
    ):  # fmt: skip
        b, _, hq, d = q.shape
        hkv = k.shape[2]
        group = hq // hkv
        self.q, self.k, self.v = q, k, v
        self.batch, self.kv_heads, self.group, self.head_dim = b, hkv, group, d
        if num_splits is None:
            self.splits, tokens = choose_splits(b, hkv, kv_len, sm_count(q.device), granule)
        else:  # granule must be a multiple of the decode BLOCK_N in use (16 under the interpreter)
            tokens = triton.cdiv(triton.cdiv(kv_len, num_splits), granule) * granule
            self.splits = triton.cdiv(kv_len, tokens)
        self.block_g = max(16, triton.next_power_of_2(group))
        self.bt, self.s_btb = _block_table_args(block_table)
        split = self.splits > 1
        # partial outputs and log-sum-exps, allocated once: [B·Hkv·splits, BLOCK_G, D] and [B·Hkv·splits, BLOCK_G]
        parts = b * hkv * self.splits if split else 1
        self.o_part = torch.empty(parts, self.block_g, d, dtype=torch.float32, device=q.device)
        self.lse_part = torch.empty(parts, self.block_g, dtype=torch.float32, device=q.device)
        self.kw = dict(
            SK=kv_len, HKV=hkv, NUM_SPLITS=self.splits, tokens_per_split=tokens, qk_scale=d**-0.5 * LOG2E,
            G=group, BLOCK_G=self.block_g, HEAD_DIM=d, PAGED=block_table is not None, PAGE=page_size or 1, SPLIT=split,
            INTERPRETED=INTERPRET,
        )  # fmt: skip

    def __call__(self) -> torch.Tensor:
        q, k, v = self.q, self.k, self.v
        o = torch.empty_like(q)
        decode_kernel[(self.batch * self.kv_heads, self.splits)](
            q, k, v, o, self.o_part, self.lse_part, self.bt,
            q.stride(0), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
            v.stride(0), v.stride(1), v.stride(2), o.stride(0), o.stride(2), self.s_btb,
            **self.kw,
        )  # fmt: skip
        if self.splits > 1:
            combine(self.o_part, self.lse_part, o, self.kv_heads, self.group, self.splits)
        return o

    def config(self) -> str:
        return f"splits={self.splits};" + _config_text(decode_kernel)


def combine(o_part, lse_part, out, kv_heads: int, group: int, splits: int) -> torch.Tensor:
    """Merge split partials into out [B, 1, Hq, D]: o_part [B·Hkv·splits, BLOCK_G, D] (normalised per
    split), lse_part [B·Hkv·splits, BLOCK_G] (log2 domain)."""
    b, _, hq, d = out.shape
    combine_kernel[(b * hq,)](
        o_part, lse_part, out, out.stride(0), out.stride(2), kv_heads, splits,
        G=group, BLOCK_G=o_part.shape[1], HEAD_DIM=d, BLOCK_S=max(2, triton.next_power_of_2(splits)),
    )  # fmt: skip
    return out


def _config_text(kernel) -> str:
    config = getattr(kernel, "best_config", None)
    if config is None:
        return ""
    blocks = ",".join(f"{k}={v}" for k, v in config.kwargs.items())
    return f"{blocks},warps={config.num_warps},stages={config.num_stages}"
