"""FlashAttention-3 for Hopper (`flash_attn_interface`): `flash_attn_func` for dense prefill/append,
`flash_attn_with_kvcache` for decode and for paged specs (`page_table`); ragged batches through
`flash_attn_varlen_func` (dense) or one `flash_attn_with_kvcache` call with `cu_seqlens_q` and the
page table (paged: a mixed batch in one call). Causal is bottom-right.
Upstream: https://github.com/Dao-AILab/flash-attention/tree/main/hopper"""

from __future__ import annotations

import inspect

import torch

from specs import DType, Workload

from ._paged import to_paged, to_paged_ragged
from .base import Backend, Caps, KVLayout, Unsupported, VariantKey, fa_form, first_output, probe_build, register


def kv_cache_call(spec) -> bool:
    """Whether the adapter runs the spec through flash_attn_with_kvcache (whose split FA3's scheduler
    metadata plans): a paged cache, or a uniform decode; a dense prompt, chunk or ragged batch runs
    flash_attn_func / flash_attn_varlen_func."""
    if spec.mix:
        return spec.page_size is not None
    return spec.page_size is not None or spec.q_len == 1


def _decodes_on_a_cache(spec) -> bool:
    return kv_cache_call(spec) and spec.workload in (Workload.DECODE, Workload.SPEC_DECODE, Workload.MIXED)


@register("flash-attn3")
class FlashAttn3(Backend):
    library = "flash_attn_interface"
    min_compute_capability = (9, 0)
    upstream = "flash_attn_interface.flash_attn_func / flash_attn_with_kvcache (FA3)"
    distribution = "flash_attn_3"
    caps = Caps(
        dtypes={DType.BF16, DType.FP16},  # fp8 not benchmarked here
        head_dims={64, 96, 128, 192, 256},
        layouts={KVLayout.DENSE, KVLayout.PAGED},
        ragged=True,
        windows=True,  # window_size=(w, 0)
        softcap=True,  # softcap=; a wheel built without it (FLASHATTENTION_DISABLE_SOFTCAP) refuses at the probe
    )
    variants = (
        VariantKey(
            "scheduler",
            ("heuristic", "metadata", "none"),
            "heuristic",
            contenders=("metadata",),
            applies=_decodes_on_a_cache,
            help="how the KV-cache call splits the keys: FA3's own heuristic at call time (num_splits=0), "
            "vLLM's way (get_scheduler_metadata planned once, passed as scheduler_metadata), or no split "
            "(num_splits=1)",
        ),
    )

    def _schedule(self, fa3, kw: dict, spec, batch_size: int, max_q: int, max_kv: int, seqlens, dtype, cu_q=None):
        """The scheduler variant's arguments for a flash_attn_with_kvcache call (added to kw)."""
        mode = self.choice["scheduler"]
        if mode == "none":
            kw["num_splits"] = 1
        elif mode == "metadata":
            if not hasattr(fa3, "get_scheduler_metadata"):
                raise Unsupported("scheduler=metadata: this flash_attn_interface has no get_scheduler_metadata")
            kw["scheduler_metadata"] = fa3.get_scheduler_metadata(
                batch_size, max_q, max_kv, spec.num_q_heads, spec.num_kv_heads, spec.head_dim, seqlens,
                qkv_dtype=dtype, cu_seqlens_q=cu_q, page_size=spec.page_size, causal=spec.causal,
            )  # fmt: skip
        return mode

    def prepare(self, spec, inputs):
        import flash_attn_interface as fa3

        form = fa_form(spec)  # window_size and softcap on every call ({} without a form)
        # a wheel built for some head dims, or without soft-cap or local attention, refuses here, not timed
        probe_build(lambda q, k, v: fa3.flash_attn_func(q, k, v, **form), inputs)
        q, k, v, causal = inputs.q, inputs.k, inputs.v, spec.is_masked
        table_arg = (
            "page_table" if "page_table" in inspect.signature(fa3.flash_attn_with_kvcache).parameters else "block_table"
        )
        if inputs.ragged:
            batch, cq, ck = spec.batch, inputs.cu_seqlens_q, inputs.cu_seqlens_k
            if spec.page_size is None:
                self._info = "flash_attn_varlen_func"
                kw = dict(max_seqlen_q=batch.max_q, max_seqlen_k=batch.max_kv, causal=spec.causal, **form)
                if "num_splits" in inspect.signature(fa3.flash_attn_varlen_func).parameters:
                    # its default is 1 (no KV split); vLLM passes 0, FA3's own heuristic, outside CUDA graphs
                    kw["num_splits"] = 0
                    self._info += "(num_splits=0: FA3's heuristic)"
                return lambda: first_output(fa3.flash_attn_varlen_func(q, k, v, cq, ck, **kw))
            # a mixed batch in one call: packed queries (cu_seqlens_q) against the paged cache
            paged = to_paged_ragged(k, v, batch.kv_lens, spec.page_size)
            kw = {"cache_seqlens": paged.seqlens(), table_arg: paged.block_table, "cu_seqlens_q": cq,
                  "max_seqlen_q": batch.max_q, "causal": spec.causal, **form}  # fmt: skip
            kp, vp = paged.k_pages, paged.v_pages
            mode = self._schedule(fa3, kw, spec, batch.num_requests, batch.max_q, batch.max_kv, kw["cache_seqlens"],
                                  q.dtype, cq)  # fmt: skip
            self._info = {"call": f"flash_attn_with_kvcache(cu_seqlens_q, {table_arg})", "scheduler": mode,
                          "page_size": spec.page_size}  # fmt: skip
            return lambda: first_output(fa3.flash_attn_with_kvcache(q, kp, vp, **kw))
        if spec.page_size is None and spec.q_len > 1:
            self._info = "flash_attn_func"
            return lambda: first_output(fa3.flash_attn_func(q, k, v, causal=causal, **form))
        seqlens = torch.full((spec.batch_size,), spec.kv_len, dtype=torch.int32, device=q.device)
        kwargs = dict(cache_seqlens=seqlens, causal=causal, **form)
        self._info = {"call": "flash_attn_with_kvcache"}
        if spec.page_size is not None:
            paged = to_paged(k, v, spec.page_size)
            k, v = paged.k_pages, paged.v_pages
            kwargs[table_arg] = paged.block_table
            self._info = {"call": f"flash_attn_with_kvcache({table_arg})", "page_size": spec.page_size}
        self._info["scheduler"] = self._schedule(fa3, kwargs, spec, spec.batch_size, spec.q_len, spec.kv_len, seqlens,
                                                 q.dtype)  # fmt: skip
        return lambda: first_output(fa3.flash_attn_with_kvcache(q, k, v, **kwargs))

    def run_info(self) -> dict | str:
        return getattr(self, "_info", "")
