"""How the Triton and Gluon launches order and split their work (host side, plain Python and torch): the
order of a ragged batch's requests, the Gluon varlen kernel's tile list, which page sizes its TMA loads
take, and the device's multiprocessor count the split rules size against. `ops` (the launches) and
`gluon_prefill` (the Gluon kernels) both read it; it imports neither."""

from __future__ import annotations

import torch

GLUON_GRIDS = ("blocks", "tiles")  # the Gluon varlen launch: every row block of the longest request, or the listed ones


def sm_count(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 4


def heaviest_first(q_lens, kv_lens) -> list[int]:
    """Request indices by work (query × key pairs), largest first; stable: equal requests keep batch order."""
    return sorted(range(len(q_lens)), key=lambda i: -q_lens[i] * kv_lens[i])


def gluon_varlen_tiles(order, q_lens, heads: int, causal: bool, block_m: int = 128) -> list[int]:
    """The Gluon varlen kernel's programs that hold rows, flattened pairs (request × heads + head, row block), in
    the block grid's launch order: requests in `order`, a request's heads in turn, and a causal request's row
    blocks last first (the last block sees the most keys)."""
    tiles = []
    for b in order:
        blocks = range(-(-q_lens[b] // block_m))
        blocks = blocks[::-1] if causal else blocks
        for h in range(heads):
            for m in blocks:
                tiles += (b * heads + h, m)
    return tiles


def gluon_pages_fit(page_size: int | None, block_n: int = 128) -> bool:
    """Whether the Gluon varlen kernel loads pages of this size through TMA (gluon_prefill._kv_tile_load): 16
    rows a load or more (8 loads a 128-key tile at most), and no tile across a page boundary."""
    return page_size is not None and page_size % 16 == 0 and (block_n % page_size == 0 or page_size % block_n == 0)
