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
