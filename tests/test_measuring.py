"""Statistics, adaptive repetition, timing modes, calibration, telemetry and A/B comparison."""

import dataclasses
import random

import pytest
import torch

from frameworks import get_backend
from harness import calibrate, timer
from harness.compare import compare, judge, summarize
from harness.env import collect
from harness.measure import MeasureConfig, Measurer, make_row
from harness.stats import geometric_mean, median_ci, median_rank_interval
from harness.store import Status
from harness.telemetry import Snapshot, describe_reasons
from harness.timer import Repetition, TimingMode, check_mode, time_callable

from .helpers import tiny_spec
from .test_store import CONFIG, ENV, ok_row

CPU = torch.device("cpu")


def test_median_interval_ranks_match_the_binomial_tables():
    assert median_rank_interval(10) == (1, 8)  # ranks 2 and 9 (1-based), coverage 97.9%
    assert median_rank_interval(20) == (5, 14)  # ranks 6 and 15
    assert median_rank_interval(100) == (39, 60)  # ranks 40 and 61
    assert median_rank_interval(5) == (0, 4)  # too few samples for 95%: the whole range
    lo, hi = median_rank_interval(10_000)
    assert abs(lo - 4901) <= 2 and abs(hi - 5098) <= 2


def test_median_interval_covers_the_true_median_95_percent_of_the_time():
    rng = random.Random(1234)
    true_median = 0.6931471805599453  # of Exp(1)
    trials, covered = 2000, 0
    for _ in range(trials):
        lo, hi = median_ci([rng.expovariate(1.0) for _ in range(50)])
        covered += lo <= true_median <= hi
    assert 0.93 <= covered / trials <= 0.99


def test_geometric_mean():
    assert geometric_mean([2.0, 0.5]) == pytest.approx(1.0)
    assert geometric_mean([1.0, 4.0]) == pytest.approx(2.0)


class FakeSampler:
    """Stands in for a timer: returns samples from a distribution, counts the calls."""

    def __init__(self, spread: float, seed: int = 0):
        self.rng = random.Random(seed)
        self.spread = spread
        self.drawn = 0

    def __call__(self, count):
        self.drawn += count
        return [1.0 + self.spread * self.rng.random() for _ in range(count)]


@pytest.mark.parametrize("spread, expect_stop_early", [(0.001, True), (1.0, False)])
def test_adaptive_repetition_stops_when_the_interval_is_tight(monkeypatch, spread, expect_stop_early):
    fake = FakeSampler(spread)
    monkeypatch.setattr(timer, "make_sampler", lambda fn, mode, l2_flush: fake)
    rep = Repetition(min_iterations=10, max_iterations=400, ci_target=0.01, max_seconds=60, warmup=0)
    timing = time_callable(lambda: None, CPU, rep)
    if expect_stop_early:
        assert timing.n == 10  # ±0.1% noise: the first round already meets ±1%
    else:
        assert timing.n == 400  # ±50% noise: sampled up to the cap
    lo, hi = timing.p50_ci_ms
    assert lo <= timing.p50_ms <= hi


def test_fixed_iterations_and_the_time_cap(monkeypatch):
    fake = FakeSampler(0.5)
    monkeypatch.setattr(timer, "make_sampler", lambda fn, mode, l2_flush: fake)
    assert time_callable(lambda: None, CPU, Repetition(iterations=7, warmup=0)).n == 7
    # samples of ~1 ms against a 10 ms cap: at most 10 calls, never fewer than 5
    assert 5 <= time_callable(lambda: None, CPU, Repetition(max_seconds=0.01, warmup=0)).n <= 10


def test_timing_modes_are_checked_against_the_device():
    assert check_mode("wall", CPU) is TimingMode.WALL
    with pytest.raises(ValueError, match="timing: graph needs a CUDA device"):
        check_mode("graph", CPU)
    with pytest.raises(ValueError, match="timing: 'slow' is not valid; expected one of events, graph, profiler, wall"):
        check_mode("slow", CPU)
    with pytest.raises(ValueError, match="ci_target"):
        Repetition(ci_target=2)


def test_wall_timer_measures_real_time():
    import time

    timing = time_callable(lambda: time.sleep(0.002), CPU, Repetition(iterations=5, warmup=0))
    assert timing.n == 5 and 1.9 <= timing.p50_ms < 50 and timing.mode is TimingMode.WALL


def test_calibration_round_trip_and_rows_carry_percent_of_peak(tmp_path):
    env = collect(CPU, "test")
    rows = calibrate.measure(CPU, env, timestamp="2026-01-01T00:00:00+00:00")
    assert {r.dtype for r in rows} == {"bf16", "fp16", "fp32"}
    assert all(r.matmul_tflops > 0 and r.copy_gbps > 0 for r in rows)
    path = tmp_path / "calibration-cpu.csv"
    calibrate.save(rows, path)
    assert calibrate.load(path) == rows
    assert set(calibrate.ceilings_for(env.device, path)) == {"bf16", "fp16", "fp32"}

    config = MeasureConfig(device="cpu", repetition=Repetition(iterations=3, warmup=0), calibration_path=str(path))
    spec = tiny_spec("decode")
    row = Measurer(config, env).measure(spec, get_backend("torch-naive"))
    bf16 = next(r for r in rows if r.dtype == "bf16")
    assert row.ceiling_tflops == bf16.matmul_tflops and row.ceiling_gbps == bf16.bandwidth_gbps
    assert row.pct_peak_gbps == pytest.approx(100 * row.gbps / bf16.bandwidth_gbps)
    expected_bound_ms = 1e3 * max(
        spec.flops / (bf16.matmul_tflops * 1e12), spec.ideal_bytes / (bf16.bandwidth_gbps * 1e9)
    )
    assert row.roofline_ms == pytest.approx(expected_bound_ms)
    # an unsupported row still knows its bound, but has no percentages
    skipped = Measurer(config, env).measure(spec, get_backend("sdpa-cudnn"))
    assert skipped.status is Status.UNAVAILABLE and skipped.roofline_ms is not None and skipped.pct_peak_gbps is None


def test_calibrate_if_missing_writes_the_file(tmp_path):
    path = tmp_path / "calibration-cpu.csv"
    config = MeasureConfig(device="cpu", calibration_path=str(path), calibrate_if_missing=True)
    Measurer(config, collect(CPU, "test"))
    assert len(calibrate.load(path)) == 3


def test_calibration_file_is_refused_when_foreign(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not an attnbench calibration file"):
        calibrate.load(path)


def test_telemetry_flags_thermal_and_hardware_slowdowns():
    idle = Snapshot(345, 2619, 35, 70.0, 0x1)
    capped = Snapshot(1755, 2619, 60, 699.0, 0x4)
    hot = Snapshot(1470, 2619, 78, 690.0, 0x4 | 0x20)
    assert not idle.throttled and not capped.throttled and hot.throttled
    assert idle.reasons == ["gpu_idle"] and capped.reasons == ["sw_power_cap"]
    assert describe_reasons(idle, capped) == "start:gpu_idle end:sw_power_cap"
    assert Snapshot(1980, 2619, 90, 500.0, 0x40 | 0x20).reasons == ["sw_thermal_slowdown", "hw_thermal_slowdown"]


def with_ci(row, p50, lo, hi, **kw):
    return dataclasses.replace(row, p50_ms=p50, p50_ci_low_ms=lo, p50_ci_high_ms=hi, **kw)


def test_compare_significance_from_both_intervals():
    a = with_ci(ok_row(), 1.00, 0.99, 1.01)
    assert judge(a, with_ci(a, 1.005, 0.995, 1.015), min_effect=0.0) == "not significant"  # intervals overlap
    assert judge(a, with_ci(a, 0.90, 0.89, 0.91)) == "faster"
    assert judge(a, with_ci(a, 1.10, 1.09, 1.11)) == "slower"
    assert judge(a, with_ci(a, 1.03, 1.025, 1.035), min_effect=0.05) == "not significant"  # below the effect floor
    assert judge(a, with_ci(a, 1.0, 0.99, 1.01, timing_mode="cuda-graph/l2-flushed")).startswith("timing modes differ")
    oom = make_row(tiny_spec("decode"), "torch-naive", "", ENV, CONFIG, Status.OOM, "oom")
    assert judge(a, oom).startswith("not both ok")


def test_compare_matches_specs_across_files_and_takes_a_geometric_mean():
    a_rows = [
        with_ci(ok_row(tiny_spec("decode")), 1.0, 0.99, 1.01),
        with_ci(ok_row(tiny_spec("prefill")), 4.0, 3.9, 4.1),
    ]
    b_rows = [
        with_ci(ok_row(tiny_spec("decode")), 0.5, 0.49, 0.51, device="NVIDIA H200"),  # another GPU: same spec matches
        with_ci(ok_row(tiny_spec("prefill")), 8.0, 7.9, 8.1, device="NVIDIA H200"),
        with_ci(ok_row(tiny_spec("append")), 1.0, 0.9, 1.1),
    ]
    results = compare(a_rows, b_rows, same_device=False)
    by_verdict = sorted(c.verdict for c in results)
    assert by_verdict == ["faster", "only in B", "slower"]
    same = compare(a_rows, b_rows)  # by default a row meets only a row of its own GPU kind
    assert sorted(c.verdict for c in same) == ["only in A"] * 2 + ["only in B"] * 3
    summary = summarize(results)
    assert summary.compared == 2 and summary.significant == 2 and summary.not_comparable == 1
    assert summary.geomean_ratio == pytest.approx(1.0)  # 0.5 and 2.0


def test_compare_names_a_throttled_side_and_defaults_to_a_one_percent_floor():
    a = with_ci(ok_row(), 1.00, 0.999, 1.001)
    b = with_ci(a, 1.005, 1.004, 1.006)  # intervals apart, but under the 1% floor
    assert judge(a, b) == "not significant" and judge(a, b, min_effect=0.0) == "slower"
    hot = with_ci(a, 1.05, 1.04, 1.06, throttled=True, throttle_reasons="start:none end:sw_thermal_slowdown")
    assert judge(a, hot) == "slower (B throttled)"
    assert summarize(compare([a], [hot])).slower == 1


def test_host_lead_covers_the_slowest_host_enqueue_within_bounds():
    from harness.timer import HOST_LEAD_MAX_S, HOST_LEAD_MIN_S, host_lead_s

    assert host_lead_s([]) == HOST_LEAD_MIN_S
    assert host_lead_s([1e-6, 2e-6]) == HOST_LEAD_MIN_S
    assert host_lead_s([100e-6, 400e-6]) == pytest.approx(1.5 * 400e-6 + 20e-6)
    assert host_lead_s([1.0]) == HOST_LEAD_MAX_S  # a first call that compiled does not stall every sample


def _calibration(dtype: str, tflops: float, copy: float, read: float | None) -> calibrate.Calibration:
    env = collect(CPU, "test")
    return calibrate.Calibration(env.device, dtype, tflops, copy, 64, 1024, "2026-01-01T00:00:00+00:00", "", "",
                                 env.torch, "test", env.host, read)  # fmt: skip


def test_percent_of_peak_uses_its_dtypes_matmul_rate_and_the_faster_bandwidth(tmp_path):
    path = tmp_path / "calibration-cpu.csv"
    calibrate.save([_calibration("bf16", 100.0, 50.0, 80.0), _calibration("fp32", 7.0, 50.0, 80.0)], path)
    config = MeasureConfig(device="cpu", repetition=Repetition(iterations=2, warmup=0), calibration_path=str(path))
    row = Measurer(config, collect(CPU, "test")).measure(tiny_spec("prefill"), get_backend("torch-naive"))
    assert row.ceiling_tflops == 100.0 and row.ceiling_gbps == 80.0  # bf16's rate, not fp32's; read beats copy
    assert row.pct_peak_tflops == pytest.approx(row.tflops)  # 100 · tflops / 100
    assert row.pct_peak_gbps == pytest.approx(100 * row.gbps / 80.0)


def test_a_calibration_file_without_the_read_stream_loads_and_is_upgraded_in_place(tmp_path):
    path = tmp_path / "calibration-cpu.csv"
    old = _calibration("bf16", 100.0, 50.0, None)
    columns = calibrate.COLUMNS[:-2]  # from before read_gbps (and read_kernel)
    path.write_text(",".join(columns) + "\n" + ",".join(str(getattr(old, c)) for c in columns) + "\n")
    assert calibrate.load(path) == [old] and old.bandwidth_gbps == 50.0
    calibrate.save([_calibration("fp16", 90.0, 50.0, 70.0)], path)
    loaded = calibrate.load(path)
    assert loaded[0] == old and loaded[1].read_gbps == 70.0


def test_between_run_spread_and_compare_use_it():
    from harness.compare import between_run_spread

    def run(run_id, p50, workload="decode"):
        return dataclasses.replace(with_ci(ok_row(tiny_spec(workload)), p50, p50 * 0.995, p50 * 1.005), run_id=run_id)

    rows = [run("a", 1.00), run("b", 1.10), run("c", 1.05), run("a", 2.0, "prefill")]  # prefill ran once
    table = between_run_spread(rows)
    assert len(table) == 1
    row = table.iloc[0]
    assert row["workload"] == "decode" and row["keys"] == 1 and row["runs"] == 3
    assert row["spread_max"] == pytest.approx(0.05 / 1.05)  # |1.0 / 1.05 - 1| and |1.1 / 1.05 - 1|
    a, b = run("a", 1.00), run("b", 1.04)
    assert judge(a, b) == "slower"
    noise = {(a.device, "decode"): 0.05}
    assert compare([a], [b], spread=noise)[0].verdict == "not significant"
    assert compare([a], [run("b", 1.10)], spread=noise)[0].verdict == "slower"


def test_speedup_is_the_baseline_time_over_the_backends():
    from harness.report.plots import speedup_grid
    from harness.report.tables import pivot

    slow = dataclasses.replace(ok_row(tiny_spec("decode"), p50_ms=2.0), backend="slow")
    fast = dataclasses.replace(ok_row(tiny_spec("decode"), p50_ms=0.5), backend="fast")
    p = pivot([slow, fast], "p50_ms")
    grid = dict(zip(p.row_labels, (row[0] for row in speedup_grid(p, "slow"))))
    assert grid == {"fast": 4.0, "slow": 1.0}  # above 1: faster than the baseline


def test_a_long_failure_reason_keeps_its_head_and_its_last_words():
    from harness.measure import _one_line

    text = "InductorError: SubprocException:\n" + "  File x, line 1\n" * 200 + "OutOfResources: shared memory"
    line = _one_line(text)
    assert len(line) == 500 and "\n" not in line
    assert line.startswith("InductorError: SubprocException:") and line.endswith("OutOfResources: shared memory")
    assert _one_line("short\nreason") == "short reason"


@pytest.mark.parametrize("shape", calibrate.READER_SHAPES)
def test_every_read_stream_shape_reads_every_element_once(shape):
    """The Triton read streams that set the bandwidth ceiling (run here by Triton's interpreter): each one's
    partial sums add up to the sum of the whole buffer, a tail that fills no block included."""
    src = torch.randn(300_001, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    partial = calibrate._triton_reader(src, *shape)()
    assert partial.sum().item() == pytest.approx(src.float().sum().item(), rel=1e-4, abs=1e-2)


def test_the_read_stream_is_sized_down_to_a_quarter_of_free_gpu_memory(monkeypatch):
    """16 GiB on a card with room for it; a quarter of the free memory (whole MiB) on one without: the
    calibration must not run a shared or smaller GPU out of memory."""
    gib = 2**30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (140 * gib, 141 * gib))
    assert calibrate.read_bytes(torch.device("cuda"), 16 * gib) == 16 * gib
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (10 * gib + 12345, 80 * gib))
    assert calibrate.read_bytes(torch.device("cuda"), 16 * gib) == (10 * gib + 12345) // 4 // 2**20 * 2**20
    assert calibrate.read_bytes(torch.device("cpu"), 32 * 2**20) == 32 * 2**20
    assert calibrate.SIZES["cuda"]["read_bytes"] > calibrate.SIZES["cuda"]["copy_bytes"]


def test_the_l2_flush_is_a_measurement_option_named_in_the_row():
    """zero (the default) or read, given by --l2-flush (MeasureConfig.l2_flush); anything else is refused
    naming the option and the allowed values, and a row flushed by reading says so in timing_mode
    (compare never ranks it against a zeroing flush)."""
    assert TimingMode.EVENTS.label == "cuda-events/l2-flushed" == TimingMode.EVENTS.label_for("zero")
    assert [m.label_for("read") for m in TimingMode] == [
        "cuda-events/l2-flushed-by-read", "cuda-graph/l2-flushed-by-read", "profiler-kernels/l2-flushed-by-read",
        "wall-clock",
    ]  # fmt: skip
    with pytest.raises(ValueError, match=r"--l2-flush: 'flush' is not valid; expected one of zero, read"):
        timer.check_l2_flush("flush")
    config = MeasureConfig(device="cpu", run_id="r", l2_flush="read")
    row = make_row(tiny_spec("decode"), "torch-naive", "", ENV, config, Status.UNSUPPORTED, "no")
    assert row.timing_mode == "wall-clock"  # a CPU run flushes nothing


@pytest.mark.parametrize("kind", ["zero", "read"])
def test_each_l2_flush_touches_the_whole_buffer_and_only_zero_writes_it(kind):
    """The flush callables themselves (on a CPU tensor here; the timer makes them on the GPU): a zeroing
    flush writes the buffer, a reading one returns its sum and leaves it as it was."""
    flush = timer.L2Flush("cpu", 4096, kind)
    buffer = flush.buffer
    buffer.fill_(3)
    result = flush()
    if kind == "zero":
        assert int(buffer.abs().sum()) == 0
    else:
        assert int(result) == 3 * 4096 and bool((buffer == 3).all())
