"""The absorbed MLA operands as the MLA kernels take them: the latent cache in pages ([pages, page_size, 1,
kv_lora_rank + rope_dim], placed in a seeded random order like `_paged`), its block table and lengths, and the
queries as [requests, q_len, heads, width]. Shared by FlashMLA, FlashInfer's MLA wrapper, FA3's qv= path and
the Triton MLA kernel; pure PyTorch, tested on the CPU."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ._paged import RaggedPageTable, place_in_pages


@dataclass(frozen=True)
class LatentPages(RaggedPageTable):
    pages: torch.Tensor  # [num_pages, page_size, 1, kv_lora_rank + rope_dim]
    block_table: torch.Tensor  # [B, max pages a request] int32 (padded with page 0, never read)
    seqlens: torch.Tensor  # [B] int32
    kv_lens: tuple[int, ...]

    @property
    def page_size(self) -> int:
        return self.pages.shape[1]

    def request(self, i: int) -> torch.Tensor:
        """Request i's latent rows back as [kv_len, 1, width], for tests."""
        pages = self.block_table[i, : self.pages_of()[i]].long()
        return self.pages[pages].flatten(0, 1)[: self.kv_lens[i]]


def packed_latent(spec, inputs) -> torch.Tensor:
    """The latent cache as packed [Σ kv_len, 1, width] (a view of the inputs)."""
    return inputs.k if inputs.ragged else inputs.k.view(-1, *inputs.k.shape[2:])


def latent_pages(spec, inputs, page_size: int | None = None, seed: int = 0) -> LatentPages:
    """The spec's latent cache in pages of `page_size` tokens (default the spec's), each request's last page
    zero-padded, pages in a seeded random order."""
    page_size = page_size or spec.page_size
    latent = packed_latent(spec, inputs)
    kv_lens = tuple(spec.batch.kv_lens)
    (pages,), table = place_in_pages((latent,), kv_lens, page_size, seed)
    seqlens = torch.tensor(kv_lens, dtype=torch.int32, device=latent.device)
    return LatentPages(pages, table, seqlens, kv_lens)


def token_pages(spec, inputs) -> LatentPages:
    """A dense latent cache read as pages of one token (no copy): block_table row i lists request i's tokens."""
    latent = packed_latent(spec, inputs)
    kv_lens = tuple(spec.batch.kv_lens)
    starts = spec.batch.cu_seqlens_k
    table = torch.zeros(len(kv_lens), max(kv_lens), dtype=torch.int32, device=latent.device)
    for i, n in enumerate(kv_lens):
        table[i, :n] = torch.arange(starts[i], starts[i] + n, dtype=torch.int32, device=latent.device)
    seqlens = torch.tensor(kv_lens, dtype=torch.int32, device=latent.device)
    return LatentPages(latent.view(-1, 1, *latent.shape[1:]), table, seqlens, kv_lens)


def queries_by_request(spec, inputs) -> torch.Tensor:
    """q as [requests, q_len, heads, width] (a view): every request must have one query length."""
    if not inputs.ragged:
        return inputs.q
    q_lens = set(spec.batch.q_lens)
    if len(q_lens) != 1:
        raise ValueError("queries_by_request: the requests have different query lengths")
    return inputs.q.view(spec.batch.num_requests, q_lens.pop(), *inputs.q.shape[1:])


def one_query_length(spec) -> bool:
    return len(set(spec.batch.q_lens)) == 1
