"""One timer for every backend: CUDA events with an L2 flush between iterations, or wall clock on CPU."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch

L2_FLUSH_BYTES = 256 * 2**20  # several times the L2 of any Hopper part (50 MB H100, 60 MB H200)


class TimingModes:
    CUDA_EVENTS_COLD_L2 = "cuda-events/l2-flushed"
    WALL_CLOCK = "wall-clock"


@dataclass(frozen=True)
class Timing:
    samples_ms: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.samples_ms)

    def percentile(self, pct: float) -> float:
        """Linear interpolation between closest ranks (numpy's default)."""
        ordered = sorted(self.samples_ms)
        pos = (len(ordered) - 1) * pct / 100
        lo, hi = math.floor(pos), math.ceil(pos)
        return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)

    @property
    def p50_ms(self) -> float:
        return self.percentile(50)

    @property
    def p95_ms(self) -> float:
        return self.percentile(95)

    @property
    def mean_ms(self) -> float:
        return sum(self.samples_ms) / self.n

    @property
    def std_ms(self) -> float:
        if self.n < 2:
            return 0.0
        mean = self.mean_ms
        return math.sqrt(sum((s - mean) ** 2 for s in self.samples_ms) / (self.n - 1))

    @property
    def min_ms(self) -> float:
        return min(self.samples_ms)

    @property
    def max_ms(self) -> float:
        return max(self.samples_ms)


def timing_mode(device: torch.device) -> str:
    return TimingModes.CUDA_EVENTS_COLD_L2 if device.type == "cuda" else TimingModes.WALL_CLOCK


def time_callable(
    fn: Callable[[], object],
    device: torch.device,
    iterations: int,
    warmup: int,
    max_seconds: float = 30.0,
) -> Timing:
    """Warm up, then time `iterations` calls (fewer if they would exceed `max_seconds`, at least 5)."""
    if device.type == "cuda":
        return _time_cuda(fn, iterations, warmup, max_seconds)
    return _time_wall(fn, iterations, warmup, max_seconds)


def _affordable(iterations: int, one_call_s: float, max_seconds: float) -> int:
    if one_call_s <= 0:
        return iterations
    return max(min(5, iterations), min(iterations, int(max_seconds / one_call_s)))


def _time_cuda(fn, iterations: int, warmup: int, max_seconds: float) -> Timing:
    flush = torch.empty(L2_FLUSH_BYTES, dtype=torch.int8, device="cuda")
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    # estimate one call (cold) to bound the number of iterations
    flush.zero_()
    start.record()
    fn()
    end.record()
    torch.cuda.synchronize()
    estimate_s = start.elapsed_time(end) / 1e3
    for _ in range(min(warmup, _affordable(warmup, estimate_s, max_seconds / 4))):
        fn()
    n = _affordable(iterations, estimate_s, max_seconds)
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    torch.cuda.synchronize()
    for i in range(n):
        flush.zero_()  # evict L2: every iteration reads its inputs from HBM (cold cache)
        starts[i].record()
        fn()
        ends[i].record()
    torch.cuda.synchronize()
    return Timing(tuple(s.elapsed_time(e) for s, e in zip(starts, ends)))


def _time_wall(fn, iterations: int, warmup: int, max_seconds: float) -> Timing:
    t0 = time.perf_counter()
    fn()
    estimate_s = time.perf_counter() - t0
    for _ in range(min(warmup, _affordable(warmup, estimate_s, max_seconds / 4))):
        fn()
    samples = []
    for _ in range(_affordable(iterations, estimate_s, max_seconds)):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    return Timing(tuple(samples))
