"""FlashInfer, called the way serving engines call it. Paged KV (the spec's page size, pages
shuffled): the batch prefill wrapper for prefill and append (causal is bottom-right), the batch
decode wrapper with tensor cores for decode (so GQA groups of 16 work). Dense KV: the ragged-KV
prefill wrapper (the path engines use for a prompt's new tokens) for prefill and append, and for
decode the decode wrapper over the dense cache read as one page per sequence (no copy: the
[B, Sk, Hkv, D] tensor is B pages of Sk tokens). plan() and the cache build happen here, never in
the timed call; backend_info says which path ran. Upstream: https://github.com/flashinfer-ai/flashinfer"""

from __future__ import annotations

import torch

from specs import DType, Workload

from ._paged import to_paged, to_paged_ragged
from .base import Backend, Caps, KVLayout, register

WORKSPACE_BYTES = 256 * 2**20


@register("flashinfer")
class FlashInfer(Backend):
    library = "flashinfer"
    min_compute_capability = (8, 0)
    upstream = "flashinfer BatchPrefill (paged / ragged KV) and BatchDecodeWithPagedKVCacheWrapper"
    caps = Caps(
        dtypes={DType.BF16, DType.FP16},  # and fp8 KV, not benchmarked
        head_dims={64, 128, 256},
        layouts={KVLayout.DENSE, KVLayout.PAGED},
        ragged=True,
    )

    def prepare(self, spec, inputs):
        import flashinfer

        device, dtype = inputs.device, inputs.q.dtype
        workspace = torch.empty(WORKSPACE_BYTES, dtype=torch.uint8, device=device)
        if inputs.ragged:
            return self._prepare_ragged(spec, inputs, flashinfer, workspace)
        b, sq, hq, d = inputs.q.shape
        hkv = spec.num_kv_heads
        if spec.page_size is None and spec.workload is not Workload.DECODE:
            wrapper = flashinfer.BatchPrefillWithRaggedKVCacheWrapper(workspace, "NHD")
            qo_indptr = torch.arange(b + 1, dtype=torch.int32, device=device) * sq
            kv_indptr = torch.arange(b + 1, dtype=torch.int32, device=device) * spec.kv_len
            wrapper.plan(qo_indptr, kv_indptr, hq, hkv, d, causal=spec.is_masked, q_data_type=dtype, kv_data_type=dtype)
            q = inputs.q.view(b * sq, hq, d)  # packed ragged layouts: free views of [B, S, H, D]
            k = inputs.k.view(b * spec.kv_len, hkv, d)
            v = inputs.v.view(b * spec.kv_len, hkv, d)
            self._info = "BatchPrefillWithRaggedKVCacheWrapper;dense"
            return lambda: wrapper.run(q, k, v).view(b, sq, hq, d)

        if spec.page_size is None:  # dense decode: sequence i is page i, of kv_len tokens
            page_size = spec.kv_len
            cache = (inputs.k, inputs.v)
            indices = torch.arange(b, dtype=torch.int32, device=device)
            indptr = torch.arange(b + 1, dtype=torch.int32, device=device)
            last_page_len = torch.full((b,), spec.kv_len, dtype=torch.int32, device=device)
            layout = "dense (one page a sequence)"
        else:
            page_size = spec.page_size
            paged = to_paged(inputs.k, inputs.v, page_size)
            cache = (paged.k_pages, paged.v_pages)
            indptr, indices = paged.indptr(), paged.block_table.flatten()
            last_page_len = torch.full((b,), paged.last_page_len, dtype=torch.int32, device=device)
            layout = f"paged, page_size={page_size}"
        if spec.workload is Workload.DECODE:
            wrapper = flashinfer.BatchDecodeWithPagedKVCacheWrapper(workspace, "NHD", use_tensor_cores=True)
            wrapper.plan(
                indptr, indices, last_page_len, hq, hkv, d, page_size,
                pos_encoding_mode="NONE", q_data_type=dtype, kv_data_type=dtype,
            )  # fmt: skip
            q = inputs.q.view(b, hq, d)  # Sq = 1
            self._info = f"BatchDecodeWithPagedKVCacheWrapper(tensor cores);{layout}"
            return lambda: wrapper.run(q, cache).view(b, 1, hq, d)
        wrapper = flashinfer.BatchPrefillWithPagedKVCacheWrapper(workspace, "NHD")
        qo_indptr = torch.arange(b + 1, dtype=torch.int32, device=device) * sq
        wrapper.plan(
            qo_indptr, indptr, indices, last_page_len, hq, hkv, d, page_size,
            causal=spec.is_masked, q_data_type=dtype, kv_data_type=dtype,
        )  # fmt: skip
        q = inputs.q.view(b * sq, hq, d)
        self._info = f"BatchPrefillWithPagedKVCacheWrapper;{layout}"
        return lambda: wrapper.run(q, cache).view(b, sq, hq, d)

    def _prepare_ragged(self, spec, inputs, flashinfer, workspace):
        """A ragged batch in one call: the ragged-KV prefill wrapper (dense), the paged prefill wrapper
        with qo_indptr (paged; chunks and decodes together), the decode wrapper when every request
        decodes (paged)."""
        dtype, batch = inputs.q.dtype, spec.batch
        hq, hkv, d = spec.num_q_heads, spec.num_kv_heads, spec.head_dim
        q, cq = inputs.q, inputs.cu_seqlens_q
        if spec.page_size is None:
            wrapper = flashinfer.BatchPrefillWithRaggedKVCacheWrapper(workspace, "NHD")
            wrapper.plan(cq, inputs.cu_seqlens_k, hq, hkv, d, causal=spec.causal, q_data_type=dtype, kv_data_type=dtype)
            k, v = inputs.k, inputs.v
            self._info = "BatchPrefillWithRaggedKVCacheWrapper;dense"
            return lambda: wrapper.run(q, k, v)
        paged = to_paged_ragged(inputs.k, inputs.v, batch.kv_lens, spec.page_size)
        cache = (paged.k_pages, paged.v_pages)
        layout = f"paged, page_size={spec.page_size}"
        if batch.kind == "decode":
            wrapper = flashinfer.BatchDecodeWithPagedKVCacheWrapper(workspace, "NHD", use_tensor_cores=True)
            wrapper.plan(
                paged.indptr(), paged.indices(), paged.last_page_lens(), hq, hkv, d, spec.page_size,
                pos_encoding_mode="NONE", q_data_type=dtype, kv_data_type=dtype,
            )  # fmt: skip
            self._info = f"BatchDecodeWithPagedKVCacheWrapper(tensor cores);{layout}"
            return lambda: wrapper.run(q, cache)
        wrapper = flashinfer.BatchPrefillWithPagedKVCacheWrapper(workspace, "NHD")
        wrapper.plan(
            cq, paged.indptr(), paged.indices(), paged.last_page_lens(), hq, hkv, d, spec.page_size,
            causal=spec.causal, q_data_type=dtype, kv_data_type=dtype,
        )  # fmt: skip
        self._info = f"BatchPrefillWithPagedKVCacheWrapper(qo_indptr);{layout}"
        return lambda: wrapper.run(q, cache)

    def run_info(self) -> str:
        return getattr(self, "_info", "")
