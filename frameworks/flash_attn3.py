"""FlashAttention-3 for Hopper (`flash_attn_interface`): `flash_attn_func` for dense prefill/append,
`flash_attn_with_kvcache` for decode and for paged specs (`page_table`); ragged batches through
`flash_attn_varlen_func` (dense) or one `flash_attn_with_kvcache` call with `cu_seqlens_q` and the
page table (paged: a mixed batch in one call). Causal is bottom-right.
FP8: Q, K and V all e4m3 with q_descale/k_descale/v_descale of shape [requests, KV heads] (FA3's form; an FP8
cache beside bf16 queries is not one FA3 takes). MLA: the absorbed form through flash_attn_with_kvcache's qv=
(q = the 64 rope columns against k_cache = the latent's last 64, qv = the 512 absorbed columns against
v_cache = its first 512); the expanded form (192/128) through the ordinary calls. A wheel built without FP8 or
without the head dims 64/512 refuses a one-token probe: unsupported, with its message.
Upstream: https://github.com/Dao-AILab/flash-attention/tree/main/hopper"""

from __future__ import annotations

import inspect

import torch

from specs import DType, Workload

from ._mla import latent_pages, token_pages
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
    """Where the scheduler variant changes anything: decodes through flash_attn_with_kvcache, but absorbed
    MLA (its qv= call keeps FA3's own heuristic)."""
    if spec.form == "mla-absorbed":
        return False
    return kv_cache_call(spec) and spec.workload in (Workload.DECODE, Workload.SPEC_DECODE, Workload.MIXED)


@register("flash-attn3")
class FlashAttn3(Backend):
    library = "flash_attn_interface"
    min_compute_capability = (9, 0)
    upstream = "flash_attn_interface.flash_attn_func / flash_attn_with_kvcache (FA3)"
    distribution = "flash_attn_3"
    caps = Caps(
        dtypes={DType.BF16, DType.FP16},
        head_dims={64, 96, 128, 192, 256, 576},  # 576: absorbed MLA (64 rope columns + qv of 512)
        layouts={KVLayout.DENSE, KVLayout.PAGED},
        ragged=True,
        kv_dtypes={"", "fp8_e4m3"},  # with fp8_attention only (check)
        fp8_attention=True,
        mla={"mla-absorbed", "mla-expanded"},
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

    def check(self, spec):
        if spec.kv_dtype and not spec.fp8_attention:
            return (
                "kv_dtype fp8_e4m3 with bf16 queries: FA3 takes FP8 as Q, K and V all in e4m3 with descales "
                "(fp8_attention) only"
            )
        if spec.form == "mla-absorbed" and spec.kv_dtype:
            return "absorbed MLA (qv=) in FP8: not a form FA3 takes here (bf16/fp16 latent cache only)"
        if spec.head_dim == 576 and spec.form != "mla-absorbed":
            return "head_dim 576: FA3 takes it as absorbed MLA only (qv= of 512 beside 64 rope columns)"
        return None

    def prepare(self, spec, inputs):
        import flash_attn_interface as fa3

        form = fa_form(spec)  # window_size and softcap on every call ({} without a form)
        if spec.form == "mla-absorbed":
            return self._prepare_absorbed(spec, inputs, fa3, form)
        fp8 = fp8_descales(spec, inputs)
        probe_fp8 = {name: t[:1] for name, t in fp8.items()}
        # a wheel built for some head dims, or without FP8, soft-cap or local attention, refuses here, not timed
        probe_build(lambda q, k, v: fa3.flash_attn_func(q, k, v, **form, **probe_fp8), inputs)
        extra = form | fp8  # the form and the FP8 descales, on every call
        q, k, v, causal = inputs.q, inputs.k, inputs.v, spec.is_masked
        table_arg = (
            "page_table" if "page_table" in inspect.signature(fa3.flash_attn_with_kvcache).parameters else "block_table"
        )
        if inputs.ragged:
            batch, cq, ck = spec.batch, inputs.cu_seqlens_q, inputs.cu_seqlens_k
            if spec.page_size is None:
                self._info = "flash_attn_varlen_func"
                kw = dict(max_seqlen_q=batch.max_q, max_seqlen_k=batch.max_kv, causal=spec.causal, **extra)
                if "num_splits" in inspect.signature(fa3.flash_attn_varlen_func).parameters:
                    # its default is 1 (no KV split); vLLM passes 0, FA3's own heuristic, outside CUDA graphs
                    kw["num_splits"] = 0
                    self._info += "(num_splits=0: FA3's heuristic)"
                return lambda: first_output(fa3.flash_attn_varlen_func(q, k, v, cq, ck, **kw))
            # a mixed batch in one call: packed queries (cu_seqlens_q) against the paged cache
            paged = to_paged_ragged(k, v, batch.kv_lens, spec.page_size)
            kw = {"cache_seqlens": paged.seqlens(), table_arg: paged.block_table, "cu_seqlens_q": cq,
                  "max_seqlen_q": batch.max_q, "causal": spec.causal, **extra}  # fmt: skip
            kp, vp = paged.k_pages, paged.v_pages
            mode = self._schedule(fa3, kw, spec, batch.num_requests, batch.max_q, batch.max_kv, kw["cache_seqlens"],
                                  q.dtype, cq)  # fmt: skip
            self._info = {"call": f"flash_attn_with_kvcache(cu_seqlens_q, {table_arg})", "scheduler": mode,
                          "page_size": spec.page_size}  # fmt: skip
            return lambda: first_output(fa3.flash_attn_with_kvcache(q, kp, vp, **kw))
        if spec.page_size is None and spec.q_len > 1:
            self._info = "flash_attn_func"
            return lambda: first_output(fa3.flash_attn_func(q, k, v, causal=causal, **extra))
        seqlens = torch.full((spec.batch_size,), spec.kv_len, dtype=torch.int32, device=q.device)
        kwargs = dict(cache_seqlens=seqlens, causal=causal, **extra)
        self._info = {"call": "flash_attn_with_kvcache"}
        if spec.page_size is not None:
            paged = to_paged(k, v, spec.page_size)
            k, v = paged.k_pages, paged.v_pages
            kwargs[table_arg] = paged.block_table
            self._info = {"call": f"flash_attn_with_kvcache({table_arg})", "page_size": spec.page_size}
        self._info["scheduler"] = self._schedule(fa3, kwargs, spec, spec.batch_size, spec.q_len, spec.kv_len, seqlens,
                                                 q.dtype)  # fmt: skip
        return lambda: first_output(fa3.flash_attn_with_kvcache(q, k, v, **kwargs))

    def _prepare_absorbed(self, spec, inputs, fa3, form: dict):
        """Absorbed MLA by qv=: q_pe [.., H, 64] against k_cache (the latent's rope columns) plus qv [.., H, 512]
        against v_cache (its first 512 columns, also the values); both caches views of one latent cache, paged
        (page_table) or, dense, the [B, Sk, 1, 576] cache as it is (ragged: pages of one token). The window and
        soft-cap (`form`) go to the probe and every call; FA3's own split heuristic (no scheduler variant)."""
        rank = spec.kv_lora_rank
        ones = torch.ones(1, dtype=torch.int32, device=inputs.device)

        def probe(q, k, v):
            """One key: the output is that key's value exactly. A wheel without the hdim 64 × value dim 512
            instantiation refuses, or (seen with the shared FA3 wheel on an H100, 2026-12-05: rel_err 2.8 and
            NaN) runs another kernel and returns something else: either way this build cannot take it."""
            q_pe, qv = q[..., rank:].contiguous(), q[..., :rank].contiguous()
            out = first_output(
                fa3.flash_attn_with_kvcache(q_pe, k[..., rank:], k[..., :rank], qv=qv, cache_seqlens=ones, **form)
            )
            value = k[..., :1, :, :rank].float().expand(out.shape)
            if not torch.allclose(out.float(), value, rtol=2e-2, atol=2e-2):
                raise RuntimeError(
                    "absorbed MLA (hdim 64, value dim 512): a one-key probe did not return the key's value, so this "
                    "build lacks that kernel (docs/gpu-builds.md builds FA3 with it)"
                )

        probe_build(probe, inputs)
        table_arg = (
            "page_table" if "page_table" in inspect.signature(fa3.flash_attn_with_kvcache).parameters else "block_table"
        )
        q_pe, qv = inputs.q[..., rank:].contiguous(), inputs.q[..., :rank].contiguous()
        kw = dict(softmax_scale=inputs.scale, causal=spec.causal, **form)
        if spec.page_size is None and not inputs.ragged:
            latent = inputs.k  # [B, Sk, 1, 576]
            kw["cache_seqlens"] = torch.full((spec.batch_size,), spec.kv_len, dtype=torch.int32, device=latent.device)
            self._info = "flash_attn_with_kvcache(qv=);dense"
        else:
            paged = token_pages(spec, inputs) if spec.page_size is None else latent_pages(spec, inputs)
            latent = paged.pages
            kw.update(cache_seqlens=paged.seqlens, **{table_arg: paged.block_table})
            self._info = f"flash_attn_with_kvcache(qv=, {table_arg});page_size={paged.page_size}"
        if inputs.ragged:
            kw.update(cu_seqlens_q=inputs.cu_seqlens_q, max_seqlen_q=spec.batch.max_q)
        k_cache, v_cache = latent[..., rank:], latent[..., :rank]
        return lambda: first_output(fa3.flash_attn_with_kvcache(q_pe, k_cache, v_cache, qv=qv, **kw))

    def run_info(self) -> dict | str:
        return getattr(self, "_info", "")


def fp8_descales(spec, inputs) -> dict:
    """FA3's q_descale/k_descale/v_descale, fp32 [requests, KV heads] (a per-tensor scale repeated, a per-head
    one for each request), for e4m3 inputs; {} otherwise."""
    if not inputs.quantized:
        return {}
    shape = (spec.batch.num_requests, spec.num_kv_heads)

    def grid(scale):
        return (scale.reshape(1, 1) if scale.dim() == 0 else scale[None]).float().expand(shape).contiguous()

    return dict(q_descale=grid(inputs.q_scale), k_descale=grid(inputs.k_scale), v_descale=grid(inputs.v_scale))
