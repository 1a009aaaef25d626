"""FlashMLA (DeepSeek's MLA decode kernel for Hopper), called as vLLM's FlashMLA backend calls it: the
absorbed form, queries [requests, q_len, heads, 576] against the latent cache in pages of 64 tokens
[pages, 64, 1, 576], values its first 512 columns; `get_mla_metadata` (the tile schedule over the SMs)
once, outside the timed call, then `flash_mla_with_kvcache`. Decode and speculative steps (one query length
for every request; causal bottom-right). No wheel on PyPI: tools/build_flashmla.sh builds one on the GPU host.
Upstream: https://github.com/deepseek-ai/FlashMLA"""

from __future__ import annotations

from specs import DType, Workload

from ._mla import latent_pages, one_query_length, queries_by_request
from .base import Backend, Caps, KVLayout, first_output, register

FLASHMLA_PAGE = 64  # FlashMLA's block size


@register("flashmla")
class FlashMLA(Backend):
    library = "flash_mla"
    min_compute_capability = (9, 0)
    upstream = "flash_mla.get_mla_metadata + flash_mla_with_kvcache (FlashMLA, sm90)"
    distribution = "flash_mla"
    caps = Caps(
        dtypes={DType.BF16, DType.FP16},
        head_dims={576},  # kv_lora_rank 512 + rope 64
        workloads={Workload.DECODE, Workload.SPEC_DECODE},
        layouts={KVLayout.PAGED},
        page_size_multiple=FLASHMLA_PAGE,
        ragged=True,  # requests of different cache lengths (cache_seqlens), one query length
        mla={"mla-absorbed"},
    )

    def supports(self, spec):
        if spec.form != "mla-absorbed":
            return "FlashMLA runs latent attention (MLA) in the absorbed form only (576-wide queries, one latent head)"
        return super().supports(spec)

    def check(self, spec):
        if spec.page_size != FLASHMLA_PAGE:
            return f"page_size {spec.page_size}: FlashMLA takes pages of {FLASHMLA_PAGE} tokens only"
        if spec.value_dim != 512:
            return f"v_head_dim {spec.value_dim}: FlashMLA writes 512-wide values (DeepSeek's kv_lora_rank) only"
        if not one_query_length(spec):
            return "ragged batch: FlashMLA takes one query length for every request (q is [batch, s_q, heads, 576])"
        return None

    def prepare(self, spec, inputs):
        import flash_mla

        q = queries_by_request(spec, inputs)  # [B, s_q, H, 576]
        b, s_q, heads = q.shape[:3]
        paged = latent_pages(spec, inputs)
        # num_q_tokens_per_head_k = s_q · heads / kv_heads, with one latent KV head. FlashMLA before 2026 returns the
        # schedule as tensors; since then a FlashMLASchedMeta (and None) that its first call fills and later calls
        # reuse (vLLM: one a forward step, every layer's call after the first reuses it): either way it is made
        # outside the timed calls, by this line or by the warm-up
        metadata, splits = flash_mla.get_mla_metadata(paged.seqlens, s_q * heads, 1)
        cache, table, seqlens, width = paged.pages, paged.block_table, paged.seqlens, spec.value_dim
        scale, causal = inputs.scale, spec.causal and s_q > 1
        self._metadata = metadata
        self._info = {"path": "flash_mla_with_kvcache", "page_size": paged.page_size}
        out_shape = (*inputs.q.shape[:-1], width)

        def call():
            out = first_output(flash_mla.flash_mla_with_kvcache(q, cache, table, seqlens, width, metadata, splits,
                                                                softmax_scale=scale, causal=causal))  # fmt: skip
            return out.view(out_shape)

        return call

    def run_info(self) -> dict:
        if not hasattr(self, "_info"):
            return {}
        # the schedule's parts over the SMs: the tensor itself, or the one the first call put in FlashMLASchedMeta
        tiles = getattr(self._metadata, "tile_scheduler_metadata", self._metadata)
        parts = {"sm_parts": int(tiles.shape[0])} if hasattr(tiles, "shape") else {}
        return {**self._info, **parts}
