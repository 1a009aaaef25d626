"""Deliberately broken backends for the harness tests: each fails in one way the sweep must survive.
Registered only when this module is imported (the sweep worker imports it by the task's module)."""

from __future__ import annotations

import os
import signal
import time

import torch

from frameworks import Backend, Caps, register

ANYWHERE = Caps(devices={"cpu", "cuda"})


def _dense_attention(q, k, v, hidden_from_row_col, scale):
    """fp32 attention with a caller-given mask rule, via the SDPA math kernel."""
    qh, kh, vh = (t.transpose(1, 2).float() for t in (q, k, v))
    sq, sk = q.shape[1], k.shape[1]
    rows = torch.arange(sq)[:, None]
    cols = torch.arange(sk)[None, :]
    visible = ~hidden_from_row_col(rows, cols)
    out = torch.nn.functional.scaled_dot_product_attention(
        qh, kh, vh, attn_mask=visible.to(q.device), scale=scale, enable_gqa=True
    )
    return out.transpose(1, 2).to(q.dtype)


@register("test-top-left")
class TopLeftCausal(Backend):
    """Causal aligned top-left (query i sees keys 0 … i): wrong for append, right for prefill."""

    caps = ANYWHERE

    def prepare(self, spec, inputs):
        if spec.is_masked:
            rule = lambda r, c: c > r
        else:
            rule = lambda r, c: torch.zeros_like(c > r)
        return lambda: _dense_attention(inputs.q, inputs.k, inputs.v, rule, inputs.scale)


@register("test-raises")
class Raises(Backend):
    caps = ANYWHERE

    def prepare(self, spec, inputs):
        def call():
            raise RuntimeError("kernel exploded on purpose")

        return call


@register("test-oom")
class OutOfMemory(Backend):
    caps = ANYWHERE

    def prepare(self, spec, inputs):
        # a real allocation failure: 256 TiB
        return lambda: torch.empty(2**48, dtype=torch.uint8, device=inputs.device)


@register("test-kills-process")
class KillsProcess(Backend):
    caps = ANYWHERE

    def prepare(self, spec, inputs):
        return lambda: os.kill(os.getpid(), signal.SIGKILL)


@register("test-hangs")
class Hangs(Backend):
    caps = ANYWHERE

    def prepare(self, spec, inputs):
        return lambda: time.sleep(3600)


@register("test-missing-library")
class MissingLibrary(Backend):
    library = "attnbench_no_such_library"
    caps = ANYWHERE

    def prepare(self, spec, inputs):
        raise AssertionError("never prepared: the library is missing")


@register("test-declines")
class Declines(Backend):
    caps = ANYWHERE

    def check(self, spec):
        return "head_dim 128 only" if spec.head_dim != 128 else None

    def prepare(self, spec, inputs):
        return lambda: _dense_attention(
            inputs.q, inputs.k, inputs.v, lambda r, c: c > r + spec.causal_offset, inputs.scale
        )
