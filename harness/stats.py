"""Statistics for latency samples: a distribution-free confidence interval for the median."""

from __future__ import annotations

import math
from collections.abc import Sequence

Z_95 = 1.959963984540054


def median_rank_interval(n: int, confidence: float = 0.95) -> tuple[int, int]:
    """0-based ranks (lo, hi) of the sorted sample bounding the median with at least `confidence`
    coverage, from the binomial distribution of how many samples fall below the true median.
    For very small n the interval is the whole sample (its coverage is then below `confidence`)."""
    if n < 1:
        raise ValueError("n: need at least one sample")
    alpha = 1 - confidence
    if n > 2000:  # normal approximation to Binomial(n, 1/2)
        z = _z_for(confidence)
        half = z * math.sqrt(n) / 2
        lo = max(0, math.floor(n / 2 - half) - 1)
        return lo, n - 1 - lo
    total = 2**n
    below = 0.0  # P(Bin(n, 1/2) < j)
    j = 0  # grows to the largest 1-based rank j with P(Bin < j) <= alpha/2: sorted[j] .. sorted[n-j+1]
    while j + 1 <= n // 2 and below + math.comb(n, j) / total <= alpha / 2:
        below += math.comb(n, j) / total
        j += 1
    if j == 0:
        return 0, n - 1
    return j - 1, n - j


def _z_for(confidence: float) -> float:
    if abs(confidence - 0.95) < 1e-12:
        return Z_95
    # inverse normal CDF via bisection on erf: only needed for unusual confidence levels
    lo, hi = 0.0, 10.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < 1 - (1 - confidence) / 2:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def median_ci(samples: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    ordered = sorted(samples)
    lo, hi = median_rank_interval(len(ordered), confidence)
    return ordered[lo], ordered[hi]


def percentile(samples: Sequence[float], pct: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(samples)
    pos = (len(ordered) - 1) * pct / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def geometric_mean(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("geometric mean of no values")
    return math.exp(sum(math.log(v) for v in values) / len(values))
