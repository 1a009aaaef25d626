"""FlashInfer with a paged KV cache (page size from the spec, default 16): the batch prefill wrapper
for prefill and append (causal is bottom-right), the batch decode wrapper with tensor cores for
decode (so GQA groups of 16 work). The cache build and plan() happen here, never in the timed call.
Upstream: https://github.com/flashinfer-ai/flashinfer"""

from __future__ import annotations

import torch

from specs import DType, Workload

from ._paged import to_paged
from .base import Backend, register

DEFAULT_PAGE_SIZE = 16
WORKSPACE_BYTES = 256 * 2**20


@register("flashinfer")
class FlashInfer(Backend):
    library = "flashinfer"
    min_compute_capability = (8, 0)
    upstream = "flashinfer BatchPrefill/BatchDecodeWithPagedKVCacheWrapper"

    def supports(self, spec):
        if spec.dtype not in (DType.BF16, DType.FP16):
            return f"dtype {spec.dtype}: FlashInfer's kernels take bf16 and fp16 (and fp8 KV, not benchmarked)"
        if spec.head_dim not in (64, 128, 256):
            return f"head_dim {spec.head_dim}: FlashInfer takes 64, 128 and 256"
        return None

    def prepare(self, spec, inputs):
        import flashinfer

        page_size = spec.page_size or DEFAULT_PAGE_SIZE
        self._info = f"page_size={page_size}"
        paged = to_paged(inputs.k, inputs.v, page_size)
        cache = (paged.k_pages, paged.v_pages)
        device, dtype = inputs.device, inputs.q.dtype
        workspace = torch.empty(WORKSPACE_BYTES, dtype=torch.uint8, device=device)
        indptr = paged.indptr()
        indices = paged.block_table.flatten()
        last_page_len = torch.full((spec.batch_size,), paged.last_page_len, dtype=torch.int32, device=device)
        b, sq, hq, d = inputs.q.shape
        if spec.workload is Workload.DECODE:
            wrapper = flashinfer.BatchDecodeWithPagedKVCacheWrapper(workspace, "NHD", use_tensor_cores=True)
            wrapper.plan(
                indptr, indices, last_page_len, hq, spec.num_kv_heads, d, page_size,
                pos_encoding_mode="NONE", q_data_type=dtype, kv_data_type=dtype,
            )  # fmt: skip
            q = inputs.q.view(b, hq, d)  # Sq = 1
            self._info += ";decode tensor cores"
            return lambda: wrapper.run(q, cache).view(b, 1, hq, d)
        wrapper = flashinfer.BatchPrefillWithPagedKVCacheWrapper(workspace, "NHD")
        qo_indptr = torch.arange(b + 1, dtype=torch.int32, device=device) * sq
        wrapper.plan(
            qo_indptr, indptr, indices, last_page_len, hq, spec.num_kv_heads, d, page_size,
            causal=spec.is_masked, q_data_type=dtype, kv_data_type=dtype,
        )  # fmt: skip
        q = inputs.q.view(b * sq, hq, d)  # packed ragged layout, a free view of [B, Sq, Hq, D]
        return lambda: wrapper.run(q, cache).view(b, sq, hq, d)

    def run_info(self) -> str:
        return getattr(self, "_info", "")
