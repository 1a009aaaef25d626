"""FlashInfer, called the way serving engines call it. Paged KV (the spec's page size, pages
shuffled): the batch prefill wrapper for prefill and append (causal is bottom-right), the batch
decode wrapper with tensor cores for decode (so GQA groups of 16 work). Dense KV: the ragged-KV
prefill wrapper (the path engines use for a prompt's new tokens) for prefill and append, and for
decode the decode wrapper over the dense cache read as pages of one token (no copy: the
[B, Sk, Hkv, D] tensor is B·Sk pages of one token, so FlashInfer can split a long cache). Ragged
batches: a mixed one (chunks, then decodes) split as vLLM splits it, the prefill wrapper for the
chunks and the decode wrapper for the decodes (`flashinfer[mixed=one-call]`: the whole batch
through the prefill wrapper, as SGLang's mixed chunked prefill runs it; `=batch-attention`: the
holistic BatchAttention kernel, one persistent launch for any ragged batch); an all-decode one through
the decode wrapper (a dense packed cache read as pages of one token, SGLang's token pool). plan()
and the cache build happen here, never in the timed call; backend_info says which path ran. Forms: a window
(window_left) and a soft-cap (logits_soft_cap) planned on every prefill and decode wrapper; sinks through
BatchAttentionWithAttentionSinkWrapper (variant sinks=attention-sink; uniform and ragged batches, one call with
qo_indptr; window but no soft-cap).
FP8 KV (e4m3, one scale a tensor): kv_data_type=float8_e4m3fn at plan(), k_scale/v_scale at run(), on the paged
and decode wrappers (the ragged-KV prefill wrapper, BatchAttention and the attention-sink wrapper take no scales
here: unsupported). MLA: the absorbed form through BatchMLAPagedAttentionWrapper (q_nope/q_pe against the latent
cache's 512 + 64 columns, pages of the spec's size or, dense, of one token; no forms); the expanded form
(192/128) through the ragged-KV prefill wrapper with head_dim_vo, as FlashInfer documents it.
Upstream: https://github.com/flashinfer-ai/flashinfer"""

from __future__ import annotations

import inspect

import torch

from specs import DType, Workload

from ._mla import latent_pages, token_pages
from ._paged import to_paged, to_paged_ragged
from .base import Backend, Caps, KVLayout, Unsupported, VariantKey, register

WORKSPACE_BYTES = 256 * 2**20
BATCH_ATTENTION_WORKSPACE_BYTES = 2**30
# a ragged batch: vLLM's split (prefill wrapper for the chunks, decode wrapper for the decodes), SGLang's one
# prefill-wrapper call, or BatchAttention (FlashInfer's holistic kernel for mixed batches, one launch)
MIXED_MODES = ("split", "one-call", "batch-attention")
# a spec with sinks: the prefill/decode wrappers (which refuse it) or the attention-sink wrapper
SINK_PATHS = ("prefill-decode", "attention-sink")


def plan_form(spec) -> dict:
    """plan()'s keyword arguments for the spec's window and soft-cap ({} for plain attention, so those plans
    stay as they were): window_left (keys left of the query, FA's window_size[0]) and logits_soft_cap."""
    form: dict = {}
    if spec.window is not None:
        form["window_left"] = spec.window
    if spec.softcap is not None:
        form["logits_soft_cap"] = spec.softcap
    return form


@register("flashinfer")
class FlashInfer(Backend):
    library = "flashinfer"
    min_compute_capability = (8, 0)
    upstream = "flashinfer BatchPrefill (paged / ragged KV) and BatchDecodeWithPagedKVCacheWrapper"
    caps = Caps(
        dtypes={DType.BF16, DType.FP16},
        head_dims={64, 128, 256, 192, 576},  # 192: expanded MLA (values of 128); 576: the absorbed latent (512 + 64)
        layouts={KVLayout.DENSE, KVLayout.PAGED},
        ragged=True,
        kv_dtypes={"", "fp8_e4m3"},
        kv_scales={"tensor"},  # k_scale/v_scale: one float each
        mla={"mla-absorbed", "mla-expanded"},
        windows=True,  # window_left on the prefill and decode wrappers' plan()
        sinks=True,  # the attention-sink wrapper (variant sinks=attention-sink); the other wrappers refuse sinks
        softcap=True,  # logits_soft_cap on plan()
    )
    variants = (
        VariantKey(
            "mixed",
            MIXED_MODES,
            "split",
            contenders=("batch-attention",),
            applies=lambda spec: bool(spec.mix),
            help="a ragged batch: vLLM's split (prefill wrapper for the chunks, decode wrapper for the decodes), "
            "SGLang's one prefill-wrapper call (one-call), or BatchAttention, FlashInfer's persistent kernel for "
            "mixed batches (batch-attention; a default sweep measures it too)",
        ),
        VariantKey(
            "sinks",
            SINK_PATHS,
            "prefill-decode",
            contenders=("attention-sink",),
            applies=lambda spec: bool(spec.sinks),
            help="a spec with sinks: the prefill and decode wrappers (prefill-decode: they take a window and a "
            "soft-cap but no sink, so such a spec is unsupported there) or BatchAttentionWithAttentionSinkWrapper "
            "(attention-sink: sinks and a window; a default sweep measures it too)",
        ),
    )

    def check(self, spec):
        if spec.form == "mla-absorbed" and spec.kv_dtype:
            return "kv_dtype fp8_e4m3: FlashInfer's MLA wrapper takes no k_scale/v_scale (bf16 latent cache only here)"
        if spec.form == "mla-absorbed" and spec.has_form:
            return "window, sinks, soft-cap: FlashInfer's MLA wrapper (absorbed MLA) is not planned with forms here"
        if spec.form == "mla-expanded" and (spec.page_size is not None or spec.workload is Workload.DECODE):
            return "expanded MLA (192/128): FlashInfer runs it through its ragged-KV prefill wrapper, dense K/V only"
        if spec.kv_dtype and self.choice["mixed"] == "batch-attention" and spec.mix:
            return "kv_dtype fp8_e4m3: BatchAttention is not given k_scale/v_scale here (the paged wrappers are)"
        if spec.kv_dtype and spec.page_size is None and spec.workload is not Workload.DECODE:
            return (
                "kv_dtype fp8_e4m3: FlashInfer's ragged-KV prefill wrapper takes no k_scale/v_scale; give a page size"
            )
        if spec.has_form and spec.mix and self.choice["mixed"] == "batch-attention":
            return "window, sinks, soft-cap: BatchAttention (mixed=batch-attention) is not planned with forms here"
        if not spec.sinks:
            return None
        if self.choice["sinks"] != "attention-sink":
            return (
                "sinks: FlashInfer's prefill and decode wrappers take no sink logits; "
                "flashinfer[sinks=attention-sink] runs its attention-sink wrapper"
            )
        if spec.softcap is not None:
            return "softcap: FlashInfer's attention-sink wrapper takes no logit soft-cap"
        if spec.kv_dtype:
            return "kv_dtype fp8_e4m3: the attention-sink wrapper is not given k_scale/v_scale here"
        if spec.form != "mha":
            return "expanded MLA with sinks: the attention-sink wrapper is planned with one head dim here"
        return None

    def prepare(self, spec, inputs):
        import flashinfer

        device, dtype, kv_dtype = inputs.device, inputs.q.dtype, inputs.k.dtype
        workspace = torch.empty(WORKSPACE_BYTES, dtype=torch.uint8, device=device)
        if spec.form == "mla-absorbed":
            return self._prepare_mla(spec, inputs, flashinfer, workspace)
        if inputs.ragged:
            return self._prepare_ragged(spec, inputs, flashinfer, workspace)
        if spec.sinks:
            return self._prepare_sinks(spec, inputs, flashinfer, workspace)
        b, sq, hq, d = inputs.q.shape
        hkv, dv = spec.num_kv_heads, spec.value_dim
        scales = fp8_scales(inputs)
        form = plan_form(spec)
        if spec.page_size is None and spec.workload is not Workload.DECODE:
            wrapper = flashinfer.BatchPrefillWithRaggedKVCacheWrapper(workspace, "NHD")
            qo_indptr = torch.arange(b + 1, dtype=torch.int32, device=device) * sq
            kv_indptr = torch.arange(b + 1, dtype=torch.int32, device=device) * spec.kv_len
            wrapper.plan(qo_indptr, kv_indptr, hq, hkv, d, causal=spec.is_masked, q_data_type=dtype, kv_data_type=dtype,
                         **value_width(spec), **form)  # fmt: skip
            q = inputs.q.view(b * sq, hq, d)  # packed ragged layouts: free views of [B, S, H, D]
            k = inputs.k.view(b * spec.kv_len, hkv, d)
            v = inputs.v.view(b * spec.kv_len, hkv, dv)
            self._info = "BatchPrefillWithRaggedKVCacheWrapper;dense" + (";expanded MLA" if dv != d else "")
            return lambda: wrapper.run(q, k, v).view(b, sq, hq, dv)

        page_size, cache, indptr, indices, last_page_len, layout = _uniform_pages(spec, inputs)
        if spec.workload is Workload.DECODE:
            wrapper = flashinfer.BatchDecodeWithPagedKVCacheWrapper(workspace, "NHD", use_tensor_cores=True)
            wrapper.plan(
                indptr, indices, last_page_len, hq, hkv, d, page_size,
                pos_encoding_mode="NONE", q_data_type=dtype, kv_data_type=kv_dtype, **form,
            )  # fmt: skip
            q = inputs.q.view(b, hq, d)  # Sq = 1
            self._info = f"BatchDecodeWithPagedKVCacheWrapper(tensor cores);{layout}" + fp8_note(inputs)
            return lambda: wrapper.run(q, cache, **scales).view(b, 1, hq, d)
        wrapper = flashinfer.BatchPrefillWithPagedKVCacheWrapper(workspace, "NHD")
        qo_indptr = torch.arange(b + 1, dtype=torch.int32, device=device) * sq
        wrapper.plan(
            qo_indptr, indptr, indices, last_page_len, hq, hkv, d, page_size,
            causal=spec.is_masked, q_data_type=dtype, kv_data_type=kv_dtype, **form,
        )  # fmt: skip
        q = inputs.q.view(b * sq, hq, d)
        self._info = f"BatchPrefillWithPagedKVCacheWrapper;{layout}" + fp8_note(inputs)
        return lambda: wrapper.run(q, cache, **scales).view(b, sq, hq, d)

    def _prepare_mla(self, spec, inputs, flashinfer, workspace):
        """Absorbed MLA through BatchMLAPagedAttentionWrapper: q split into q_nope [T, H, 512] and q_pe [T, H, 64]
        (separate tensors, as the absorption's matmuls leave them), the latent pages read as ckv [P, page, 512]
        and kpe [P, page, 64] (views of one cache). Dense: the packed cache as pages of one token (no copy)."""
        rank, device = spec.kv_lora_rank, inputs.device
        paged = token_pages(spec, inputs) if spec.page_size is None else latent_pages(spec, inputs)
        ckv, kpe = paged.pages[:, :, 0, :rank], paged.pages[:, :, 0, rank:]
        q = inputs.q.view(-1, *inputs.q.shape[-2:])  # [T, H, 576]
        q_nope, q_pe = q[..., :rank].contiguous(), q[..., rank:].contiguous()
        qo_indptr = torch.tensor(spec.batch.cu_seqlens_q, dtype=torch.int32, device=device)
        wrapper = flashinfer.mla.BatchMLAPagedAttentionWrapper(workspace, backend="auto")
        wrapper.plan(qo_indptr, paged.indptr(), paged.indices(), paged.seqlens, spec.num_q_heads, rank, spec.rope_dim,
                     paged.page_size, spec.is_masked, inputs.scale, inputs.q.dtype, inputs.k.dtype)  # fmt: skip
        layout = "dense (pages of one token)" if spec.page_size is None else f"paged, page_size={spec.page_size}"
        self._info = f"BatchMLAPagedAttentionWrapper;{layout}"
        shape = (*inputs.q.shape[:-1], rank)
        return lambda: wrapper.run(q_nope, q_pe, ckv, kpe).view(shape)

    def _prepare_sinks(self, spec, inputs, flashinfer, workspace):
        """A uniform batch with sinks through BatchAttentionWithAttentionSinkWrapper (a paged prefill wrapper
        whose kernel adds each head's sink to the softmax; window_left as well): the spec's pages, or a dense
        cache read as pages of one token. run() takes the sinks and the softmax scale after the cache."""
        b, sq, hq, d = inputs.q.shape
        page_size, cache, indptr, indices, last_page_len, layout = _uniform_pages(spec, inputs)
        qo_indptr = torch.arange(b + 1, dtype=torch.int32, device=inputs.device) * sq
        run = _sink_wrapper(flashinfer, workspace, spec, inputs, qo_indptr, (indptr, indices, last_page_len), page_size,
                            cache, causal=True)  # fmt: skip
        q = inputs.q.view(b * sq, hq, d)
        self._info = f"BatchAttentionWithAttentionSinkWrapper;{layout}"
        return lambda: run(q, None).view(b, sq, hq, d)

    def _prepare_ragged(self, spec, inputs, flashinfer, workspace):
        """A ragged batch as engines call FlashInfer. Every request decodes: the decode wrapper (dense:
        the packed cache read as pages of one token, as SGLang's token pool holds it). Chunks, then
        decodes: vLLM's split, the prefill wrapper for the chunks and the decode wrapper for the
        decodes, both writing into one output (the variant mixed=one-call runs the whole
        batch through the prefill wrapper instead, as SGLang's mixed chunked prefill does). Anything
        else: one prefill-wrapper call (ragged-KV dense, paged with qo_indptr). With sinks: the whole batch through
        the attention-sink wrapper (flashinfer[sinks=attention-sink]), also one call with qo_indptr."""
        batch = spec.batch
        mode = self.choice["mixed"]
        parts = _RaggedParts(spec, inputs, flashinfer, workspace)
        q = inputs.q
        if spec.sinks:  # check() let only the attention-sink variant through: one prefill-style call, qo_indptr
            run = parts.attention_sink()
            self._info = f"BatchAttentionWithAttentionSinkWrapper (one call, qo_indptr);{parts.layout}"
            return lambda: run(q, None)
        if mode == "batch-attention":  # the holistic persistent kernel: every request in one launch
            run = parts.batch_attention()
            self._info = f"BatchAttention (one persistent launch);{parts.layout}"
            return lambda: run(q, None)
        if batch.kind == "decode":
            run = parts.decode(0, batch.num_requests)
            self._info = f"{parts.decode_name};{parts.layout}"
            return lambda: run(q, None)
        first = batch.decode_split if mode == "split" else None
        if first is None:
            run = parts.prefill(0, batch.num_requests)
            self._info = f"{parts.prefill_name};{parts.layout}"
            return lambda: run(q, None)
        rows = batch.cu_seqlens_q[first]
        chunks, decodes = parts.prefill(0, first), parts.decode(first, batch.num_requests)
        out = torch.empty_like(q)
        q_chunks, q_decodes, out_chunks, out_decodes = q[:rows], q[rows:], out[:rows], out[rows:]
        self._info = f"split: {parts.prefill_name} for {first} + {parts.decode_name} for the rest;{parts.layout}"

        def call():
            chunks(q_chunks, out_chunks)
            decodes(q_decodes, out_decodes)
            return out

        return call

    def run_info(self) -> str:
        return getattr(self, "_info", "")


class _RaggedParts:
    """Planned FlashInfer wrappers over a slice of a ragged batch's requests (lo … hi − 1), each
    returned as run(q_slice, out_slice). plan() happens here, outside the timed call."""

    def __init__(self, spec, inputs, flashinfer, workspace):
        self.spec, self.inputs, self.fi, self.workspace = spec, inputs, flashinfer, workspace
        self.heads = (spec.num_q_heads, spec.num_kv_heads, spec.head_dim)
        self.dtype, self.kv_dtype, self.scales = inputs.q.dtype, inputs.k.dtype, fp8_scales(inputs)
        self.cu_q = torch.tensor(spec.batch.cu_seqlens_q, dtype=torch.int32, device=inputs.device)
        self.cu_k = torch.tensor(spec.batch.cu_seqlens_k, dtype=torch.int32, device=inputs.device)
        if spec.page_size is None:
            self.layout = "dense"
            self.paged = None
        else:
            self.layout = f"paged, page_size={spec.page_size}"
            self.paged = to_paged_ragged(inputs.k, inputs.v, spec.batch.kv_lens, spec.page_size)
            # FlashInfer's CSR view of the whole cache, sliced per part by _pages
            self.page_indptr, self.page_indices = self.paged.indptr(), self.paged.indices()
            self.last_page_lens = self.paged.last_page_lens()
        self.layout += fp8_note(inputs)
        self.prefill_name = (
            "BatchPrefillWithRaggedKVCacheWrapper"
            if self.paged is None
            else "BatchPrefillWithPagedKVCacheWrapper(qo_indptr)"
        )
        self.decode_name = "BatchDecodeWithPagedKVCacheWrapper(tensor cores)" + (
            ", pages of one token" if self.paged is None else ""
        )

    def prefill(self, lo: int, hi: int):
        hq, hkv, d = self.heads
        qo = self.cu_q[lo : hi + 1] - self.cu_q[lo]
        if self.paged is None:
            wrapper = self.fi.BatchPrefillWithRaggedKVCacheWrapper(self.workspace, "NHD")
            kv_lo, kv_hi = self.spec.batch.cu_seqlens_k[lo], self.spec.batch.cu_seqlens_k[hi]
            wrapper.plan(qo, self.cu_k[lo : hi + 1] - kv_lo, hq, hkv, d, causal=self.spec.causal,
                         q_data_type=self.dtype, kv_data_type=self.dtype, **value_width(self.spec),
                         **plan_form(self.spec))  # fmt: skip
            k, v = self.inputs.k[kv_lo:kv_hi], self.inputs.v[kv_lo:kv_hi]
            return _with_out(wrapper, lambda q, **out: wrapper.run(q, k, v, **out))
        indptr, indices, last = self._pages(lo, hi)
        wrapper = self.fi.BatchPrefillWithPagedKVCacheWrapper(self.workspace, "NHD")
        wrapper.plan(qo, indptr, indices, last, hq, hkv, d, self.spec.page_size, causal=self.spec.causal,
                     q_data_type=self.dtype, kv_data_type=self.kv_dtype, **plan_form(self.spec))  # fmt: skip
        cache = (self.paged.k_pages, self.paged.v_pages)
        return _with_out(wrapper, lambda q, **out: wrapper.run(q, cache, **out, **self.scales))

    def decode(self, lo: int, hi: int):
        hq, hkv, d = self.heads
        page_size, cache, (indptr, indices, last) = self._paged_view(lo, hi)
        wrapper = self.fi.BatchDecodeWithPagedKVCacheWrapper(self.workspace, "NHD", use_tensor_cores=True)
        wrapper.plan(indptr, indices, last, hq, hkv, d, page_size, pos_encoding_mode="NONE", q_data_type=self.dtype,
                     kv_data_type=self.kv_dtype, **plan_form(self.spec))  # fmt: skip
        return _with_out(wrapper, lambda q, **out: wrapper.run(q, cache, **out, **self.scales))

    def batch_attention(self):
        """The whole batch through BatchAttention, planned here: pages of the spec's size, or the dense
        packed cache read as pages of one token. Returns run(q, out)."""
        if not hasattr(self.fi, "BatchAttention"):
            raise Unsupported("this FlashInfer has no BatchAttention (the holistic kernel for mixed batches)")
        hq, hkv, d = self.heads
        device = self.inputs.device
        page_size, cache, (indptr, indices, _) = self._paged_view(0, self.spec.batch.num_requests)
        kv_lens = torch.tensor(self.spec.batch.kv_lens, dtype=torch.int32, device=device)
        wrapper = self.fi.BatchAttention("NHD", device=str(device))
        # its own float workspace (384 MiB in 0.7.2) overflowed on Gemma-3's decode-heavy mix on an H100 (594 MiB of
        # partial outputs, 2026-12-05): a larger one, as an engine sizes its workspace for its largest batch
        if hasattr(wrapper, "float_workspace_buffer"):
            wrapper.float_workspace_buffer = torch.empty(BATCH_ATTENTION_WORKSPACE_BYTES, dtype=torch.uint8,
                                                         device=device)  # fmt: skip
        wrapper.plan(self.cu_q, indptr, indices, kv_lens, hq, hkv, d, d, page_size, causal=self.spec.causal,
                     q_data_type=self.dtype, kv_data_type=self.dtype)  # fmt: skip
        return lambda q, out: wrapper.run(q, cache, out=out)[0]

    def attention_sink(self):
        """The whole batch through BatchAttentionWithAttentionSinkWrapper, a paged prefill wrapper planned with
        qo_indptr as any prefill call of ragged queries: pages of the spec's size, or the dense packed cache read as
        pages of one token. Returns run(q, out)."""
        page_size, cache, pages = self._paged_view(0, self.spec.batch.num_requests)
        return _sink_wrapper(self.fi, self.workspace, self.spec, self.inputs, self.cu_q, pages, page_size, cache,
                             causal=self.spec.causal)  # fmt: skip

    def _paged_view(self, lo: int, hi: int):
        """(page_size, (K, V) pages, (kv_indptr, kv_indices, last-page lengths)) of requests lo … hi − 1 as the
        paged wrappers take them: the spec's pages, or the dense packed cache read as pages of one token (no copy,
        SGLang's token pool)."""
        if self.paged is None:
            kv_lo, kv_hi = self.spec.batch.cu_seqlens_k[lo], self.spec.batch.cu_seqlens_k[hi]
            cache, indices = _token_pages(self.inputs.k, self.inputs.v, kv_lo, kv_hi)
            last = torch.ones(hi - lo, dtype=torch.int32, device=self.inputs.device)
            return 1, cache, (self.cu_k[lo : hi + 1] - kv_lo, indices, last)
        return self.spec.page_size, (self.paged.k_pages, self.paged.v_pages), self._pages(lo, hi)

    def _pages(self, lo: int, hi: int):
        """kv_indptr, kv_indices and last-page lengths of requests lo … hi − 1."""
        indptr = self.page_indptr
        start, stop = int(indptr[lo]), int(indptr[hi])
        return indptr[lo : hi + 1] - start, self.page_indices[start:stop], self.last_page_lens[lo:hi]


def _sink_wrapper(fi, workspace, spec, inputs, qo_indptr, pages, page_size: int, cache, causal: bool):
    """BatchAttentionWithAttentionSinkWrapper planned over qo_indptr and pages (kv_indptr, kv_indices, last-page
    lengths), built and planned with the spec's window; returns run(q, out), whose call passes the sinks (fp32, a
    query head) and the softmax scale after the cache."""
    if not hasattr(fi, "BatchAttentionWithAttentionSinkWrapper"):
        raise Unsupported("sinks: this FlashInfer has no BatchAttentionWithAttentionSinkWrapper")
    dtype, d = inputs.q.dtype, spec.head_dim
    window_left = -1 if spec.window is None else spec.window
    wrapper = fi.BatchAttentionWithAttentionSinkWrapper(
        workspace, "NHD", q_data_type=dtype, kv_data_type=dtype, head_dim_qk=d, head_dim_vo=d, window_left=window_left
    )
    wrapper.plan(qo_indptr, *pages, spec.num_q_heads, spec.num_kv_heads, d, page_size, causal=causal,
                 window_left=window_left, q_data_type=dtype, kv_data_type=dtype)  # fmt: skip
    sinks, scale = inputs.sinks, inputs.scale
    return _with_out(wrapper, lambda q, **out: wrapper.run(q, cache, sinks, scale, **out))


def fp8_scales(inputs) -> dict:
    """run()'s k_scale/v_scale (Python floats, read here, outside the timed call) for an FP8 cache, else {}."""
    if not inputs.quantized:
        return {}
    return dict(k_scale=float(inputs.k_scale), v_scale=float(inputs.v_scale))


def fp8_note(inputs) -> str:
    return ";kv=fp8_e4m3 (k_scale/v_scale per tensor)" if inputs.quantized else ""


def value_width(spec) -> dict:
    """plan()'s head_dim_vo where the values are narrower than the queries (expanded MLA: 128 beside 192)."""
    return {"head_dim_vo": spec.value_dim} if spec.value_dim != spec.head_dim else {}


def _uniform_pages(spec, inputs):
    """A uniform batch's cache as the paged wrappers take it: (page_size, cache, kv_indptr, kv_indices,
    last_page_len, layout). The spec's pages; or, dense, the [B, Sk] cache as B·Sk pages of one token (no
    copy: one page a sequence, the first form, left FlashInfer no KV split, a page being its unit of work;
    3-6x slower at B = 1 on 8k-128k caches, H100 2026-11-23)."""
    b, device = inputs.q.shape[0], inputs.device
    if spec.page_size is None:
        cache, indices = _token_pages(inputs.k, inputs.v, 0, b * spec.kv_len)
        indptr = torch.arange(b + 1, dtype=torch.int32, device=device) * spec.kv_len
        last_page_len = torch.ones(b, dtype=torch.int32, device=device)
        return 1, cache, indptr, indices, last_page_len, "dense (pages of one token)"
    paged = to_paged(inputs.k, inputs.v, spec.page_size)
    last_page_len = torch.full((b,), paged.last_page_len, dtype=torch.int32, device=device)
    cache, indptr, indices = (paged.k_pages, paged.v_pages), paged.indptr(), paged.block_table.flatten()
    return spec.page_size, cache, indptr, indices, last_page_len, f"paged, page_size={spec.page_size}"


def _token_pages(k, v, first: int, stop: int):
    """A dense cache ([B, Sk, Hkv, D] or packed [Σ Sk, Hkv, D]) read as pages of one token, no copy: the
    (K, V) pages [tokens, 1, Hkv, D] and the page ids of tokens first … stop − 1."""
    hkv, d = k.shape[-2:]
    pages = (k.view(-1, 1, hkv, d), v.view(-1, 1, hkv, d))  # a view: a cache that would need a copy raises
    return pages, torch.arange(first, stop, dtype=torch.int32, device=k.device)


def _with_out(wrapper, run):
    """run(q, out): into `out` where the wrapper's run takes one (a slice of the batch's output), else
    a copy into it, timed with the call (none when out is None)."""
    takes_out = "out" in inspect.signature(wrapper.run).parameters

    def call(q, out):
        if out is None:
            return run(q)
        if takes_out:
            return run(q, out=out)
        return out.copy_(run(q))

    return call
