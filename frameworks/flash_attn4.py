"""FlashAttention-4 (`flash_attn.cute`, the CuTe DSL build; Hopper and Blackwell): `flash_attn_func`
for prefill, append (causal is bottom-right) and decode, dense K/V; ragged batches through
`flash_attn_varlen_func` (cu_seqlens_q / cu_seqlens_k). FA4 has no general split-KV
(FlashDecoding) on sm90, so decode there runs one split; on Blackwell FA4's own heuristic picks the
split. The split that ran is in backend_info.
Upstream: https://github.com/Dao-AILab/flash-attention/tree/main/flash_attn/cute"""

from __future__ import annotations

from specs import DType, Workload

from .base import Backend, Caps, first_output, register


def fa4_splits(workload: Workload, compute_capability: tuple[int, int]) -> int:
    """num_splits for flash_attn_func: 1 (no split) except decode off sm90, where 0 asks FA4's heuristic."""
    if workload is Workload.DECODE and compute_capability[0] != 9:
        return 0
    return 1


@register("flash-attn4")
class FlashAttn4(Backend):
    library = "flash_attn.cute"
    min_compute_capability = (9, 0)
    upstream = "flash_attn.cute.flash_attn_func (FA4, CuTe DSL)"
    distribution = "flash-attn-4"
    # 192: DeepSeek's expanded MLA prefill (q/k 192, v 128); the library refuses it on GPUs without that kernel
    caps = Caps(dtypes={DType.BF16, DType.FP16}, head_dims={64, 96, 128, 192}, ragged=True, mla={"mla-expanded"})

    def supports(self, spec):
        if spec.kv_dtype:
            return "kv_dtype fp8_e4m3: FA4 has no FP8 attention on sm90 (none is wired here for other GPUs)"
        return super().supports(spec)

    def check(self, spec):
        if spec.head_dim == 192 and spec.value_dim != 128:
            return "head_dim 192: FA4 takes it with values of 128 only (DeepSeek's expanded MLA)"
        return None

    def availability(self, device):
        reason = super().availability(device)
        if reason and "flash_attn.cute" in reason:
            shadow = _shadowing_flash_attn2()
            if shadow:
                reason += f" ({shadow})"
        return reason

    def prepare(self, spec, inputs):
        import torch
        from flash_attn.cute import flash_attn_func

        q, k, v, causal = inputs.q, inputs.k, inputs.v, spec.is_masked
        if spec.form == "mla-expanded":
            _probe_value_width(flash_attn_func, inputs)
        if inputs.ragged:
            import inspect

            from flash_attn.cute import flash_attn_varlen_func

            batch = spec.batch
            wanted = dict(cu_seqlens_q=inputs.cu_seqlens_q, cu_seqlens_k=inputs.cu_seqlens_k, max_seqlen_q=batch.max_q,
                          max_seqlen_k=batch.max_kv, causal=spec.causal, num_splits=1)  # fmt: skip
            accepted = inspect.signature(flash_attn_varlen_func).parameters
            kw = {name: value for name, value in wanted.items() if name in accepted}
            self._info = "flash_attn_varlen_func;num_splits=1"
            return lambda: first_output(flash_attn_varlen_func(q, k, v, **kw))
        splits = fa4_splits(spec.workload, torch.cuda.get_device_capability(q.device))
        self._info = f"num_splits={'auto' if splits == 0 else splits}"
        return lambda: first_output(flash_attn_func(q, k, v, causal=causal, num_splits=splits))

    def run_info(self) -> str:
        return getattr(self, "_info", "")


def _probe_value_width(attention, inputs) -> None:
    """One token through FA4 with values narrower than the queries (192/128): where this FA4 or GPU has no
    such kernel it refuses here (Unsupported, with its message), not inside the timed loop."""
    from .base import Unsupported

    first = (lambda t: t[None, :1]) if inputs.ragged else (lambda t: t[:1, :1])
    try:
        attention(first(inputs.q), first(inputs.k), first(inputs.v))
    except (AssertionError, ValueError, NotImplementedError, RuntimeError) as exc:
        raise Unsupported(f"expanded MLA (192/128) on this FA4 and GPU: {type(exc).__name__}: {exc}") from None


def _shadowing_flash_attn2() -> str:
    """FlashAttention-2's sdist wheels ship an old `flash_attn/cute/` that, installed after
    flash-attn-4, replaces FA4's files: say so when FA2's record lists files there."""
    from importlib import metadata

    try:
        files = metadata.files("flash-attn") or []
    except metadata.PackageNotFoundError:
        return ""
    if any(str(f).startswith("flash_attn/cute/") for f in files):
        return "flash-attn (FA2) installed its own flash_attn/cute/ over FA4's: reinstall flash-attn-4 after flash-attn"
    return ""
