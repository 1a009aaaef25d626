"""FlashAttention-4 (`flash_attn.cute`, the CuTe DSL build; Hopper and Blackwell): `flash_attn_func`
for prefill, append (causal is bottom-right) and decode, dense K/V; ragged batches through
`flash_attn_varlen_func` (cu_seqlens_q / cu_seqlens_k); a paged cache (uniform or ragged) through
`flash_attn_varlen_func` with `page_table` and `seqused_k`, as vLLM's FA4 path calls it. FA4 has no general split-KV
(FlashDecoding) on sm90, so decode there runs one split; on Blackwell FA4's own heuristic picks the
split. The split that ran is in backend_info.
Upstream: https://github.com/Dao-AILab/flash-attention/tree/main/flash_attn/cute"""

from __future__ import annotations

from specs import DType, Workload

from ._paged import to_paged, to_paged_ragged
from .base import Backend, Caps, KVLayout, Unsupported, first_output, register


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
    # forms as flash_attn.cute's interface takes them: window_size=(w, 0), learnable_sink [Hq], softcap; head
    # dims up to 256 on sm90 (192 and 256 not yet run here: a build that lacks one fails as an error row)
    caps = Caps(
        dtypes={DType.BF16, DType.FP16},
        head_dims={64, 96, 128, 192, 256},
        layouts={KVLayout.DENSE, KVLayout.PAGED},  # pages through page_table (4.0.0b36 ran pages of 16 on an H200)
        ragged=True,
        windows=True,
        sinks=True,
        softcap=True,
    )

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
        if spec.page_size is not None:
            return self._prepare_paged(spec, inputs)
        if inputs.ragged:
            import inspect

            from flash_attn.cute import flash_attn_varlen_func

            batch = spec.batch
            wanted = dict(cu_seqlens_q=inputs.cu_seqlens_q, cu_seqlens_k=inputs.cu_seqlens_k, max_seqlen_q=batch.max_q,
                          max_seqlen_k=batch.max_kv, causal=spec.causal, num_splits=1)  # fmt: skip
            accepted = inspect.signature(flash_attn_varlen_func).parameters
            kw = {name: value for name, value in wanted.items() if name in accepted}
            kw.update(fa4_form(spec, inputs, accepted))
            self._info = "flash_attn_varlen_func;num_splits=1"
            return lambda: first_output(flash_attn_varlen_func(q, k, v, **kw))
        import inspect

        form = fa4_form(spec, inputs, inspect.signature(flash_attn_func).parameters)
        splits = fa4_splits(spec.workload, torch.cuda.get_device_capability(q.device))
        self._info = f"num_splits={'auto' if splits == 0 else splits}"
        return lambda: first_output(flash_attn_func(q, k, v, causal=causal, num_splits=splits, **form))

    def _prepare_paged(self, spec, inputs):
        """Pages in a shuffled pool with a page table and each request's length (seqused_k): one
        flash_attn_varlen_func call, packed queries (cu_seqlens_q) for a ragged batch, [B, Sq, H, D] for a
        uniform one."""
        import torch
        from flash_attn.cute import flash_attn_varlen_func

        q, batch = inputs.q, spec.batch
        if inputs.ragged:
            paged = to_paged_ragged(inputs.k, inputs.v, batch.kv_lens, spec.page_size)
            lengths = paged.seqlens()
            kw = dict(cu_seqlens_q=inputs.cu_seqlens_q, max_seqlen_q=batch.max_q)
        else:
            paged = to_paged(inputs.k, inputs.v, spec.page_size)
            lengths = torch.full((spec.batch_size,), spec.kv_len, dtype=torch.int32, device=q.device)
            kw = {}
        kp, vp, table = paged.k_pages, paged.v_pages, paged.block_table
        kw.update(seqused_k=lengths, max_seqlen_k=batch.max_kv, page_table=table, causal=spec.causal, num_splits=1)
        import inspect

        kw.update(fa4_form(spec, inputs, inspect.signature(flash_attn_varlen_func).parameters))
        self._info = {"call": "flash_attn_varlen_func(page_table, seqused_k)", "num_splits": 1,
                      "page_size": spec.page_size}  # fmt: skip
        return lambda: first_output(flash_attn_varlen_func(q, kp, vp, **kw))

    def run_info(self) -> dict | str:
        return getattr(self, "_info", "")


def fa4_form(spec, inputs, accepted) -> dict:
    """flash_attn.cute's keyword arguments for the spec's form: window_size=(w, 0), learnable_sink (the
    [Hq] fp32 sinks), softcap; Unsupported naming the argument where this FA4's interface lacks it."""
    form: dict = {}
    if spec.window is not None:
        form["window_size"] = (spec.window, 0)
    if spec.sinks:
        form["learnable_sink"] = inputs.sinks
    if spec.softcap is not None:
        form["softcap"] = spec.softcap
    missing = [name for name in form if name not in accepted]
    if missing:
        raise Unsupported(f"{', '.join(missing)}: this flash_attn.cute does not take it")
    return form


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
