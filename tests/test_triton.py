"""The in-repo Triton kernels against the fp32 reference: on the CPU under TRITON_INTERPRET=1 (set by
conftest when there is no GPU), on the GPU compiled."""

import itertools
import math

import pytest
import torch

triton = pytest.importorskip("triton")

from frameworks import VariantError, get_backend, info_dict
from frameworks._paged import to_paged
from frameworks.triton import ops
from harness.inputs import make_inputs
from harness.reference import check_output, reference_attention
from harness.store import Status

from .helpers import cpu_measurer, measurer_on, tiny_spec

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def measured_once():
    """A measurer of one timed call on DEVICE: a row is still the checked call (status, rel_err, backend_info) and
    the timer's own two calls after it. On the CPU the interpreter's timings mean nothing, and each interpreted call
    of a kernel costs up to seconds (four a row with two timed calls); on a GPU host (no interpreter) the same rows
    come from the compiled kernels."""
    return cpu_measurer(iterations=1) if DEVICE.type == "cpu" else measurer_on("cuda", iterations=1, warmup=0)


def info(row) -> dict:
    """A row's backend_info as the dict the Triton adapter reported."""
    return info_dict(row.backend_info)


def launches(info: dict) -> list[dict]:
    """The launches a backend_info describes: a Mixed op's two, else the one."""
    return info.get("launches", [info])


def bad_variant(text: str, match: str):
    """A variant value the backend does not declare is refused when the backend is made, naming the allowed."""
    with pytest.raises(VariantError, match=match):
        get_backend(text)


@pytest.mark.parametrize("page_size", [None, 16, 5])
@pytest.mark.parametrize("group", [1, 4, 8, 16])
@pytest.mark.parametrize("workload", ["prefill", "append", "decode"])
def test_triton_backend_matches_reference(workload, group, page_size):
    if DEVICE.type == "cuda":
        pytest.skip("covered at real sizes by tests/test_gpu.py")
    spec = tiny_spec(workload, group=group, kv_len=40, chunk=12, page_size=page_size)  # ragged tiles and pages
    row = measured_once().measure(spec, get_backend("triton"))
    assert row.status is Status.OK, row.reason
    assert row.rel_err < 1e-2 and "BLOCK_N" in info(row)


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
@pytest.mark.parametrize("paged", [False, True])
def test_split_decode_matches_reference(paged, dtype):
    spec = tiny_spec("decode", group=8, kv_len=200, batch=3, dtype=dtype)
    inputs = make_inputs(spec, DEVICE)
    k, v, table, page = inputs.k, inputs.v, None, None
    if paged:
        cache = to_paged(k, v, 16)
        k, v, table, page = cache.k_pages, cache.v_pages, cache.block_table, 16
    op = ops.Decode(inputs.q, k, v, spec.kv_len, table, page, num_splits=5, granule=16)
    assert op.splits == 5
    ref = reference_attention(spec, inputs, [0, 1, 2])
    check = check_output(spec, op(), ref, [0, 1, 2])
    assert check.ok, check.problem


def test_combine_is_exact_and_finite_for_extreme_logits():
    batch, kv_heads, group, splits, dim = 2, 2, 4, 6, 64
    block_g = 16
    gen = torch.Generator().manual_seed(0)
    o_part = torch.randn(batch * kv_heads * splits, block_g, dim, generator=gen).to(DEVICE)
    # log2-domain LSEs far beyond exp range: one split dominates, others vanish, some tie
    lse = torch.tensor([3e4, -3e4, 2.9999e4, -1e30, 0.0, 3e4]).repeat(batch * kv_heads, block_g, 1)
    lse = lse.permute(0, 2, 1).reshape(batch * kv_heads * splits, block_g).contiguous().to(DEVICE)
    out = torch.empty(batch, 1, kv_heads * group, dim, device=DEVICE)
    ops.combine(o_part, lse, out, kv_heads, group, splits)
    assert torch.isfinite(out).all()
    parts = o_part.double().view(batch, kv_heads, splits, block_g, dim)[:, :, :, :group]
    weights = torch.softmax(lse.double().view(batch, kv_heads, splits, block_g)[:, :, :, :group] * math.log(2), dim=2)
    expected = (parts * weights[..., None]).sum(2).reshape(batch, 1, kv_heads * group, dim)
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)


def test_split_heuristic_fills_the_gpu_only_when_needed():
    h100_sms = 132
    assert ops.choose_splits(256, 8, 4096, h100_sms)[0] == 1  # 2048 programs already fill it
    splits, tokens = ops.choose_splits(1, 8, 32768, h100_sms)
    assert (
        8 * splits >= 0.9 * ops.PROGRAMS_PER_SM * h100_sms and tokens % ops.SPLIT_GRANULE == 0
    )  # less the rounding to whole granules
    assert (splits - 1) * tokens < 32768 <= splits * tokens  # no empty split
    assert ops.choose_splits(1, 8, 100, h100_sms) == (1, 128)


def _slots_used(kv_lens, kv_heads, tokens, sms):
    """Share of the program slots of the waves a decode launch needs that hold a working program."""
    programs = kv_heads * sum(-(-n // tokens) for n in kv_lens)
    return programs / (-(-programs // sms) * sms)


def test_the_waves_split_rule_fills_whole_waves_and_sizes_splits_by_the_work():
    """The variant splits=waves (ops.choose_splits_waves), at the sizes that showed the problem on the
    H200 (132 SMs): batch 1 × 128k with 8 KV heads, where "fill" launches 136 programs (a second wave of 4),
    and the long-decode mix (128k, 2 × 64k, 4 × 32k), where "fill" sizes the splits by the 128k cache and
    leaves a third of the SMs without work."""
    sms = 132
    splits, tokens = ops.choose_splits_waves([131072], 8, sms)
    assert ops.choose_splits(1, 8, 131072, sms)[0] * 8 > sms  # what "fill" does: one wave and a bit
    assert 0.9 * sms <= 8 * splits <= sms and tokens % ops.SPLIT_GRANULE == 0
    assert (splits - 1) * tokens < 131072 <= splits * tokens  # no empty split
    assert ops.choose_splits_waves([4096], 256 * 8, sms) == (1, 4096)  # the readme batch fills the GPU unsplit
    long_decode = [131072, 65536, 65536, *[32768] * 4]
    fill_tokens = ops.choose_splits(7, 8, 131072, sms)[1]
    splits, tokens = ops.choose_splits_waves(long_decode, 8, sms)
    assert _slots_used(long_decode, 8, fill_tokens, sms) < 0.7 < 0.9 < _slots_used(long_decode, 8, tokens, sms)
    assert ops.choose_splits_waves([0, 0], 8, sms) == (1, ops.SPLIT_GRANULE)  # empty caches: one split, no error
    decode_heavy = [1024 + 56 * i for i in range(127)]  # a wave or more of programs unsplit: no split
    whole = -(-max(decode_heavy) // ops.SPLIT_GRANULE) * ops.SPLIT_GRANULE  # the longest cache in whole granules
    assert ops.choose_splits_waves(decode_heavy, 8, sms) == (1, whole)


def _uneven_decodes(page_size):
    """Four decodes on caches of 7, 40, 100 and 1 tokens (16 query heads, 2 KV heads, D 64), dense packed or
    in shuffled pages: (spec, inputs, k, v, kv_lens, the cache's keyword arguments for ops.RaggedDecode)."""
    from frameworks._paged import to_paged_ragged
    from specs import ExperimentSpec

    spec = ExperimentSpec.from_mix("q1s7_q1s40_q1s100_q1", 16, 2, 64)
    inputs = make_inputs(spec, DEVICE)
    kv_lens = torch.tensor(spec.batch.kv_lens, dtype=torch.int32, device=DEVICE)
    cache = {"cu_seqlens_k": inputs.cu_seqlens_k}
    k, v = inputs.k, inputs.v
    if page_size:
        paged = to_paged_ragged(k, v, spec.batch.kv_lens, page_size)
        k, v, cache = paged.k_pages, paged.v_pages, {"block_table": paged.block_table, "page_size": page_size}
    return spec, inputs, k, v, kv_lens, cache


@pytest.mark.parametrize("page_size", [None, 16])
def test_ragged_decode_with_the_waves_rule_matches_the_reference(page_size, monkeypatch):
    """Caches of 7, 40, 100 and 1 tokens, 2 KV heads, granules of 16. On 4 SMs (a CPU) the 8 programs
    unsplit fill two waves, so the rule does not split; on 16, it picks 4 splits of 32 (16 programs, one
    wave of 64 tokens' time, the least of any split), the short requests leaving splits empty. The result
    matches the fp32 reference either way and the row names the rule."""
    spec, inputs, k, v, kv_lens, cache = _uneven_decodes(page_size)
    if DEVICE.type == "cpu":  # 4 "SMs"; a GPU has its own count
        op = ops.RaggedDecode(inputs.q, k, v, kv_lens, spec.kv_len, granule=16, split_rule="waves", **cache)
        assert (op.splits, op.tokens) == (1, 112)
        monkeypatch.setattr(ops, "sm_count", lambda device: 16)
    op = ops.RaggedDecode(inputs.q, k, v, kv_lens, spec.kv_len, granule=16, split_rule="waves", **cache)
    if DEVICE.type == "cpu":
        assert (op.splits, op.tokens) == (4, 32)
    assert op.info()["split_rule"] == "waves"
    ref = reference_attention(spec, inputs, [0, 1, 2, 3])
    check = check_output(spec, op(), ref, [0, 1, 2, 3])
    assert check.ok, check.problem
    with pytest.raises(ValueError, match="split_rule: 'even' is not valid; expected one of fill, waves"):
        ops.RaggedDecode(inputs.q, k, v, kv_lens, spec.kv_len, split_rule="even", **cache)


@pytest.mark.parametrize("what", ["decode", "3q1s7_q1s40", "q20s30_3q1s17"])
def test_the_variant_picks_the_split_rule_and_the_row_says_which(what):
    from specs import ExperimentSpec

    spec = tiny_spec("decode", kv_len=40, batch=2) if what == "decode" else ExperimentSpec.from_mix(what, 8, 2, 64)
    row = measured_once().measure(spec, get_backend("triton[mixed_launches=2,splits=fill]"))
    decodes = launches(info(row))[-1]  # the split-KV decode launch (a mixed batch's second)
    assert row.status is Status.OK and decodes["split_rule"] == "fill", row.backend_info
    row = measured_once().measure(spec, get_backend("triton[mixed_launches=2]"))  # the default: waves
    assert row.status is Status.OK and row.rel_err < 1e-2, row.reason
    assert launches(info(row))[-1]["split_rule"] == "waves", row.backend_info
    bad_variant("triton[splits=even]", r"splits='even' is not valid; expected one of waves, fill")


@pytest.mark.parametrize("use_tma", [True, False])
@pytest.mark.parametrize("workload", ["prefill", "append", "decode"])
def test_kv_load_paths_and_pinned_configs_match_reference(workload, use_tma):
    """Tile loads through tensor descriptors (TMA) and gathered pointer loads, each with a pinned
    configuration instead of the autotuner: both compute the reference attention."""
    spec = tiny_spec(workload, group=4, kv_len=72, chunk=20, batch=3)
    inputs = make_inputs(spec, DEVICE)
    small = DEVICE.type == "cpu"
    if workload == "decode":
        config = triton.Config({"BLOCK_N": 16 if small else 64}, num_warps=4, num_stages=1 if small else 3)
        op = ops.Decode(
            inputs.q,
            inputs.k,
            inputs.v,
            spec.kv_len,
            num_splits=3,
            granule=16 if small else 64,
            use_tma=use_tma,
            config=config,
        )
    else:
        blocks = {"BLOCK_M": 32, "BLOCK_N": 16} if small else {"BLOCK_M": 128, "BLOCK_N": 64}
        config = triton.Config(blocks, num_warps=4, num_stages=1 if small else 3)
        op = ops.Prefill(inputs.q, inputs.k, inputs.v, spec.kv_len, spec.is_masked, use_tma=use_tma, config=config)
    assert op.kw["TMA"] is use_tma
    assert op.info()["kv_loads"] == ("tma" if use_tma else "gather") and op.info()["warps"] == 4
    ref = reference_attention(spec, inputs, [0, 2])
    check = check_output(spec, op(), ref, [0, 2])
    assert check.ok, check.problem


def test_paged_tiles_use_tma_only_when_a_page_holds_a_whole_tile():
    spec = tiny_spec("append", group=4, kv_len=64)
    inputs = make_inputs(spec, DEVICE)
    for page, expected in [(ops.MAX_BLOCK_N, True), (ops.MAX_BLOCK_N * 2, True), (5, False)]:
        cache = to_paged(inputs.k, inputs.v, page)
        kd, vd, rows = ops.kv_descriptors(cache.k_pages, cache.v_pages, page, use_tma=True)
        assert (kd is not None and vd is not None) is expected and rows == page
    kd, _, _ = ops.kv_descriptors(inputs.k.transpose(1, 2).contiguous().transpose(1, 2), inputs.v, None, use_tma=True)
    assert kd is None  # a strided (non-contiguous) cache falls back to gathered loads


def test_exploration_script_builds_its_variants_and_shapes():
    """The GPU exploration tool imports on any machine and describes valid variants and specs."""
    from tools import triton_explore as explore

    variants = list(explore.prefill_variants())
    assert variants and all({"BLOCK_M", "BLOCK_N"} <= set(c.kwargs) for _, _, c in variants)
    assert any(not tma for _, tma, _ in variants)  # the gathered-load path stays in the comparison
    assert any(c.kwargs.get("QK_AHEAD") for _, _, c in variants)  # and the Q·Kᵀ-ahead attempt
    assert any(c.maxnreg for _, _, c in variants) and any(c.num_warps == 4 for _, _, c in variants)  # occupancy
    decode = list(explore.decode_variants([None, 32]))
    assert {s for _, _, s, _ in decode} == {None, 32}
    spec = explore.spec_for("Qwen3-235B-A22B", "append", 256, 4096, 128)
    assert (spec.q_len, spec.kv_len, spec.gqa_group) == (128, 4096, 16)


def test_a_pinned_configuration_with_a_register_cap_runs_and_says_so():
    """An occupancy variant of the exploration tool: the cap reaches the launch and the row's config."""
    import triton

    spec = tiny_spec("append", group=2, kv_len=40)
    inputs = make_inputs(spec, DEVICE)
    block = {"BLOCK_M": 64, "BLOCK_N": 64} if DEVICE.type == "cuda" else {"BLOCK_M": 32, "BLOCK_N": 16}
    config = triton.Config(block, num_warps=4, num_stages=2, maxnreg=128)
    op = ops.Prefill(inputs.q, inputs.k, inputs.v, spec.kv_len, spec.is_masked, use_tma=False, config=config)
    idx = list(range(spec.batch_size))
    assert check_output(spec, op(), reference_attention(spec, inputs, idx), idx).ok
    assert {"warps": 4, "stages": 2, "maxnreg": 128}.items() <= op.info().items()

    class Launcher:  # stands in for a jitted function: records the launch options it gets
        arg_names = ["X"]

        def __getitem__(self, grid):
            return lambda *args, **kw: seen.update(kw)

    seen = {}
    ops._launch(type("Kernel", (), {"fn": Launcher()})(), (1,), config, (None,), {})
    assert seen["maxnreg"] == 128 and seen["num_warps"] == 4


@pytest.mark.parametrize("page_size", [None, 16, 5])
@pytest.mark.parametrize(
    "mix",
    [
        "q20_3q1s17_2q4s25",  # a whole prompt (chunk = cache), decodes, speculative steps
        "2q9s30_q5",  # chunks on caches, a 5-token prompt
        "3q1s7_q1s40",  # decodes only, one of length 1 past a page boundary
        "q1_q33s34",  # a 1-token prompt; a chunk one shorter than its cache
    ],
)
def test_triton_varlen_matches_reference_on_ragged_and_mixed_batches(mix, page_size):
    if DEVICE.type == "cuda":
        pytest.skip("covered at real sizes by tests/test_gpu.py")
    from specs import ExperimentSpec

    spec = ExperimentSpec.from_mix(mix, 8, 2, 64, page_size=page_size)
    # spec=varlen: the default (auto) would send the steps and short prompts here to the split-KV work list
    row = measured_once().measure(spec, get_backend("triton[spec=varlen]"))
    assert row.status is Status.OK, row.reason
    kernel = "ragged-decode" if spec.batch.kind == "decode" else "varlen"
    assert row.rel_err < 1e-2 and row.checked_batch == spec.batch_size and info(row)["kernel"] == kernel


@pytest.mark.parametrize("page_size", [None, 16])
def test_ragged_decode_splits_per_request_with_empty_splits(page_size):
    """Caches of 7, 40, 100 and 1 tokens cut into 4 splits of 32: the short requests leave splits
    empty (log-sum-exp −inf), which the combine must weigh by zero."""
    spec, inputs, k, v, kv_lens, cache = _uneven_decodes(page_size)
    op = ops.RaggedDecode(inputs.q, k, v, kv_lens, spec.kv_len, num_splits=4, granule=16, **cache)
    assert op.splits == 4 and op.tokens == 32
    ref = reference_attention(spec, inputs, [0, 1, 2, 3])
    check = check_output(spec, op(), ref, [0, 1, 2, 3])
    assert check.ok, check.problem


@pytest.mark.parametrize("page_size", [None, 16])
@pytest.mark.parametrize("mix", ["q20s30_2q4s25_3q1s17", "q9_5q1s40"])
def test_a_mixed_batch_in_two_launches_matches_the_reference(mix, page_size):
    if DEVICE.type == "cuda":
        pytest.skip("covered at real sizes by tests/test_gpu.py")
    from specs import ExperimentSpec

    spec = ExperimentSpec.from_mix(mix, 8, 2, 64, page_size=page_size)
    row = measured_once().measure(spec, get_backend("triton[mixed_launches=2,spec=varlen]"))
    assert row.status is Status.OK, row.reason
    ran = info(row)
    assert row.rel_err < 1e-2 and (ran["kernel"], ran["streams"]) == ("two launches", 1), row.backend_info
    assert ran["launches"][0]["kernel"] == "varlen", row.backend_info


def test_the_variant_picks_the_mixed_launches_for_a_measurement():
    from specs import ExperimentSpec

    spec = ExperimentSpec.from_mix("q20s30_3q1s17", 8, 2, 64)
    assert info(measured_once().measure(spec, get_backend("triton[mixed_launches=2]")))["kernel"] == "two launches"
    assert info(measured_once().measure(spec, get_backend("triton[mixed_launches=1]")))["kernel"] == "varlen"
    bad_variant("triton[mixed_launches=3]", r"mixed_launches='3' is not valid; expected one of 2, 1")


def test_the_two_launch_split_needs_decodes_after_other_requests():
    assert ops.split_point((0, 20, 24, 28, 29, 30)) == 3  # q20, q4, q4, then two decodes
    assert ops.split_point((0, 1, 2)) is None  # decodes only
    assert ops.split_point((0, 1, 21)) is None  # a decode before the chunk


@pytest.mark.parametrize("schedule", ["longest-first", "simple", "tiles"])
@pytest.mark.parametrize("page_size", [None, 16])
def test_every_varlen_schedule_matches_the_reference(schedule, page_size):
    """The heaviest request (q20 on 30 keys) sits in the middle of the batch, so longest-first launches the
    requests in another order than the batch's, and its causal row blocks last first; "tiles" does the same
    over a grid of the row blocks that hold rows (a decode's one block beside the q20's several)."""
    if DEVICE.type == "cuda":
        pytest.skip("covered at real sizes by tests/test_gpu.py")
    from specs import ExperimentSpec

    spec = ExperimentSpec.from_mix("q5_2q4s9_q20s30_q1s17", 8, 2, 64, page_size=page_size)
    row = measured_once().measure(spec, get_backend(f"triton[mixed_launches=1,schedule={schedule},spec=varlen]"))
    assert row.status is Status.OK, row.reason
    assert row.rel_err < 1e-2 and (info(row)["kernel"], info(row)["schedule"]) == ("varlen", schedule)


def test_longest_first_orders_requests_by_their_query_key_pairs():
    q_lens, kv_lens = [5, 4, 4, 20, 1], [5, 9, 9, 30, 17]
    cu = torch.tensor([0, *itertools.accumulate(q_lens)], dtype=torch.int32)
    q = torch.zeros(sum(q_lens), 2, 64)
    k = torch.zeros(sum(kv_lens), 1, 64)
    kv = torch.tensor(kv_lens, dtype=torch.int32)
    order = lambda schedule: ops.Varlen(q, k, k, cu, kv, 20, True, schedule=schedule).order.tolist()  # noqa: E731
    assert order("longest-first") == [3, 1, 2, 0, 4]  # 600, 36, 36 (batch order kept), 25, 17 pairs
    assert order("simple") == [0, 1, 2, 3, 4]
    assert order("tiles") == order("longest-first")
    with pytest.raises(ValueError, match="'random' is not valid; expected one of longest-first, simple, tiles"):
        ops.Varlen(q, k, k, cu, kv, 20, True, schedule="random")


@pytest.mark.parametrize("schedule", ["longest-first", "tiles"])
@pytest.mark.parametrize("mixed_launches", ["1", "2"])
def test_varlen_tiles_through_tma_over_a_packed_cache_match_the_reference(schedule, mixed_launches):
    """The variant varlen_tma=on: a dense ragged cache's K/V tiles through descriptors over the packed
    [Σ kv_len, Hkv·D] view (emulated by the interpreter). The q20 request's tiles run past its 30 keys
    into the next request's: the key mask must drop them; the row says kv_loads=tma."""
    if DEVICE.type == "cuda":
        pytest.skip("covered at real sizes by tests/test_gpu.py")
    from specs import ExperimentSpec

    variant = f"triton[varlen_tma=on,schedule={schedule},mixed_launches={mixed_launches}]"
    spec = ExperimentSpec.from_mix("q5_2q4s9_q20s30_q1s17_2q1s40", 8, 2, 64)
    row = measured_once().measure(spec, get_backend(variant))
    assert row.status is Status.OK, row.reason
    (varlen,) = [launch for launch in launches(info(row)) if launch["kernel"] == "varlen"]
    assert row.rel_err < 1e-2 and varlen["kv_loads"] == "tma", row.backend_info
    paged_spec = ExperimentSpec.from_mix("q20s30_q4s9", 8, 2, 64, page_size=16)
    paged = measured_once().measure(paged_spec, get_backend(variant))
    assert paged.status is Status.OK  # pages of 16: gathered
    assert all(launch["kv_loads"] == "gather" for launch in launches(info(paged))), paged.backend_info
    bad_variant("triton[varlen_tma=yes]", r"varlen_tma='yes' is not valid; expected one of on, off")


def test_the_tiles_grid_launches_only_row_blocks_that_hold_rows():
    """q_lens 5, 4, 4, 20, 1 with a GQA group of 2 (rows 10, 8, 8, 40, 2): at BLOCK_M 16 the tiles grid has
    1 + 1 + 1 + 3 + 1 = 7 row blocks a KV head, where the (row block, request × head) grid has 3 × 5 = 15."""
    q_lens, kv_lens = [5, 4, 4, 20, 1], [5, 9, 9, 30, 17]
    cu = torch.tensor([0, *itertools.accumulate(q_lens)], dtype=torch.int32)
    q, k = torch.zeros(sum(q_lens), 2, 64), torch.zeros(sum(kv_lens), 1, 64)
    op = ops.Varlen(q, k, k, cu, torch.tensor(kv_lens, dtype=torch.int32), 20, True, schedule="tiles")
    assert op._blocks(16) == 7 and op._blocks(64) == 5 and op.kw["TILES"] and op.kw["BLOCK_R"] == 8
    assert -(-20 * 2 // 16) * len(q_lens) == 15  # what the other grid launches a KV head


def test_the_variant_picks_the_varlen_schedule():
    bad_variant("triton[schedule=sideways]", r"schedule='sideways' is not valid; expected one of longest-first, simple")


def test_two_streams_are_asked_for_by_the_variant_and_never_claimed_on_a_cpu():
    from specs import ExperimentSpec

    spec = ExperimentSpec.from_mix("q20s30_3q1s17", 8, 2, 64)
    row = measured_once().measure(spec, get_backend("triton[mixed_launches=2,mixed_streams=2]"))
    if DEVICE.type == "cpu":  # the interpreter has no streams: the row says the one it ran on
        assert row.status is Status.OK and (info(row)["kernel"], info(row)["streams"]) == ("two launches", 1)
    bad_variant("triton[mixed_streams=3]", r"mixed_streams='3' is not valid; expected one of 2, 1")


@pytest.mark.parametrize("page_size", [None, 16])
@pytest.mark.parametrize("workload,kv_len", [("prefill", 72), ("append", 72), ("append", 100), ("prefill", 16)])
def test_the_qk_ahead_variant_matches_the_reference(workload, kv_len, page_size):
    """The pinned QK_AHEAD variant (the next tile's Q·Kᵀ before this tile's softmax): many full tiles,
    one full tile (nothing ahead of it), none (a 16-token prefill: every tile is on the diagonal)."""
    spec = tiny_spec(workload, group=4, kv_len=kv_len, chunk=20, batch=3, page_size=page_size)
    inputs = make_inputs(spec, DEVICE)
    small = DEVICE.type == "cpu"
    blocks = {"BLOCK_M": 32, "BLOCK_N": 16} if small else {"BLOCK_M": 128, "BLOCK_N": 64}
    config = triton.Config({**blocks, "QK_AHEAD": True}, num_warps=4, num_stages=1 if small else 3)
    k, v, table = inputs.k, inputs.v, None
    if page_size:
        paged = to_paged(k, v, page_size)
        k, v, table = paged.k_pages, paged.v_pages, paged.block_table
    op = ops.Prefill(inputs.q, k, v, spec.kv_len, spec.is_masked, table, page_size, config=config)
    assert op.info()["QK_AHEAD"] is True
    ref = reference_attention(spec, inputs, [0, 2])
    check = check_output(spec, op(), ref, [0, 2])
    assert check.ok, check.problem


@pytest.mark.parametrize("page_size", [5, 16])
@pytest.mark.parametrize(
    "spec_args",
    [
        ("mix", "q20s30_3q1s17_2q4s25"),  # a mixed batch: varlen chunks, split-KV decodes
        ("mix", "3q1s7_q1s40_q1s65"),  # decodes only: one of 7 tokens, splits past a short cache's end
        ("uniform", "append"),
        ("uniform", "decode"),
    ],
)
def test_page_ids_a_step_ahead_match_the_reference(spec_args, page_size):
    """The variant page_prefetch=all: gathered paged tiles take the page ids loaded one step before
    (the last step loads ids past the cache's end, masked); every kernel stays exact, and the row says so."""
    from specs import ExperimentSpec

    kind, what = spec_args
    if kind == "mix":
        spec = ExperimentSpec.from_mix(what, 8, 2, 64, page_size=page_size)
    else:
        spec = tiny_spec(what, group=4, kv_len=70, chunk=20, batch=2, page_size=page_size)
    row = measured_once().measure(spec, get_backend("triton[mixed_launches=2,page_prefetch=all]"))
    assert row.status is Status.OK, row.reason
    ran = launches(info(row))
    gathered = all(launch["kv_loads"] != "tma" for launch in ran)  # pages that hold a whole tile go through TMA
    assert row.rel_err < 1e-2 and any(launch.get("page_ids_ahead") for launch in ran) == gathered, row.backend_info
    assert gathered or page_size == 16
    row = measured_once().measure(spec, get_backend("triton[mixed_launches=2,page_prefetch=off]"))
    assert row.status is Status.OK and not any("page_ids_ahead" in launch for launch in launches(info(row)))


@pytest.mark.parametrize(
    "what,kinds",
    [("q20s30_3q1s17", ["prefill", "decode"]), ("3q1s7_q1s40", ["decode"]), ("q20s30_q9s25", ["prefill"])],
)
def test_page_ids_ahead_by_default_in_the_decode_launches_only(what, kinds):
    """The default ("decode"): the split-KV decode launches take page ids a step ahead, the varlen launches
    of prompts and chunks do not; backend_info names the loads of each launch that ran."""
    from specs import ExperimentSpec

    spec = ExperimentSpec.from_mix(what, 8, 2, 64, page_size=16)
    row = measured_once().measure(spec, get_backend("triton[mixed_launches=2,spec=varlen]"))
    assert row.status is Status.OK and row.rel_err < 1e-2, row.reason
    loads = [(launch["kv_loads"], launch.get("page_ids_ahead", False)) for launch in launches(info(row))]
    assert loads == [("gather", kind == "decode") for kind in kinds], row.backend_info


def test_page_ids_ahead_are_never_claimed_for_a_dense_cache():
    row = measured_once().measure(tiny_spec("decode", kv_len=40), get_backend("triton[page_prefetch=all]"))
    assert row.status is Status.OK and "page_ids_ahead" not in info(row), row.backend_info
    bad_variant("triton[page_prefetch=yes]", r"page_prefetch='yes' is not valid; expected one of decode, all, off")


@pytest.mark.parametrize("mixed_launches", ["1", "2"])
def test_a_pinned_varlen_config_runs_and_the_row_says_it_was_pinned(mixed_launches):
    """The variant varlen_config=<name> launches the varlen kernel with that one of the autotuner's
    configurations (the plain jitted kernel, no autotuning), in one launch or as the chunks' launch of a
    mixed batch; the row says "pinned". A name not in the list is refused, naming the key and the allowed
    names."""
    if DEVICE.type == "cuda":
        pytest.skip("the interpreter's one configuration; the GPU's list is longer")
    from frameworks.triton.kernels import _prefill_configs, config_name
    from specs import ExperimentSpec

    (name,) = [config_name(c) for c in _prefill_configs()]
    assert name == "32x16w4s1"
    spec = ExperimentSpec.from_mix("q5_q20s30_2q1s17", 8, 2, 64, page_size=16)
    row = measured_once().measure(spec, get_backend(f"triton[mixed_launches={mixed_launches},varlen_config={name}]"))
    assert row.status is Status.OK and row.rel_err < 1e-2, row.reason
    varlen = launches(info(row))[0]
    pinned = {"kernel": "varlen", "schedule": "longest-first", "pinned": True, "BLOCK_M": 32, "BLOCK_N": 16,
              "warps": 4, "stages": 1}  # fmt: skip
    assert pinned.items() <= varlen.items(), row.backend_info
    row = measured_once().measure(spec, get_backend(f"triton[mixed_launches={mixed_launches},varlen_config=auto]"))
    assert row.status is Status.OK and not any("pinned" in launch for launch in launches(info(row)))
    bad_variant("triton[varlen_config=128x64]", r"varlen_config='128x64' is not valid; expected one of auto, 32x16w4s1")


def test_config_names_are_short_and_say_the_register_cap():
    import triton

    from frameworks.triton.kernels import config_name

    capped = triton.Config({"BLOCK_M": 128, "BLOCK_N": 64}, num_warps=8, num_stages=2, maxnreg=128)
    assert config_name(capped) == "128x64w8s2r128"
    assert config_name(triton.Config({"BLOCK_M": 128, "BLOCK_N": 128}, num_warps=8, num_stages=3)) == "128x128w8s3"


def _tuning_key(kernel, kw: dict) -> tuple:
    """The values the autotuner keys its cache on for a launch with these keyword arguments."""
    return tuple(kw[name] for name in kernel.keys)


def test_each_batch_and_split_count_is_tuned_for_itself():
    """The autotuner keeps one pick a key for the process. Without the batch and split count in the key, a
    decode at batch 1 reused the pick of whichever batch with the same cache length ran first in that
    worker: the H200's Llama-3.1-8B batch 1 × 128k row took 0.158 ms in one sweep and 0.192 ms in another
    (docs/perf-notes.md). Batch size, split count and request count now each make a key of their own."""
    from frameworks.triton import kernels

    keys = {}
    for batch in (1, 3):
        spec = tiny_spec("decode", group=4, kv_len=64, batch=batch)
        inputs = make_inputs(spec, DEVICE)
        one = ops.Decode(inputs.q, inputs.k, inputs.v, spec.kv_len, num_splits=2, granule=16)
        two = ops.Decode(inputs.q, inputs.k, inputs.v, spec.kv_len, num_splits=4, granule=16)
        keys[batch] = {_tuning_key(kernels.decode_kernel, one.kw), _tuning_key(kernels.decode_kernel, two.kw)}
        prefill = tiny_spec("prefill", group=4, kv_len=64, batch=batch)
        p = make_inputs(prefill, DEVICE)
        keys[batch].add(_tuning_key(kernels.prefill_kernel, ops.Prefill(p.q, p.k, p.v, 64, True).kw))
    assert len(keys[1]) == len(keys[3]) == 3 and not keys[1] & keys[3]
    kv_lens = torch.tensor([64, 40, 9], dtype=torch.int32, device=DEVICE)
    q = torch.zeros(3, 8, 64, device=DEVICE)
    k = torch.zeros(113, 2, 64, device=DEVICE)
    cu_k = torch.tensor([0, 64, 104, 113], dtype=torch.int32, device=DEVICE)
    ragged = [ops.RaggedDecode(q[:n], k, k, kv_lens[:n], 64, cu_seqlens_k=cu_k[: n + 1], num_splits=2) for n in (2, 3)]
    assert len({_tuning_key(kernels.ragged_decode_kernel, r.kw) for r in ragged}) == 2
    assert "NUM_REQ" in kernels.varlen_kernel.keys and "MAX_Q" in kernels.varlen_kernel.keys


@pytest.mark.parametrize("variant", ["gluon=off", "gluon_grid=tiles", "gluon_balance=static", "paged_prompt=gluon",
                                     "varlen_tma=off", "gluon=long,splits=work"])  # fmt: skip
def test_a_gluon_or_tma_variant_is_unavailable_where_it_would_run_the_default(variant):
    """Off an sm90 GPU (here the interpreter) the Gluon kernels and TMA loads do not run, so a value of a key that
    chooses among them runs what the default runs: its row is `unavailable`, naming the key and why, instead of a
    time that claims a kernel or order that never ran. The other keys' variants and the default stay available."""
    if ops.gluon_capable(DEVICE):
        pytest.skip("Gluon runs on this GPU")
    spec = tiny_spec("prefill", kv_len=40, batch=2)
    row = measured_once().measure(spec, get_backend(f"triton[{variant}]"))
    assert row.status is Status.UNAVAILABLE and "run on sm90 GPUs only" in row.reason, row.reason
    assert row.reason.startswith(variant.split(",")[0]) and row.variant == variant
    assert get_backend("triton[splits=work]").availability(DEVICE) is None
    assert get_backend("triton").availability(DEVICE) is None


@pytest.mark.parametrize("workload", ["prefill", "append"])
def test_the_gluon_switch_falls_back_to_triton_where_gluon_cannot_run(workload):
    """The variant gluon=on (the default) takes the Gluon kernel on sm90 GPUs only: under the interpreter
    the Triton kernel runs, and the row says so; a bad value is refused, naming the key and the allowed values."""
    if ops.gluon_capable(DEVICE):
        pytest.skip("Gluon runs on this GPU: tests/test_gpu.py checks the Gluon kernel and the switch")
    spec = tiny_spec(workload, kv_len=40, batch=2)
    row = measured_once().measure(spec, get_backend("triton"))
    assert row.status is Status.OK and row.rel_err < 1e-2 and not info(row)["kernel"].startswith("gluon")
    assert not ops.gluon_capable(torch.device("cpu"))
    bad_variant("triton[gluon=yes]", r"gluon='yes' is not valid; expected one of on, off")


def test_the_gluon_kernels_say_what_ran_and_refuse_a_cache_longer_than_its_keys():
    pytest.importorskip("triton.experimental.gluon")
    from frameworks.triton.gluon_prefill import GluonPrefill

    q = torch.zeros(2, 256, 32, 128, dtype=torch.bfloat16)
    k = torch.zeros(2, 256, 8, 128, dtype=torch.bfloat16)
    pp = GluonPrefill(q, k, k, 256, True, 128, 64, 4, stages=2, pingpong=True)
    # 2 × 32 (batch, head) pairs: more than a CPU's 4 SMs, so the one-block grid keeps the static order
    assert pp.info() == {
        "kernel": "gluon-pp",
        "BLOCK_M": 128,
        "BLOCK_N": 64,
        "warps": "4+4+producer",
        "stages": 2,
        "kv_loads": "tma",
        "balance": "static",
    }
    from tools.gluon_overlap import GluonOverlap, gluon_op

    assert GluonOverlap(q, k, k, 256, True, 128, 128, 8).info()["kernel"] == "gluon"  # the tool's kernel
    assert gluon_op(q, k, k, 256, True, 128, 128, 8).info()["kernel"] == "gluon"
    assert gluon_op(q, k, k, 256, True, 128, 64, 4, 2, True).info()["kernel"] == "gluon-pp"
    with pytest.raises(ValueError, match="without warp roles is tools/gluon_overlap"):  # not in the product
        GluonPrefill(q, k, k, 256, True, 128, 128, 8, stages=3)
    with pytest.raises(ValueError, match="exactly kv_len=200 keys"):
        GluonPrefill(q, k, k, 200, True, 128, 128, 4, stages=2, pingpong=True)
    with pytest.raises(ValueError, match="pingpong takes block_m 128, warps 4"):
        GluonPrefill(q, k, k, 256, True, 128, 128, 8, stages=2, pingpong=True)
    persistent = GluonPrefill(q, k, k, 256, True, 128, 64, 4, stages=2, pingpong=True, persistent=True)
    expected = {"kernel": "gluon-pp-persistent", "BLOCK_M": 128, "BLOCK_N": 64, "warps": "4+4+producer", "stages": 2}
    assert expected.items() <= persistent.info().items()
    with pytest.raises(ValueError, match="pingpong takes block_m 128, warps 4 .* and stages > 0"):
        GluonPrefill(q, k, k, 256, True, 128, 64, 4, pingpong=True)


def test_the_gluon_varlen_kernel_orders_requests_heaviest_first_and_knows_when_it_is_not_worth_it():
    pytest.importorskip("triton.experimental.gluon")
    from frameworks.triton.gluon_prefill import GluonVarlen

    assert ops.gluon_varlen_worth_it([4096, 2048, 1, 1]) and ops.gluon_varlen_worth_it([128])
    assert not ops.gluon_varlen_worth_it([4] * 64) and not ops.gluon_varlen_worth_it([200, 1, 1])
    cu_q = torch.tensor([0, 100, 1100, 1600], dtype=torch.int32)
    cu_k = torch.tensor([0, 300, 1300, 3800], dtype=torch.int32)
    q = torch.zeros(1600, 32, 128, dtype=torch.bfloat16)
    k = torch.zeros(3800, 8, 128, dtype=torch.bfloat16)
    op = GluonVarlen(q, k, k, cu_q, cu_k, 1000, True)
    assert op.order.tolist() == [2, 1, 0]  # 500 × 2500 > 1000 × 1000 > 100 × 300
    assert op.info() == {"kernel": "gluon-pp-varlen", "schedule": "longest-first", "grid": "blocks", "BLOCK_M": 128,
                         "BLOCK_N": 128, "warps": "4+4+producer", "stages": 2, "kv_loads": "tma"}  # fmt: skip
    tiled = GluonVarlen(q, k, k, cu_q, cu_k, 1000, True, grid="tiles", balance="static")
    assert (tiled.info()["kernel"], tiled.info()["schedule"], tiled.info()["grid"]) == (
        "gluon-pp-varlen", "longest-first", "tiles"
    )  # fmt: skip
    # request 2 (500 rows: 4 blocks) first, then 1 (1000 rows: 8), then 0 (100 rows: 1), each for 32 heads
    assert tiled.tiles.numel() == 2 * 32 * (4 + 8 + 1) and tiled.tiles[:4].tolist() == [2 * 32, 3, 2 * 32, 2]
    # lpt (the default): every block by the key tiles it walks, request 2's last blocks (20 tiles) first
    lpt = GluonVarlen(q, k, k, cu_q, cu_k, 1000, True, grid="tiles").tiles.tolist()
    assert sorted(zip(lpt[::2], lpt[1::2])) == sorted(zip(tiled.tiles.tolist()[::2], tiled.tiles.tolist()[1::2]))
    assert lpt[:4] == [2 * 32, 3, 2 * 32 + 1, 3]
    with pytest.raises(ValueError, match="grid 'rows' is not valid; expected blocks, tiles"):
        GluonVarlen(q, k, k, cu_q, cu_k, 1000, True, grid="rows")
    with pytest.raises(ValueError, match="head dim 64 or 128"):
        GluonVarlen(
            q[..., :96].contiguous(), k[..., :96].contiguous(), k[..., :96].contiguous(), cu_q, cu_k, 1000, True
        )


def test_the_persistent_gluon_varlen_grid_walks_the_blocks_heaviest_first_one_cta_an_sm():
    """gluon_grid=persistent: the tile list's pairs (request × heads + head, row block) as work items sorted by the
    key tiles each block walks (stable), and a grid of at most one CTA an SM (4 on a CPU) and one an item; the
    row says the grid. Built on the host here; the kernel itself compiles for sm_90a (tools.aot_check) and runs on
    a GPU only."""
    pytest.importorskip("triton.experimental.gluon")
    from frameworks.triton.gluon_prefill import GluonVarlen
    from frameworks.triton.schedule import gluon_varlen_items, gluon_varlen_tiles

    q_lens, kv_lens = [300, 100, 129], [300, 1100, 129]  # a prompt, a chunk on a long cache, a prompt
    tiles = gluon_varlen_tiles([1, 0, 2], q_lens, 2, True)
    items = gluon_varlen_items([1, 0, 2], q_lens, kv_lens, 2, True)
    assert sorted(zip(items[::2], items[1::2])) == sorted(zip(tiles[::2], tiles[1::2]))  # the same blocks
    walked = [-(-min(k, k - q + min((m + 1) * 128, q)) // 128) for bh, m in zip(items[::2], items[1::2])
              for q, k in [(q_lens[bh // 2], kv_lens[bh // 2])]]  # fmt: skip
    assert walked == sorted(walked, reverse=True) and walked[:2] == [9, 9]  # the chunk's 1,100 keys first
    assert items[:4] == [2, 0, 3, 0]  # its two heads, in the tile list's order
    cu_q = torch.tensor([0, 300, 400, 529], dtype=torch.int32)
    cu_k = torch.tensor([0, 300, 1400, 1529], dtype=torch.int32)
    q = torch.zeros(529, 8, 64, dtype=torch.bfloat16)
    k = torch.zeros(1529, 2, 64, dtype=torch.bfloat16)
    op = GluonVarlen(q, k, k, cu_q, cu_k, 300, True, grid="persistent")
    assert op.launch_grid == (4,) and op.tiles.numel() == 2 * 8 * (3 + 1 + 2) and op.info()["grid"] == "persistent"


def test_a_persistent_grid_shares_its_blocks_out_least_loaded_first_or_in_turn():
    """schedule.cta_assignment: static gives CTA p the items p, p + grid, ... (the kernels' order before
    gluon_balance), lpt each item, heaviest first, to the CTA with the least work so far. A 804-token append on 818
    keys (`q804s818`), 7 row blocks of 7, 7, 6, 5, 4, 3, 2 key tiles × 32 heads on 132 CTAs: static ends at 11 tiles
    on CTA 0 (a 7-tile block, then a 4-tile one), lpt at 9. Every item once, each CTA's items heaviest first; equal
    items get the same turns from both; a bad value is one line naming the values."""
    from frameworks.triton.schedule import GLUON_ITEM_COST, cta_assignment

    sq, sk = 804, 818  # the blocks' key tiles as the kernels count them (_pp_tiles), last block first
    tiles = [-(-min(sk, sk - sq + min((m + 1) * 128, sq)) // 128) for m in range(6, -1, -1) for _ in range(32)]
    assert sorted(set(tiles), reverse=True) == [7, 6, 5, 4, 3, 2] and tiles.count(7) == 64
    ends = {}
    for balance in ("static", "lpt"):
        order, starts = cta_assignment(tiles, 132, balance)
        assert sorted(order) == list(range(len(tiles))) and len(starts) == 133 and starts[-1] == len(tiles)
        per = [order[starts[p] : starts[p + 1]] for p in range(132)]
        assert all(items == sorted(items) for items in per)  # heaviest (lowest index) first on each CTA
        ends[balance] = max(sum(tiles[i] for i in items) for items in per)
    assert ends == {"static": 11, "lpt": 9}
    assert cta_assignment([3] * 10, 4, "lpt") == cta_assignment([3] * 10, 4, "static")
    assert cta_assignment([5, 1], 8, "lpt") == ([0, 1], [0, 1, 2])  # no more CTAs than items
    assert GLUON_ITEM_COST >= 0
    with pytest.raises(ValueError, match="gluon_balance: 'fast' is not valid; expected lpt, static"):
        cta_assignment([1], 1, "fast")


def test_the_gluon_launches_carry_their_balance_to_the_kernel_and_the_row():
    """gluon_balance on the host side of each Gluon launch (the kernels run on a GPU only): the uniform
    persistent grid's item lists and the varlen persistent grid's tile list grouped by CTA (CTA p's items
    between START[p] and START[p + 1]), static reproducing the turns of the grid before it; the tiles grid
    launches its blocks heaviest first under lpt; backend_info says which ran."""
    pytest.importorskip("triton.experimental.gluon")
    from frameworks.triton.gluon_prefill import GluonPrefill, GluonVarlen
    from frameworks.triton.schedule import gluon_varlen_items, gluon_varlen_tiles

    q = torch.zeros(1, 300, 8, 64, dtype=torch.bfloat16)
    k = torch.zeros(1, 400, 2, 64, dtype=torch.bfloat16)
    ops = {b: GluonPrefill(q, k, k, 400, True, 128, 128, 4, stages=2, pingpong=True, persistent=True, balance=b)
           for b in ("lpt", "static")}  # fmt: skip
    # 3 row blocks × 8 heads on 4 CTAs (a CPU's sm_count); static: CTA p takes items p, p + 4, ...
    assert ops["static"].items.tolist() == [i for p in range(4) for i in range(p, 24, 4)]
    assert ops["static"].starts.tolist() == [0, 6, 12, 18, 24] and ops["lpt"].ctas == 4
    assert sorted(ops["lpt"].items.tolist()) == list(range(24)) and ops["lpt"].info()["balance"] == "lpt"
    # the one-block grid: lpt only where the (batch, head) pairs fill at most half a wave (4 SMs on a CPU: 2)
    one_block = {hq: GluonPrefill(torch.zeros(1, 300, hq, 64, dtype=torch.bfloat16), k, k, 400, True, 128, 128, 4,
                                  stages=2, pingpong=True) for hq in (2, 4)}  # fmt: skip
    assert one_block[2].info()["balance"] == "lpt" and one_block[4].info()["balance"] == "static"
    cu_q = torch.tensor([0, 300, 400, 529], dtype=torch.int32)
    cu_k = torch.tensor([0, 300, 1400, 1529], dtype=torch.int32)
    qv, kv = torch.zeros(529, 8, 64, dtype=torch.bfloat16), torch.zeros(1529, 2, 64, dtype=torch.bfloat16)
    q_lens, kv_lens = [300, 100, 129], [300, 1100, 129]
    items = gluon_varlen_items([1, 0, 2], q_lens, kv_lens, 8, True)
    pairs = list(zip(items[::2], items[1::2]))
    static = GluonVarlen(qv, kv, kv, cu_q, cu_k, 300, True, grid="persistent", balance="static")
    starts = static.starts.tolist()
    assert starts == [0, 12, 24, 36, 48] and static.info()["balance"] == "static"
    grouped = static.tiles.tolist()
    assert list(zip(grouped[::2], grouped[1::2])) == [pairs[i] for p in range(4) for i in range(p, 48, 4)]
    lpt = GluonVarlen(qv, kv, kv, cu_q, cu_k, 300, True, grid="persistent")
    assert sorted(zip(lpt.tiles.tolist()[::2], lpt.tiles.tolist()[1::2])) == sorted(pairs)
    assert GluonVarlen(qv, kv, kv, cu_q, cu_k, 300, True, grid="tiles").tiles.tolist() == items
    tiled = GluonVarlen(qv, kv, kv, cu_q, cu_k, 300, True, grid="tiles", balance="static").tiles.tolist()
    assert tiled == gluon_varlen_tiles([1, 0, 2], q_lens, 8, True)
    with pytest.raises(ValueError, match="gluon_balance"):
        GluonVarlen(qv, kv, kv, cu_q, cu_k, 300, True, grid="tiles", balance="fast")


def test_a_mixed_batchs_long_requests_keep_the_gluon_kernel_beside_the_work_list():
    """ops.MixedWork with gluon (on an sm90 GPU, where the default would take the Gluon varlen kernel): its long
    requests go through GluonVarlen restricted to them (ORDER and TILES name only them, heaviest first, in the batch's
    own indices), dense or in pages that fit its loads; without gluon, or when they average less than a 128-row
    block, the Triton varlen kernel (H100, draw:103: a 744-token chunk on 13.9k keys took 1.26x the time there)."""
    pytest.importorskip("triton.experimental.gluon")
    from itertools import accumulate

    from frameworks.triton.gluon_prefill import GluonVarlen

    q_lens, kv_lens = [300, 4, 200, 1], [300, 5000, 900, 40]  # prompt, step on a long cache, chunk, decode
    q = torch.zeros(sum(q_lens), 8, 64, dtype=torch.bfloat16)
    k = torch.zeros(sum(kv_lens), 2, 64, dtype=torch.bfloat16)
    cu_k = torch.tensor([0, *accumulate(kv_lens)], dtype=torch.int32)
    launches = {}
    for grid in ("tiles", "blocks"):
        mixed = ops.MixedWork(q, k, k, q_lens, kv_lens, True, cu_seqlens_k=cu_k, gluon=True, gluon_grid=grid)
        assert isinstance(mixed.chunks, GluonVarlen) and mixed.chunks.order.tolist() == [2, 0]  # 200 × 900 first
        assert mixed.info()["launches"][0]["kernel"] == "gluon-pp-varlen"
        launches[grid] = mixed.chunks
    tiles = launches["tiles"].tiles.view(-1, 2)
    assert {int(bh) // 8 for bh in tiles[:, 0]} == {0, 2} and len(tiles) == 8 * (2 + 3)  # 2 and 3 blocks a head
    assert launches["blocks"].launch_grid == (3, 2 * 8)  # the longest's 3 row blocks × the two requests' heads
    pages = torch.zeros(400, 16, 2, 64, dtype=torch.bfloat16)
    table = torch.zeros(4, 313, dtype=torch.int32)
    paged = ops.MixedWork(q, pages, pages, q_lens, kv_lens, True, block_table=table, page_size=16, gluon=True)
    assert isinstance(paged.chunks, GluonVarlen) and paged.chunks.kv_lens.tolist() == kv_lens
    assert isinstance(ops.MixedWork(q, k, k, q_lens, kv_lens, True, cu_seqlens_k=cu_k).chunks, ops.Varlen)
    short = [30, 4, 20, 1]  # long requests of 30 and 20 tokens: not worth a 128-row block
    q2 = q[: sum(short)]
    assert isinstance(ops.MixedWork(q2, k, k, short, kv_lens, True, cu_seqlens_k=cu_k, gluon=True).chunks, ops.Varlen)


def test_the_gluon_varlen_kernel_takes_pages_that_fit_its_tma_loads():
    """A paged cache: pages of 16 rows or more that split a 128-key tile or hold whole tiles load through TMA,
    a load a page (the row says tma_per_page where a tile takes several); other sizes are refused, naming the
    field, and the order comes from the paged requests' own lengths."""
    pytest.importorskip("triton.experimental.gluon")
    from frameworks.triton.gluon_prefill import GluonVarlen

    sizes = (1, 8, 16, 32, 48, 64, 96, 128, 256, 384, None)
    assert [p for p in sizes if ops.gluon_pages_fit(p)] == [16, 32, 64, 128, 256, 384]
    cu_q = torch.tensor([0, 300, 1300], dtype=torch.int32)
    kv_lens = torch.tensor([300, 2500], dtype=torch.int32)
    q = torch.zeros(1300, 32, 128, dtype=torch.bfloat16)
    pages = torch.zeros(192, 16, 8, 128, dtype=torch.bfloat16)
    table = torch.zeros(2, 157, dtype=torch.int32)
    op = GluonVarlen(q, pages, pages, cu_q, None, 1000, True, block_table=table, page_size=16, kv_lens=kv_lens)
    assert op.order.tolist() == [1, 0] and op.page == 16 and op.k_desc.block_shape == [16, 128]
    assert op.info()["kv_loads"] == "tma_per_page"
    whole = GluonVarlen(q, pages.view(-1, 256, 8, 128), pages.view(-1, 256, 8, 128), cu_q, None, 1000, True,
                        block_table=table, page_size=256, kv_lens=kv_lens)  # fmt: skip
    assert whole.k_desc.block_shape == [128, 128] and whole.info()["kv_loads"] == "tma"
    with pytest.raises(ValueError, match="page_size must be a multiple of 16"):
        GluonVarlen(q, pages.view(-1, 8, 8, 128), pages.view(-1, 8, 8, 128), cu_q, None, 1000, True,
                    block_table=table, page_size=8, kv_lens=kv_lens)  # fmt: skip
    with pytest.raises(ValueError, match="a paged cache takes kv_lens"):
        GluonVarlen(q, pages, pages, cu_q, None, 1000, True, block_table=table, page_size=16)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("q_lens", [[300, 1, 129, 0, 128], [4096], [1, 1, 1]])
def test_the_gluon_tile_list_is_the_block_grids_programs_that_hold_rows_in_its_order(q_lens, causal):
    """ops.gluon_varlen_tiles lists, as (request × heads + head, row block), exactly the programs of the Gluon
    varlen kernel's block grid that hold rows, in the block grid's launch order (its first axis fastest)."""
    heads, order = 3, ops.heaviest_first(q_lens, [2 * n for n in q_lens])
    blocks = -(-max(q_lens) // 128)
    expected = []
    for pid_bh in range(len(q_lens) * heads):  # the kernel's program ids, decoded as gluon_pp_varlen_kernel does
        for pid0 in range(blocks):
            b, h = order[pid_bh // heads], pid_bh % heads
            m = blocks - 1 - pid0 if causal else pid0
            if m * 128 < q_lens[b]:
                expected.append((b * heads + h, m))
    tiles = ops.gluon_varlen_tiles(order, q_lens, heads, causal)
    assert list(zip(tiles[::2], tiles[1::2])) == expected


@pytest.mark.parametrize(
    "variant,page,expect",
    [({}, None, "GluonVarlen"), ({}, 16, "GluonVarlen"), ({}, 256, "GluonVarlen"), ({}, 8, "Varlen"),
     ({"schedule": "simple"}, 16, "Varlen"), ({"varlen_config": "first"}, None, "Varlen"),
     ({"gluon": "off"}, 16, "Varlen")],
)  # fmt: skip
def test_the_backend_sends_ragged_prompts_to_gluon_where_its_loads_fit_and_nothing_asks_for_triton(
    monkeypatch, variant, page, expect
):
    """Where the Gluon kernels could run (sm90, here pretended), a ragged launch of prompts goes to the Gluon
    varlen kernel on a dense cache and on pages its TMA loads take; pages of 8, another schedule, a pinned
    Triton configuration or the variant gluon=off keep the Triton varlen kernel they ask for."""
    pytest.importorskip("triton.experimental.gluon")
    from frameworks.triton import TritonAttention
    from frameworks.triton.kernels import prefill_configs_by_name
    from specs import DType, ExperimentSpec

    monkeypatch.setattr(ops, "gluon_capable", lambda device: True)
    first = next(iter(prefill_configs_by_name()))  # "first": the first of the autotuner's configurations
    choice = {key: first if value == "first" else value for key, value in variant.items()}
    spec = ExperimentSpec.from_mix("q300_q200s600", 8, 2, 64, page_size=page, dtype=DType.BF16)
    op = TritonAttention(choice).prepare(spec, make_inputs(spec, torch.device("cpu")))
    assert type(op).__name__ == expect


@pytest.mark.parametrize(
    "variant, workload, page, expect",
    [("paged_prompt=gluon", "prefill", 16, "GluonPagedPrompts"),
     ("paged_prompt=gluon", "append", 64, "GluonPagedPrompts"), ("paged_prompt=gluon", "prefill", 8, "Prefill"),
     ("", "prefill", 16, "Prefill"), ("paged_prompt=gluon,gluon=off", "prefill", 16, "Prefill"),
     ("", "prefill-long", 16, "GluonPagedPrompts"), ("paged_prompt=triton", "prefill-long", 16, "Prefill"),
     ("", "append-long", 16, "GluonPagedPrompts"), ("", "append", 16, "Prefill"),
     ("paged_prompt=gluon", "prefill", None, "GluonPrefill")],
)  # fmt: skip
def test_paged_prompts_go_to_the_gluon_varlen_kernel_only_when_asked_and_its_loads_fit(
    monkeypatch, variant, workload, page, expect
):
    """paged_prompt=gluon (sm90 pretended): a uniform prefill or append on pages its TMA loads take runs the Gluon
    varlen kernel, the batch packed as requests of one length (B requests of S rows, each its kv_len keys in its own
    block-table row); pages of 8, gluon=off, and the default (long) on a cache shorter than PAGED_PROMPT_LONG (1,024
    keys) keep the Triton kernel, which the default leaves from 1,024 keys up, an append of 128 on 1,152 keys too
    (paged_prompt=triton keeps it there); a dense cache the uniform Gluon kernel, as before."""
    pytest.importorskip("triton.experimental.gluon")
    from specs import DType, ExperimentSpec

    monkeypatch.setattr(ops, "gluon_capable", lambda device: True)
    q_len, kv_len = {"prefill": (256, 256), "append": (128, 384), "prefill-long": (1024, 1024),
                     "append-long": (128, 1152)}[workload]  # fmt: skip
    spec = ExperimentSpec(workload.split("-")[0], 3, q_len, kv_len, 8, 2, 64, page_size=page, dtype=DType.BF16)
    backend = get_backend(f"triton[{variant}]" if variant else "triton")
    op = backend.prepare(spec, make_inputs(spec, torch.device("cpu")))
    assert type(op).__name__ == expect
    if expect == "GluonPagedPrompts":
        assert op.op.cu_q.tolist() == [0, q_len, 2 * q_len, 3 * q_len] and op.op.kv_lens.tolist() == [kv_len] * 3
        assert op.op.bt.shape == (3, -(-kv_len // page)) and op.op.page == page
        assert {"kernel": "gluon-pp-varlen", "requests": "uniform"}.items() <= op.info().items()


@pytest.mark.parametrize("mix", ["q300_q200s600", "q300_q200s600_4q1s500"])  # one Gluon launch; chunks + decodes
def test_the_gluon_grid_variant_reaches_the_gluon_launch_and_a_bad_value_names_it(monkeypatch, mix):
    """The variant gluon_grid picks the Gluon varlen launch's grid, alone or as a mixed batch's chunks
    (sm90 pretended); the default is the key's default, and a bad value is refused, naming the allowed ones."""
    pytest.importorskip("triton.experimental.gluon")
    from specs import DType, ExperimentSpec

    monkeypatch.setattr(ops, "gluon_capable", lambda device: True)
    spec = ExperimentSpec.from_mix(mix, 8, 2, 64, dtype=DType.BF16)
    for grid in ("tiles", "blocks", None):
        backend = get_backend("triton" if grid is None else f"triton[gluon_grid={grid}]")
        op = backend.prepare(spec, make_inputs(spec, torch.device("cpu")))
        gluon_op = op.chunks if type(op).__name__ == "Mixed" else op
        assert backend.choice["gluon_grid"] == (grid or backend.variant_keys()["gluon_grid"].default)
        assert gluon_op.grid == (grid or "tiles")  # the default (prompts): tiles, a chunk leads the launch
        assert launches(backend.run_info())[0]["grid"] == gluon_op.grid, backend.run_info()
    bad_variant("triton[gluon_grid=rows]", r"gluon_grid='rows' is not valid; expected one of prompts, tiles")


@pytest.mark.parametrize("page", [None, 16])
@pytest.mark.parametrize("mix, grid", [("q300_q200", "persistent"), ("q300_q200_4q1s500", "persistent"),
                                       ("q300_q200s600", "tiles"), ("q300_q100_4q1s500", "tiles")])  # fmt: skip
def test_gluon_grid_prompts_takes_the_persistent_grid_for_whole_prompts_only(monkeypatch, mix, grid, page):
    """gluon_grid=prompts (sm90 pretended): the persistent grid where the varlen launch's requests are two or more
    whole prompts of a Gluon row block or longer (decodes beside them go to their own launch), tiles where a chunk
    or a single long prompt leads it; the launch and backend_info name the grid that runs."""
    pytest.importorskip("triton.experimental.gluon")
    from specs import DType, ExperimentSpec

    monkeypatch.setattr(ops, "gluon_capable", lambda device: True)
    spec = ExperimentSpec.from_mix(mix, 8, 2, 64, dtype=DType.BF16, page_size=page)
    backend = get_backend("triton[gluon_grid=prompts]")
    op = backend.prepare(spec, make_inputs(spec, torch.device("cpu")))
    gluon_op = op.chunks if type(op).__name__ == "Mixed" else op
    assert gluon_op.grid == grid and launches(backend.run_info())[0]["grid"] == grid, backend.run_info()


@pytest.mark.parametrize(
    "workload, q_len, kv_len, page, planned",
    [("prefill", 256, 256, None, True), ("append", 256, 384, None, True), ("prefill", 1024, 1024, 16, True),
     ("prefill", 256, 256, 16, False), ("decode", 1, 384, None, False), ("mix", 0, 0, None, True),
     ("mix-steps", 0, 0, None, False), ("append", 128, 384, None, False), ("prefill", 1024, 1024, 8, False),
     ("mix-short", 0, 0, None, False), ("prefill-wide", 256, 256, None, False), ("mix-one", 0, 0, 16, False)],
)  # fmt: skip
def test_gluon_balance_reaches_every_gluon_launch_and_is_planned_only_where_one_runs(
    monkeypatch, workload, q_len, kv_len, page, planned
):
    """gluon_balance (sm90 pretended): planned where a Gluon launch runs (a uniform dense prefill or append of a row
    block or more, a paged one of PAGED_PROMPT_LONG keys, a ragged batch of prompts), not on decodes, speculative
    steps, the paged prompts the Triton kernel takes (a one-request mix on pages too), a launch of one row block a
    head, pages the Gluon loads cannot take, a varlen launch too short for Gluon, or a uniform one-block launch of
    more (batch, head) pairs than the SMs; its value reaches the launch, whose backend_info says it."""
    pytest.importorskip("triton.experimental.gluon")
    from specs import DType, ExperimentSpec

    monkeypatch.setattr(ops, "gluon_capable", lambda device: True)
    if workload.startswith("mix"):
        mix = {"mix": "q300_q200s600", "mix-steps": "4q4s300_2q1s100", "mix-short": "q40s600_7q1s300",
               "mix-one": "q679"}[workload]  # fmt: skip
        spec = ExperimentSpec.from_mix(mix, 8, 2, 64, dtype=DType.BF16, page_size=page)
    elif workload == "prefill-wide":  # 8 × 32 (batch, head) pairs: more than an H100's 132 SMs
        spec = ExperimentSpec("prefill", 8, q_len, kv_len, 32, 8, 64, page_size=page, dtype=DType.BF16)
    else:
        # 2 (batch, head) pairs: at most half a wave of a CPU's 4 pretended SMs, where the one-block grid takes lpt
        spec = ExperimentSpec(workload, 1, q_len, kv_len, 2, 2, 64, page_size=page, dtype=DType.BF16)
    key = get_backend("triton").variant_keys()["gluon_balance"]
    assert key.default == "lpt" and bool(key.applies(spec)) == planned
    if not planned:
        return
    for balance in ("lpt", "static"):
        backend = get_backend(f"triton[gluon_balance={balance}]")
        op = backend.prepare(spec, make_inputs(spec, torch.device("cpu")))
        gluon_op = getattr(op, "op", op)
        assert gluon_op.balance == balance and launches(backend.run_info())[0]["balance"] == balance


def test_gqa_packing_builds_a_3d_q_load_and_a_grid_of_kv_heads(monkeypatch):
    """gluon_pack=gqa on the host side (the kernel runs on a GPU only; tools.aot_check compiles it): Q's halves as
    3-D loads of [64 // group positions, group heads, D], a grid of (batch × KV head, row blocks of 128 packed rows),
    the row naming the packing; refused for a group that does not divide 64, or with the persistent grid; planned
    only on a uniform dense prefill or append the Gluon kernels take, with a query group to pack."""
    pytest.importorskip("triton.experimental.gluon")
    from frameworks.triton import gluon_prefill
    from frameworks.triton.gluon_prefill import GluonPrefill
    from specs import DType, ExperimentSpec

    q = torch.zeros(2, 300, 8, 64, dtype=torch.bfloat16)
    k = torch.zeros(2, 400, 2, 64, dtype=torch.bfloat16)
    op = GluonPrefill(q, k, k, 400, True, 128, 128, 4, stages=2, pingpong=True, pack=True)
    assert op.pack == 4 and list(op.q_desc.block_shape) == [16, 4, 64] and op.info()["pack_gqa"] == 4
    launched = {}

    class Kernel:
        def __getitem__(self, grid):
            return lambda *args, **kw: launched.update(grid=grid, **kw)

    monkeypatch.setattr(gluon_prefill, "gluon_pp_prefill_kernel", Kernel())
    op()
    assert launched["PACK"] == 4 and sorted(launched["grid"]) == [4, 10]  # 2 × 2 KV heads; 300 × 4 rows / 128
    unpacked = GluonPrefill(q, k, k, 400, True, 128, 128, 4, stages=2, pingpong=True)
    assert unpacked.pack == 1 and "pack_gqa" not in unpacked.info()
    with pytest.raises(ValueError, match="GQA packing takes the one-block grid"):
        GluonPrefill(q, k, k, 400, True, 128, 128, 4, stages=2, pingpong=True, pack=True, persistent=True)
    with pytest.raises(ValueError, match="group of 2 to 64"):
        GluonPrefill(torch.zeros(1, 300, 6, 64, dtype=torch.bfloat16), k[:1], k[:1], 400, True, 128, 128, 4,
                     stages=2, pingpong=True, pack=True)  # fmt: skip
    key = get_backend("triton").variant_keys()["gluon_pack"]
    plain = dict(num_q_heads=32, num_kv_heads=8, head_dim=128, dtype=DType.BF16)
    yes = [ExperimentSpec("prefill", 1, 679, 679, **plain), ExperimentSpec("append", 2, 804, 818, **plain)]
    no = [
        ExperimentSpec("prefill", 1, 679, 679, page_size=16, **plain),
        ExperimentSpec("prefill", 1, 100, 100, **plain),  # under a row block: not the Gluon kernel
        ExperimentSpec("prefill", 1, 679, 679, num_q_heads=8, num_kv_heads=8, head_dim=128),  # no group
        ExperimentSpec("prefill", 1, 679, 679, window=128, **plain),  # a form: the Triton kernels
        ExperimentSpec.from_mix("q679_q300", 32, 8, 128),
    ]
    assert [key.applies(s) for s in yes] == [True, True] and not any(key.applies(s) for s in no)


@pytest.mark.parametrize("workload,ahead", [("spec-decode", True), ("append", False)])
def test_a_speculative_step_loads_page_ids_ahead_by_default(workload, ahead):
    """The variant page_prefetch=decode (the default): a paged speculative step (a few rows on a long cache,
    the prefill kernel) loads the next tile's page ids a step ahead, as the decode kernels do; an append does
    not. The row says which ran (pages of 5: gathered, never TMA), and both match the reference."""
    spec = tiny_spec(workload, kv_len=40, batch=2, page_size=5)
    row = measured_once().measure(spec, get_backend("triton[spec=varlen]"))  # the default (auto): the work list
    assert row.status is Status.OK and row.rel_err < 1e-2, row.reason
    assert info(row)["kv_loads"] == "gather" and info(row).get("page_ids_ahead", False) == ahead, row.backend_info
