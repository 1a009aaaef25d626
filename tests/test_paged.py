"""The paged KV cache build the paged adapters share, against the dense layout (CPU)."""

import pytest
import torch

from frameworks._paged import to_paged


@pytest.mark.parametrize("kv_len, page_size", [(64, 16), (50, 16), (7, 16), (33, 1), (256, 256)])
def test_paged_round_trip_and_table(kv_len, page_size):
    gen = torch.Generator().manual_seed(0)
    k = torch.randn(3, kv_len, 2, 8, generator=gen)
    v = torch.randn(3, kv_len, 2, 8, generator=gen)
    paged = to_paged(k, v, page_size, seed=1)
    pages = -(-kv_len // page_size)
    assert paged.block_table.shape == (3, pages) and paged.block_table.dtype == torch.int32
    assert paged.k_pages.shape == (3 * pages, page_size, 2, 8)
    assert 1 <= paged.last_page_len <= page_size and (pages - 1) * page_size + paged.last_page_len == kv_len
    k2, v2 = paged.to_dense()
    assert torch.equal(k2, k) and torch.equal(v2, v)
    # every physical page used exactly once, and token t of sequence b sits where the table says
    assert sorted(paged.block_table.flatten().tolist()) == list(range(3 * pages))
    b, t = 2, kv_len - 1
    page = paged.block_table[b, t // page_size]
    assert torch.equal(paged.k_pages[page, t % page_size], k[b, t])
    assert paged.indptr().tolist() == [0, pages, 2 * pages, 3 * pages]


def test_pages_are_not_in_logical_order():
    k = torch.randn(4, 64, 1, 8)
    paged = to_paged(k, k, 8, seed=3)
    assert paged.block_table.flatten().tolist() != list(range(32))


def test_bad_page_size():
    with pytest.raises(ValueError, match="page_size"):
        to_paged(torch.zeros(1, 4, 1, 8), torch.zeros(1, 4, 1, 8), 0)


def test_transformer_engine_backend_is_read_from_kernel_names():
    from frameworks.transformer_engine import te_backend_from_kernels

    assert te_backend_from_kernels(["cudnn_generated_fort_native_sdpa_sm90_flash_fprop"]) == "FusedAttention (cuDNN)"
    assert te_backend_from_kernels(["flash_fwd_kernel<Flash_fwd_kernel_traits>"]) == "FlashAttention"
    assert te_backend_from_kernels(["ampere_bf16_s16816gemm", "softmax_warp_forward"]) == "UnfusedDotProductAttention"
