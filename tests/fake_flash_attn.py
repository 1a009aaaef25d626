"""CPU stand-ins for the FlashAttention entry points the FA2, FA3 and FA4 adapters call (dense K/V), and
for Transformer Engine's DotProductAttention, for testing how the adapters pass the attention forms
(window_size, softcap, learnable_sink; TE's window_size and learnable softmax offset) without a GPU.
Each records its keyword arguments and computes fp32 attention the way the library documents the
arguments (FlashAttention: window_size=(left, right) around the bottom-right diagonal, softcap 0 = off;
FA4: window (None, None) = off, learnable_sink [Hq]). The results are the math, not the libraries':
the GPU tests check the real ones."""

from __future__ import annotations

import types

import torch

from .fake_flashinfer import _attend

calls: list[tuple[str, dict]] = []  # (entry point, keyword arguments) of every call


def _form(kw: dict) -> dict:
    """_attend's form arguments from FlashAttention's keywords."""
    left, right = kw.get("window_size") or (-1, -1)
    left = -1 if left is None else left
    causal = bool(kw.get("causal")) or right == 0  # a (w, 0) window is causal by itself
    return {"causal": causal, "window_left": left, "logits_soft_cap": kw.get("softcap") or None,
            "sinks": kw.get("learnable_sink")}  # fmt: skip


def _record(name: str, kw: dict) -> None:
    """Keep the call's keywords, a sink tensor by its shape."""
    sink = kw.get("learnable_sink")
    calls.append((name, {**kw, "learnable_sink": None if sink is None else tuple(sink.shape)}))


def _bshd(name: str, q, k, v, kw: dict, build_refuses: tuple[str, ...] = ()):
    _record(name, kw)
    if "softcap" in build_refuses and kw.get("softcap"):
        raise RuntimeError("This flash attention build does not support tanh softcapping.")
    form = _form(kw)
    return torch.stack([_attend(q[b], k[b], v[b], **form) for b in range(q.shape[0])]).to(q.dtype)


def _varlen(name: str, q, k, v, cu_q, cu_k, kw: dict):
    _record(name, kw)
    form = _form(kw)
    cu_q, cu_k = cu_q.tolist(), cu_k.tolist()
    parts = [_attend(q[a:b], k[c:e], v[c:e], **form) for a, b, c, e in zip(cu_q, cu_q[1:], cu_k, cu_k[1:])]
    return torch.cat(parts).to(q.dtype)


def flash_attn_2():
    """The `flash_attn` module as the FA2 adapter imports it."""

    def flash_attn_func(q, k, v, **kw):
        return _bshd("fa2.flash_attn_func", q, k, v, kw)

    def flash_attn_with_kvcache(q, k, v, cache_seqlens=None, **kw):
        assert "block_table" not in kw, "the stand-in reads dense caches only"
        return _bshd("fa2.flash_attn_with_kvcache", q, k, v, kw)

    def flash_attn_varlen_func(q, k, v, cu_q, cu_k, **kw):
        return _varlen("fa2.flash_attn_varlen_func", q, k, v, cu_q, cu_k, kw)

    return types.SimpleNamespace(flash_attn_func=flash_attn_func, flash_attn_with_kvcache=flash_attn_with_kvcache,
                                 flash_attn_varlen_func=flash_attn_varlen_func)  # fmt: skip


def flash_attn_3(build_refuses: tuple[str, ...] = ()):
    """`flash_attn_interface` (FA3): returns (out, lse) as FA3 does; `build_refuses` ('softcap') stands for a
    wheel built without soft-capping, which refuses at its first call."""

    def flash_attn_func(q, k, v, **kw):
        return _bshd("fa3.flash_attn_func", q, k, v, kw, build_refuses), None

    def flash_attn_with_kvcache(q, k, v, cache_seqlens=None, page_table=None, **kw):
        assert page_table is None, "the stand-in reads dense caches only"
        return _bshd("fa3.flash_attn_with_kvcache", q, k, v, kw, build_refuses), None

    def flash_attn_varlen_func(q, k, v, cu_q, cu_k, num_splits=1, **kw):
        return _varlen("fa3.flash_attn_varlen_func", q, k, v, cu_q, cu_k, kw), None

    return types.SimpleNamespace(flash_attn_func=flash_attn_func, flash_attn_with_kvcache=flash_attn_with_kvcache,
                                 flash_attn_varlen_func=flash_attn_varlen_func)  # fmt: skip


def flash_attn_4():
    """`flash_attn.cute` (FA4) with its interface's keywords: window_size=(None, None) off, learnable_sink,
    softcap=0.0 off; returns (out, lse)."""

    def flash_attn_func(q, k, v, softmax_scale=None, causal=False, window_size=(None, None), learnable_sink=None,
                        softcap=0.0, num_splits=1, pack_gqa=None, return_lse=False):  # fmt: skip
        kw = dict(causal=causal, window_size=window_size, learnable_sink=learnable_sink, softcap=softcap,
                  num_splits=num_splits)  # fmt: skip
        return _bshd("fa4.flash_attn_func", q, k, v, kw), None

    def flash_attn_varlen_func(q, k, v, cu_seqlens_q=None, cu_seqlens_k=None, max_seqlen_q=None, max_seqlen_k=None,
                               softmax_scale=None, causal=False, softcap=None, window_size=(None, None),
                               learnable_sink=None, num_splits=1):  # fmt: skip
        kw = dict(causal=causal, window_size=window_size, learnable_sink=learnable_sink, softcap=softcap)
        return _varlen("fa4.flash_attn_varlen_func", q, k, v, cu_seqlens_q, cu_seqlens_k, kw), None

    return types.SimpleNamespace(flash_attn_func=flash_attn_func, flash_attn_varlen_func=flash_attn_varlen_func)


class DotProductAttention(torch.nn.Module):
    """transformer_engine.pytorch.DotProductAttention for qkv_format bshd: attn_mask_type no_mask, causal or
    causal_bottom_right, window_size=(left, 0), softmax_type vanilla or learnable (a softmax_offset
    parameter [1, Hq, 1, 1] that is each head's sink)."""

    def __init__(self, num_attention_heads, kv_channels, num_gqa_groups=None, attention_dropout=0.0,
                 qkv_format="sbhd", attn_mask_type="causal", window_size=None, softmax_type="vanilla"):  # fmt: skip
        super().__init__()
        assert qkv_format == "bshd", "the stand-in takes bshd only"
        assert softmax_type in ("vanilla", "off-by-one", "learnable")
        calls.append(("te.DotProductAttention", dict(attn_mask_type=attn_mask_type, window_size=window_size,
                                                     softmax_type=softmax_type)))  # fmt: skip
        self.mask, self.window, self.softmax_type = attn_mask_type, window_size, softmax_type
        if softmax_type == "learnable":
            self.softmax_offset = torch.nn.Parameter(torch.zeros(1, num_attention_heads, 1, 1))

    def forward(self, q, k, v, **_):
        if self.window is not None:
            assert self.mask in ("causal", "causal_bottom_right"), "a window needs a causal mask type"
        causal = self.mask in ("causal", "causal_bottom_right")
        if self.mask == "causal":
            assert q.shape[1] == k.shape[1], "TE's causal is top-left: only for Sq == Sk"
        sinks = self.softmax_offset.detach().flatten() if self.softmax_type == "learnable" else None
        left = -1 if self.window is None else self.window[0]
        out = torch.stack([_attend(q[b], k[b], v[b], causal, left, None, sinks) for b in range(q.shape[0])])
        return out.to(q.dtype).flatten(2)


def transformer_engine():
    return types.SimpleNamespace(DotProductAttention=DotProductAttention)
