"""The `triton-mla` backend: the in-repo split-KV MLA decode kernel (frameworks/triton/mla.py) for latent
attention in the absorbed form: decode, speculative steps and mixed batches against the latent cache, paged
(the spec's page size, pages shuffled) or dense (read as pages of one token). The host side here: each query
token's request and visible keys, and the split of the cache (enough programs to fill the GPU twice over, in
tiles of BLOCK_N tokens), fixed when the op is prepared; backend_info records them. On a CPU it runs under
Triton's interpreter when TRITON_INTERPRET=1 (slow; for tests)."""

from __future__ import annotations

import torch

from specs import DType, Workload

from ._mla import latent_pages, token_pages
from .base import Backend, Caps, KVLayout, register

BLOCK_H = 16  # query heads a program (tl.dot needs 16 rows); fewer heads are masked
BLOCK_N = 32  # cache tokens a tile
NUM_WARPS, NUM_STAGES = 4, 2
PROGRAMS_PER_SM = 2  # the split targets this many programs a multiprocessor


def split_plan(tokens: int, heads: int, longest: int, multiprocessors: int) -> tuple[int, int]:
    """(splits, tokens a split): the cache of the longest request cut into splits of whole BLOCK_N tiles so
    that tokens × head blocks × splits fills the GPU about PROGRAMS_PER_SM times."""
    head_blocks = -(-heads // BLOCK_H)
    tiles = -(-longest // BLOCK_N)
    wanted = max(1, -(-PROGRAMS_PER_SM * multiprocessors // (tokens * head_blocks)))
    splits = max(1, min(tiles, wanted))
    split_len = -(-tiles // splits) * BLOCK_N
    return -(-longest // split_len), split_len


@register("triton-mla")
class TritonMLA(Backend):
    library = "triton"
    min_compute_capability = (8, 0)
    upstream = "frameworks/triton/mla.py (in-repo split-KV MLA decode)"
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
        from .triton.mla import mla_combine_kernel, mla_decode_split_kernel

        device, batch = inputs.device, spec.batch
        paged = token_pages(spec, inputs) if spec.page_size is None else latent_pages(spec, inputs)
        cache = paged.pages.view(-1, paged.pages.shape[-1])  # [pages · page_size, 576]: one row a token
        q = inputs.q.view(-1, *inputs.q.shape[-2:])  # [T, H, 576]
        tokens, heads, width = q.shape
        rank = spec.kv_lora_rank
        # each query token's request and visible keys (bottom-right causal within its request)
        request_of, visible = [], []
        for i, (q_len, kv_len) in enumerate(zip(batch.q_lens, batch.kv_lens)):
            request_of += [i] * q_len
            visible += [kv_len - q_len + j + 1 if spec.causal else kv_len for j in range(q_len)]
        token_request = torch.tensor(request_of, dtype=torch.int32, device=device)
        token_visible = torch.tensor(visible, dtype=torch.int32, device=device)
        sms = torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 4
        splits, split_len = split_plan(tokens, heads, max(visible), sms)
        partial_o = torch.empty(tokens, heads, splits, rank, dtype=torch.float32, device=device)
        partial_lse = torch.empty(tokens, heads, splits, dtype=torch.float32, device=device)
        out = torch.empty(tokens, heads, rank, dtype=q.dtype, device=device)
        table = paged.block_table
        grid = (tokens, -(-heads // BLOCK_H), splits)
        combine_splits = next_power_of_2(splits)
        scale = inputs.scale
        interpreted = _interpreting()
        layout = "dense (pages of one token)" if spec.page_size is None else f"paged, page_size={paged.page_size}"
        self._info = {
            "splits": splits,
            "split_len": split_len,
            "block_h": BLOCK_H,
            "block_n": BLOCK_N,
            "layout": layout,
        }
        out_shape = (*inputs.q.shape[:-1], rank)

        def call():
            mla_decode_split_kernel[grid](
                q, cache, table, token_request, token_visible, partial_o, partial_lse,
                scale, heads, split_len,
                q.stride(0), q.stride(1), cache.stride(0), table.stride(0),
                partial_o.stride(0), partial_o.stride(1), partial_o.stride(2),
                LATENT=rank, ROPE=width - rank, PAGE=paged.page_size, BLOCK_H=BLOCK_H, BLOCK_N=BLOCK_N,
                INTERPRETED=interpreted, num_warps=NUM_WARPS, num_stages=NUM_STAGES,
            )  # fmt: skip
            mla_combine_kernel[(tokens, heads)](
                partial_o, partial_lse, out, splits,
                partial_o.stride(0), partial_o.stride(1), partial_o.stride(2), out.stride(0), out.stride(1),
                LATENT=rank, SPLITS=combine_splits,
            )  # fmt: skip
            return out.view(out_shape)

        return call

    def run_info(self) -> dict:
        return getattr(self, "_info", {})
