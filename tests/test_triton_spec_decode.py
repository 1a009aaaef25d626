"""Speculative steps through the split-KV work list (ops.WorkDecode with q_lens; the triton backend's
`spec=split-kv`): every request's query tokens × its KV head's query group are the rows of one program, the keys
split by the work as the decodes' are, each row causal bottom-right, the combine merging a (token, query head) row.
On the CPU under Triton's interpreter at tiny shapes against the fp32 reference (dense and paged, group 1 and 4,
q_len 1-5, a window, sinks, a soft-cap, an FP8 cache, rows in tiles); a mixed batch's short requests (steps,
decodes, and chunks of at most 64 tokens on caches of 64 keys a token: ops.on_work_list) on the work list beside the
varlen launch of its longer ones (ops.MixedWork), wherever they sit; on a GPU the same cases compiled
with caches scaled to its 128-key granule, and real shapes
(python3 -m pytest -q -n 0 -m gpu tests/test_triton_spec_decode.py)."""

from dataclasses import replace

import pytest
import torch

pytest.importorskip("triton")

import triton

from frameworks import get_backend
from frameworks._paged import to_paged_ragged
from frameworks.triton import ops
from frameworks.triton.schedule import plan_work, window_start
from harness.inputs import make_inputs
from harness.reference import check_output, reference_attention
from specs import ExperimentSpec

from .helpers import measurer_on, tiny_spec

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
# split boundaries at multiples of every decode BLOCK_N: 16 under the interpreter, 128 compiled. The cases are
# written in granules (U), so that the pieces fall where the case needs them on either
U = 16 if DEVICE.type == "cpu" else 128
HEAD_DIM = 16 if DEVICE.type == "cpu" else 64
MANY_SLOTS = 4096  # the planner then cuts every cache into pieces of one granule: the most pieces and edges


def _mix(requests) -> str:
    return "_".join(f"q{q}s{n}" for q, n in requests)


def _case(requests, group: int, page_size: int | None, **forms):
    spec = ExperimentSpec.from_mix(_mix(requests), 2 * group, 2, HEAD_DIM, page_size=page_size, **forms)
    inputs = make_inputs(spec, DEVICE)
    if spec.sinks:  # sinks that weigh ~5-10% of a row, so that one added twice or not at all shows
        inputs = replace(inputs, sinks=inputs.sinks + 3.0)
    k, v, cache = inputs.k, inputs.v, {"cu_seqlens_k": inputs.cu_seqlens_k}
    if page_size:
        paged = to_paged_ragged(k, v, spec.batch.kv_lens, page_size)
        k, v, cache = paged.k_pages, paged.v_pages, {"block_table": paged.block_table, "page_size": page_size}
    forms = ops.Forms(spec.window, inputs.sinks if spec.sinks else None, spec.softcap, inputs.k_scale, inputs.v_scale)
    return spec, inputs, k, v, {**cache, "forms": forms}


# (requests as (q_len, kv_len), group, page size, forms, WorkDecode's slots, fused, rows a program)
CASES = {
    # q_len 1-5 in one batch (Q_LEN 5: the q3 request's pieces leave tokens 3-4 to nobody), the long cache split
    "ragged-dense-g4": ([(3, 19 * U - 4), (1, 7), (5, 9 * U - 4), (2, 2 * U + 1)], 4, None, {}, 8, False, 64),
    "ragged-page16-g1": ([(3, 19 * U - 4), (1, 7), (5, 9 * U - 4), (2, 2 * U + 1)], 1, 16, {}, 8, False, 64),
    # pieces of one granule: the first (a window of 3U + 2 keys from 10U − 1 on) and the last (two keys past 8U) hold
    # keys that some rows never see, whose partials are empty (output 0, log-sum-exp −inf) and must weigh nothing
    "window-sinks-edges": (
        [(4, 13 * U + 5), (4, 8 * U + 2)],
        4,
        None,
        dict(window=3 * U + 2, sinks=True, dtype="fp16"),
        MANY_SLOTS,
        False,
        64,
    ),
    "softcap-edges-fused": ([(4, 13 * U + 5), (4, 8 * U + 2)], 4, 16, dict(softcap=2.0), MANY_SLOTS, True, 64),
    # 16 rows a program: q_len 5 × group 4 in two row tiles of 4 tokens (the q4 request's second tile has none)
    "row-tiles": ([(5, 19 * U - 4), (4, 2 * U + 8)], 4, None, {}, 8, False, 16),
    "fp8-page16": ([(4, 12 * U + 8), (4, 5 * U - 3)], 4, 16, dict(kv_dtype="fp8_e4m3", kv_scale="head"), 8, False, 64),
    # a mixed batch the work list takes whole: a 17-token chunk on 64 keys a token (ops.on_work_list) in two row tiles
    # of 16 tokens, a decode in the first only
    "chunk-and-decode": ([(17, 68 * U + 5), (1, 9 * U + 3)], 4, None, {}, 8, False, 64),
}


@pytest.mark.filterwarnings("ignore:divide by zero encountered in log2")  # an empty row's lse: log2(0) = −inf
@pytest.mark.parametrize("name", CASES)
def test_speculative_steps_on_the_work_list_match_the_reference(name):
    requests, group, page_size, forms, sms, fused, rows = CASES[name]
    spec, inputs, k, v, kw = _case(requests, group, page_size, **forms)
    op = ops.WorkDecode(inputs.q, k, v, list(spec.batch.kv_lens), q_lens=list(spec.batch.q_lens), granule=U,
                        sms=sms, fused=fused, max_rows=rows, **kw)  # fmt: skip
    info = op.info()
    assert info["kernel"] == "work-decode" and info["q_len"] == spec.q_len and info["split_requests"] >= 1, info
    tile = min(spec.q_len, rows // group)  # whole tokens a program
    assert info["rows"] == max(16, triton.next_power_of_2(tile * group)), info
    if name == "row-tiles":
        assert info["row_tiles"] == 2 and op.plan.kv_heads == 2 * 2  # each KV head's rows in two tiles
    everyone = list(range(spec.batch_size))
    reference = reference_attention(spec, inputs, everyone)
    for _ in range(2 if fused else 1):  # fused: the counters are back at zero for the second call
        check = check_output(spec, op(), reference, everyone)
        assert check.ok, check.problem
        assert not op.counters.any()


def test_a_uniform_step_batch_and_its_row_say_which_kernel_ran():
    """`triton[spec=split-kv]` on a uniform spec-decode spec ([B, q_len, Hq, D], paged) and a ragged one: the
    work list ran, and the row says so with its q_len and splits; the default (auto) runs the work list on a few
    requests and the varlen kernel on many short dense caches."""
    from harness.store import Status

    measurer = measurer_on(DEVICE.type, iterations=1, warmup=0)
    uniform = tiny_spec("spec-decode", group=4, batch=2, kv_len=3 * U + 5, chunk=4, page_size=16)
    ragged = ExperimentSpec.from_mix(_mix([(3, 2 * U + 9), (3, 5)]), 8, 2, 64)
    beside_decodes = ExperimentSpec.from_mix(_mix([(3, 2 * U + 9), (1, 5), (1, U + 3)]), 8, 2, 64, page_size=16)
    # a uniform append whose chunk the work list takes (at most 64 tokens on 64 keys a token): whole on it, paged too
    append = tiny_spec("append", group=4, batch=2, kv_len=64 * 20 + 7, chunk=20, page_size=16)
    for spec in (uniform, ragged, beside_decodes, append, replace(append, page_size=None)):
        row = measurer.measure(spec, get_backend("triton[spec=split-kv]"))
        assert row.status is Status.OK, row.reason
        assert row.variant == "spec=split-kv" and row.rel_err < 1e-2
        assert f'"kernel":"work-decode","split_rule":"work","q_len":{spec.q_len}' in row.backend_info, row.backend_info
        assert '"splits":' in row.backend_info
    # the default (spec=auto): the steps of two requests to the work list, those of 17 on short dense caches (34
    # row-block programs) to the varlen kernel
    row = measurer.measure(ragged, get_backend("triton"))
    assert row.status is Status.OK and row.variant == "" and '"kernel":"work-decode"' in row.backend_info
    many = ExperimentSpec.from_mix(_mix([(3, 2 * U + 9)] * 16 + [(3, U)]), 8, 2, 64)
    row = measurer.measure(many, get_backend("triton"))
    assert row.status is Status.OK and row.variant == "" and '"kernel":"varlen"' in row.backend_info


def test_the_variant_is_planned_on_the_specs_it_changes():
    """Steps alone, steps beside decodes, and a mixed batch whose short requests (a step, a decode before a chunk)
    sit beside longer ones; not a decode, an append, a mixed batch whose only short requests are its trailing
    decodes (Mixed's, split as the splits key says), nor one with no request of 16 tokens or fewer."""
    from harness.plan import plan_tasks

    beside_decodes = ExperimentSpec.from_mix("q4s90_3q1s30", 8, 2, 64)  # a mixed batch of steps and decodes
    step_and_chunk = ExperimentSpec.from_mix("q4s900_q21s90", 8, 2, 64)  # q4s11397_q21s1239, scaled down
    decode_first = ExperimentSpec.from_mix("q1s900_q30s90_q1s30", 8, 2, 64)
    long_cache_append = tiny_spec("append", chunk=17, kv_len=64 * 17)  # a chunk the work list takes, uniform
    many_short = ExperimentSpec.from_mix("17q4s300", 8, 2, 64)  # 34 row-block programs on short dense caches
    steps = [tiny_spec("spec-decode", chunk=4), ExperimentSpec.from_mix("q4s90_q2s30", 8, 2, 64), beside_decodes,
             step_and_chunk, decode_first, long_cache_append, many_short]  # fmt: skip
    no_short = ExperimentSpec.from_mix("q40_q17s90", 8, 2, 64)  # a prompt and a chunk: mixed, nothing short
    others = [
        tiny_spec("decode"),
        tiny_spec("append", chunk=17, kv_len=64 * 17 - 1),
        ExperimentSpec.from_mix("q17s90_3q1s30", 8, 2, 64),
        no_short,
    ]
    assert no_short.workload.value == "mixed" and step_and_chunk.workload.value == "mixed"
    tasks = plan_tasks([*steps, *others], ["triton[*]"])
    # the default (auto) takes the mixed ones and the steps of a few row-block programs to the work list: there the
    # contender is varlen; on many short dense caches split-kv (one of the two on each, never both)
    taken = steps[:-1]
    assert [t.spec for t in tasks if t.variant == "spec=varlen"] == taken
    assert [t.spec for t in tasks if t.variant == "spec=split-kv"] == [s for s in steps if s not in taken]
    assert {"spec=varlen", "spec=split-kv"} <= set(type(get_backend("triton")).contender_variants())


def test_a_step_beyond_the_bound_or_its_cache_is_refused():
    spec, inputs, k, v, kw = _case([(4, 40), (2, 9)], 1, None)
    with pytest.raises(ValueError, match="takes at most 64"):
        ops.WorkDecode(inputs.q, k, v, [70, 9], q_lens=[ops.SPLIT_KV_MAX_CHUNK + 1, 2], **kw)
    with pytest.raises(ValueError, match="do not fit kv_lens"):
        ops.WorkDecode(inputs.q, k, v, [3, 9], q_lens=[4, 2], **kw)


def test_a_windowed_step_is_planned_from_its_first_tokens_window():
    """Token 0 of a q_len-token step sits q_len − 1 keys before the last: its window starts the request's keys."""
    kv_lens, q_lens = [131072, 5000, 100], [8, 3, 5]
    plan = plan_work(kv_lens, 8, 132, window=4096, q_lens=q_lens)
    for request, (n, q) in enumerate(zip(kv_lens, q_lens)):
        ranges = sorted((i.lo, i.hi) for i in plan.items if i.request == request and i.kv_head == 0)
        assert ranges[0][0] == window_start(n - q + 1, 4096, 128) and ranges[-1][1] == n
        assert ranges[0][0] <= max(0, n - q - 4096) < ranges[0][0] + 128
    assert plan_work([5000], 8, 132, window=4096).items[0].lo == window_start(5000, 4096, 128)  # a decode's, as before


# ---- a mixed batch's short requests on the work list, its longer ones through varlen (ops.MixedWork) -----------

# (requests as (q_len, kv_len), group, page size, forms, the work list's slots, the varlen launch's order): the short
# ones (<= 16 tokens, or a chunk of <= 64 on 64 keys a token: ops.on_work_list) wherever they sit; every case's
# longest short request split into pieces
INTERLEAVED = [(20, 3 * U), (1, 9 * U + 3), (3, 6 * U + 1), (17, 2 * U + 4), (5, 11 * U), (1, 7)]
FP8 = dict(kv_dtype="fp8_e4m3", kv_scale="head")
LONG_CACHE_CHUNK = [(40, 40), (17, 68 * U + 5), (33, 40), (1, 9 * U + 3), (1, 5 * U - 3)]
MIXED_CASES = {
    # q4s11397_q21s1239 scaled down: a step on a long cache first, then a chunk on a short one
    "step-then-chunk-dense": ([(4, 19 * U + 5), (21, 3 * U - 5)], 4, None, {}, 8, "longest-first"),
    "step-then-chunk-page16": ([(4, 19 * U + 5), (21, 3 * U - 5)], 1, 16, {}, 8, "longest-first"),
    # chunk, decode, step, chunk, step, decode: each short request's rows at its own place in the packed q
    "interleaved-page16-tiles": (INTERLEAVED, 2, 16, {}, 32, "tiles"),  # a grid of the long requests' row blocks
    # pieces of one granule: the window's first piece and the steps' last ones hold keys some rows never see
    "interleaved-window-sinks": (INTERLEAVED[:5], 2, None, dict(window=3 * U + 2, sinks=True), MANY_SLOTS, "simple"),
    "fp8-page16": ([(4, 12 * U + 8), (33, 40), (1, 5 * U - 3)], 4, 16, FP8, 8, "longest-first"),
    # decodes only among the short ones, one before a chunk: a decode's row from CU_Q (PACKED_ROWS), split and merged
    "decodes-before-a-chunk": ([(1, 9 * U + 3), (30, 2 * U), (1, 33)], 4, None, {}, 8, "longest-first"),
    # draw:79 scaled down: a prompt, a 17-token chunk on a cache of 64 keys a token or more (the work list's, in two
    # row tiles of 16 tokens at group 4, the decodes in the first only), a chunk on a short prefix (varlen's), decodes
    "long-cache-chunk-dense": (LONG_CACHE_CHUNK, 4, None, {}, 8, "longest-first"),
    # a 20-token chunk first (its second row tile holds 4 tokens), a step, a prompt, a decode
    "long-cache-chunk-page16": ([(20, 80 * U + 3), (3, 9 * U + 1), (40, 40), (1, 5 * U - 3)], 4, 16, {}, 8, "simple"),
}


@pytest.mark.filterwarnings("ignore:divide by zero encountered in log2")  # an empty row's lse: log2(0) = −inf
@pytest.mark.parametrize("name", MIXED_CASES)
def test_a_mixed_batchs_short_requests_on_the_work_list_match_the_reference(name):
    requests, group, page_size, forms, sms, schedule = MIXED_CASES[name]
    spec, inputs, k, v, kw = _case(requests, group, page_size, **forms)
    op = ops.MixedWork(inputs.q, k, v, spec.batch.q_lens, spec.batch.kv_lens, spec.causal, granule=U, sms=sms,
                       schedule=schedule, **kw)  # fmt: skip
    short = [i for i, (q, n) in enumerate(requests) if ops.on_work_list(q, n)]
    assert op.decodes.requests == short
    assert sorted(op.chunks.order.tolist()) == [i for i in range(len(requests)) if i not in short]
    longest = max(range(len(short)), key=lambda i: requests[short[i]][1])  # the plan's own index of it
    assert op.decodes.plan.splits[longest] > 1, op.decodes.plan  # its keys really split over the programs
    tiles, tile_q = op.decodes.row_tiles, op.decodes.rows_kw.get("TILE_Q", 1)  # no item in a row tile without rows
    assert all(i.kv_head % tiles * tile_q < requests[short[i.request]][0] for i in op.decodes.plan.items)
    info = op.info()
    assert (info["kernel"], info["short_requests"]) == ("two launches", "work-list"), info
    assert [launch["kernel"] for launch in info["launches"]] == ["varlen", "work-decode"], info
    assert [launch["requests"] for launch in info["launches"]] == [len(requests) - len(short), len(short)], info
    chunks = sum(requests[i][0] > ops.SPLIT_KV_MAX_Q for i in short)  # chunks on long caches on the work list
    assert info.get("work_list_chunks", 0) == chunks, info
    everyone = list(range(spec.batch_size))
    check = check_output(spec, op(), reference_attention(spec, inputs, everyone), everyone)
    assert check.ok, check.problem


def test_a_mixed_batch_routed_by_the_variant_says_what_ran():
    """`triton[spec=split-kv]` on a step before a chunk and a decode: the row names the two launches, the short
    requests on the work list and the chunk through varlen, each with its number of requests."""
    from frameworks import info_dict
    from harness.store import Status

    measurer = measurer_on(DEVICE.type, iterations=1, warmup=0)
    spec = ExperimentSpec.from_mix(_mix([(4, 9 * U + 5), (21, 3 * U - 5), (1, U + 3)]), 8, 2, 64, page_size=16)
    row = measurer.measure(spec, get_backend("triton[spec=split-kv]"))
    assert row.status is Status.OK and row.rel_err < 1e-2, row.reason
    info = info_dict(row.backend_info)
    assert (info["kernel"], info["short_requests"]) == ("two launches", "work-list"), info
    varlen, work = info["launches"]
    assert (varlen["kernel"], varlen["requests"]) == ("varlen", 1), info
    assert (work["kernel"], work["requests"], work["q_len"]) == ("work-decode", 2, 4), info


def test_a_chunk_on_a_long_cache_routed_by_the_variant_says_what_ran():
    """`triton[spec=split-kv]` on a prompt, a 17-token chunk on a cache of 64 keys a token and a decode (page 16, group
    4 on one KV head): the row names the chunk and the decode on the work list (q_len 17 in two row tiles,
    work_list_chunks 1) and the prompt through varlen."""
    from frameworks import info_dict
    from harness.store import Status

    measurer = measurer_on(DEVICE.type, iterations=1, warmup=0)
    spec = ExperimentSpec.from_mix(_mix([(24, 24), (17, 68 * U + 5), (1, U + 3)]), 4, 1, 64, page_size=16)
    row = measurer.measure(spec, get_backend("triton[spec=split-kv]"))
    assert row.status is Status.OK and row.rel_err < 1e-2, row.reason
    info = info_dict(row.backend_info)
    assert (info["kernel"], info["short_requests"], info["work_list_chunks"]) == ("two launches", "work-list", 1), info
    varlen, work = info["launches"]
    assert (varlen["kernel"], varlen["requests"]) == ("varlen", 1), info
    assert (work["kernel"], work["requests"], work["q_len"], work["row_tiles"]) == ("work-decode", 2, 17, 2), info


def test_the_routing_puts_a_chunk_on_a_long_cache_on_the_work_list_and_a_prompt_on_varlen():
    """ops.on_work_list, what MixedWork and the variant's predicates route by: steps and decodes (<= 16 tokens), and
    a chunk of at most 64 tokens whose cache holds 64 keys a token or more (draw:79's 51 tokens on 25,164 keys); a
    prompt (kv_len = q_len), a chunk one key short of 64 a token, or of 65 tokens on any cache: the varlen kernel."""
    requests = [(51, 25164), (40, 40), (17, 1088), (17, 1087), (64, 4096), (65, 10**6), (16, 16), (4, 900), (1, 7)]
    listed = [ops.on_work_list(q, n) for q, n in requests]
    assert listed == [True, False, True, False, True, False, True, True, True]
    q_lens, kv_lens = zip(*requests)
    assert ops.short_and_long(q_lens, kv_lens) == ([0, 2, 4, 6, 7, 8], [1, 3, 5])
    draw79 = ExperimentSpec.from_mix("q115s120_q65s1402_q39s77_q51s25164_q1s300", 32, 8, 128)
    assert [ops.on_work_list(q, n) for q, n in zip(draw79.batch.q_lens, draw79.batch.kv_lens)] == [
        False, False, False, True, True]  # fmt: skip


def test_a_subset_of_requests_is_checked():
    spec, inputs, k, v, kw = _case([(4, 40), (65, 70)], 1, None)
    with pytest.raises(ValueError, match="is not a set of indices"):
        ops.WorkDecode(inputs.q, k, v, [40, 70], q_lens=[4, 65], requests=[0, 0], **kw)
    with pytest.raises(ValueError, match="takes at most 64"):
        ops.WorkDecode(inputs.q, k, v, [40, 70], q_lens=[4, 65], requests=[0, 1], **kw)
    with pytest.raises(ValueError, match="needs requests the work list takes"):
        ops.MixedWork(inputs.q, k, v, [17, 65], [40, 70], True, **kw)


# ---- real shapes on the GPU (skipped without CUDA) -----------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize(
    "model,mix,page,forms",
    [
        ("Llama-3.1-8B", "16q4s4k", None, {}),  # the uniform-ish draft batch of the generalization preset
        ("Llama-3.1-8B", "q4s57k_q4s30k_10q4s8k", 16, {}),  # one long cache among short ones
        ("Llama-3.1-8B", "2q16s128k", 16, {}),  # the bound: 16 tokens × group 4 = 64 rows, one tile
        ("Qwen3-30B-A3B", "4q16s32k_q5s3k", None, {}),  # group 8: 128 rows in two tiles of 8 tokens
        ("gpt-oss-120b", "8q8s32k", 16, dict(window=128, sinks=True)),  # group 8, d 64: a window and sinks
        ("Llama-3.1-8B", "4q4s64k", 16, dict(kv_dtype="fp8_e4m3", kv_scale="head")),
        ("Llama-3.1-8B", "8q4s16k_32q1s4k_q1s100k", 16, {}),  # steps beside decodes: a mixed batch
    ],
)  # fmt: skip
def test_speculative_steps_at_real_shapes_on_gpu(model, mix, page, forms):
    """Each spec through `triton[spec=split-kv]` beside the default: both ok against the reference, the variant's
    row naming the work list, its q_len, splits and row tiles."""
    from specs.models import MODELS

    shape = MODELS[model]
    spec = ExperimentSpec.from_mix(mix, shape.num_q_heads, shape.num_kv_heads, shape.head_dim, page_size=page,
                                   model=model, **forms)  # fmt: skip
    info = _split_kv_beside_the_default(spec)
    assert info["kernel"] == "work-decode" and info["q_len"] == spec.q_len, info
    group = shape.num_q_heads // shape.num_kv_heads
    assert info["row_tiles"] == -(-spec.q_len * group // ops.SPLIT_KV_ROWS), info


def _split_kv_beside_the_default(spec) -> dict:
    """`triton` and `triton[spec=split-kv]` measured on the GPU, both ok against the reference; the variant's
    backend_info."""
    from frameworks import info_dict
    from harness.store import Status

    measurer = measurer_on("cuda", iterations=5, warmup=2)
    rows = {b: measurer.measure(spec, get_backend(b)) for b in ("triton", "triton[spec=split-kv]")}
    for backend, row in rows.items():
        assert row.status is Status.OK, f"{backend}: {row.status}: {row.reason}"
        assert row.rel_err < 2e-2, (backend, row.rel_err)
    return info_dict(rows["triton[spec=split-kv]"].backend_info)


@pytest.mark.gpu
@pytest.mark.parametrize("mix", ["q4s11397_q21s1239", "q8s11499_q917_q1s506"])  # draw:26, draw:5 (issue #30)
@pytest.mark.parametrize("page", [None, 16])
def test_a_mixed_batchs_short_requests_at_real_shapes_on_gpu(mix, page):
    """The drawn mixed batches whose step on a long cache sat beside a chunk or a prompt: through
    `triton[spec=split-kv]` (two launches on two streams, the step and the decode on the work list) and the
    default, both ok against the reference."""

    spec = ExperimentSpec.from_mix(mix, 32, 8, 128, page_size=page, model="Llama-3.1-8B")
    info = _split_kv_beside_the_default(spec)
    assert (info["kernel"], info["streams"], info["short_requests"]) == ("two launches", 2, "work-list"), info
    work = info["launches"][1]
    assert work["kernel"] == "work-decode" and work["split_requests"] >= 1, info


@pytest.mark.gpu
@pytest.mark.parametrize("page", [None, 16])
def test_a_chunk_on_a_long_cache_at_real_shapes_on_gpu(page):
    """draw:79's mix (a 51-token chunk on 25,164 keys beside a prompt, two chunks on short prefixes and ~80
    decodes; here the first decode only) at Llama-3.1-8B's heads: through `triton[spec=split-kv]` the chunk and the
    decode on the work list (51 tokens in 4 row tiles of 16, its keys split), the prompt and the other chunks
    through varlen, and the default, both ok against the reference."""
    spec = ExperimentSpec.from_mix("q115s120_q65s1402_q39s77_q51s25164_q1s300", 32, 8, 128, page_size=page,
                                   model="Llama-3.1-8B")  # fmt: skip
    info = _split_kv_beside_the_default(spec)
    assert (info["kernel"], info["streams"], info["work_list_chunks"]) == ("two launches", 2, 1), info
    varlen, work = info["launches"]
    assert (varlen["kernel"], varlen["requests"]) == ("varlen", 3), info
    assert (work["kernel"], work["requests"], work["q_len"], work["row_tiles"]) == ("work-decode", 2, 51, 4), info
    assert work["split_requests"] >= 1, info
