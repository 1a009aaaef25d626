"""The fp32 reference and the check every measurement must pass before it is timed."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from frameworks import AttentionInputs
from specs import DType, ExperimentSpec

# ‖out − ref‖ / ‖ref‖ allowed per input dtype: a few units of the format's rounding error.
# A wrong mask (top-left instead of bottom-right causal, a dropped GQA group) lands far above these.
TOLERANCE = {DType.BF16: 2e-2, DType.FP16: 5e-3, DType.FP32: 2e-3}

# fp32 FLOPs spent on the reference per spec: bounds the check at big batches (a slice is checked)
CHECK_FLOP_BUDGET = {"cuda": 4e12, "cpu": 2e10}
# fp32 bytes of one score block [Hq, q_chunk, Sk]: bounds the reference's memory
SCORE_BLOCK_BYTES = 256 * 2**20


def check_indices(spec: ExperimentSpec, device: torch.device) -> list[int]:
    """Batch elements to check: all of them when cheap, else first, last and evenly spaced between."""
    per_sequence = spec.flops / spec.batch_size
    budget = CHECK_FLOP_BUDGET.get(device.type, CHECK_FLOP_BUDGET["cpu"])
    count = max(1, min(spec.batch_size, int(budget // per_sequence)))
    if count == spec.batch_size:
        return list(range(spec.batch_size))
    if count == 1:
        return [spec.batch_size - 1]  # the last element catches batch-stride bugs best
    step = (spec.batch_size - 1) / (count - 1)
    return sorted({round(i * step) for i in range(count)})


def reference_attention(spec: ExperimentSpec, inputs: AttentionInputs, batch_indices: list[int]) -> torch.Tensor:
    """fp32 attention for the given batch elements, [len(batch_indices), Sq, Hq, D], in bounded memory.
    GQA by grouping query heads (no K/V copy); causal is bottom-right aligned."""
    hq, hkv, group, d = spec.num_q_heads, spec.num_kv_heads, spec.gqa_group, spec.head_dim
    q_chunk = max(1, min(spec.q_len, SCORE_BLOCK_BYTES // (4 * hq * spec.kv_len)))
    out = torch.empty(len(batch_indices), spec.q_len, hq, d, dtype=torch.float32, device=inputs.device)
    key_pos = torch.arange(spec.kv_len, device=inputs.device)
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")  # no TF32 in the reference
    try:
        for slot, b in enumerate(batch_indices):
            k = inputs.k[b].float()  # [Sk, Hkv, D]
            v = inputs.v[b].float()
            for start in range(0, spec.q_len, q_chunk):
                stop = min(spec.q_len, start + q_chunk)
                q = inputs.q[b, start:stop].float().view(stop - start, hkv, group, d)
                scores = torch.einsum("qhgd,khd->hgqk", q, k) * inputs.scale
                if spec.is_masked:
                    query_pos = torch.arange(start, stop, device=inputs.device) + spec.causal_offset
                    hidden = key_pos[None, :] > query_pos[:, None]  # [q, Sk]
                    scores.masked_fill_(hidden, float("-inf"))
                probs = torch.softmax(scores, dim=-1)
                o = torch.einsum("hgqk,khd->qhgd", probs, v)
                out[slot, start:stop] = o.reshape(stop - start, hq, d)
    finally:
        torch.set_float32_matmul_precision(previous)
    return out


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
    tolerance = TOLERANCE[spec.dtype]
    expected = (spec.batch_size, spec.q_len, spec.num_q_heads, spec.head_dim)
    if not isinstance(out, torch.Tensor):
        return CheckResult(float("nan"), float("nan"), 0, tolerance, f"output is {type(out).__name__}, not a tensor")
    if tuple(out.shape) != expected:
        return CheckResult(
            float("nan"), float("nan"), 0, tolerance, f"output shape {tuple(out.shape)}, expected {expected}"
        )
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
