"""The fp32 reference and the check every measurement must pass before it is timed."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from frameworks import AttentionInputs
from frameworks._fp8 import dequantize
from specs import DType, ExperimentSpec

# ‖out − ref‖ / ‖ref‖ allowed per input dtype: a few units of the format's rounding error.
# A wrong mask (top-left instead of bottom-right causal, a dropped GQA group) lands far above these.
TOLERANCE = {DType.BF16: 2e-2, DType.FP16: 5e-3, DType.FP32: 2e-3}
# FP8 attention (Q, K and V in e4m3): the kernel also rounds P to e4m3 before P·V (FA3), a few percent
FP8_ATTENTION_TOLERANCE = 6e-2

# fp32 FLOPs spent on the reference per spec: bounds the check at big batches (a slice is checked)
CHECK_FLOP_BUDGET = {"cuda": 4e12, "cpu": 2e10}
# fp32 bytes of one score block [Hq, q_chunk, Sk]: bounds the reference's memory
SCORE_BLOCK_BYTES = 256 * 2**20


def check_indices(spec: ExperimentSpec, device: torch.device) -> list[int]:
    """Requests (batch elements) to check: all of them when cheap, else a bounded sample. Uniform:
    first, last and evenly spaced between (the last catches batch-stride bugs best). Ragged: the
    shortest and the longest request always, then evenly spaced others while the budget lasts."""
    budget = CHECK_FLOP_BUDGET.get(device.type, CHECK_FLOP_BUDGET["cpu"])
    batch = spec.batch
    per_pair = 2 * (spec.head_dim + spec.value_dim) * spec.num_q_heads
    per_request = [per_pair * (q * k if not spec.causal else q * k - q * (q - 1) // 2)
                   for q, k in zip(batch.q_lens, batch.kv_lens)]  # fmt: skip
    n = batch.num_requests
    if sum(per_request) <= budget:
        return list(range(n))
    if not spec.is_ragged:
        count = max(1, int(budget // per_request[0]))
        if count == 1:
            return [n - 1]
        step = (n - 1) / (count - 1)
        return sorted({round(i * step) for i in range(count)})
    by_length = sorted(range(n), key=lambda i: (batch.kv_lens[i], batch.q_lens[i]))
    picked = {by_length[0], by_length[-1]}
    spent = sum(per_request[i] for i in picked)
    for i in range(0, n, max(1, n // 16)):
        if i not in picked and spent + per_request[i] <= budget:
            picked.add(i)
            spent += per_request[i]
    return sorted(picked)


def _request_reference(q, k, v, scale: float, masked: bool, group: int, window: int | None = None,
                       sinks: torch.Tensor | None = None, softcap: float | None = None) -> torch.Tensor:  # fmt: skip
    """fp32 attention of one request: q [Sq, Hq, D], k [Sk, Hkv, D], v [Sk, Hkv, Dv] -> [Sq, Hq, Dv] (Dv = D
    but for MLA, whose values may be narrower: absorbed MLA is Hkv = 1 with v the latent's first columns,
    scores over all 576, values over 512), bottom-right causal when masked, the score block bounded by
    SCORE_BLOCK_BYTES. The forms: scores soft-capped (softcap · tanh(s / softcap)) before masking; a left
    window hides keys before p − window for the query at key position p; a sink (sinks [Hq], fp32) is one
    more logit in each row's softmax with no value, so the row's weights over the real keys sum to less
    than one."""
    sq, hq, d = q.shape
    sk, hkv, dv = k.shape[0], k.shape[1], v.shape[-1]
    k, v = k.float(), v.float()
    q_chunk = max(1, min(sq, SCORE_BLOCK_BYTES // (4 * hq * sk)))
    out = torch.empty(sq, hq, dv, dtype=torch.float32, device=q.device)
    key_pos = torch.arange(sk, device=q.device)
    for start in range(0, sq, q_chunk):
        stop = min(sq, start + q_chunk)
        block = q[start:stop].float().view(stop - start, hkv, group, d)
        scores = torch.einsum("qhgd,khd->hgqk", block, k) * scale
        if softcap is not None:
            scores = softcap * torch.tanh(scores / softcap)
        query_pos = torch.arange(start, stop, device=q.device) + (sk - sq)
        if masked:
            scores.masked_fill_(key_pos[None, :] > query_pos[:, None], float("-inf"))
        if window is not None:
            scores.masked_fill_(key_pos[None, :] < query_pos[:, None] - window, float("-inf"))
        if sinks is None:
            probs = torch.softmax(scores, dim=-1)
        else:
            sink = sinks.float().view(hkv, group, 1, 1).expand(hkv, group, stop - start, 1)
            probs = torch.softmax(torch.cat([scores, sink], dim=-1), dim=-1)[..., :-1]
        out[start:stop] = torch.einsum("hgqk,khd->qhgd", probs, v).reshape(stop - start, hq, dv)
    return out


def _form(spec: ExperimentSpec, inputs: AttentionInputs) -> dict:
    """_request_reference's window, sinks and soft-cap arguments of the spec."""
    return {"window": spec.window, "sinks": inputs.sinks if spec.sinks else None, "softcap": spec.softcap}


def reference_attention(spec: ExperimentSpec, inputs: AttentionInputs, batch_indices: list[int]) -> torch.Tensor:
    """fp32 attention of the given requests, in bounded memory: [len(batch_indices), Sq, Hq, D] for a
    uniform batch, their packed rows [Σ q_len, Hq, D] for a ragged one. GQA by grouping query heads
    (no K/V copy); causal is bottom-right aligned within each request; the spec's window, sinks
    (inputs.sinks) and soft-cap as `_request_reference` says. FP8 inputs are dequantized to fp32 request by
    request (an FP8 cache is judged against the fp32 attention of what it holds); MLA's values have a width
    of their own (absorbed MLA's are the latent's first kv_lora_rank columns)."""
    if spec.sinks and inputs.sinks is None:
        raise ValueError("the spec has sinks but the inputs carry none (make_inputs draws them)")
    quantized = inputs.quantized or inputs.q_scale is not None
    form = _form(spec, inputs)
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")  # no TF32 in the reference
    try:
        outs = []
        for b in batch_indices:
            if inputs.ragged:
                cq, ck = spec.batch.cu_seqlens_q, spec.batch.cu_seqlens_k
                q, k, v = inputs.q[cq[b] : cq[b + 1]], inputs.k[ck[b] : ck[b + 1]], inputs.v[ck[b] : ck[b + 1]]
            else:
                q, k, v = inputs.q[b], inputs.k[b], inputs.v[b]
            if quantized:
                scales = (inputs.q_scale, inputs.k_scale, inputs.v_scale)
                q, k, v = (dequantize(t, scale) for t, scale in zip((q, k, v), scales))
            masked = spec.causal and q.shape[0] > 1
            outs.append(_request_reference(q, k, v, inputs.scale, masked, spec.gqa_group, **form))
    finally:
        torch.set_float32_matmul_precision(previous)
    return torch.cat(outs) if inputs.ragged else torch.stack(outs)


def relative_error(spec: ExperimentSpec, out: torch.Tensor, reference: torch.Tensor, batch_indices: list[int]) -> float:
    """‖out − reference‖ / ‖reference‖ over the checked requests (for the second check column)."""
    if spec.is_ragged:
        cq = spec.batch.cu_seqlens_q
        got = torch.cat([out[cq[b] : cq[b + 1]] for b in batch_indices]).float()
    else:
        got = out[batch_indices].float()
    return ((got - reference).norm() / reference.norm().clamp_min(1e-30)).item()


@dataclass(frozen=True)
class CheckResult:
    rel_err: float  # ‖out − ref‖ / ‖ref‖ over the checked slice
    max_abs_err: float
    checked_batch: int  # batch elements compared
    tolerance: float
    problem: str | None  # why the output is wrong, or None

    @property
    def ok(self) -> bool:
        return self.problem is None


def check_output(
    spec: ExperimentSpec, out: torch.Tensor, reference: torch.Tensor, batch_indices: list[int]
) -> CheckResult:
    tolerance = FP8_ATTENTION_TOLERANCE if spec.fp8_attention else TOLERANCE[spec.dtype]
    if spec.is_ragged:
        expected = (spec.batch.total_q, spec.num_q_heads, spec.value_dim)
    else:
        expected = (spec.batch_size, spec.q_len, spec.num_q_heads, spec.value_dim)
    if not isinstance(out, torch.Tensor):
        return CheckResult(float("nan"), float("nan"), 0, tolerance, f"output is {type(out).__name__}, not a tensor")
    if tuple(out.shape) != expected:
        return CheckResult(
            float("nan"), float("nan"), 0, tolerance, f"output shape {tuple(out.shape)}, expected {expected}"
        )
    if spec.is_ragged:
        cq = spec.batch.cu_seqlens_q
        got = torch.cat([out[cq[b] : cq[b + 1]] for b in batch_indices]).float()
    else:
        got = out[batch_indices].float()
    diff = got - reference
    rel = (diff.norm() / reference.norm().clamp_min(1e-30)).item()
    max_abs = diff.abs().max().item()
    if not torch.isfinite(got).all():
        problem = "output has NaN or Inf"
    elif not rel <= tolerance:
        problem = f"relative error {rel:.3g} exceeds {tolerance:g} for {spec.dtype}"
    else:
        problem = None
    return CheckResult(rel, max_abs, len(batch_indices), tolerance, problem)
