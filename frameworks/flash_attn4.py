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
    # dims up to 256 on sm90 (192 and 256 not yet run here: a build that lacks one fails as an error row);
    # 192 also as DeepSeek's expanded MLA prefill (q/k 192, v 128), behind a probe where the kernel is missing
    caps = Caps(
        dtypes={DType.BF16, DType.FP16},
        head_dims={64, 96, 128, 192, 256},
        layouts={KVLayout.DENSE, KVLayout.PAGED},  # pages through page_table (4.0.0b36 ran pages of 16 on an H200)
        ragged=True,
        windows=True,
        sinks=True,
        softcap=True,
        mla={"mla-expanded"},
    )

    def supports(self, spec):
        if spec.kv_dtype:
            return "kv_dtype fp8_e4m3: FA4 has no FP8 attention on sm90 (none is wired here for other GPUs)"
        return super().supports(spec)

    def check(self, spec):
        if spec.form == "mla-expanded" and (spec.head_dim, spec.value_dim) != (192, 128):
            return (
                f"expanded MLA {spec.head_dim}/{spec.value_dim}: FA4 takes q/k 192 with values of 128 only "
                "(DeepSeek's expanded MLA)"
            )
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


def _probe_value_width(attention, inputs) -> None:
    """One token through FA4 with values narrower than the queries (192/128): where this FA4 or GPU has no
    such kernel it refuses here (Unsupported, with its message), not inside the timed loop."""
    first = (lambda t: t[None, :1]) if inputs.ragged else (lambda t: t[:1, :1])
    try:
        attention(first(inputs.q), first(inputs.k), first(inputs.v))
    except (AssertionError, ValueError, NotImplementedError, RuntimeError) as exc:
        raise Unsupported(f"expanded MLA (192/128) on this FA4 and GPU: {type(exc).__name__}: {exc}") from None


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
