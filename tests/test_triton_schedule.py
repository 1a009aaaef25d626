"""Split-KV decode scheduled by work (frameworks/triton/schedule.py, the triton backend's `splits=work`): the
planner on the CPU (pure Python: every (request, KV head) key range covered exactly once, long requests
split, short ones not, items longest first and balanced over the slots), and the work-list kernels under
Triton's interpreter against the fp32 reference on small skewed batches, dense and paged."""

import pytest
import torch

from frameworks.triton.schedule import GRANULE, plan_work, work_tensors
from specs import ExperimentSpec
from specs.draw import draw

H100_SMS = 132


def _covered_once(plan, kv_lens):
    """Every key of every (request, KV head) in exactly one item; pieces start at multiples of the granule."""
    seen = {}
    for item in plan.items:
        seen.setdefault((item.request, item.kv_head), []).append((item.lo, item.hi))
    assert set(seen) == {(r, h) for r in range(len(kv_lens)) for h in range(plan.kv_heads)}
    for (request, _), ranges in seen.items():
        ranges.sort()
        assert ranges[0][0] == 0 and ranges[-1][1] == kv_lens[request]
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))  # no gap, no overlap
        assert len(ranges) == plan.splits[request]


def _parts_are_distinct_and_dense(plan):
    parts = sorted(item.part for item in plan.items if item.part >= 0)
    assert parts == list(range(plan.num_parts))
    for item in plan.items:
        assert (item.part < 0) == (plan.splits[item.request] == 1)
    for request, first, pieces in plan.combined:  # the combine finds a head's pieces at first + head × pieces
        for item in (i for i in plan.items if i.request == request):
            assert first + item.kv_head * pieces <= item.part < first + (item.kv_head + 1) * pieces


@pytest.mark.parametrize(
    "kv_lens",
    [
        [131072] + [1024] * 127,  # one long cache among short ones: the batch
        [131072],  # batch 1 × 128k
        [131072, 65536, 65536, *[32768] * 4],  # long-decode
        [1024 + 56 * i for i in range(127)],  # decode-heavy's decodes
        [4096] * 256,  # the readme decode
        [5, 1, 300, 17, 0],  # tiny, with an empty cache
    ],
)
def test_every_key_is_in_exactly_one_item_and_items_go_longest_first(kv_lens):
    plan = plan_work(kv_lens, 8, H100_SMS)
    _covered_once(plan, kv_lens)
    _parts_are_distinct_and_dense(plan)
    sizes = [item.tokens for item in plan.items]
    assert sizes == sorted(sizes, reverse=True)
    assert plan.split_tokens % GRANULE == 0 and all(i.lo % GRANULE == 0 for i in plan.items)
    assert all(item.tokens <= plan.split_tokens for item in plan.items)


def test_long_requests_are_split_and_short_ones_not():
    """One 128k cache beside 127 of 1k (8 KV heads, 132 SMs): the waves rule leaves it unsplit (1016 programs
    fill a wave), so 8 programs read 128k keys each; by work it is cut into pieces no longer than about an
    SM's share, and the short ones stay whole."""
    kv_lens = [1024] * 60 + [131072] + [1024] * 67
    plan = plan_work(kv_lens, 8, H100_SMS)
    assert plan.splits[60] >= 4 and set(plan.splits[:60] + plan.splits[61:]) == {1}
    share = 8 * sum(kv_lens) / H100_SMS  # keys an SM reads when the work is even
    assert plan.split_tokens <= 1.1 * share
    assert plan.items[0].request == 60  # its pieces start first
    # the schedule the planner estimated is within 20% of the even share (the unsplit longest item is 7x it)
    assert plan.estimate <= 1.2 * (share + 2 * GRANULE * plan.num_items / H100_SMS) + 2 * GRANULE


@pytest.mark.parametrize(
    "kv_lens", [[131072], [32768], [4096] * 256, [32768] * 16, [1024 + 56 * i for i in range(127)]]
)
def test_uniform_and_balanced_batches_get_what_the_waves_rule_gives(kv_lens):
    """Where the waves rule was measured right (a wave of programs, or a batch that fills the GPU unsplit), the
    work rule picks the same split length: no regression is planned there."""
    from frameworks.triton import ops

    plan = plan_work(kv_lens, 8, H100_SMS)
    splits, tokens = ops.choose_splits_waves(kv_lens, 8, H100_SMS)
    assert max(plan.splits) == splits
    if splits > 1:
        assert plan.split_tokens == tokens


def test_the_items_are_balanced_over_the_slots_on_drawn_skewed_batches():
    """Over the drawn decode batches of one long cache among short ones (specs/draw.py, seeds 0, 7, …), list
    scheduling the plan's items longest first ends within 25% of a perfectly even spread (keys and program
    overheads over the SMs) or at the longest item, whichever is later."""
    for seed in range(0, 140, 7):
        kv_lens = list(draw(seed).kv_lens)
        plan = plan_work(kv_lens, 8, H100_SMS)
        _covered_once(plan, kv_lens)
        overhead = 2 * GRANULE
        even = sum(i.tokens + overhead for i in plan.items) / H100_SMS
        longest = plan.items[0].tokens + overhead
        assert plan.estimate <= 1.25 * max(even, longest) + 2 * GRANULE, seed
        assert longest <= 1.25 * max(even, 2 * GRANULE + overhead), seed  # no item outlasts the even share much
        assert plan.estimate <= 0.5 * max(kv_lens), seed  # unsplit, the long cache alone takes max(kv_lens)


def test_the_plan_as_tensors():
    plan = plan_work([300, 7, 40], 2, 8, granule=16)
    items, combined = work_tensors(plan, torch.device("cpu"))
    assert items.dtype == torch.int32 and items.shape == (plan.num_items, 8)
    first = plan.items[0]
    assert tuple(items[0, :5].tolist()) == (first.request, first.kv_head, first.lo, first.hi, first.part)
    assert combined is not None and combined.tolist() == [list(c) for c in plan.combined]
    assert work_tensors(plan_work([7, 8], 2, 64, granule=16), torch.device("cpu"))[1] is None  # nothing split
    with pytest.raises(ValueError, match="plan_work"):
        plan_work([], 2, 8)


def test_a_plan_of_some_of_a_batchs_requests_carries_their_own_indices():
    """A mixed batch's short requests (ops.MixedWork): planned alone, their items and combine rows name each
    request by its place in the batch, everything else as the plan's own tensors."""
    plan = plan_work([300, 7, 40], 2, 8, granule=16)
    own, own_combined = work_tensors(plan, torch.device("cpu"))
    items, combined = work_tensors(plan, torch.device("cpu"), requests=[1, 4, 6])
    assert items[:, 0].tolist() == [(1, 4, 6)[r] for r in own[:, 0].tolist()]
    assert torch.equal(items[:, 1:], own[:, 1:]) and torch.equal(combined[:, 1:], own_combined[:, 1:])
    assert combined[:, 0].tolist() == [(1, 4, 6)[r] for r in own_combined[:, 0].tolist()]
    with pytest.raises(ValueError, match="2 request indices for a plan of 3"):
        work_tensors(plan, torch.device("cpu"), requests=[1, 4])


def test_a_request_has_items_only_in_the_row_tiles_that_hold_its_tokens():
    """Row tiles of 16 tokens (ops.WorkDecode at Llama's group of 4): a 51-token chunk in 4 tiles a KV head, a
    5-token step and a decode in the first only (the other three hold no row and would write nothing). Each live
    (request, column) has every key in exactly one item; a split request's parts keep their place for every column
    (first + column × pieces, where the combine looks); the schedule counts the live items only."""
    q_lens, kv_lens, heads, tiles = [51, 5, 1], [25164, 3000, 4334], 8, 4
    plan = plan_work(kv_lens, heads * tiles, H100_SMS, q_lens=q_lens, tile_q=16)
    seen = {}
    for item in plan.items:
        seen.setdefault((item.request, item.kv_head), []).append((item.lo, item.hi))
    assert set(seen) == {(0, c) for c in range(heads * tiles)} | {(r, c) for r in (1, 2) for c in range(0, 32, tiles)}
    for (request, _), ranges in seen.items():
        ranges.sort()
        assert ranges[0][0] == 0 and ranges[-1][1] == kv_lens[request] and len(ranges) == plan.splits[request]
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    assert plan.splits[0] > 1  # the chunk's keys spread over the SMs
    for request, first, pieces in plan.combined:
        parts = [i.part for i in plan.items if i.request == request]
        assert len(set(parts)) == len(parts)
        for item in (i for i in plan.items if i.request == request):
            assert first + item.kv_head * pieces <= item.part < first + (item.kv_head + 1) * pieces
    every = plan_work(kv_lens, heads * tiles, H100_SMS, q_lens=q_lens)  # every request in every tile, as before
    assert {i.kv_head % tiles for i in every.items if i.request == 2} == set(range(tiles))
    assert plan.estimate < every.estimate  # the decode and the step counted at their own items
    assert plan_work([300, 40], 8, 8, q_lens=[1, 1], tile_q=16) == plan_work([300, 40], 8, 8, q_lens=[1, 1])
    with pytest.raises(ValueError, match="row tiles"):
        plan_work([40], 6, 8, q_lens=[17], tile_q=4)  # 17 tokens are 5 tiles of 4: 6 columns hold no whole KV head


# ---- the kernels, under the interpreter on a CPU ---------------------------------------------------------


triton = pytest.importorskip("triton")
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
# pieces start at multiples of every decode BLOCK_N: 16 under the interpreter, 128 compiled; on a GPU the caches
# are 8 times longer, so that the plans (scale-free: every cost is in granules) are the same
SCALE = 1 if DEVICE.type == "cpu" else 8
GRANULE_HERE = 16 * SCALE


def _mix(lengths):
    return "_".join(f"q1s{n * SCALE}" if n * SCALE > 1 else "q1" for n in lengths)


def _ragged(mix, page_size):
    from frameworks._paged import to_paged_ragged
    from harness.inputs import make_inputs

    spec = ExperimentSpec.from_mix(mix, 16, 2, 64, page_size=page_size)
    inputs = make_inputs(spec, DEVICE)
    k, v, cache = inputs.k, inputs.v, {"cu_seqlens_k": inputs.cu_seqlens_k}
    if page_size:
        paged = to_paged_ragged(k, v, spec.batch.kv_lens, page_size)
        k, v, cache = paged.k_pages, paged.v_pages, {"block_table": paged.block_table, "page_size": page_size}
    return spec, inputs, k, v, cache


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("page_size", [None, 16])
def test_one_long_among_short_matches_the_reference(page_size, fused):
    """A 300-token cache among caches of 7, 40, 1 and 21 tokens, on 8 slots with granules of 16: the long one
    is cut into pieces (a split request combined: by a second launch, or fused, by its last piece), the short
    ones written directly. Twice: the fused merge's counters are back at zero after each call."""
    from frameworks.triton import ops
    from harness.reference import check_output, reference_attention

    spec, inputs, k, v, cache = _ragged(_mix([7, 300, 40, 1, 21]), page_size)
    op = ops.WorkDecode(inputs.q, k, v, list(spec.batch.kv_lens), granule=GRANULE_HERE, sms=8, fused=fused, **cache)
    assert op.plan.splits[1] > 1 and op.plan.splits[0] == op.plan.splits[3] == 1
    assert op.info()["split_rule"] == "work" and op.info()["split_requests"] >= 1
    assert (op.info().get("combine") == "fused") == fused
    requests = list(range(spec.batch_size))
    reference = reference_attention(spec, inputs, requests)
    for _ in range(2):
        check = check_output(spec, op(), reference, requests)
        assert check.ok, check.problem
        assert not op.counters.any()


def test_the_work_list_locates_each_items_pieces_and_counter():
    plan = plan_work([300, 7, 40, 100], 2, 8, granule=16)
    items, _ = work_tensors(plan, torch.device("cpu"))
    counters = set()
    for request, head, _, _, part, first, pieces, counter in items.tolist():
        assert pieces == plan.splits[request]
        if pieces == 1:
            assert (part, first, counter) == (-1, -1, -1)
            continue
        assert first <= part < first + pieces
        counters.add((request, head, counter))
    split_heads = {(r, h) for r, _, _ in plan.combined for h in range(2)}
    assert {(r, h) for r, h, _ in counters} == split_heads
    assert sorted(c for _, _, c in counters) == list(range(len(split_heads)))  # one counter a split (request, head)


def test_many_pieces_are_combined_beyond_one_block_of_them():
    """A request cut into more pieces than the combine reads at once (BLOCK_S ≤ 16): two rounds of the loop."""
    from frameworks.triton import ops
    from harness.reference import check_output, reference_attention

    spec, inputs, k, v, cache = _ragged(_mix([640, 3]), None)
    op = ops.WorkDecode(inputs.q, k, v, list(spec.batch.kv_lens), granule=GRANULE_HERE, sms=64, **cache)
    assert op.plan.splits[0] > 16 and op.block_s == 16
    check = check_output(spec, op(), reference_attention(spec, inputs, [0, 1]), [0, 1])
    assert check.ok, check.problem


@pytest.mark.parametrize("rule", ["work", "work-fused"])
@pytest.mark.parametrize("what", ["decode", "decode-paged", "q1s90_q1s5_q1s30", "q20s40_q1s90_2q1s9"])
def test_the_backend_runs_the_work_rule_as_a_variant_and_the_row_says_so(what, rule):
    """`triton[splits=work]`: the uniform decode (dense and paged), a ragged decode batch, and the decodes of a
    mixed batch through the work list, each matching the reference, the row naming the rule."""
    from frameworks import get_backend
    from harness.env import collect
    from harness.measure import MeasureConfig, Measurer
    from harness.store import Status
    from harness.timer import Repetition

    from .helpers import tiny_spec

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # on the GPU host: the compiled kernels
    config = MeasureConfig(device=device.type, repetition=Repetition(iterations=1, warmup=0), run_id="test")
    if what.startswith("decode"):
        spec = tiny_spec("decode", group=4, kv_len=70, batch=3, page_size=16 if what.endswith("paged") else None)
    else:
        spec = ExperimentSpec.from_mix(what, 8, 2, 64)
    row = Measurer(config, collect(device, "test")).measure(spec, get_backend(f"triton[splits={rule}]"))
    assert row.status is Status.OK, row.reason
    assert row.variant == f"splits={rule}" and '"split_rule":"work"' in row.backend_info and row.rel_err < 1e-2
