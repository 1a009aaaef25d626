"""A CPU stand-in for the three FlashInfer wrappers the adapter plans and runs, for testing the
adapter's plumbing (indptr, page indices, last-page lengths, the split of a mixed batch, output
slices) without a GPU. It checks its inputs the way FlashInfer documents them (int32 CSR offsets
from 0, 1 ≤ last page length ≤ page size, page ids inside the cache, NHD layout) and computes plain
fp32 attention per request, bottom-right causal, GQA by head // group. Its results are the math, not
FlashInfer's: the GPU conformance tests check the real library. FP8 caches: plan's kv_data_type must be the
cache's dtype and run's k_scale/v_scale scale it back; the MLA wrapper (`mla.BatchMLAPagedAttentionWrapper`)
checks its q_nope/q_pe/ckv/kpe shapes and the CSR of its pages."""

from __future__ import annotations

import types

import torch

calls: list[tuple[str, int]] = []  # (wrapper, requests) of every run, for the tests


def _attend(q, k, v, causal: bool, window_left: int = -1, logits_soft_cap=None, sinks=None, k_scale: float = 1.0,
            v_scale: float = 1.0) -> torch.Tensor:  # fmt: skip
    """q [Sq, Hq, D], k/v [Sk, Hkv, D] (v may be narrower) -> [Sq, Hq, Dv] in fp32; K and V times their scales;
    window_left keeps keys p − window_left … p for the query at key position p (bottom-right),
    logits_soft_cap bends the scores, sinks [Hq] join each row's denominator."""
    sq, hq, d = q.shape
    sk, hkv = k.shape[0], k.shape[1]
    kk = k.float().repeat_interleave(hq // hkv, dim=1) * k_scale
    vv = v.float().repeat_interleave(hq // hkv, dim=1) * v_scale
    scores = torch.einsum("qhd,khd->hqk", q.float(), kk) * d**-0.5
    if logits_soft_cap:
        scores = logits_soft_cap * torch.tanh(scores / logits_soft_cap)
    position = torch.arange(sq)[:, None] + (sk - sq)
    if causal:
        scores = scores.masked_fill(torch.arange(sk)[None, :] > position, float("-inf"))
    if window_left >= 0:
        scores = scores.masked_fill(torch.arange(sk)[None, :] < position - window_left, float("-inf"))
    if sinks is None:
        return torch.einsum("hqk,khd->qhd", scores.softmax(-1), vv)
    column = sinks.float()[:, None, None].expand(hq, sq, 1)
    probs = torch.cat([scores, column], dim=-1).softmax(-1)[..., :-1]
    return torch.einsum("hqk,khd->qhd", probs, vv)


def _form(window_left=-1, logits_soft_cap=None, **_) -> dict:
    """The forms a plan() was given (what a wrapper that was not planned with them leaves at the defaults)."""
    return {"window_left": window_left, "logits_soft_cap": logits_soft_cap}


def _offsets(name: str, t: torch.Tensor, total: int | None = None) -> list[int]:
    assert t.dtype == torch.int32, f"{name} must be int32, got {t.dtype}"
    values = t.tolist()
    assert values[0] == 0 and values == sorted(values), f"{name} must start at 0 and not decrease: {values}"
    assert total is None or values[-1] == total, f"{name} ends at {values[-1]}, the tensor holds {total}"
    return values


def _scales(plan_kv_dtype, cache_dtype, k_scale, v_scale) -> dict:
    """run()'s scales, after checking the cache is of the dtype plan() was told (an FP8 cache needs both scales)."""
    assert plan_kv_dtype in (None, cache_dtype), f"plan said kv_data_type={plan_kv_dtype}, the cache is {cache_dtype}"
    if cache_dtype == torch.float8_e4m3fn:
        assert isinstance(k_scale, float) and isinstance(v_scale, float), "an FP8 cache needs k_scale and v_scale"
    return dict(k_scale=1.0 if k_scale is None else k_scale, v_scale=1.0 if v_scale is None else v_scale)


def _finish(result: torch.Tensor, like: torch.Tensor, out):
    result = result.to(like.dtype)
    if out is None:
        return result
    assert out.shape == result.shape and out.is_contiguous(), "out must be a contiguous tensor of q's shape"
    return out.copy_(result)


class _Paged:
    def _plan_pages(self, indptr, indices, last, page_size):
        self.indptr = _offsets("kv_indptr", indptr, indices.numel())
        assert indices.dtype == torch.int32 and last.dtype == torch.int32
        self.indices, self.last, self.page_size = indices.long(), last.tolist(), page_size
        assert all(1 <= n <= page_size for n in self.last), f"last page lengths out of 1…{page_size}: {self.last}"

    def _request_kv(self, cache, i):
        k_pages, v_pages = cache
        assert k_pages.shape[1] == self.page_size, "NHD pages: [num_pages, page_size, Hkv, D]"
        pages = self.indices[self.indptr[i] : self.indptr[i + 1]]
        assert int(pages.max()) < k_pages.shape[0], "a page id past the cache"
        n = (len(pages) - 1) * self.page_size + self.last[i]
        return k_pages[pages].flatten(0, 1)[:n], v_pages[pages].flatten(0, 1)[:n]


class BatchPrefillWithRaggedKVCacheWrapper:
    def __init__(self, workspace, kv_layout="NHD"):
        assert kv_layout == "NHD"

    def plan(self, qo_indptr, kv_indptr, num_qo_heads, num_kv_heads, head_dim, head_dim_vo=None, causal=False, **kw):
        self.qo, self.kv, self.causal, self.form = qo_indptr, kv_indptr, causal, _form(**kw)
        self.head_dim_vo = head_dim_vo or head_dim

    def run(self, q, k, v, out=None):
        qo, kv = _offsets("qo_indptr", self.qo, q.shape[0]), _offsets("kv_indptr", self.kv, k.shape[0])
        assert v.shape[-1] == self.head_dim_vo, f"v is {v.shape[-1]} wide, plan said head_dim_vo={self.head_dim_vo}"
        calls.append(("ragged-prefill", len(qo) - 1))
        parts = [
            _attend(q[a:b], k[c:e], v[c:e], self.causal, **self.form) for a, b, c, e in zip(qo, qo[1:], kv, kv[1:])
        ]
        return _finish(torch.cat(parts), q, out)


class BatchPrefillWithPagedKVCacheWrapper(_Paged):
    def __init__(self, workspace, kv_layout="NHD"):
        assert kv_layout == "NHD"

    def plan(self, qo_indptr, indptr, indices, last, num_qo_heads, num_kv_heads, head_dim, page_size, causal=False,
             kv_data_type=None, **kw):  # fmt: skip
        self.qo, self.causal, self.kv_data_type, self.form = qo_indptr, causal, kv_data_type, _form(**kw)
        self._plan_pages(indptr, indices, last, page_size)

    def run(self, q, cache, out=None, sinks=None, k_scale=None, v_scale=None):
        qo = _offsets("qo_indptr", self.qo, q.shape[0])
        assert len(qo) == len(self.indptr), "one qo range a request"
        scales = _scales(self.kv_data_type, cache[0].dtype, k_scale, v_scale)
        calls.append((self.name, len(qo) - 1))
        parts = [_attend(q[a:b], *self._request_kv(cache, i), self.causal, **self.form, sinks=sinks, **scales)
                 for i, (a, b) in enumerate(zip(qo, qo[1:]))]  # fmt: skip
        return _finish(torch.cat(parts), q, out)

    name = "paged-prefill"


class BatchAttentionWithAttentionSinkWrapper(BatchPrefillWithPagedKVCacheWrapper):
    """The paged prefill wrapper whose kernel adds a sink a head: built for a window (window_left >= 0) or
    not, planned with the window, run(q, cache, sinks, sm_scale) with the sinks fp32 [Hq]."""

    name = "attention-sink"

    def __init__(self, workspace, kv_layout="NHD", q_data_type=None, kv_data_type=None, head_dim_qk=128,
                 head_dim_vo=128, window_left=-1, **_):  # fmt: skip
        assert kv_layout == "NHD" and head_dim_qk == head_dim_vo
        self.built_window, self.head_dim = window_left, head_dim_qk

    def plan(self, *args, **kw):
        assert "logits_soft_cap" not in kw, "the sink kernel takes no soft-cap"
        super().plan(*args, **kw)
        assert self.form["window_left"] == self.built_window, "plan's window_left must be the one it was built with"

    def run(self, q, cache, sinks, sm_scale, out=None):
        assert sinks.dtype == torch.float32 and sinks.shape == (q.shape[1],), "sinks: fp32 [Hq]"
        assert abs(sm_scale - self.head_dim**-0.5) < 1e-9, "sm_scale: 1/sqrt(head_dim)"
        return super().run(q, cache, out=out, sinks=sinks)


class BatchDecodeWithPagedKVCacheWrapper(_Paged):
    def __init__(self, workspace, kv_layout="NHD", use_tensor_cores=False):
        assert kv_layout == "NHD"

    def plan(self, indptr, indices, last, num_qo_heads, num_kv_heads, head_dim, page_size, kv_data_type=None, **kw):
        self.kv_data_type, self.form = kv_data_type, _form(**kw)
        self._plan_pages(indptr, indices, last, page_size)

    def run(self, q, cache, out=None, k_scale=None, v_scale=None):
        assert q.dim() == 3 and q.shape[0] == len(self.indptr) - 1, "decode: q is [requests, Hq, D]"
        scales = _scales(self.kv_data_type, cache[0].dtype, k_scale, v_scale)
        calls.append(("decode", q.shape[0]))
        parts = [_attend(q[i : i + 1], *self._request_kv(cache, i), False, **self.form, **scales)
                 for i in range(q.shape[0])]  # fmt: skip
        return _finish(torch.cat(parts), q, out)


planned_workspace_bytes = 0  # the float workspace BatchAttention was planned with


class BatchAttention:
    """The holistic wrapper: pages (any mix of prefill, chunk and decode requests) with per-request KV
    lengths instead of last-page lengths; run returns (out, lse)."""

    def __init__(self, kv_layout="NHD", device="cuda"):
        assert kv_layout == "NHD"
        self.float_workspace_buffer = torch.empty(256, dtype=torch.uint8)  # FlashInfer 0.7.2's own: 384 MiB

    def plan(self, qo_indptr, kv_indptr, kv_indices, kv_len_arr, num_qo_heads, num_kv_heads, head_dim_qk,
             head_dim_vo, page_size, causal=False, **_):  # fmt: skip
        global planned_workspace_bytes
        planned_workspace_bytes = self.float_workspace_buffer.numel()
        self.qo, self.causal, self.page_size = qo_indptr, causal, page_size
        self.indptr = _offsets("kv_indptr", kv_indptr, kv_indices.numel())
        assert kv_len_arr.dtype == torch.int32 and kv_indices.dtype == torch.int32
        self.indices, self.kv_lens = kv_indices.long(), kv_len_arr.tolist()
        for i, n in enumerate(self.kv_lens):
            pages = self.indptr[i + 1] - self.indptr[i]
            assert (pages - 1) * page_size < n <= pages * page_size, f"request {i}: {n} keys on {pages} pages"

    def run(self, q, cache, out=None):
        qo = _offsets("qo_indptr", self.qo, q.shape[0])
        assert len(qo) == len(self.indptr), "one qo range a request"
        calls.append(("batch-attention", len(qo) - 1))
        k_pages, v_pages = cache
        assert k_pages.shape[1] == self.page_size, "NHD pages: [num_pages, page_size, Hkv, D]"
        parts = []
        for i, (a, b) in enumerate(zip(qo, qo[1:])):
            pages = self.indices[self.indptr[i] : self.indptr[i + 1]]
            n = self.kv_lens[i]
            k, v = k_pages[pages].flatten(0, 1)[:n], v_pages[pages].flatten(0, 1)[:n]
            parts.append(_attend(q[a:b], k, v, self.causal))
        result = _finish(torch.cat(parts), q, out)
        return result, torch.zeros(q.shape[0], q.shape[1])


class BatchMLAPagedAttentionWrapper:
    """Absorbed MLA: q_nope [T, H, ckv] and q_pe [T, H, kpe] against the latent pages ckv [P, page, ckv] and
    kpe [P, page, kpe] (run's argument order); scores over both parts times sm_scale, values the ckv part."""

    def __init__(self, float_workspace_buffer, use_cuda_graph=False, backend="auto"):
        assert float_workspace_buffer.dtype == torch.uint8

    def plan(self, qo_indptr, kv_indptr, kv_indices, kv_len_arr, num_heads, head_dim_ckv, head_dim_kpe, page_size,
             causal, sm_scale, q_data_type, kv_data_type, use_profiler=False):  # fmt: skip
        self.indptr = _offsets("kv_indptr", kv_indptr, kv_indices.numel())
        assert kv_len_arr.dtype == torch.int32 and kv_indices.dtype == torch.int32 and qo_indptr.dtype == torch.int32
        self.qo, self.indices, self.kv_lens = qo_indptr, kv_indices.long(), kv_len_arr.tolist()
        self.heads, self.dims, self.page_size = num_heads, (head_dim_ckv, head_dim_kpe), page_size
        self.causal, self.sm_scale, self.types = causal, sm_scale, (q_data_type, kv_data_type)
        for i, n in enumerate(self.kv_lens):
            pages = self.indptr[i + 1] - self.indptr[i]
            assert (pages - 1) * page_size < n <= pages * page_size, f"request {i}: {n} keys on {pages} pages"

    def run(self, q_nope, q_pe, ckv_cache, kpe_cache, out=None, lse=None, return_lse=False):
        qo = _offsets("qo_indptr", self.qo, q_nope.shape[0])
        assert q_nope.is_contiguous() and q_pe.is_contiguous(), "q_nope and q_pe: contiguous [T, H, D]"
        assert q_nope.shape[1:] == (self.heads, self.dims[0]) and q_pe.shape[1:] == (self.heads, self.dims[1])
        assert ckv_cache.dim() == 3 and ckv_cache.shape[1:] == (self.page_size, self.dims[0]), "ckv: [P, page, ckv]"
        assert kpe_cache.dim() == 3 and kpe_cache.shape[1:] == (self.page_size, self.dims[1]), "kpe: [P, page, kpe]"
        assert (q_nope.dtype, ckv_cache.dtype) == self.types, "the dtypes plan() was told"
        calls.append(("mla", len(qo) - 1))
        parts = []
        for i, (a, b) in enumerate(zip(qo, qo[1:])):
            pages = self.indices[self.indptr[i] : self.indptr[i + 1]]
            n = self.kv_lens[i]
            ckv, kpe = ckv_cache[pages].flatten(0, 1)[:n].float(), kpe_cache[pages].flatten(0, 1)[:n].float()
            scores = (torch.einsum("qhd,kd->hqk", q_nope[a:b].float(), ckv)
                      + torch.einsum("qhd,kd->hqk", q_pe[a:b].float(), kpe)) * self.sm_scale  # fmt: skip
            if self.causal:
                sq = b - a
                visible = torch.arange(n)[None, :] <= torch.arange(sq)[:, None] + (n - sq)
                scores = scores.masked_fill(~visible, float("-inf"))
            parts.append(torch.einsum("hqk,kd->qhd", scores.softmax(-1), ckv))
        return _finish(torch.cat(parts), q_nope, out)


mla = types.SimpleNamespace(BatchMLAPagedAttentionWrapper=BatchMLAPagedAttentionWrapper)
