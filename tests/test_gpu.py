"""GPU conformance at real head shapes (skipped without CUDA): every available backend is ok or says
why it cannot run; none is incorrect or crashes. Run on the GPU host before calling GPU work done."""

import re

import pytest
import torch

from frameworks import BACKENDS, KVLayout, get_backend, load_all
from harness.env import collect
from harness.inputs import make_inputs
from harness.measure import MeasureConfig, Measurer
from harness.reference import check_output, reference_attention
from harness.store import Status
from harness.timer import Repetition
from specs import DType, ExperimentSpec

pytestmark = pytest.mark.gpu

load_all()
PROJECT_BACKENDS = sorted(name for name, cls in BACKENDS.items() if cls.__module__.startswith("frameworks."))

SHAPES = {4: (32, 8), 8: (32, 4), 16: (64, 4)}  # GQA group -> (q heads, kv heads), as in the models
WORKLOADS = {"prefill": (1024, 1024), "append": (128, 1024), "decode": (1, 2048), "spec-decode": (4, 2048)}


def available_or_skip(name):
    """Skip a backend whose library is not installed; fail one that is installed and does not import (the
    TE tests of 2026-11-23 skipped on both GPUs for a cuDNN clash that a skip hid)."""
    backend = get_backend(name)
    reason = backend.availability(torch.device("cuda"))
    if reason and reason.startswith("cannot import") and "ModuleNotFoundError" not in reason:
        pytest.fail(f"{name}: installed, but {reason}")
    if reason:
        pytest.skip(reason)
    return backend


@pytest.fixture(scope="module")
def measurer():
    device = torch.device("cuda")
    return Measurer(
        MeasureConfig(device="cuda", repetition=Repetition(iterations=3, warmup=1), run_id="gpu-test"),
        collect(device, "test"),
    )


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
def test_a_flush_by_reading_times_every_mode_and_says_so_on_gpu(monkeypatch):
    """ATTNBENCH_L2_FLUSH=read: the same modes time the same kernel, and the label names the flush."""
    from harness.timer import TimingMode, time_callable

    monkeypatch.setenv("ATTNBENCH_L2_FLUSH", "read")
    a = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
    for mode in (TimingMode.EVENTS, TimingMode.GRAPH, TimingMode.PROFILER):
        timing = time_callable(lambda: a @ a, torch.device("cuda"), Repetition(iterations=10, warmup=2), mode)
        assert timing.n == 10 and timing.p50_ms > 0 and mode.label.endswith("l2-flushed-by-read")


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


@pytest.mark.parametrize("name", PROJECT_BACKENDS)
def test_every_available_backend_runs_something(measurer, name):
    """An adapter that declines every spec fails: at least one real-shape spec runs ok."""
    backend = available_or_skip(name)
    statuses = []
    for workload, (q_len, kv_len) in WORKLOADS.items():
        kv_heads = 8 if backend.caps.gqa else 32  # built from the declaration
        spec = ExperimentSpec(workload, 2, q_len, kv_len, 32, kv_heads, 128, model="gpu-test")
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
    assert "dense" in dense.backend_info and "page_size=16" in paged.backend_info and dense.page_size is None


RAGGED_MIXES = ["q300s1000_5q1s700_3q4s1500", "2q512_q100s2000", "8q1s3000_q1s17"]
RAGGED_BACKENDS = sorted(n for n in PROJECT_BACKENDS if BACKENDS[n].caps.ragged)


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


def measure_mix(measurer, name, mix, page, monkeypatch, **env):
    """One (mix, backend) row at a real head shape (32 query heads, 8 KV heads, D 128) under these
    ATTNBENCH_* switches."""
    backend = available_or_skip(name)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return measurer.measure(ExperimentSpec.from_mix(mix, 32, 8, 128, page_size=page, model="gpu-test"), backend)


@pytest.mark.parametrize("page", [None, 16])
@pytest.mark.parametrize("mix", ["q300s1000_3q4s1500_5q1s700", "2q512_q100s2000_8q1s3000"])  # chunks, then decodes
def test_triton_mixed_batch_in_two_launches_on_gpu(measurer, mix, page, monkeypatch):
    row = measure_mix(measurer, "triton", mix, page, monkeypatch, ATTNBENCH_TRITON_MIXED_LAUNCHES="2")
    assert row.status is Status.OK, f"{row.status}: {row.reason}"
    assert row.rel_err < 2e-2 and row.backend_info.startswith("two launches;")


@pytest.mark.parametrize("page", [None, 16])
def test_triton_mixed_batch_on_two_streams_on_gpu(measurer, page, monkeypatch):
    env = {"ATTNBENCH_TRITON_MIXED_LAUNCHES": "2", "ATTNBENCH_TRITON_MIXED_STREAMS": "2"}
    row = measure_mix(measurer, "triton", "q2ks4k_64q1s4k", page, monkeypatch, **env)
    assert row.status is Status.OK, f"{row.status}: {row.reason}"
    assert row.rel_err < 2e-2 and row.backend_info.startswith("two launches;streams=2;")


@pytest.mark.parametrize("page", [16, 64])
@pytest.mark.parametrize("mix", ["q300s1000_3q4s1500_5q1s700", "q1s32k_2q1s16k_4q1s5000"])  # mixed; long decodes
def test_triton_page_ids_a_step_ahead_on_gpu(measurer, mix, page, monkeypatch):
    env = {"ATTNBENCH_TRITON_MIXED_LAUNCHES": "2", "ATTNBENCH_TRITON_PAGE_PREFETCH": "1"}
    row = measure_mix(measurer, "triton", mix, page, monkeypatch, **env)
    assert row.status is Status.OK, f"{row.status}: {row.reason}"
    assert row.rel_err < 2e-2 and "kv_loads=gather,page_ids_ahead" in row.backend_info


@pytest.mark.parametrize("page", [None, 16])
@pytest.mark.parametrize("mix", ["q1s32k_2q1s16k_4q1s5000", "q300s1000_3q4s1500_5q1s700", "64q1s32k"])
def test_triton_waves_split_rule_on_gpu(measurer, mix, page, monkeypatch):
    """ATTNBENCH_TRITON_SPLITS=waves: uneven long decodes, the decodes of a mixed batch, uniform long decodes."""
    env = {"ATTNBENCH_TRITON_MIXED_LAUNCHES": "2", "ATTNBENCH_TRITON_SPLITS": "waves"}
    row = measure_mix(measurer, "triton", mix, page, monkeypatch, **env)
    assert row.status is Status.OK, f"{row.status}: {row.reason}"
    assert row.rel_err < 2e-2 and "split_rule=waves;" in row.backend_info


@pytest.mark.parametrize("schedule", ["longest-first", "tiles"])
@pytest.mark.parametrize("mix", ["q100s300_2q700_5q1s700_q1500", "q300s1000_3q4s1500_5q1s700"])
def test_triton_varlen_through_tma_on_gpu(measurer, mix, schedule, monkeypatch):
    """ATTNBENCH_TRITON_VARLEN_TMA=1 on a dense ragged cache: tiles that run past a request's keys into the
    next request's, dropped by the key mask; one launch, and the chunk launch of two."""
    # the Triton varlen kernel's loads: the Gluon kernel, which would take these dense launches, stays off
    env = {"ATTNBENCH_TRITON_VARLEN_TMA": "1", "ATTNBENCH_TRITON_SCHEDULE": schedule, "ATTNBENCH_TRITON_GLUON": "0"}
    row = measure_mix(measurer, "triton", mix, None, monkeypatch, **env)
    assert row.status is Status.OK, f"{row.status}: {row.reason}"
    assert row.rel_err < 2e-2 and "kv_loads=tma" in row.backend_info.split("varlen;")[1].split(";ragged-decode")[0]


@pytest.mark.parametrize("page", [None, 16])
@pytest.mark.parametrize("name", ["128x128w8s3", "128x64w8s3", "256x64w8s2", "64x128w4s3", "128x64w8s2r128"])
def test_triton_pinned_varlen_configs_on_gpu(measurer, name, page, monkeypatch):
    """ATTNBENCH_TRITON_VARLEN_CONFIG pins each of the autotuner's configurations (dense through TMA, pages
    of 16 gathered): correct, and the row names the pinned config."""
    env = {"ATTNBENCH_TRITON_MIXED_LAUNCHES": "1", "ATTNBENCH_TRITON_VARLEN_CONFIG": name}
    row = measure_mix(measurer, "triton", "q100s300_2q700_5q1s700_q1500", page, monkeypatch, **env)
    assert row.status is Status.OK, f"{row.status}: {row.reason}"
    m, n = name.split("w")[0].split("x")
    assert row.rel_err < 2e-2 and f";pinned,BLOCK_M={m},BLOCK_N={n}," in row.backend_info


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
    from frameworks.triton.gluon_prefill import GluonPrefill  # Triton's experimental Gluon: imported only here

    spec = ExperimentSpec(workload, 2, q_len, kv_len, 32, 8, head_dim, dtype=DType(dtype), model="gpu-test")
    inputs = make_inputs(spec, torch.device("cuda"))
    op = GluonPrefill(inputs.q, inputs.k, inputs.v, spec.kv_len, spec.is_masked, *block)
    idx = [0, 1]
    check = check_output(spec, op(), reference_attention(spec, inputs, idx), idx)
    assert check.ok, f"{check.problem} (rel_err {check.rel_err:.2e})"


@pytest.mark.parametrize("gluon", ["1", "0"])
@pytest.mark.parametrize(
    "workload,q_len,kv_len,head_dim,dtype",
    [("prefill", 1000, 1000, 128, "bf16"), ("append", 128, 4096, 128, "fp16"), ("append", 100, 1500, 64, "bf16"),
     ("prefill", 300, 300, 64, "fp16")],
)  # fmt: skip
def test_triton_backend_takes_the_gluon_kernel_on_hopper(measurer, monkeypatch, gluon, workload, q_len, kv_len,
                                                         head_dim, dtype):  # fmt: skip
    """The backend's dense uniform prefill and append: the ping-pong Gluon kernel on sm90 by default for 128
    query rows or more (the row says gluon-pp; an append's, gluon-pp-persistent: the persistent grid), the
    autotuned Triton kernel with ATTNBENCH_TRITON_GLUON=0 or fewer rows; both against the reference."""
    backend = available_or_skip("triton")
    monkeypatch.setenv("ATTNBENCH_TRITON_GLUON", gluon)
    spec = ExperimentSpec(workload, 3, q_len, kv_len, 32, 8, head_dim, dtype=DType(dtype), model="gpu-test")
    row = measurer.measure(spec, backend)
    assert row.status is Status.OK and row.rel_err < 2e-2, f"{row.status}: {row.reason}"
    hopper = torch.cuda.get_device_capability() == (9, 0)
    gluon_ran = hopper and gluon == "1" and q_len >= 128
    kind = "gluon-pp-persistent;" if workload == "append" else "gluon-pp;"
    assert row.backend_info.startswith(kind) == gluon_ran, row.backend_info


@pytest.mark.parametrize("gluon,grid", [("1", "blocks"), ("1", "tiles"), ("0", "blocks")])
@pytest.mark.parametrize(
    "mix",
    ["q100s300_2q700_5q1s700_q1500",  # one launch: prompts, a chunk, decodes (q_len 1) in the middle, a prompt
     "2q1k_q512s2k_q1_q64s64_16q1s900",  # two launches: a chunk equal to its whole cache, a request of one row
     "q2000_q37_3q300s900_q129"],  # one launch, prompts and chunks only
)  # fmt: skip
@pytest.mark.parametrize("page", [None, 16, 64, 256, 8])
def test_triton_gluon_varlen_on_gpu(measurer, monkeypatch, gluon, grid, mix, page):
    """Ragged batches on a dense cache or shuffled pages: the ping-pong Gluon kernel for the prompts and chunks
    on sm90 by default (the row says gluon-pp; 16- and 64-token pages a TMA load a page, 256 a load a tile), on
    its block grid or only the blocks that hold rows (grid=tiles), the Triton varlen kernel with
    ATTNBENCH_TRITON_GLUON=0 or pages the TMA loads cannot take (8)."""
    row = measure_mix(measurer, "triton", mix, page, monkeypatch, ATTNBENCH_TRITON_GLUON=gluon,
                      ATTNBENCH_TRITON_GLUON_GRID=grid)  # fmt: skip
    assert row.status is Status.OK and row.rel_err < 2e-2, f"{row.status}: {row.reason}"
    hopper = torch.cuda.get_device_capability() == (9, 0)
    assert ("gluon-pp;" in row.backend_info) == (hopper and gluon == "1" and page != 8), row.backend_info
    assert (f"grid={grid};gluon-pp;" in row.backend_info) == ("gluon-pp;" in row.backend_info), row.backend_info
    assert ("kv_loads=tma_per_page" in row.backend_info) == ("gluon-pp;" in row.backend_info and page in (16, 64))


@pytest.mark.parametrize("grid", ["blocks", "tiles"])
@pytest.mark.parametrize("page", [None, 16, 32])
def test_triton_gluon_varlen_head_dim_64_fp16_on_gpu(measurer, monkeypatch, page, grid):
    """The Gluon varlen kernel at head dim 64 in fp16 (a page's row is one 128-byte TMA message there), GQA 8,
    prompts, a chunk and decodes in one launch: against the reference, and the row says gluon-pp on sm90."""
    backend = available_or_skip("triton")
    monkeypatch.setenv("ATTNBENCH_TRITON_MIXED_LAUNCHES", "1")
    monkeypatch.setenv("ATTNBENCH_TRITON_GLUON_GRID", grid)
    spec = ExperimentSpec.from_mix("q700_q300s1000_3q1s900_q150", 32, 4, 64, page_size=page, dtype=DType.FP16,
                                   model="gpu-test")  # fmt: skip
    row = measurer.measure(spec, backend)
    assert row.status is Status.OK and row.rel_err < 2e-2, f"{row.status}: {row.reason}"
    assert ("gluon-pp;" in row.backend_info) == (torch.cuda.get_device_capability() == (9, 0)), row.backend_info


@pytest.mark.parametrize("schedule", ["longest-first", "simple", "tiles"])
@pytest.mark.parametrize("page", [None, 16])
def test_triton_varlen_schedules_on_gpu(measurer, page, schedule, monkeypatch):
    env = {"ATTNBENCH_TRITON_MIXED_LAUNCHES": "1", "ATTNBENCH_TRITON_SCHEDULE": schedule}
    row = measure_mix(measurer, "triton", "q100s300_2q700_5q1s700_q1500", page, monkeypatch, **env)
    assert row.status is Status.OK, f"{row.status}: {row.reason}"
    assert row.rel_err < 2e-2 and row.backend_info.startswith(f"varlen;schedule={schedule};"), row.backend_info


@pytest.mark.parametrize("page", [None, 16])
@pytest.mark.parametrize("mix", ["q300s1000_3q4s1500_5q1s700", "2q512_q100s2000_8q1s3000"])  # chunks, then decodes
def test_flashinfer_splits_a_mixed_batch_on_gpu(measurer, mix, page, monkeypatch):
    row = measure_mix(measurer, "flashinfer", mix, page, monkeypatch)
    assert row.status is Status.OK, f"{row.status}: {row.reason}"
    assert row.rel_err < 2e-2 and row.backend_info.startswith("split: ")


@pytest.mark.parametrize("page", [None, 16])
def test_flashinfer_batch_attention_runs_a_mixed_batch_on_gpu(measurer, page, monkeypatch):
    mix = "q300s1000_3q4s1500_5q1s700"
    row = measure_mix(measurer, "flashinfer", mix, page, monkeypatch, ATTNBENCH_FLASHINFER_MIXED="batch-attention")
    assert row.status in (Status.OK, Status.UNSUPPORTED), f"{row.status}: {row.reason}"
    if row.status is Status.OK:
        assert row.rel_err < 2e-2 and row.backend_info.startswith("BatchAttention")


def test_flash_attn3_varlen_may_split_a_long_decode(measurer):
    """FA3's varlen call defaults to one KV split; called as vLLM calls it, FA3's heuristic decides."""
    backend = available_or_skip("flash-attn3")
    row = measurer.measure(ExperimentSpec.from_mix("q1s32k_2q1s16k", 32, 8, 128, model="gpu-test"), backend)
    assert row.status is Status.OK, f"{row.status}: {row.reason}"
    assert row.rel_err < 2e-2 and "num_splits=0" in row.backend_info


@pytest.mark.parametrize("page", [1, 16, 64, 256])
@pytest.mark.parametrize("name", sorted(n for n in RAGGED_BACKENDS if KVLayout.PAGED in BACKENDS[n].caps.layouts))
def test_ragged_paged_backend_on_gpu(measurer, name, page):
    backend = available_or_skip(name)
    spec = ExperimentSpec.from_mix(RAGGED_MIXES[0], 32, 4, 128, page_size=page, model="gpu-test")
    if backend.supports(spec):
        pytest.skip(backend.supports(spec))
    row = measurer.measure(spec, backend)
    assert row.status is Status.OK, f"{row.status}: {row.reason}"
    assert row.rel_err < 2e-2 and f"page_size={page}" in row.backend_info


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
