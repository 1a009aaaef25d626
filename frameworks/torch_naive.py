"""PyTorch naive attention: explicit matmul, fp32 softmax, matmul. GQA folds each group's query heads
into the row dimension, so K and V are read as they are (never repeated). Also the body that
`torch-compile` compiles. A ragged batch runs request by request (a Python loop of naive calls):
the baseline, and said so in backend_info."""

from __future__ import annotations

import torch

from specs import ExperimentSpec

from .base import Backend, Caps, VariantKey, register


def grouped_layout(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, masked: bool, window: int | None = None):
    """q [B, Sq, Hq, D] -> [B, Hkv, Sq·G, D] (row = position·G + group member); k, v -> [B, Hkv, Sk, D];
    and the mask over those rows, [Sq·G, Sk] (True = hidden): bottom-right causal when masked, and keys
    before position − window hidden under a left window (a decode too), or None."""
    b, sq, hq, d = q.shape
    sk, hkv = k.shape[1], k.shape[2]
    g = hq // hkv
    q_grouped = q.view(b, sq, hkv, g, d).permute(0, 2, 1, 3, 4).reshape(b, hkv, sq * g, d).contiguous()
    k_bhsd = k.transpose(1, 2).contiguous()
    v_bhsd = v.transpose(1, 2).contiguous()
    hidden = None
    if masked or window is not None:
        query_pos = torch.arange(sq, device=q.device).repeat_interleave(g) + (sk - sq)
        key_pos = torch.arange(sk, device=q.device)[None, :]
        hidden = key_pos > query_pos[:, None]
        if window is not None:
            hidden |= key_pos < query_pos[:, None] - window
    return q_grouped, k_bhsd, v_bhsd, hidden


def sink_rows(sinks: torch.Tensor | None, heads: int, rows: int) -> torch.Tensor | None:
    """The sink logit of every row of a grouped layout, [1, heads, rows, 1] fp32 (row = position·G + group
    member, so each head's G sinks repeat along the rows), or None."""
    if sinks is None:
        return None
    group = sinks.numel() // heads
    return sinks.float().view(heads, group).repeat(1, rows // group)[None, :, :, None]


def naive_attention(q_grouped, k_bhsd, v_bhsd, hidden, scale: float, out_shape: tuple[int, int, int, int],
                    softcap: float | None = None, sinks: torch.Tensor | None = None):  # fmt: skip
    """Scores, soft-capped (cap · tanh(s / cap)) before the mask; softmax in fp32, with each row's sink
    logit (`sink_rows`) as one more column that carries no value."""
    scores = torch.matmul(q_grouped, k_bhsd.transpose(-1, -2)) * scale  # [B, Hkv, Sq·G, Sk]
    if softcap is not None:
        scores = softcap * torch.tanh(scores / softcap)
    if hidden is not None:
        scores = scores.masked_fill(hidden, float("-inf"))
    if sinks is None:
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(v_bhsd.dtype)
    else:
        column = sinks.expand(scores.shape[0], -1, -1, -1)
        probs = torch.softmax(torch.cat([scores.float(), column], dim=-1), dim=-1)[..., :-1].to(v_bhsd.dtype)
    out = torch.matmul(probs, v_bhsd)  # [B, Hkv, Sq·G, D]
    b, sq, hq, d = out_shape
    return out.view(b, k_bhsd.shape[1], sq, hq // k_bhsd.shape[1], d).permute(0, 2, 1, 3, 4).reshape(out_shape)


def request_views(spec: ExperimentSpec, inputs):
    """Each request of a ragged batch as [1, S, H, D] views of the packed inputs."""
    cq, ck = spec.batch.cu_seqlens_q, spec.batch.cu_seqlens_k
    for i in range(spec.batch.num_requests):
        yield (inputs.q[cq[i] : cq[i + 1]][None], inputs.k[ck[i] : ck[i + 1]][None], inputs.v[ck[i] : ck[i + 1]][None])


def repeated_layout(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, masked: bool, window: int | None = None):
    """As grouped_layout, with K/V to be repeated to every query head (Hugging Face's eager
    attention, `repeat_kv`): q -> [B, Hq, Sq, D] and k, v -> [B, Hkv, Sk, D], repeated in the call."""
    group = q.shape[2] // k.shape[2]
    wide = lambda t: t[:, :, :1].expand(-1, -1, q.shape[2], -1)  # noqa: E731 - only the shapes matter here
    q_heads, _, _, hidden = grouped_layout(q, wide(k), wide(v), masked, window)
    return q_heads, k.transpose(1, 2).contiguous(), v.transpose(1, 2).contiguous(), hidden, group


def repeat_attention(q_heads, k_bhsd, v_bhsd, hidden, group: int, scale: float, out_shape, **form):
    """naive_attention after repeating each K/V head `group` times (the copy is part of the call)."""
    k_all, v_all = (t.repeat_interleave(group, dim=1) for t in (k_bhsd, v_bhsd))
    return naive_attention(q_heads, k_all, v_all, hidden, scale, out_shape, **form)


@register("torch-naive")
class TorchNaive(Backend):
    upstream = "explicit torch.matmul / torch.softmax"
    caps = Caps(ragged=True, devices={"cuda", "cpu"}, windows=True, sinks=True, softcap=True)
    variants = (
        VariantKey(
            "gqa",
            ("grouped", "repeat"),
            "grouped",
            applies=lambda spec: spec.gqa_group > 1,
            help="grouped-query attention by folding each group's query heads into rows (grouped: K/V read "
            "as they are) or by repeating K/V to every query head in the call (repeat: Hugging Face's eager "
            "attention)",
        ),
    )

    def prepare(self, spec, inputs):
        scale = inputs.scale
        repeat = self.choice["gqa"] == "repeat"
        layout = repeated_layout if repeat else grouped_layout
        attend = repeat_attention if repeat else naive_attention
        views = [(inputs.q, inputs.k, inputs.v)] if not inputs.ragged else list(request_views(spec, inputs))
        parts = [(*layout(q, k, v, spec.causal and q.shape[1] > 1, spec.window), tuple(q.shape)) for q, k, v in views]
        heads = spec.num_q_heads if repeat else spec.num_kv_heads
        form = [
            {"softcap": spec.softcap, "sinks": sink_rows(inputs.sinks if spec.sinks else None, heads, p[0].shape[2])}
            for p in parts
        ]
        self._info = {"gqa": "repeat K/V" if repeat else "grouped rows"}
        if not inputs.ragged:
            *args, shape = parts[0]
            return lambda: attend(*args, scale, shape, **form[0])
        self._info["path"] = f"per-request loop of {len(parts)} naive calls (baseline)"
        return lambda: torch.cat([attend(*args, scale, shape, **f)[0] for (*args, shape), f in zip(parts, form)])

    def run_info(self) -> dict:
        return getattr(self, "_info", {})
