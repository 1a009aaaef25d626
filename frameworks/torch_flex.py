"""FlexAttention, compiled, with a block mask for bottom-right causal and native GQA. For short query
lengths (decode, small append chunks) PyTorch routes to its flex-decoding kernel by itself."""

from __future__ import annotations

import functools

from ._compile import configure_dynamo
from .base import Backend, Caps, register


@functools.cache
def _compiled_flex():
    import torch
    from torch.nn.attention.flex_attention import flex_attention

    configure_dynamo()
    return torch.compile(flex_attention, dynamic=False, fullgraph=True)


@register("flex")
class Flex(Backend):
    # its kernels need a power of two >= 16; ragged batches through a document mask
    caps = Caps(head_dims={16, 32, 64, 128, 256}, ragged=True, devices={"cuda", "cpu"})
    upstream = "torch.nn.attention.flex_attention"

    def prepare(self, spec, inputs):
        from torch.nn.attention.flex_attention import create_block_mask

        if inputs.ragged:
            return self._prepare_ragged(spec, inputs)
        q, k, v = (t.transpose(1, 2) for t in (inputs.q, inputs.k, inputs.v))  # [B, H, S, D] views
        block_mask = None
        if spec.is_masked:
            offset = spec.causal_offset

            def bottom_right_causal(b, h, q_idx, kv_idx):
                return q_idx + offset >= kv_idx

            block_mask = create_block_mask(
                bottom_right_causal, None, None, spec.q_len, spec.kv_len, device=inputs.device
            )
        flex = _compiled_flex()
        gqa = spec.gqa_group > 1
        options = flex_kernel_options(spec.q_len, spec.gqa_group)
        self._info = f"kernel_options={options}" if options else ""
        return lambda: flex(q, k, v, block_mask=block_mask, enable_gqa=gqa, kernel_options=options).transpose(1, 2)

    def _prepare_ragged(self, spec, inputs):
        """The packed batch as one sequence of Σ q_len queries against Σ kv_len keys, with a document
        mask: a query sees the keys of its own request up to its bottom-right causal limit."""
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

        def document_causal(b, h, q_idx, kv_idx):
            return (k_doc[kv_idx] == q_doc[q_idx]) & (kv_idx <= limit[q_idx])

        block_mask = create_block_mask(document_causal, None, None, batch.total_q, batch.total_kv, device=device)
        q, k, v = (t.transpose(0, 1)[None] for t in (inputs.q, inputs.k, inputs.v))  # [1, H, S, D] views
        flex = _compiled_flex()
        gqa = spec.gqa_group > 1
        options = flex_kernel_options(batch.total_q, spec.gqa_group)
        self._info = "document mask over the packed batch" + (f";kernel_options={options}" if options else "")
        return lambda: flex(q, k, v, block_mask=block_mask, enable_gqa=gqa, kernel_options=options)[0].transpose(0, 1)

    def run_info(self) -> str:
        return getattr(self, "_info", "")


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
