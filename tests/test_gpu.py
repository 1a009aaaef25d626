"""GPU conformance at real head shapes (skipped without CUDA): every available backend is ok or says
why it cannot run; none is incorrect or crashes. Run on the GPU host before calling GPU work done."""

import re

import pytest
import torch

from frameworks import BACKENDS, KVLayout, get_backend, info_dict, load_all
from harness.env import collect
from harness.inputs import make_inputs
from harness.measure import MeasureConfig, Measurer
from harness.reference import check_output, reference_attention
from harness.store import Status
from harness.timer import Repetition
from specs import DType, ExperimentSpec
from specs.presets import specs_for

pytestmark = pytest.mark.gpu

load_all()
PROJECT_BACKENDS = sorted(name for name, cls in BACKENDS.items() if cls.__module__.startswith("frameworks."))

SHAPES = {4: (32, 8), 8: (32, 4), 16: (64, 4)}  # GQA group -> (q heads, kv heads), as in the models
WORKLOADS = {"prefill": (1024, 1024), "append": (128, 1024), "decode": (1, 2048), "spec-decode": (4, 2048)}


def available_or_skip(name):
    """The backend `name` ('NAME' or 'NAME[key=value,...]', a variant). Skip a backend whose library is not
    installed; fail one that is installed and does not import (the TE tests of 2026-11-23 skipped on both GPUs
    for a cuDNN clash that a skip hid)."""
    backend = get_backend(name)
    reason = backend.availability(torch.device("cuda"))
    if reason and reason.startswith("cannot import") and "ModuleNotFoundError" not in reason:
        pytest.fail(f"{name}: installed, but {reason}")
    if reason:
        pytest.skip(reason)
    return backend


@pytest.fixture(scope="module")
def measurer():
    from .helpers import measurer_on

    return measurer_on("cuda", iterations=3, warmup=1)


@pytest.mark.parametrize("group", sorted(SHAPES))
@pytest.mark.parametrize("workload", sorted(WORKLOADS))
@pytest.mark.parametrize("name", PROJECT_BACKENDS)
def test_backend_on_gpu(measurer, name, workload, group):
    backend = available_or_skip(name)
    hq, hkv = SHAPES[group]
    q_len, kv_len = WORKLOADS[workload]
    spec = ExperimentSpec(workload, 4, q_len, kv_len, hq, hkv, 128, model="gpu-test")
    row = measurer.measure(spec, backend)
    assert row.status in (Status.OK, Status.UNSUPPORTED), f"{row.status}: {row.reason}"
    if row.status is Status.OK:
        assert row.rel_err < 2e-2 and row.checked_batch == 4 and row.peak_mem_gib > 0
    else:
        print(f"{name} {workload} group {group}: unsupported: {row.reason}")


@pytest.mark.exclusive
def test_timing_modes_on_gpu():
    """Every mode times a real kernel; a graph that captures no kernel is an error, not a number."""
    from harness.timer import TimingError, TimingMode, time_callable

    a = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
    rep = Repetition(iterations=20, warmup=3)
    for mode in (TimingMode.EVENTS, TimingMode.GRAPH, TimingMode.PROFILER):
        timing = time_callable(lambda: a @ a, torch.device("cuda"), rep, mode)
        assert timing.n == 20 and timing.p50_ms > 0 and timing.mode is mode
    with pytest.raises(TimingError, match="captured no kernels"):
        time_callable(lambda: None, torch.device("cuda"), rep, TimingMode.GRAPH)


@pytest.mark.exclusive
def test_a_flush_by_reading_times_every_mode_and_says_so_on_gpu():
    """l2_flush="read" (run.py sweep --l2-flush read): the same modes time the same kernel, and the label
    names the flush."""
    from harness.timer import TimingMode, time_callable

    a = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
    rep = Repetition(iterations=10, warmup=2)
    for mode in (TimingMode.EVENTS, TimingMode.GRAPH, TimingMode.PROFILER):
        timing = time_callable(lambda: a @ a, torch.device("cuda"), rep, mode, l2_flush="read")
        assert timing.n == 10 and timing.p50_ms > 0 and timing.mode.label_for("read").endswith("l2-flushed-by-read")


@pytest.mark.exclusive
def test_events_time_the_gpu_not_a_slow_host():
    """A call whose host side takes 2 ms around a microsecond kernel: the GPU spin ahead of each
    start event keeps the host's time out of the sample."""
    import time

    from harness.timer import TimingMode, time_callable

    x = torch.ones(1 << 16, device="cuda")

    def slow_host():
        time.sleep(0.002)
        return x * 2

    timing = time_callable(slow_host, torch.device("cuda"), Repetition(iterations=10, warmup=2), TimingMode.EVENTS)
    assert timing.p50_ms < 0.5, timing.samples_ms


@pytest.mark.exclusive
def test_rows_carry_telemetry_and_ceilings(tmp_path):
    from harness import calibrate

    device = torch.device("cuda")
    env = collect(device, "test")
    path = tmp_path / "calibration.csv"
    config = MeasureConfig(device="cuda", repetition=Repetition(iterations=5, warmup=1), calibration_path=str(path),
                           calibrate_if_missing=True)  # fmt: skip
    row = Measurer(config, env).measure(
        ExperimentSpec("decode", 8, 1, 4096, 32, 8, 128, model="gpu-test"), get_backend("sdpa")
    )
    assert row.status is Status.OK, row.reason
    assert row.sm_clock_start_mhz > 0 and row.temp_end_c > 0 and row.power_end_w > 0 and row.throttled is not None
    assert re.fullmatch(r"(GPU-)?[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", row.gpu_uuid), row.gpu_uuid  # which GPU
    assert row.gpu_uuid == env.gpu_uuid
    assert row.ceiling_gbps > 500 and row.ceiling_tflops > 100 and 0 < row.pct_peak_gbps < 150
    ceilings = calibrate.load(path)
    assert len(ceilings) == 3 and all(c.read_gbps > 500 for c in ceilings)
    assert row.ceiling_gbps == max(ceilings[0].copy_gbps, ceilings[0].read_gbps)


PAGED = {"flash-attn2": 256, "flash-attn3": 64, "flashinfer": 16, "triton": 16}  # a page size each paged backend takes


@pytest.mark.parametrize("group", sorted(SHAPES))
@pytest.mark.parametrize("workload", sorted(WORKLOADS))
@pytest.mark.parametrize("name", sorted(PAGED))
def test_paged_backend_on_gpu(measurer, name, workload, group):
    backend = available_or_skip(name)
    hq, hkv = SHAPES[group]
    q_len, kv_len = WORKLOADS[workload]
    kv_len += 3  # a partly filled last page
    q_len = kv_len if workload == "prefill" else q_len
    spec = ExperimentSpec(workload, 4, q_len, kv_len, hq, hkv, 128, page_size=PAGED[name], model="gpu-test")
    row = measurer.measure(spec, backend)
    assert row.status is Status.OK, f"{row.status}: {row.reason}"
    assert row.rel_err < 2e-2 and row.checked_batch == 4


def latent_only(name: str) -> bool:
    """A backend of latent attention only (FlashMLA, triton-mla): it declines plain GQA, so its rows are MLA-shaped
    (the latent decode below; its ragged and paged batches in test_fp8_mla.py and test_triton_mla.py)."""
    plain = ExperimentSpec("decode", 1, 1, 64, 32, 32, 128, model="gpu-test")
    return BACKENDS[name].caps.mla == {"mla-absorbed"} and get_backend(name).supports(plain) is not None


@pytest.mark.parametrize("name", PROJECT_BACKENDS)
def test_every_available_backend_runs_something(measurer, name):
    """An adapter that declines every spec fails: at least one real-shape spec runs ok (a latent-attention
    backend's: a DeepSeek-V2-Lite decode on pages of 64)."""
    backend = available_or_skip(name)
    statuses = []
    kv_heads = 8 if backend.caps.gqa else 32  # built from the declaration
    specs = [ExperimentSpec(workload, 2, q_len, kv_len, 32, kv_heads, 128, model="gpu-test")
             for workload, (q_len, kv_len) in WORKLOADS.items()]  # fmt: skip
    if backend.caps.mla:
        specs.append(specs_for("DeepSeek-V2-Lite", workload="decode", batch_size=2, q_len=1, kv_len=1024, page_size=64))
    for spec in specs:
        row = measurer.measure(spec, backend)
        statuses.append(row.status)
        if row.status is Status.OK:
            return
    pytest.fail(f"{name} ran nothing ok: {statuses}")


def test_flex_append_with_a_chunk_that_is_not_a_multiple_of_its_block(measurer):
    backend = available_or_skip("flex")
    row = measurer.measure(ExperimentSpec("append", 4, 127, 1024, 32, 8, 128, model="gpu-test"), backend)
    assert row.status is Status.OK, f"{row.status}: {row.reason}"


def test_flashinfer_rows_say_which_kv_layout_ran(measurer):
    backend = available_or_skip("flashinfer")
    dense = measurer.measure(ExperimentSpec("decode", 4, 1, 2048, 32, 8, 128, model="gpu-test"), backend)
    paged = measurer.measure(ExperimentSpec("decode", 4, 1, 2048, 32, 8, 128, page_size=16, model="gpu-test"), backend)
    assert dense.status is Status.OK and paged.status is Status.OK
    assert "dense" in info_dict(dense.backend_info)["path"] and says(paged, "page_size", 16) and dense.page_size is None


RAGGED_MIXES = ["q300s1000_5q1s700_3q4s1500", "2q512_q100s2000", "8q1s3000_q1s17"]
RAGGED_BACKENDS = sorted(n for n in PROJECT_BACKENDS if BACKENDS[n].caps.ragged and not latent_only(n))


@pytest.mark.parametrize("group", sorted(SHAPES))
@pytest.mark.parametrize("mix", RAGGED_MIXES)
@pytest.mark.parametrize("name", RAGGED_BACKENDS)
def test_ragged_backend_on_gpu(measurer, name, mix, group):
    backend = available_or_skip(name)
    hq, hkv = SHAPES[group]
    spec = ExperimentSpec.from_mix(mix, hq, hkv, 128, model="gpu-test")
    row = measurer.measure(spec, backend)
    assert row.status is Status.OK, f"{row.status}: {row.reason}"
    assert row.rel_err < 2e-2


def measure_mix(measurer, backend, mix, page):
    """One (mix, backend) row at a real head shape (32 query heads, 8 KV heads, D 128); `backend` names the
    backend and its variant ('triton[mixed_launches=2,splits=waves]')."""
    backend = available_or_skip(backend)
    return measurer.measure(ExperimentSpec.from_mix(mix, 32, 8, 128, page_size=page, model="gpu-test"), backend)


def info(row) -> dict:
    """A row's backend_info as a dict (the Triton adapter's own; a string path under "path")."""
    return info_dict(row.backend_info)


def launches(row) -> list[dict]:
    """The Triton launches a row's backend_info describes: a mixed batch's two, else the one."""
    return info(row).get("launches", [info(row)])


def says(row, key, value) -> bool:
    """Whether a row's backend_info says key=value: as a key of its dict (Triton: "page_size": 16) or inside
    a string a backend still reports ('paged, page_size=16')."""
    return str(info(row).get(key)) == str(value) or any(f"{key}={value}" in str(v) for v in info(row).values())


@pytest.mark.parametrize("page", [None, 16])
@pytest.mark.parametrize("mix", ["q300s1000_3q4s1500_5q1s700", "2q512_q100s2000_8q1s3000"])  # chunks, then decodes
def test_triton_mixed_batch_in_two_launches_on_gpu(measurer, mix, page):
    # spec=varlen throughout this file's mixed batches: the default (spec=auto) sends their steps and the decodes
    # before a prompt to the split-KV work list (tests/test_triton_spec_decode.py covers that path)
    row = measure_mix(measurer, "triton[mixed_launches=2,spec=varlen]", mix, page)
    assert row.status is Status.OK, f"{row.status}: {row.reason}"
    assert row.rel_err < 2e-2 and info(row)["kernel"] == "two launches", row.backend_info


@pytest.mark.parametrize("page", [None, 16])
def test_triton_mixed_batch_on_two_streams_on_gpu(measurer, page):
    row = measure_mix(measurer, "triton[mixed_launches=2,mixed_streams=2]", "q2ks4k_64q1s4k", page)
    assert row.status is Status.OK, f"{row.status}: {row.reason}"
    assert row.rel_err < 2e-2 and (info(row)["kernel"], info(row)["streams"]) == ("two launches", 2), row.backend_info


@pytest.mark.parametrize("page", [16, 64])
@pytest.mark.parametrize("mix", ["q300s1000_3q4s1500_5q1s700", "q1s32k_2q1s16k_4q1s5000"])  # mixed; long decodes
def test_triton_page_ids_a_step_ahead_on_gpu(measurer, mix, page):
    row = measure_mix(measurer, "triton[mixed_launches=2,page_prefetch=all,spec=varlen]", mix, page)
    assert row.status is Status.OK, f"{row.status}: {row.reason}"
    ahead = [launch for launch in launches(row) if launch["kv_loads"] == "gather" and launch.get("page_ids_ahead")]
    assert row.rel_err < 2e-2 and ahead, row.backend_info


@pytest.mark.parametrize("page", [None, 16])
@pytest.mark.parametrize("mix", ["q1s32k_2q1s16k_4q1s5000", "q300s1000_3q4s1500_5q1s700", "64q1s32k"])
def test_triton_waves_split_rule_on_gpu(measurer, mix, page):
    """splits=waves: uneven long decodes, the decodes of a mixed batch, uniform long decodes."""
    row = measure_mix(measurer, "triton[mixed_launches=2,splits=waves,spec=varlen]", mix, page)
    assert row.status is Status.OK, f"{row.status}: {row.reason}"
    assert row.rel_err < 2e-2 and any(launch.get("split_rule") == "waves" for launch in launches(row)), row.backend_info


@pytest.mark.parametrize("schedule", ["longest-first", "tiles"])
@pytest.mark.parametrize("mix", ["q100s300_2q700_5q1s700_q1500", "q300s1000_3q4s1500_5q1s700"])
def test_triton_varlen_through_tma_on_gpu(measurer, mix, schedule):
    """varlen_tma=on on a dense ragged cache: tiles that run past a request's keys into the next request's,
    dropped by the key mask; one launch, and the chunk launch of two."""
    # the Triton varlen kernel's loads: the Gluon kernel, which would take these dense launches, stays off
    row = measure_mix(measurer, f"triton[gluon=off,schedule={schedule},varlen_tma=on,spec=varlen]", mix, None)
    assert row.status is Status.OK, f"{row.status}: {row.reason}"
    varlen = [launch for launch in launches(row) if launch["kernel"] == "varlen"]
    assert row.rel_err < 2e-2 and varlen and varlen[0]["kv_loads"] == "tma", row.backend_info


@pytest.mark.parametrize("page", [None, 16])
@pytest.mark.parametrize("name", ["128x128w8s3", "128x64w8s3", "256x64w8s2", "64x128w4s3", "128x64w8s2r128"])
def test_triton_pinned_varlen_configs_on_gpu(measurer, name, page):
    """varlen_config=<name> pins each of the autotuner's configurations (dense through TMA, pages of 16
    gathered): correct, and the row names the pinned config."""
    row = measure_mix(measurer, f"triton[varlen_config={name},mixed_launches=1]", "q100s300_2q700_5q1s700_q1500", page)
    assert row.status is Status.OK, f"{row.status}: {row.reason}"
    m, n = name.split("w")[0].split("x")
    pinned = {"kernel": "varlen", "pinned": True, "BLOCK_M": int(m), "BLOCK_N": int(n)}
    assert row.rel_err < 2e-2 and pinned.items() <= info(row).items(), row.backend_info


@pytest.mark.parametrize(
    "workload,q_len,kv_len,head_dim,dtype",
    [("prefill", 1000, 1000, 128, "bf16"), ("append", 100, 1500, 128, "bf16"), ("append", 128, 4096, 64, "fp16"),
     ("prefill", 300, 300, 64, "bf16")],
)  # fmt: skip
@pytest.mark.parametrize(
    "block",
    [(128, 128, 8, 0), (128, 64, 8, 0), (64, 64, 4, 0), (128, 128, 4, 2, True), (128, 64, 4, 3, True),
     (128, 64, 4, 2, True, True), (128, 128, 4, 2, True, True)],
)  # fmt: skip
def test_gluon_prefill_matches_the_reference_on_gpu(workload, q_len, kv_len, head_dim, dtype, block):
    """The Gluon kernels (explicit MMA waits; with a 5th entry, two consumer warpgroups in ping-pong fed by a
    producer warp through a ring of the 4th entry's stages; with a 6th, the same in a persistent grid, whose
    CTAs walk 2–4 work items each at the prefills' 192 and 512): bottom-right causal over tiles that end past
    the keys, GQA 4, two batch elements."""
    if torch.cuda.get_device_capability()[0] != 9:
        pytest.skip("the Gluon kernel is written for Hopper (sm_90)")
    from tools.gluon_overlap import gluon_op  # Triton's experimental Gluon: imported only here

    spec = ExperimentSpec(workload, 2, q_len, kv_len, 32, 8, head_dim, dtype=DType(dtype), model="gpu-test")
    inputs = make_inputs(spec, torch.device("cuda"))
    op = gluon_op(inputs.q, inputs.k, inputs.v, spec.kv_len, spec.is_masked, *block)
    idx = [0, 1]
    check = check_output(spec, op(), reference_attention(spec, inputs, idx), idx)
    assert check.ok, f"{check.problem} (rel_err {check.rel_err:.2e})"


@pytest.mark.parametrize("gluon", ["on", "off"])
@pytest.mark.parametrize(
    "workload,q_len,kv_len,head_dim,dtype",
    [("prefill", 1000, 1000, 128, "bf16"), ("append", 128, 4096, 128, "fp16"), ("append", 100, 1500, 64, "bf16"),
     ("prefill", 300, 300, 64, "fp16")],
)  # fmt: skip
def test_triton_backend_takes_the_gluon_kernel_on_hopper(measurer, gluon, workload, q_len, kv_len, head_dim, dtype):
    """The backend's dense uniform prefill and append: the ping-pong Gluon kernel on sm90 by default for 128
    query rows or more (the row says gluon-pp; an append's, gluon-pp-persistent: the persistent grid), the
    autotuned Triton kernel with gluon=off or fewer rows; both against the reference."""
    backend = available_or_skip(f"triton[gluon={gluon}]")
    spec = ExperimentSpec(workload, 3, q_len, kv_len, 32, 8, head_dim, dtype=DType(dtype), model="gpu-test")
    row = measurer.measure(spec, backend)
    assert row.status is Status.OK and row.rel_err < 2e-2, f"{row.status}: {row.reason}"
    hopper = torch.cuda.get_device_capability() == (9, 0)
    gluon_ran = hopper and gluon == "on" and q_len >= 128
    kind = "gluon-pp-persistent" if workload == "append" else "gluon-pp"
    assert (info(row)["kernel"] == kind) == gluon_ran, row.backend_info


@pytest.mark.parametrize("page", [16, 64, 8])
@pytest.mark.parametrize(
    "workload,q_len,kv_len,head_dim", [("prefill", 679, 679, 128), ("append", 295, 498, 128), ("prefill", 300, 300, 64)]
)  # fmt: skip
def test_triton_paged_prompts_through_the_gluon_varlen_kernel_on_gpu(measurer, workload, q_len, kv_len, head_dim, page):
    """paged_prompt=gluon: a uniform prefill or append on shuffled pages through the Gluon varlen kernel (the row
    says gluon-pp-varlen, requests uniform) on sm90 where the pages fit its loads, the Triton kernel's gathers at
    pages of 8; against the reference either way."""
    backend = available_or_skip("triton[paged_prompt=gluon]")
    spec = ExperimentSpec(workload, 2, q_len, kv_len, 32, 8, head_dim, page_size=page, model="gpu-test")
    row = measurer.measure(spec, backend)
    assert row.status is Status.OK and row.rel_err < 2e-2, f"{row.status}: {row.reason}"
    gluon_ran = torch.cuda.get_device_capability() == (9, 0) and page != 8
    assert (info(row)["kernel"] == "gluon-pp-varlen" and info(row)["requests"] == "uniform") == gluon_ran, (
        row.backend_info
    )


@pytest.mark.parametrize("gluon,grid", [("on", "blocks"), ("on", "tiles"), ("on", "persistent"), ("off", "blocks")])
@pytest.mark.parametrize(
    "mix",
    ["q100s300_2q700_5q1s700_q1500",  # one launch: prompts, a chunk, decodes (q_len 1) in the middle, a prompt
     "2q1k_q512s2k_q1_q64s64_16q1s900",  # two launches: a chunk equal to its whole cache, a request of one row
     "q2000_q37_3q300s900_q129"],  # one launch, prompts and chunks only
)  # fmt: skip
@pytest.mark.parametrize("page", [None, 16, 64, 256, 8])
def test_triton_gluon_varlen_on_gpu(measurer, gluon, grid, mix, page):
    """Ragged batches on a dense cache or shuffled pages: the ping-pong Gluon kernel for the prompts and chunks
    on sm90 by default (the row says gluon-pp; 16- and 64-token pages a TMA load a page, 256 a load a tile), on
    its block grid or only the blocks that hold rows (gluon_grid=tiles), those walked by one CTA an SM
    (gluon_grid=persistent), the Triton varlen kernel with gluon=off or pages the TMA loads cannot take (8)."""
    row = measure_mix(measurer, f"triton[gluon={gluon},gluon_grid={grid},spec=varlen]", mix, page)
    assert row.status is Status.OK and row.rel_err < 2e-2, f"{row.status}: {row.reason}"
    hopper = torch.cuda.get_device_capability() == (9, 0)
    gluon_launches = [launch for launch in launches(row) if launch["kernel"] == "gluon-pp-varlen"]
    assert bool(gluon_launches) == (hopper and gluon == "on" and page != 8), row.backend_info
    assert all(launch["grid"] == grid for launch in gluon_launches), row.backend_info
    per_page = any(launch.get("kv_loads") == "tma_per_page" for launch in launches(row))
    assert per_page == (bool(gluon_launches) and page in (16, 64)), row.backend_info


@pytest.mark.parametrize("balance", ["lpt", "static"])
@pytest.mark.parametrize(
    "case",
    ["prefill 1000 1000", "append 300 1500", "prefill 1024 1024 16", "mix q2000_q37_3q300s900_q129",
     "mix q2000_q37_3q300s900_q129 16 tiles", "mix q700_q300_q129 16 persistent"],
)  # fmt: skip
def test_triton_gluon_balance_on_gpu(measurer, balance, case):
    """gluon_balance: the heaviest row blocks first and a persistent grid's blocks shared out least-loaded (lpt),
    or in turn (static), on the uniform one-block grid, the uniform persistent grid (an append), the paged prompts'
    varlen launch and the varlen tiles and persistent grids: against the reference, the row naming the balance."""
    workload, *rest = case.split()
    grid = rest[-1] if rest[-1] in ("tiles", "persistent") else None
    variant = f"triton[gluon_balance={balance}" + (f",gluon_grid={grid}]" if grid else "]")
    if workload == "mix":
        row = measure_mix(measurer, variant, rest[0], int(rest[1]) if len(rest) > 1 and rest[1].isdigit() else None)
    else:
        page = int(rest[2]) if len(rest) > 2 else None
        spec = ExperimentSpec(workload, 2, int(rest[0]), int(rest[1]), 32, 8, 128, page_size=page, model="gpu-test")
        row = measurer.measure(spec, available_or_skip(variant))
    assert row.status is Status.OK and row.rel_err < 2e-2, f"{row.status}: {row.reason}"
    if torch.cuda.get_device_capability() == (9, 0):
        assert any(launch.get("balance") == balance for launch in launches(row)), row.backend_info


@pytest.mark.parametrize(
    "case",
    ["prefill 1 679 679 32 8 128", "prefill 2 1000 1000 32 8 128", "append 2 300 1500 32 8 128",
     "prefill 1 804 804 32 4 128", "append 1 804 818 64 4 128", "prefill 2 500 500 16 8 64 fp16",
     "prefill 1 700 700 64 4 64"],
)  # fmt: skip
def test_triton_gluon_gqa_packing_on_gpu(measurer, case):
    """gluon_pack=gqa: one KV head's query group in a block's rows (groups 2, 4, 8 and 16; head dims 64 and 128;
    prefill and append, partial last blocks), against the reference; the row names the packing on sm90."""
    workload, batch, q_len, kv_len, hq, hkv, d, *dtype = case.split()
    spec = ExperimentSpec(workload, int(batch), int(q_len), int(kv_len), int(hq), int(hkv), int(d), model="gpu-test",
                          dtype=DType.FP16 if dtype else DType.BF16)  # fmt: skip
    row = measurer.measure(spec, available_or_skip("triton[gluon_pack=gqa]"))
    assert row.status is Status.OK and row.rel_err < 2e-2, f"{row.status}: {row.reason}"
    assert info(row).get("pack_gqa") == int(hq) // int(hkv), row.backend_info


@pytest.mark.parametrize("grid", ["blocks", "tiles", "persistent"])
@pytest.mark.parametrize("page", [None, 16, 32])
def test_triton_gluon_varlen_head_dim_64_fp16_on_gpu(measurer, page, grid):
    """The Gluon varlen kernel at head dim 64 in fp16 (a page's row is one 128-byte TMA message there), GQA 8,
    prompts, a chunk and decodes in one launch: against the reference, and the row says gluon-pp on sm90."""
    backend = available_or_skip(f"triton[gluon_grid={grid},mixed_launches=1]")
    spec = ExperimentSpec.from_mix("q700_q300s1000_3q1s900_q150", 32, 4, 64, page_size=page, dtype=DType.FP16,
                                   model="gpu-test")  # fmt: skip
    row = measurer.measure(spec, backend)
    assert row.status is Status.OK and row.rel_err < 2e-2, f"{row.status}: {row.reason}"
    hopper = torch.cuda.get_device_capability() == (9, 0)
    assert (info(row)["kernel"] == "gluon-pp-varlen") == hopper, row.backend_info


@pytest.mark.parametrize("schedule", ["longest-first", "simple", "tiles"])
@pytest.mark.parametrize("page", [None, 16])
def test_triton_varlen_schedules_on_gpu(measurer, page, schedule):
    row = measure_mix(measurer, f"triton[schedule={schedule},mixed_launches=1]", "q100s300_2q700_5q1s700_q1500", page)
    assert row.status is Status.OK, f"{row.status}: {row.reason}"
    # the default schedule's prompts and chunks may take the Gluon varlen kernel (sm90), which says so
    kernels = {"varlen", "gluon-pp-varlen"} if schedule == "longest-first" else {"varlen"}
    assert row.rel_err < 2e-2 and info(row)["kernel"] in kernels and info(row)["schedule"] == schedule, row.backend_info


@pytest.mark.parametrize("page", [None, 16])
@pytest.mark.parametrize("mix", ["q300s1000_3q4s1500_5q1s700", "2q512_q100s2000_8q1s3000"])  # chunks, then decodes
def test_flashinfer_splits_a_mixed_batch_on_gpu(measurer, mix, page):
    row = measure_mix(measurer, "flashinfer", mix, page)
    assert row.status is Status.OK, f"{row.status}: {row.reason}"
    assert row.rel_err < 2e-2 and info(row)["path"].startswith("split: "), row.backend_info


@pytest.mark.parametrize("page", [None, 16])
def test_flashinfer_batch_attention_runs_a_mixed_batch_on_gpu(measurer, page):
    row = measure_mix(measurer, "flashinfer[mixed=batch-attention]", "q300s1000_3q4s1500_5q1s700", page)
    assert row.status in (Status.OK, Status.UNSUPPORTED), f"{row.status}: {row.reason}"
    if row.status is Status.OK:
        assert row.rel_err < 2e-2 and info(row)["path"].startswith("BatchAttention"), row.backend_info


def test_flash_attn3_varlen_may_split_a_long_decode(measurer):
    """FA3's varlen call defaults to one KV split; called as vLLM calls it, FA3's heuristic decides."""
    backend = available_or_skip("flash-attn3")
    row = measurer.measure(ExperimentSpec.from_mix("q1s32k_2q1s16k", 32, 8, 128, model="gpu-test"), backend)
    assert row.status is Status.OK, f"{row.status}: {row.reason}"
    assert row.rel_err < 2e-2 and "num_splits=0" in info(row)["path"], row.backend_info


@pytest.mark.parametrize("page", [1, 16, 64, 256])
@pytest.mark.parametrize("name", sorted(n for n in RAGGED_BACKENDS if KVLayout.PAGED in BACKENDS[n].caps.layouts))
def test_ragged_paged_backend_on_gpu(measurer, name, page):
    backend = available_or_skip(name)
    spec = ExperimentSpec.from_mix(RAGGED_MIXES[0], 32, 4, 128, page_size=page, model="gpu-test")
    if backend.supports(spec):
        pytest.skip(backend.supports(spec))
    row = measurer.measure(spec, backend)
    assert row.status is Status.OK, f"{row.status}: {row.reason}"
    assert row.rel_err < 2e-2 and says(row, "page_size", page), row.backend_info


TE_AFTER_CUDNN = """
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
q = torch.randn(1, 8, 256, 128, device="cuda", dtype=torch.bfloat16)
with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
    torch.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True)
torch.cuda.synchronize()
from frameworks import get_backend, load_all
load_all()
print("availability:", get_backend("transformer-engine").availability(torch.device("cuda")))
"""


def test_te_imports_after_a_cudnn_sdpa_call_on_gpu():
    """The H200 scaling sweep of 2026-11-23 lost every TE row: the worker had run SDPA on cuDNN before TE's
    first import, which then loaded the system's cuDNN beside PyTorch's and failed. A fresh process that does
    the same must find TE available (frameworks.transformer_engine.torch_cudnn_for_te)."""
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("transformer_engine") is None:
        pytest.skip("Transformer Engine is not installed")
    done = subprocess.run([sys.executable, "-c", TE_AFTER_CUDNN], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "availability: None" in done.stdout, done.stdout[-2000:]
