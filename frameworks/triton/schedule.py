"""How the Triton and Gluon launches order and split their work (host side, plain Python and torch, no
GPU): the order of a ragged batch's requests, the Gluon varlen kernel's tile list and which page sizes its TMA
loads take, the device's multiprocessor count the split rules size against, the split-KV decode scheduled
by work, and which requests of a mixed batch that work list takes (on_work_list). `ops` (the launches) and
`gluon_prefill` (the Gluon kernels) both read it; it imports neither.

Split-KV decode scheduled by work (the `splits=work` variant): a flat list of (request, KV head, key
range) items, one program each, instead of a grid of (request × KV head) × splits cut by one split count.

The split length is chosen by the work, not by the number of programs: every request is cut into pieces of
at most `split_tokens` keys (a long cache into many, a short one not at all), and `split_tokens` is the one
whose items, launched longest first onto `slots` program slots (one a multiprocessor, as the GPU hands out
programs in launch order to whichever slot frees first: list scheduling, longest first), finish soonest,
counting each program's own cost besides its keys (`overhead` tokens) and the combine launch a split adds.
So one 128k cache beside 127 short ones is read by ~136 programs of ~8k keys while the short ones fill the
other slots, where the `waves` rule reads it with 8 (its batch already fills a wave unsplit). What
FlashDecoding++, FlashInfer's balanced scheduler and FA3's scheduler metadata do, planned on the host once
(in prepare; pure Python, no GPU), for dense and paged caches alike.

Items go longest first (ties: request, head, split in order). A request cut into one piece writes its output
directly (`part` = -1); the pieces of a request cut into several write partial outputs at `part`, and the
combine merges each such request's pieces, however many it has (a second launch; with `splits=work-fused`, the
last of a (request, KV head)'s pieces to finish, counted in `counter`)."""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from functools import cached_property

import torch

from specs.batch import MAX_SPEC_DECODE

# the Gluon varlen launch: every row block of the longest request, the listed ones, or the listed ones walked by a
# persistent grid (one CTA an SM)
GLUON_GRIDS = ("blocks", "tiles", "persistent")


def sm_count(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 4


def heaviest_first(q_lens, kv_lens, requests=None) -> list[int]:
    """Request indices by work (query × key pairs), largest first; stable: equal requests keep batch order.
    requests: only these of the batch (their indices into q_lens and kv_lens, in batch order); None: all."""
    chosen = range(len(q_lens)) if requests is None else requests
    return sorted(chosen, key=lambda i: -q_lens[i] * kv_lens[i])


def subset(requests, count: int) -> list[int]:
    """Indices of some of a batch's `count` requests, in batch order; one line if any is out of range or twice."""
    chosen = sorted(int(i) for i in requests)
    if not chosen or len(set(chosen)) != len(chosen) or chosen[0] < 0 or chosen[-1] >= count:
        raise ValueError(f"requests: {list(requests)} is not a set of indices of the batch's {count} requests")
    return chosen


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


def gluon_varlen_items(order, q_lens, kv_lens, heads: int, causal: bool, block_m: int = 128,
                       block_n: int = 128) -> list[int]:  # fmt: skip
    """The persistent Gluon varlen kernel's work items: gluon_varlen_tiles' pairs, heaviest first by the key tiles
    each block walks (stable: equal blocks keep the tile list's order), so its CTAs, each taking items pid,
    pid + grid, …, start on the longest blocks and end on the short ones (list scheduling, as FA3's varlen)."""
    pairs = gluon_varlen_tiles(order, q_lens, heads, causal, block_m)
    tiles = gluon_item_tiles(pairs, q_lens, kv_lens, heads, causal, block_m, block_n)
    ranked = sorted(range(len(tiles)), key=lambda i: -tiles[i])  # stable: equal blocks keep their order
    return [x for i in ranked for x in pairs[2 * i : 2 * i + 2]]


# how a persistent Gluon kernel's CTAs share its work items (gluon_balance): greedy least-loaded (lpt) or in turn
# (static: CTA p takes items p, p + grid, ..., the kernels' order before 2026-12-06f)
GLUON_BALANCES = ("lpt", "static")
GLUON_ITEM_COST = 1  # an item's own cost besides its key tiles, in key tiles (its Q load, its output store)


def gluon_item_tiles(items: list[int], q_lens, kv_lens, heads: int, causal: bool, block_m: int = 128,
                     block_n: int = 128) -> list[int]:  # fmt: skip
    """The key tiles of BLOCK_N each (request × heads + head, row block) pair of `items` (flat pairs) walks: its
    rows' keys, bottom-right causal (what the kernels' `_pp_tiles` counts)."""
    out = []
    for bh, m in zip(items[::2], items[1::2]):
        q, k = q_lens[bh // heads], kv_lens[bh // heads]
        hi = min(k, k - q + min((m + 1) * block_m, q)) if causal else k
        out.append(-(-hi // block_n))
    return out


def check_balance(balance: str) -> None:
    """One line naming gluon_balance's values for any other."""
    if balance not in GLUON_BALANCES:
        raise ValueError(f"gluon_balance: {balance!r} is not valid; expected {', '.join(GLUON_BALANCES)}")


def uniform_launch_balance(balance: str, rows_a_block: int, sms: int) -> str:
    """The balance a uniform batch's one-block launch takes (the one-block uniform grid, or the paged prompts'
    tiles): lpt where its (batch element × query head) pairs fill at most half a wave of `sms` CTAs, static where
    more. H100, Llama-3.1-8B heads (32), prefills of 1,024-4,096 tokens, lpt ÷ static: 0.84-1.01 at batch 1 (32
    pairs), 0.95-1.01 at batch 2 (64), 1.01-1.03 at batch 4 (128) and 1.02-1.05 at batch 8 (256: a (batch, head)'s
    blocks launched together share its keys in L2); paged appends at page 16 0.94-1.01 at batch 1 and 1.01-1.04 at
    batch 8 (docs/perf/generalization.md, "The fifth H100 run" and "The gate between batch 1 and 8")."""
    return balance if balance != "lpt" or rows_a_block <= sms // 2 else "static"


def cta_assignment(tiles: list[int], ctas: int, balance: str) -> tuple[list[int], list[int]]:
    """Which CTA of a persistent grid of `ctas` walks which work item, the items given heaviest first by the key
    tiles each walks: (order, starts), CTA p's items being order[starts[p]:starts[p + 1]] in that order.

    static: CTA p takes items p, p + ctas, p + 2·ctas, ... So the CTAs that took the heaviest items first take the
    heaviest of the next round too: a 804-token append on 818 keys (7 row blocks of 7, 7, 6, 5, 4, 3, 2 key tiles ×
    32 heads, 132 CTAs) gives CTA 0 a 7-tile block and then a 4-tile one, 11 tiles where the heaviest block alone is
    7. lpt: each item, heaviest first, to the CTA with the least work so far (its items' key tiles, GLUON_ITEM_COST
    each besides; ties to the lower CTA), the host's list scheduling of FA3's dynamic scheduler, planned once: the
    same 224 blocks end at 9 tiles. Equal items give both rules the same turns."""
    check_balance(balance)
    ctas = max(1, min(ctas, len(tiles)))
    per = [[] for _ in range(ctas)]
    if balance == "static":
        for i in range(len(tiles)):
            per[i % ctas].append(i)
    else:
        load = [(0, p) for p in range(ctas)]  # a heap of (work so far, CTA)
        for i, t in enumerate(tiles):
            work, p = heapq.heappop(load)
            per[p].append(i)
            heapq.heappush(load, (work + t + GLUON_ITEM_COST, p))
    order, starts = [], [0]
    for items in per:
        order += items
        starts.append(len(order))
    return order, starts


def gluon_pages_fit(page_size: int | None, block_n: int = 128) -> bool:
    """Whether the Gluon varlen kernel loads pages of this size through TMA (gluon_prefill._kv_tile_load): 16
    rows a load or more (8 loads a 128-key tile at most), and no tile across a page boundary."""
    return page_size is not None and page_size % 16 == 0 and (block_n % page_size == 0 or page_size % block_n == 0)


def gluon_pack_fits(group: int, block_m: int = 128) -> bool:
    """Whether the uniform Gluon kernel packs a query group of this size into its blocks (gluon_pack=gqa): 2 or more
    heads, a whole number of positions in each consumer's half of the block (block_m / 2 rows)."""
    return 2 <= group <= block_m // 2 and (block_m // 2) % group == 0


def window_start(kv_len: int, window: int | None, granule: int) -> int:
    """Where a decode's keys begin under a left window of `window` keys (its first key kv_len − 1 − window):
    the start of the granule that holds it, 0 without a window. The split-KV decodes cut kv_len − this keys
    (the window's, plus less than a granule before it), so their time does not grow with the cache."""
    if window is None:
        return 0
    return max(0, kv_len - 1 - window) // granule * granule


def window_lens(kv_lens, window: int | None, granule: int) -> list[int]:
    """The keys each decode reads (kv_len − window_start): what its splits are sized on."""
    return [int(n) - window_start(int(n), window, granule) for n in kv_lens]


# the chunks the split-KV work list takes beside a speculative step's requests (on_work_list): at most this many query
# tokens, on a cache of at least SPLIT_KV_KEYS_A_TOKEN keys a query token
SPLIT_KV_MAX_CHUNK = 64
SPLIT_KV_KEYS_A_TOKEN = 64


def on_work_list(q_len: int, kv_len: int) -> bool:
    """Whether `spec=split-kv` runs a request of a mixed batch on the split-KV work list (ops.WorkDecode) rather
    than in the varlen kernel: a speculative step's tokens or fewer (MAX_SPEC_DECODE, 16: steps and decodes), or a
    chunk of at most SPLIT_KV_MAX_CHUNK tokens on a cache of SPLIT_KV_KEYS_A_TOKEN keys a token or more.

    Why, from the kernels' cost. The varlen kernel gives a request ceil(q_len × group / BLOCK_M) × Hkv programs,
    each walking the whole cache: its time is one program's walk of kv_len keys, however few programs that is. At
    64 tokens that is q_len × Hq / 64 programs of 64 rows (32 for Llama-3.1-8B, at most 64 for the models here),
    a quarter to a half of an H100's 132 SMs; the others idle unless the rest of the batch fills them (draw:79: a
    51-token chunk on 25,164 keys, 4 row blocks × 8 KV heads walking 25k keys at one SM's ~100 keys a µs, 0.246 ms,
    where FA3, splitting the keys, took 0.164). On the work list the same rows come in row tiles of 64 rows (whole
    tokens, ops.SPLIT_KV_ROWS: at 64 tokens and Llama's group 4, 4 tiles, the varlen kernel's own count of 64-row
    blocks, so the same reads; a piece's tiles launch side by side, where L2 serves the repeats) and the keys in
    pieces over every SM. Such a request does q_len × group FLOPs a byte of its cache, 256 at 64 tokens × 4, under
    an H100's balance point (≈ 295): a memory-bound walk, where splitting pays; a longer chunk is the tensor cores'
    work, for the varlen kernel's 128-row blocks, and fills more of the GPU by itself. The keys: a split's own costs
    grow with the rows (each piece writes a [rows, D] fp32 partial that the combine reads back; the combine runs
    q_len × Hq programs a split request) and its gain with the keys (the walk it shortens), so the cache must be long
    for the rows. 64 keys a token (16 a row at group 4) puts the shortest such walk, 1,088 keys at 17 tokens (~11
    µs at one program's rate), above what the split adds (a combine launch, 3-5 µs; a piece's start and partial,
    the planner's 2 granules, ~2.5 µs), and leaves a prompt (kv_len = q_len) or a chunk on a short prefix to the
    varlen kernel, whose causal blocks skip the keys past their rows."""
    if q_len <= MAX_SPEC_DECODE:
        return True
    return q_len <= SPLIT_KV_MAX_CHUNK and kv_len >= SPLIT_KV_KEYS_A_TOKEN * q_len


GRANULE = 128  # split boundaries at multiples of the largest decode BLOCK_N (the kernels assume aligned tiles)
OVERHEAD_GRANULES = 2  # a program's cost besides its keys, in granules (as ops.SPLIT_OVERHEAD_GRANULES)
COMBINE_GRANULES = 2  # the combine launch, when any request is split, in granules of one slot's time
MAX_ITEMS_PER_SLOT = 4  # candidate splits stop where the longest request alone holds this many items a slot


@dataclass(frozen=True)
class WorkItem:
    """One program: keys lo … hi − 1 of `request`'s cache for one KV head's query group; `part` is where its
    partial output goes (-1: the request has one piece, written to the output directly)."""

    request: int
    kv_head: int
    lo: int
    hi: int
    part: int

    @property
    def tokens(self) -> int:
        return self.hi - self.lo


@dataclass(frozen=True)
class WorkPlan:
    """The items in launch order, each request's number of pieces, the split length chosen, and the
    schedule's estimated time (tokens of one slot, overheads included)."""

    items: tuple[WorkItem, ...]
    splits: tuple[int, ...]  # pieces a request
    split_tokens: int
    kv_heads: int
    slots: int
    estimate: float

    @property
    def num_items(self) -> int:
        return len(self.items)

    @cached_property
    def combined(self) -> tuple[tuple[int, int, int], ...]:
        """(request, first part, pieces) of each request cut into several: what the combine reads."""
        out, first = [], 0
        for request, pieces in enumerate(self.splits):
            if pieces > 1:
                out.append((request, first, pieces))
                first += self.kv_heads * pieces
        return tuple(out)

    @property
    def num_parts(self) -> int:
        return sum(self.kv_heads * n for _, _, n in self.combined)

    def info(self) -> dict:
        return {
            "splits": max(self.splits),
            "split_tokens": self.split_tokens,
            "items": self.num_items,
            "split_requests": len(self.combined),
        }


def plan_work(
    kv_lens, kv_heads: int, slots: int, granule: int = GRANULE, overhead_granules: float = OVERHEAD_GRANULES,
    combine_granules: float = COMBINE_GRANULES, window: int | None = None, q_lens=None, tile_q: int | None = None,
) -> WorkPlan:  # fmt: skip
    """The work list of decodes on caches of `kv_lens` keys with `kv_heads` KV heads, for `slots` program slots.
    Candidate split lengths: the longest cache cut into n = 1, 2, … pieces (whole granules), while that cache
    alone holds at most MAX_ITEMS_PER_SLOT items a slot; the one with the least estimated time wins, ties
    going to fewer items. Under a left window each request's keys from its window_start on only: planned on
    those lengths, the items' ranges then moved to start there. q_lens: each request's query tokens (speculative
    steps; None: one each), whose first token's window starts the request's keys (it sits q_len − 1 keys before
    the last); `kv_heads` then counts a KV head's row tiles too (ops.WorkDecode), each an item of the same keys.
    tile_q: the tokens a row tile holds (ops.WorkDecode's, with q_lens): a request of fewer tokens than the
    longest gets items for the row tiles that hold its tokens only, so a decode beside a 51-token chunk (4 row
    tiles at Llama's group) is one item a KV head, not four of which three hold no row (and write nothing); None:
    every request in every row tile."""
    q_lens = [1] * len(kv_lens) if q_lens is None else [int(q) for q in q_lens]
    starts = [window_start(max(0, int(n) - q + 1), window, granule) for n, q in zip(kv_lens, q_lens)]
    lens = [max(0, int(n)) - start for n, start in zip(kv_lens, starts)]
    if not lens or kv_heads < 1 or slots < 1 or granule < 1:
        raise ValueError(f"plan_work: needs requests, kv_heads, slots and granule >= 1, got {len(lens)}, "
                         f"{kv_heads}, {slots}, {granule}")  # fmt: skip
    columns = [_live_columns(q, kv_heads, q_lens, tile_q) for q in q_lens]  # each request's items a piece
    longest = max(max(lens), 1)
    granules = -(-longest // granule)
    most = min(granules, max(1, -(-MAX_ITEMS_PER_SLOT * slots // kv_heads)))
    overhead, combine = overhead_granules * granule, combine_granules * granule
    best = None
    for tokens in sorted({-(-granules // n) * granule for n in range(1, most + 1)}, reverse=True):
        costs = [(size + overhead, len(c)) for n, c in zip(lens, columns) for size in _sizes(n, tokens, granule)]
        extra = combine if len(costs) > len(lens) else 0
        bound = max(sum(c * m for c, m in costs) / slots, max(c for c, _ in costs)) + extra
        if best is not None and bound > best[0][0]:
            continue  # no schedule of these items ends sooner than the best so far: skip simulating it
        estimate = _list_schedule(costs, slots) + extra
        key = (estimate, sum(m for _, m in costs))
        if best is None or key < best[0]:
            best = (key, tokens)
    (estimate, _), tokens = best
    return _plan(lens, kv_heads, slots, tokens, granule, estimate, starts, columns)


def _live_columns(q_len: int, kv_heads: int, q_lens, tile_q: int | None) -> list[int]:
    """The item columns (KV head × row tiles + row tile, ops.WorkDecode's) whose row tile holds some of this
    request's tokens; every column without tile_q."""
    if not tile_q:
        return list(range(kv_heads))
    tiles = _cdiv(max(q_lens), tile_q)  # a KV head's row tiles (ops.WorkDecode's ROW_TILES)
    if kv_heads % tiles:
        raise ValueError(f"plan_work: {kv_heads} columns are not KV heads × {tiles} row tiles of {tile_q} tokens")
    return [column for column in range(kv_heads) if column % tiles * tile_q < q_len]


def _sizes(kv_len: int, tokens: int, granule: int) -> list[int]:
    return [hi - lo for lo, hi in split_pieces(kv_len, tokens, granule)]


def split_pieces(kv_len: int, tokens: int, granule: int) -> list[tuple[int, int]]:
    """A cache of kv_len keys in pieces of at most `tokens`: as many as needed, as even as whole granules allow
    (each starts at a multiple of the granule; the last holds the remainder). An empty cache is one empty piece."""
    if kv_len <= tokens:
        return [(0, kv_len)]
    count = _cdiv(kv_len, tokens)
    size = _cdiv(_cdiv(kv_len, count), granule) * granule
    return [(lo, min(kv_len, lo + size)) for lo in range(0, kv_len, size)]


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _list_schedule(costs: list[tuple[float, int]], slots: int) -> float:
    """When the last of these items (each (cost, copies): one a KV head and row tile that holds the request's
    rows) ends, launched longest first onto `slots` slots, each item to the slot that frees first."""
    ordered = sorted((c for c, copies in costs for _ in range(copies)), reverse=True)
    if len(ordered) <= slots:
        return ordered[0] if ordered else 0.0
    ends = [0.0] * slots
    for cost in ordered:
        heapq.heapreplace(ends, ends[0] + cost)
    return max(ends)


def _plan(lens, kv_heads: int, slots: int, tokens: int, granule: int, estimate: float, starts, columns) -> WorkPlan:
    """The items of this split length; a split request's parts are laid out for every column (first + column ×
    pieces, as the combine finds them), those of a column without rows never written, as the kernel writes none."""
    pieces = [[(lo + start, hi + start) for lo, hi in split_pieces(n, tokens, granule)]
              for n, start in zip(lens, starts)]  # fmt: skip
    splits = tuple(len(p) for p in pieces)
    items, first = [], 0
    for request, ranges in enumerate(pieces):
        for head in columns[request]:
            for index, (lo, hi) in enumerate(ranges):
                part = first + head * len(ranges) + index if len(ranges) > 1 else -1
                items.append(WorkItem(request, head, lo, hi, part))
        if len(ranges) > 1:
            first += kv_heads * len(ranges)
    items.sort(key=lambda item: (-item.tokens, item.request, item.kv_head, item.lo))
    return WorkPlan(tuple(items), splits, tokens, kv_heads, slots, estimate)


def work_tensors(plan: WorkPlan, device, requests=None):
    """The plan as the kernels read it: items int32 [N, 8] (request, KV head, lo, hi, part, first, pieces,
    counter) in launch order, and the combine's int32 [R, 3] (request, first part, pieces), or None when no
    request is split. `first` and `pieces` locate the pieces of the item's (request, KV head), `counter` its
    place among the split (request, KV head) pairs (the fused merge counts finished pieces there); for a request
    of one piece: its part, 1 and -1. requests: the batch's index of each of the plan's requests, when the plan
    holds some of a batch's requests (a mixed batch's short ones): the kernels then read the whole batch's
    arrays (query and key offsets, lengths, block table) at the request's own index; None: the plan's indices."""
    ids = range(len(plan.splits)) if requests is None else [int(r) for r in requests]
    if len(ids) != len(plan.splits):
        raise ValueError(f"work_tensors: {len(ids)} request indices for a plan of {len(plan.splits)} requests")
    split = {request: (row, base) for row, (request, base, _) in enumerate(plan.combined)}
    rows = []
    for i in plan.items:
        pieces = plan.splits[i.request]
        fields = (ids[i.request], i.kv_head, i.lo, i.hi, i.part)
        if pieces > 1:
            row, base = split[i.request]
            rows.append((*fields, base + i.kv_head * pieces, pieces, row * plan.kv_heads + i.kv_head))
        else:
            rows.append((*fields, i.part, 1, -1))
    items = torch.tensor(rows, dtype=torch.int32).reshape(-1, 8)
    combined = [(ids[request], base, pieces) for request, base, pieces in plan.combined]
    combined = torch.tensor(combined, dtype=torch.int32).reshape(-1, 3) if combined else None
    return items.to(device), None if combined is None else combined.to(device)
