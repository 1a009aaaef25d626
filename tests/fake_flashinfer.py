"""A CPU stand-in for the three FlashInfer wrappers the adapter plans and runs, for testing the
adapter's plumbing (indptr, page indices, last-page lengths, the split of a mixed batch, output
slices) without a GPU. It checks its inputs the way FlashInfer documents them (int32 CSR offsets
from 0, 1 ≤ last page length ≤ page size, page ids inside the cache, NHD layout) and computes plain
fp32 attention per request, bottom-right causal, GQA by head // group. Its results are the math, not
FlashInfer's: the GPU conformance tests check the real library."""

from __future__ import annotations

import torch

calls: list[tuple[str, int]] = []  # (wrapper, requests) of every run, for the tests


def _attend(q, k, v, causal: bool, window_left: int = -1, logits_soft_cap=None, sinks=None) -> torch.Tensor:
    """q [Sq, Hq, D], k/v [Sk, Hkv, D] -> [Sq, Hq, D] in fp32; window_left keeps keys p − window_left … p
    for the query at key position p (bottom-right), logits_soft_cap bends the scores, sinks [Hq] join
    each row's denominator."""
    sq, hq, d = q.shape
    sk, hkv = k.shape[0], k.shape[1]
    kk = k.float().repeat_interleave(hq // hkv, dim=1)
    vv = v.float().repeat_interleave(hq // hkv, dim=1)
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

    def plan(self, qo_indptr, kv_indptr, num_qo_heads, num_kv_heads, head_dim, causal=False, **kw):
        self.qo, self.kv, self.causal, self.form = qo_indptr, kv_indptr, causal, _form(**kw)

    def run(self, q, k, v, out=None):
        qo, kv = _offsets("qo_indptr", self.qo, q.shape[0]), _offsets("kv_indptr", self.kv, k.shape[0])
        calls.append(("ragged-prefill", len(qo) - 1))
        parts = [
            _attend(q[a:b], k[c:e], v[c:e], self.causal, **self.form) for a, b, c, e in zip(qo, qo[1:], kv, kv[1:])
        ]
        return _finish(torch.cat(parts), q, out)


class BatchPrefillWithPagedKVCacheWrapper(_Paged):
    def __init__(self, workspace, kv_layout="NHD"):
        assert kv_layout == "NHD"

    def plan(self, qo_indptr, indptr, indices, last, num_qo_heads, num_kv_heads, head_dim, page_size, causal=False,
             **kw):  # fmt: skip
        self.qo, self.causal, self.form = qo_indptr, causal, _form(**kw)
        self._plan_pages(indptr, indices, last, page_size)

    def run(self, q, cache, out=None, sinks=None):
        qo = _offsets("qo_indptr", self.qo, q.shape[0])
        assert len(qo) == len(self.indptr), "one qo range a request"
        calls.append((self.name, len(qo) - 1))
        parts = [_attend(q[a:b], *self._request_kv(cache, i), self.causal, **self.form, sinks=sinks)
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

    def plan(self, indptr, indices, last, num_qo_heads, num_kv_heads, head_dim, page_size, **kw):
        self.form = _form(**kw)
        self._plan_pages(indptr, indices, last, page_size)

    def run(self, q, cache, out=None):
        assert q.dim() == 3 and q.shape[0] == len(self.indptr) - 1, "decode: q is [requests, Hq, D]"
        calls.append(("decode", q.shape[0]))
        parts = [_attend(q[i : i + 1], *self._request_kv(cache, i), False, **self.form) for i in range(q.shape[0])]
        return _finish(torch.cat(parts), q, out)


class BatchAttention:
    """The holistic wrapper: pages (any mix of prefill, chunk and decode requests) with per-request KV
    lengths instead of last-page lengths; run returns (out, lse)."""

    def __init__(self, kv_layout="NHD", device="cuda"):
        assert kv_layout == "NHD"

    def plan(self, qo_indptr, kv_indptr, kv_indices, kv_len_arr, num_qo_heads, num_kv_heads, head_dim_qk,
             head_dim_vo, page_size, causal=False, **_):  # fmt: skip
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
