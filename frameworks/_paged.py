"""Paged KV caches built from the canonical dense K/V, shared by the paged adapters. Pure PyTorch,
vectorised (no Python loop over pages), tested on the CPU against the dense layout.

Physical pages are placed in a seeded random order, as in a real cache after some churn, so a
backend that ignored its block table would read the wrong pages and fail the reference check."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PagedKV:
    k_pages: torch.Tensor  # [num_pages, page_size, Hkv, D]
    v_pages: torch.Tensor
    block_table: torch.Tensor  # [B, pages_per_seq] int32: page j of sequence b is k_pages[block_table[b, j]]
    kv_len: int

    @property
    def page_size(self) -> int:
        return self.k_pages.shape[1]

    @property
    def pages_per_seq(self) -> int:
        return self.block_table.shape[1]

    @property
    def last_page_len(self) -> int:
        """Tokens in each sequence's last page (1 … page_size)."""
        return self.kv_len - (self.pages_per_seq - 1) * self.page_size

    def indptr(self) -> torch.Tensor:
        """CSR offsets of each sequence's pages in block_table.flatten() (FlashInfer's kv_indptr)."""
        batch = self.block_table.shape[0]
        return torch.arange(batch + 1, dtype=torch.int32, device=self.block_table.device) * self.pages_per_seq

    def to_dense(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Back to [B, kv_len, Hkv, D]: the inverse of to_paged, for tests."""
        batch = self.block_table.shape[0]
        k = self.k_pages[self.block_table.long()].reshape(batch, -1, *self.k_pages.shape[2:])
        v = self.v_pages[self.block_table.long()].reshape(batch, -1, *self.v_pages.shape[2:])
        return k[:, : self.kv_len], v[:, : self.kv_len]


def to_paged(k: torch.Tensor, v: torch.Tensor, page_size: int, seed: int = 0) -> PagedKV:
    """Split dense [B, Sk, Hkv, D] K/V into pages of page_size tokens (the last page zero-padded)."""
    if page_size < 1:
        raise ValueError(f"page_size: must be positive, got {page_size}")
    batch, kv_len, heads, dim = k.shape
    pages_per_seq = -(-kv_len // page_size)
    padded = pages_per_seq * page_size

    def blocks(t: torch.Tensor) -> torch.Tensor:
        if padded != kv_len:
            t = torch.cat([t, t.new_zeros(batch, padded - kv_len, heads, dim)], dim=1)
        return t.reshape(batch * pages_per_seq, page_size, heads, dim)

    gen = torch.Generator(device="cpu")
    gen.manual_seed(seed)
    placement = torch.randperm(batch * pages_per_seq, generator=gen).to(k.device)  # logical -> physical
    k_pages = torch.empty(batch * pages_per_seq, page_size, heads, dim, dtype=k.dtype, device=k.device)
    v_pages = torch.empty_like(k_pages)
    k_pages[placement] = blocks(k)
    v_pages[placement] = blocks(v)
    block_table = placement.view(batch, pages_per_seq).to(torch.int32)
    return PagedKV(k_pages, v_pages, block_table, kv_len)


class RaggedPageTable:
    """What the paged caches of requests of different lengths share (`block_table` [B, max pages] int32 and
    `kv_lens`, with `page_size` from the pages): each request's page count and FlashInfer's CSR view of them."""

    def pages_of(self) -> list[int]:
        return [-(-n // self.page_size) for n in self.kv_lens]

    def indptr(self) -> torch.Tensor:
        """FlashInfer's kv_indptr: offsets of each request's pages in `indices()`."""
        counts = torch.tensor([0, *self.pages_of()], dtype=torch.int32, device=self.block_table.device)
        return torch.cumsum(counts, 0, dtype=torch.int32)

    def indices(self) -> torch.Tensor:
        """FlashInfer's kv_indices: every request's pages, in order, without padding."""
        return torch.cat([self.block_table[i, :n] for i, n in enumerate(self.pages_of())])


@dataclass(frozen=True)
class RaggedPagedKV(RaggedPageTable):
    """A paged cache of requests of different lengths, as serving engines hold it: request i owns
    ceil(kv_lens[i] / page_size) pages at shuffled physical places; its row of `block_table` lists
    them, padded with page 0 past its last page (never read: lengths bound every read)."""

    k_pages: torch.Tensor  # [num_pages, page_size, Hkv, D]
    v_pages: torch.Tensor
    block_table: torch.Tensor  # [B, max pages a request] int32
    kv_lens: tuple[int, ...]

    @property
    def page_size(self) -> int:
        return self.k_pages.shape[1]

    def last_page_lens(self) -> torch.Tensor:
        last = [n - (p - 1) * self.page_size for n, p in zip(self.kv_lens, self.pages_of())]
        return torch.tensor(last, dtype=torch.int32, device=self.block_table.device)

    def seqlens(self) -> torch.Tensor:
        return torch.tensor(self.kv_lens, dtype=torch.int32, device=self.block_table.device)

    def request(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Request i's K and V back as [kv_len, Hkv, D], for tests."""
        pages = self.block_table[i, : self.pages_of()[i]].long()
        n = self.kv_lens[i]
        return (self.k_pages[pages].flatten(0, 1)[:n], self.v_pages[pages].flatten(0, 1)[:n])


def place_in_pages(tensors, kv_lens, page_size: int, seed: int = 0) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Packed [Σ kv_len, …] tensors (K and V, or MLA's one latent) in pages of page_size tokens, all with one
    placement: each request's last page zero-padded, the pages in a seeded random order. Returns the pages
    [num_pages, page_size, …] of each tensor and the block table [B, max pages a request] int32 (padded with
    page 0)."""
    if page_size < 1:
        raise ValueError(f"page_size: must be positive, got {page_size}")
    kv_lens = tuple(int(n) for n in kv_lens)
    pages = [-(-n // page_size) for n in kv_lens]
    device = tensors[0].device
    # each token's logical slot (request's first page + position), as one gather index
    first_page = torch.tensor([0, *pages[:-1]]).cumsum(0)
    slots = torch.cat([first_page[i] * page_size + torch.arange(n) for i, n in enumerate(kv_lens)]).to(device)
    total_pages = sum(pages)
    gen = torch.Generator(device="cpu")
    gen.manual_seed(seed)
    placement = torch.randperm(total_pages, generator=gen).to(device)  # logical page -> physical page
    physical = placement[slots // page_size] * page_size + slots % page_size
    paged = []
    for t in tensors:
        flat = t.new_zeros(total_pages * page_size, *t.shape[1:])
        flat[physical] = t
        paged.append(flat.view(total_pages, page_size, *t.shape[1:]))
    table = torch.zeros(len(kv_lens), max(pages), dtype=torch.int32, device=device)
    for i, n in enumerate(pages):
        start = int(first_page[i])
        table[i, :n] = placement[start : start + n].to(torch.int32)
    return paged, table


def to_paged_ragged(k: torch.Tensor, v: torch.Tensor, kv_lens, page_size: int, seed: int = 0) -> RaggedPagedKV:
    """Pages of page_size tokens from packed [Σ kv_len, Hkv, D] K/V (each request's last page
    zero-padded), placed in a seeded random order."""
    (k_pages, v_pages), table = place_in_pages((k, v), kv_lens, page_size, seed)
    return RaggedPagedKV(k_pages, v_pages, table, tuple(int(n) for n in kv_lens))
