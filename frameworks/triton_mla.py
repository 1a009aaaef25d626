"""The `triton-mla` backend: the in-repo split-KV MLA decode kernel (frameworks/triton/mla.py) for latent
attention in the absorbed form: decode, speculative steps and mixed batches against the latent cache, paged
(the spec's page size, pages shuffled) or dense (read as pages of one token). The host side here: each query
token's request and visible keys, and the split of the cache, fixed when the op is prepared; backend_info
records them and the block that ran. On a CPU it runs under Triton's interpreter when TRITON_INTERPRET=1 (slow;
for tests).

Variants (docs/perf/mla-decode.md has the arithmetic and the A/B): `block_h`, the query heads a program (the
latent tile it reads serves them all: 128 heads read each tile 128 / block_h times; 64 and 128 use Hopper's
wgmma, 16 and 32 the mma.sync of Ampere); `splits`, today's plan (enough programs to fill the GPU twice, by the
longest cache) or `work` (a split length chosen by the work as the GQA decode's `splits=work`: long caches
split, short ones not, one split written directly with no combine, a looped combine otherwise); `grid`, whether
a token's head blocks launch apart (tokens, today) or side by side (heads: the L2 serves their common tiles)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from specs import DType, Workload

from ._mla import latent_pages, token_pages
from .base import Backend, Caps, KVLayout, VariantKey, register

BLOCK_H = 16  # query heads a program in today's default (tl.dot needs 16 rows); fewer heads are masked
BLOCK_N = 32  # cache tokens a tile
NUM_WARPS, NUM_STAGES = 4, 2
PROGRAMS_PER_SM = 2  # the split targets this many programs a multiprocessor


@dataclass(frozen=True)
class MLABlock:
    """One program's shape and launch: heads, cache tokens a tile, value columns (None: all kv_lora_rank; 'half':
    half, two programs a head block), warps, pipeline stages, and the programs a multiprocessor holds at once
    (sm90, DeepSeek-V3's 512 + 64 dims: registers and shared memory as ptxas reported them for Triton 3.6)."""

    heads: int
    tokens: int
    value_cols: str | None
    num_warps: int
    num_stages: int
    per_sm: int

    def block_dv(self, rank: int) -> int:
        return rank // 2 if self.value_cols == "half" else rank


# sm90 (ptxas, Triton 3.6, 512 + 64 dims, pages of 64): 16: 205 registers, 55 KB shared, mma.sync (today's);
# 32: 144 registers × 8 warps, 74 KB, mma.sync; 64: 222 registers × 8 warps, 144 KB (Q 72 KB + two 36 KB tiles),
# wgmma, the P · V product split over the two warpgroups by value column (FlashMLA's split); 128: 214 registers ×
# 8 warps, 216 KB, wgmma, one warpgroup a 64-head half, each program half the value columns (vLLM's BLOCK_DV).
BLOCKS = {
    "16": MLABlock(16, BLOCK_N, None, NUM_WARPS, NUM_STAGES, 2),
    "32": MLABlock(32, 32, None, 8, 2, 1),
    "64": MLABlock(64, 32, None, 8, 2, 1),
    "128": MLABlock(128, 32, "half", 8, 2, 1),
}


def _many_heads(spec) -> bool:
    return spec.num_q_heads > BLOCK_H


VARIANTS = (
    VariantKey(
        "block_h",
        tuple(BLOCKS),
        "16",
        contenders=("64", "128"),
        applies=_many_heads,
        help="query heads a program, which share each latent tile it reads (128 heads read a tile 128 / block_h "
        "times): 16 (4 warps, mma.sync), 32 (8 warps, mma.sync), 64 (8 warps, wgmma, P·V split over the two "
        "warpgroups), 128 (8 warps, wgmma, half the value columns a program)",
    ),
    VariantKey(
        "splits",
        ("plan", "work"),
        "plan",
        contenders=("work",),
        help="the KV split: enough programs to fill the GPU twice by the longest cache (plan), or a split length "
        "chosen by the work (work: frameworks/triton/schedule.plan_work over the tokens' caches, long ones split, "
        "short ones not; one split writes O directly, no combine)",
    ),
    VariantKey(
        "grid",
        ("tokens", "heads"),
        "tokens",
        contenders=("heads",),
        applies=_many_heads,
        help="launch order: a token's head blocks far apart (tokens) or side by side (heads), so the L2 serves "
        "the latent tiles they all read",
    ),
)


def split_plan(
    tokens: int, heads: int, longest: int, multiprocessors: int, block_h: int = BLOCK_H, block_n: int = BLOCK_N
) -> tuple[int, int]:
    """(splits, tokens a split): the cache of the longest request cut into splits of whole block_n tiles so
    that tokens × head blocks × splits fills the GPU about PROGRAMS_PER_SM times."""
    head_blocks = -(-heads // block_h)
    tiles = -(-longest // block_n)
    wanted = max(1, -(-PROGRAMS_PER_SM * multiprocessors // (tokens * head_blocks)))
    splits = max(1, min(tiles, wanted))
    split_len = -(-tiles // splits) * block_n
    return -(-longest // split_len), split_len


def work_split(visible: list[int], programs_per_token: int, slots: int) -> tuple[int, int]:
    """(splits, tokens a split) by the work: schedule.plan_work's split length for these caches (one 'KV head'
    per program of a token), as the uniform grid takes it: the longest cache's piece length for every token."""
    from .triton.schedule import GRANULE, plan_work, split_pieces

    plan = plan_work(visible, programs_per_token, slots)
    longest = max(visible)
    lo, hi = split_pieces(longest, plan.split_tokens, GRANULE)[0]
    split_len = max(hi - lo, 1)
    return -(-longest // split_len), split_len


@register("triton-mla")
class TritonMLA(Backend):
    library = "triton"
    min_compute_capability = (8, 0)
    upstream = "frameworks/triton/mla.py (in-repo split-KV MLA decode)"
    variants = VARIANTS
    # the keys win together (H100, 2026-12-06, the `mla` preset: FlashInfer ÷ Triton geomean 0.37 at the default,
    # 0.50 and 0.49 for these, ≤ 0.40 for any key alone; docs/perf/mla-decode.md): a default sweep runs both
    contender_combinations = ("block_h=64,splits=work,grid=heads", "block_h=128,splits=work,grid=heads")
    caps = Caps(
        dtypes={DType.BF16, DType.FP16},
        workloads={Workload.DECODE, Workload.SPEC_DECODE, Workload.MIXED},
        layouts={KVLayout.DENSE, KVLayout.PAGED},
        ragged=True,
        devices={"cuda", "cpu"},  # on a CPU under Triton's interpreter
        mla={"mla-absorbed"},
    )

    def supports(self, spec):
        if spec.form != "mla-absorbed":
            return "triton-mla runs latent attention (MLA) in the absorbed form only; the `triton` backend runs MHA/GQA"
        return super().supports(spec)

    def check(self, spec):
        for name in ("kv_lora_rank", "rope_dim"):
            value = getattr(spec, name)
            if value & (value - 1) or value < 16:
                return f"{name} {value}: the Triton MLA kernel needs a power of two of at least 16"
        return None

    def availability(self, device):
        from .triton import _interpreting

        if device.type == "cpu" and not _interpreting():
            return "on a CPU the Triton kernels run only under the interpreter: set TRITON_INTERPRET=1"
        return super().availability(device)

    def prepare(self, spec, inputs):
        from triton import next_power_of_2

        from .triton import _interpreting
        from .triton.mla import mla_combine_kernel, mla_combine_loop_kernel, mla_decode_split_kernel

        device, batch = inputs.device, spec.batch
        paged = token_pages(spec, inputs) if spec.page_size is None else latent_pages(spec, inputs)
        cache = paged.pages.view(-1, paged.pages.shape[-1])  # [pages · page_size, 576]: one row a token
        q = inputs.q.view(-1, *inputs.q.shape[-2:])  # [T, H, 576]
        tokens, heads, width = q.shape
        rank = spec.kv_lora_rank
        block = BLOCKS[self.choice["block_h"]]
        block_dv = block.block_dv(rank)
        # each query token's request and visible keys (bottom-right causal within its request)
        request_of, visible = [], []
        for i, (q_len, kv_len) in enumerate(zip(batch.q_lens, batch.kv_lens)):
            request_of += [i] * q_len
            visible += [kv_len - q_len + j + 1 if spec.causal else kv_len for j in range(q_len)]
        token_request = torch.tensor(request_of, dtype=torch.int32, device=device)
        token_visible = torch.tensor(visible, dtype=torch.int32, device=device)
        sms = torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 4
        parts = -(-heads // block.heads) * (rank // block_dv)  # programs a token: head blocks × value parts
        by_work = self.choice["splits"] == "work"
        if by_work:
            splits, split_len = work_split(visible, parts, sms * block.per_sm)
        else:
            splits, split_len = split_plan(tokens, heads, max(visible), sms, block.heads, block.tokens)
        direct = by_work and splits == 1  # one split: the kernel writes O, no combine
        out = torch.empty(tokens, heads, rank, dtype=q.dtype, device=device)
        if direct:
            partial_o, partial_lse = out, out  # not read: the kernel stores O itself
        else:
            partial_o = torch.empty(tokens, heads, splits, rank, dtype=torch.float32, device=device)
            partial_lse = torch.empty(tokens, heads, splits, dtype=torch.float32, device=device)
        table = paged.block_table
        heads_inner = self.choice["grid"] == "heads"
        grid = (parts, tokens, splits) if heads_inner else (tokens, parts, splits)
        combine_splits = next_power_of_2(splits)
        scale = inputs.scale
        interpreted = _interpreting()
        layout = "dense (pages of one token)" if spec.page_size is None else f"paged, page_size={paged.page_size}"
        self._info = {
            "splits": splits,
            "split_len": split_len,
            "block_h": block.heads,
            "block_n": block.tokens,
            "block_dv": block_dv,
            "num_warps": block.num_warps,
            "num_stages": block.num_stages,
            "grid": "heads" if heads_inner else "tokens",
            "combine": "none" if direct else "loop" if by_work else "all-splits",
            "layout": layout,
        }
        out_shape = (*inputs.q.shape[:-1], rank)

        def call():
            mla_decode_split_kernel[grid](
                q, cache, table, token_request, token_visible, partial_o, partial_lse, out,
                scale, heads, split_len,
                q.stride(0), q.stride(1), cache.stride(0), table.stride(0),
                partial_o.stride(0), partial_o.stride(1), partial_o.stride(2),
                out.stride(0), out.stride(1),
                LATENT=rank, ROPE=width - rank, PAGE=paged.page_size, BLOCK_H=block.heads, BLOCK_N=block.tokens,
                BLOCK_DV=block_dv, HEADS_INNER=heads_inner, DIRECT=direct, INTERPRETED=interpreted,
                num_warps=block.num_warps, num_stages=block.num_stages,
            )  # fmt: skip
            if by_work and not direct:
                mla_combine_loop_kernel[(tokens, heads)](
                    partial_o, partial_lse, out, token_visible, split_len,
                    partial_o.stride(0), partial_o.stride(1), partial_o.stride(2), out.stride(0), out.stride(1),
                    LATENT=rank, INTERPRETED=interpreted,
                )  # fmt: skip
            elif not by_work:
                mla_combine_kernel[(tokens, heads)](
                    partial_o, partial_lse, out, splits,
                    partial_o.stride(0), partial_o.stride(1), partial_o.stride(2), out.stride(0), out.stride(1),
                    LATENT=rank, SPLITS=combine_splits,
                )  # fmt: skip
            return out.view(out_shape)

        return call

    def run_info(self) -> dict:
        return getattr(self, "_info", {})
