"""FlexAttention, compiled, with a block mask for bottom-right causal and native GQA. For short query
lengths (decode, small append chunks) PyTorch routes to its flex-decoding kernel by itself."""

from __future__ import annotations

import functools

from ._compile import configure_dynamo
from .base import Backend, Caps, Unsupported, register

# torch.compile's CPU lowering of flex returns no log-sum-exp (torch 2.13: "return_lse is not supported yet")
CPU_RETURNS_LSE = False


@functools.cache
def _compiled_flex():
    import torch
    from torch.nn.attention.flex_attention import flex_attention

    configure_dynamo()
    return torch.compile(flex_attention, dynamic=False, fullgraph=True)


@register("flex")
class Flex(Backend):
    # its kernels need a power of two >= 16; ragged batches through a document mask. Forms: a window in the
    # mask_mod, a soft-cap as a score_mod, sinks by rescaling the output with flex's log-sum-exp
    caps = Caps(head_dims={16, 32, 64, 128, 256}, ragged=True, devices={"cuda", "cpu"}, windows=True, sinks=True,
                softcap=True)  # fmt: skip
    upstream = "torch.nn.attention.flex_attention"

    def prepare(self, spec, inputs):
        from torch.nn.attention.flex_attention import create_block_mask

        if inputs.ragged:
            return self._prepare_ragged(spec, inputs)
        q, k, v = (t.transpose(1, 2) for t in (inputs.q, inputs.k, inputs.v))  # [B, H, S, D] views
        block_mask = None
        offset, window = spec.causal_offset, spec.window
        if window is not None:

            def bottom_right_window(b, h, q_idx, kv_idx):
                return (q_idx + offset >= kv_idx) & (q_idx + offset - kv_idx <= window)

            block_mask = create_block_mask(
                bottom_right_window, None, None, spec.q_len, spec.kv_len, device=inputs.device
            )
        elif spec.is_masked:

            def bottom_right_causal(b, h, q_idx, kv_idx):
                return q_idx + offset >= kv_idx

            block_mask = create_block_mask(
                bottom_right_causal, None, None, spec.q_len, spec.kv_len, device=inputs.device
            )
        flex = _compiled_flex()
        gqa = spec.gqa_group > 1
        options = flex_kernel_options(spec.q_len, spec.gqa_group)
        self._info = f"kernel_options={options}" if options else ""
        call = _formed(flex, spec, inputs, block_mask=block_mask, enable_gqa=gqa, kernel_options=options)
        self._info += _form_info(spec, self._info)
        return lambda: call(q, k, v).transpose(1, 2)

    def _prepare_ragged(self, spec, inputs):
        """The packed batch as one sequence of Σ q_len queries against Σ kv_len keys, with a document
        mask: a query sees the keys of its own request up to its bottom-right causal limit (and, under
        a window, from window keys before it)."""
        import torch
        from torch.nn.attention.flex_attention import create_block_mask

        batch, device = spec.batch, inputs.device
        q_doc = torch.repeat_interleave(torch.arange(batch.num_requests, device=device),
                                        torch.tensor(batch.q_lens, device=device))  # fmt: skip
        k_doc = torch.repeat_interleave(torch.arange(batch.num_requests, device=device),
                                        torch.tensor(batch.kv_lens, device=device))  # fmt: skip
        cq = torch.tensor(batch.cu_seqlens_q, device=device)
        ck = torch.tensor(batch.cu_seqlens_k, device=device)
        q_pos = torch.arange(batch.total_q, device=device) - cq[q_doc]
        kv_len = torch.tensor(batch.kv_lens, device=device)
        q_len = torch.tensor(batch.q_lens, device=device)
        if spec.causal:  # the last packed key index each query sees
            limit = ck[q_doc] + kv_len[q_doc] - q_len[q_doc] + q_pos
        else:
            limit = ck[q_doc] + kv_len[q_doc] - 1
        window = spec.window

        if window is None:

            def document_causal(b, h, q_idx, kv_idx):
                return (k_doc[kv_idx] == q_doc[q_idx]) & (kv_idx <= limit[q_idx])

        else:

            def document_causal(b, h, q_idx, kv_idx):
                seen = (k_doc[kv_idx] == q_doc[q_idx]) & (kv_idx <= limit[q_idx])
                return seen & (limit[q_idx] - kv_idx <= window)

        block_mask = create_block_mask(document_causal, None, None, batch.total_q, batch.total_kv, device=device)
        q, k, v = (t.transpose(0, 1)[None] for t in (inputs.q, inputs.k, inputs.v))  # [1, H, S, D] views
        flex = _compiled_flex()
        gqa = spec.gqa_group > 1
        options = flex_kernel_options(batch.total_q, spec.gqa_group)
        self._info = "document mask over the packed batch" + (f";kernel_options={options}" if options else "")
        self._info += _form_info(spec, self._info)
        call = _formed(flex, spec, inputs, block_mask=block_mask, enable_gqa=gqa, kernel_options=options)
        return lambda: call(q, k, v)[0].transpose(0, 1)

    def run_info(self) -> str:
        return getattr(self, "_info", "")


def _formed(flex, spec, inputs, **kw):
    """flex(q, k, v, **kw) with the spec's soft-cap as a score_mod and its sinks folded in after the call:
    a row's output over the real keys times e^lse / (e^lse + e^sink) = sigmoid(lse − sink), which is the
    softmax with the sink in its denominator (flex returns the row's natural-log log-sum-exp)."""
    import torch

    if spec.softcap is not None:
        cap = spec.softcap

        def soft_cap(score, b, h, q_idx, kv_idx):
            return cap * torch.tanh(score / cap)

        kw["score_mod"] = soft_cap
    if not spec.sinks:
        return lambda q, k, v: flex(q, k, v, **kw)
    if inputs.device.type == "cpu" and not CPU_RETURNS_LSE:
        raise Unsupported("sinks: flex on the CPU cannot return the log-sum-exp the sinks are folded in with "
                          "(torch.compile's CPU flex lowering has no return_lse)")  # fmt: skip
    sinks = inputs.sinks.float()[None, :, None]  # [1, Hq, 1] against lse [B, Hq, Sq]

    def call(q, k, v):
        out, lse = flex(q, k, v, return_lse=True, **kw)
        return (out.float() * torch.sigmoid(lse - sinks)[..., None]).to(out.dtype)

    return call


def _form_info(spec, info: str) -> str:
    """What backend_info adds for the forms: where the window, the soft-cap and the sinks went."""
    parts = [
        "window in mask_mod" if spec.window is not None else "",
        "softcap as score_mod" if spec.softcap is not None else "",
        "sinks: output · sigmoid(lse − sink) after flex" if spec.sinks else "",
    ]
    text = ";".join(p for p in parts if p)
    return (";" if info and text else "") + text


def flex_kernel_options(q_len: int, group: int = 1) -> dict | None:
    """Inductor's flex template has no valid configuration (NoValidChoicesError on H100, torch 2.11) for
    - query lengths above the decode path that are not a multiple of its default 128-row block (q_len 127);
    - short queries whose GQA group packs more than one 128-row mask block (the decode kernel's rows are
      q_len × group, its default block the next power of two: 9 queries × 16 → 256 rows, and a block that
      does not divide the mask's 128-row blocks is skipped; the ragged decode 8q1s3000_q1s17 at group 16).
    64 × 64 blocks compile and pass the reference in both."""
    if (q_len > 16 and q_len % 128) or (q_len < 128 and q_len * group > 128):
        return {"BLOCK_M": 64, "BLOCK_N": 64}
    return None
