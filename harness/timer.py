"""One timer for every backend, in four modes, with adaptive repetition.

- `events` (default on CUDA): each call timed by CUDA events, a 256 MB buffer zeroed before it so
  L2 is cold (ATTNBENCH_L2_FLUSH=read reads it instead, leaving L2 cold and clean: a zeroed buffer leaves
  up to the L2's size in dirty lines, written back to HBM while the timed call runs), then the GPU held in
  a short spin (`torch.cuda._sleep`) so that the host has queued the whole call before its start event
  fires: a call whose Python side takes longer than its kernels (a 40 µs decode behind an autotuner's
  dispatch) is timed on the GPU, not on the host.
- `graph`: the call captured once in a CUDA graph; each replay timed by events, the L2 flush kept
  between replays (launch overhead gone, cache still cold). A capture that fails or holds no kernel
  is an error, not a number.
- `profiler`: kernel time only: the device time of the kernels each call launched, read from the
  PyTorch profiler (no launch gaps), L2 flushed between calls.
- `wall` (CPU): perf_counter around each call.

Repetition is adaptive unless a fixed count is asked for: samples are drawn in rounds until the 95%
confidence interval of the median is within ±ci_target of it, or the time cap is reached."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import torch

from frameworks._profile import kernel_names

from .stats import median_ci, percentile

L2_FLUSH_BYTES = 256 * 2**20  # several times the L2 of any Hopper part (50 MB H100, 60 MB H200)
HOST_LEAD_MIN_S = 50e-6  # GPU spin before each timed call, at least; more when the host is slower
HOST_LEAD_MAX_S = 5e-3
SPIN_CLOCK_HZ = 2.0e9  # cycles a second assumed for the spin: at or above any Hopper SM clock, so it lasts long enough
PROFILE_RANGE = "attnbench::call"


L2_FLUSHES = ("zero", "read")


def check_l2_flush(kind: str) -> str:
    """How the L2 is flushed before a timed call: `zero` (write a 256 MB buffer, as triton's do_bench and
    FlashInfer's benchmark do) or `read` (read it: no dirty lines for the timed call to write back).
    `run.py sweep --l2-flush` picks it; the row's timing_mode says which ran."""
    if kind not in L2_FLUSHES:
        raise ValueError(f"--l2-flush: {kind!r} is not valid; expected one of {', '.join(L2_FLUSHES)}")
    return kind


class L2Flush:
    """Evicts the L2 the chosen way (zero or read) when called; its buffer is allocated and touched once."""

    def __init__(self, device: str = "cuda", nbytes: int = L2_FLUSH_BYTES, kind: str = "zero"):
        self.kind = check_l2_flush(kind)
        self.buffer = torch.zeros(nbytes, dtype=torch.int8, device=device)
        self.total = torch.empty((), dtype=torch.int64, device=device)

    def __call__(self) -> torch.Tensor:
        if self.kind == "zero":
            return self.buffer.zero_()
        return torch.sum(self.buffer, dim=0, dtype=torch.int64, out=self.total)  # reads every byte, writes 8


class TimingError(RuntimeError):
    """The requested timing mode cannot time this callable (recorded as an error row)."""


class TimingMode(str, Enum):
    EVENTS = "events"
    GRAPH = "graph"
    PROFILER = "profiler"
    WALL = "wall"

    def __str__(self) -> str:
        return self.value

    @property
    def label(self) -> str:
        return self.label_for("zero")

    def label_for(self, l2_flush: str) -> str:
        """What goes in the row's timing_mode column (a flush by reading says so: its rows are not
        ranked against rows flushed by writing)."""
        label = {
            "events": "cuda-events/l2-flushed",
            "graph": "cuda-graph/l2-flushed",
            "profiler": "profiler-kernels/l2-flushed",
            "wall": "wall-clock",
        }[self.value]
        if self is not TimingMode.WALL and check_l2_flush(l2_flush) == "read":
            label += "-by-read"
        return label


def default_mode(device: torch.device) -> TimingMode:
    return TimingMode.EVENTS if device.type == "cuda" else TimingMode.WALL


def check_mode(mode: TimingMode | str, device: torch.device) -> TimingMode:
    try:
        mode = TimingMode(mode)
    except ValueError:
        raise ValueError(
            f"timing: {mode!r} is not valid; expected one of {', '.join(m.value for m in TimingMode)}"
        ) from None
    if device.type == "cuda" and mode is TimingMode.WALL:
        raise ValueError("timing: wall is for CPU runs; on a GPU use events, graph or profiler")
    if device.type != "cuda" and mode is not TimingMode.WALL:
        raise ValueError(f"timing: {mode} needs a CUDA device; a CPU run is timed with wall")
    return mode


@dataclass(frozen=True)
class Timing:
    samples_ms: tuple[float, ...]
    mode: TimingMode

    @property
    def n(self) -> int:
        return len(self.samples_ms)

    def percentile(self, pct: float) -> float:
        return percentile(self.samples_ms, pct)

    @property
    def p50_ms(self) -> float:
        return self.percentile(50)

    @property
    def p95_ms(self) -> float:
        return self.percentile(95)

    @property
    def p50_ci_ms(self) -> tuple[float, float]:
        return median_ci(self.samples_ms)

    @property
    def mean_ms(self) -> float:
        return sum(self.samples_ms) / self.n

    @property
    def std_ms(self) -> float:
        if self.n < 2:
            return 0.0
        mean = self.mean_ms
        return (sum((s - mean) ** 2 for s in self.samples_ms) / (self.n - 1)) ** 0.5

    @property
    def min_ms(self) -> float:
        return min(self.samples_ms)

    @property
    def max_ms(self) -> float:
        return max(self.samples_ms)


# ---- samplers: each returns `count` per-call times in ms ---------------------------------------


class _WallSampler:
    def __init__(self, fn):
        self.fn = fn

    def __call__(self, count: int) -> list[float]:
        out = []
        for _ in range(count):
            t0 = time.perf_counter()
            self.fn()
            out.append((time.perf_counter() - t0) * 1e3)
        return out


def host_lead_s(host_seconds: list[float]) -> float:
    """How long the GPU should wait before a timed call: 1.5 × the slowest host-side enqueue seen,
    within [HOST_LEAD_MIN_S, HOST_LEAD_MAX_S]."""
    slowest = max(host_seconds, default=0.0)
    return min(max(1.5 * slowest + 20e-6, HOST_LEAD_MIN_S), HOST_LEAD_MAX_S)


class _EventSampler:
    def __init__(self, fn, l2_flush: str = "zero"):
        self.fn = fn
        self.flush = L2Flush(kind=l2_flush)
        self.lead_s = HOST_LEAD_MAX_S  # until a round has shown how long the host takes
        self.spin = getattr(torch.cuda, "_sleep", None)

    def run_once(self):
        return self.fn()

    def __call__(self, count: int) -> list[float]:
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(count)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(count)]
        host = []
        for i in range(count):
            self.flush()  # evict L2: every call reads its inputs from HBM
            if self.spin is not None:
                self.spin(int(self.lead_s * SPIN_CLOCK_HZ))  # keep the GPU busy while the host queues the call
            t0 = time.perf_counter()
            starts[i].record()
            self.run_once()
            ends[i].record()
            host.append(time.perf_counter() - t0)
        torch.cuda.synchronize()
        self.lead_s = host_lead_s(host[1:] or host)  # the first call of a round may include one-off work
        return [s.elapsed_time(e) for s, e in zip(starts, ends)]


class _GraphSampler(_EventSampler):
    def __init__(self, fn, l2_flush: str = "zero"):
        super().__init__(fn, l2_flush)
        torch.cuda.synchronize()
        self.graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(self.graph):
                self.output = fn()  # keep the graph's output alive with the graph
        except Exception as exc:
            raise TimingError(f"CUDA graph capture failed: {type(exc).__name__}: {exc}") from None
        kernels = len(kernel_names(self.graph.replay))
        if kernels == 0:
            raise TimingError("the CUDA graph captured no kernels: nothing would be timed")
        self.kernels = kernels

    def run_once(self):
        self.graph.replay()


class _ProfilerSampler:
    def __init__(self, fn, l2_flush: str = "zero"):
        self.fn = fn
        self.flush = L2Flush(kind=l2_flush)

    def __call__(self, count: int) -> list[float]:
        from torch.profiler import ProfilerActivity, profile, record_function

        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(count):
                self.flush()
                with record_function(PROFILE_RANGE):
                    self.fn()
            torch.cuda.synchronize()
        # the range shows up as a CPU event and, in recent versions, again as a GPU annotation:
        # the CPU one carries the device time of the kernels launched inside it
        ranges = [
            e
            for e in prof.events()
            if e.name == PROFILE_RANGE and str(getattr(e, "device_type", "CPU")).endswith("CPU")
        ]
        times = [_device_time_us(e) / 1e3 for e in ranges]
        if len(times) != count or not all(t > 0 for t in times):
            raise TimingError(
                f"the profiler attributed kernels to {sum(t > 0 for t in times)} of {count} calls; "
                "kernel time cannot be read for this backend"
            )
        return times


def _device_time_us(event) -> float:
    for name in ("device_time_total", "cuda_time_total"):
        if hasattr(event, name):
            return float(getattr(event, name))
    return 0.0


def make_sampler(fn, mode: TimingMode, l2_flush: str = "zero"):
    if mode is TimingMode.WALL:
        return _WallSampler(fn)
    return {TimingMode.EVENTS: _EventSampler, TimingMode.GRAPH: _GraphSampler, TimingMode.PROFILER: _ProfilerSampler}[
        mode
    ](fn, l2_flush)


@dataclass(frozen=True)
class Repetition:
    """How many samples: `iterations` fixed, or adaptive between min and max until the median's 95%
    interval is within ±ci_target; both stop at max_seconds of timed calls (never under 5 samples)."""

    iterations: int | None = None
    min_iterations: int = 10
    max_iterations: int = 2000
    ci_target: float = 0.01
    max_seconds: float = 30.0
    warmup: int = 3

    def __post_init__(self) -> None:
        if self.iterations is not None and self.iterations < 1:
            raise ValueError("iterations: must be at least 1")
        if self.min_iterations < 1 or self.max_iterations < self.min_iterations:
            raise ValueError("min_iterations/max_iterations: need 1 <= min <= max")
        if not 0 < self.ci_target < 1:
            raise ValueError("ci_target: must be between 0 and 1 (0.01 = ±1%)")


def relative_half_width(samples: list[float]) -> float:
    lo, hi = median_ci(samples)
    mid = percentile(samples, 50)
    return max(mid - lo, hi - mid) / mid if mid > 0 else float("inf")


def time_callable(
    fn: Callable[[], object],
    device: torch.device,
    repetition: Repetition,
    mode: TimingMode | None = None,
    l2_flush: str = "zero",
) -> Timing:
    mode = check_mode(mode or default_mode(device), device)
    sampler = make_sampler(fn, mode, l2_flush)
    first = sampler(1)[0]  # also a warm-up; estimates one call to fit the time cap
    per_call_s = max(first, 1e-6) / 1e3
    budget = max(5, int(repetition.max_seconds / per_call_s))
    warmup = min(repetition.warmup, max(0, budget // 4))
    if warmup:
        sampler(warmup)
    if repetition.iterations is not None:
        return Timing(tuple(sampler(min(repetition.iterations, budget))), mode)
    samples: list[float] = []
    cap = min(repetition.max_iterations, budget)
    target = max(min(repetition.min_iterations, cap), 1)
    deadline = time.perf_counter() + repetition.max_seconds
    while True:
        samples += sampler(target - len(samples))
        if len(samples) >= cap or time.perf_counter() > deadline:
            break
        if len(samples) >= repetition.min_iterations and relative_half_width(samples) <= repetition.ci_target:
            break
        target = min(cap, max(len(samples) + 10, int(len(samples) * 1.5)))
    return Timing(tuple(samples), mode)
