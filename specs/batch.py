"""A batch as serving engines run it: a list of requests, each with its own query length (new tokens
this step) and KV length (the context those queries attend to, new tokens included).

The mix grammar is the one of vLLM's attention benchmarks: segments `[count]q<q_len>[k][s<kv_len>[k]]`
joined by `_`. `2q2k` is two 2048-token prefills (no `s`: kv_len = q_len), `32q1s1k` thirty-two
decodes on 1024-token caches, `3q4s2051` three speculative steps of 4 tokens. Length generators
(`uniform:LOW:HIGH`, `lognormal:MEDIAN:SIGMA`) draw KV lengths from a seeded distribution, so that a
batch is rebuilt exactly from the string, the workload, the number of requests and the chunk."""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from functools import cached_property

from .spec_errors import SpecError

_SEGMENT = re.compile(r"^(?P<count>\d+)?q(?P<q>\d+)(?P<qk>k)?(?:s(?P<s>\d+)(?P<sk>k)?)?$")
MAX_SPEC_DECODE = 16  # query tokens a speculative step verifies, at most


@dataclass(frozen=True)
class Batch:
    """Per-request (q_len, kv_len); causal attention is bottom-right aligned within each request:
    query i of a request sees its keys 0 … kv_len − q_len + i."""

    q_lens: tuple[int, ...]
    kv_lens: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "q_lens", tuple(self.q_lens))
        object.__setattr__(self, "kv_lens", tuple(self.kv_lens))
        if not self.q_lens or len(self.q_lens) != len(self.kv_lens):
            raise SpecError("batch: needs at least one request, with one q_len and one kv_len each")
        for i, (q, k) in enumerate(zip(self.q_lens, self.kv_lens)):
            if isinstance(q, bool) or isinstance(k, bool) or not isinstance(q, int) or not isinstance(k, int):
                raise SpecError(f"batch: request {i} has non-integer lengths q={q!r}, kv={k!r}")
            if not 1 <= q <= k:
                raise SpecError(f"batch: request {i} needs 1 <= q_len <= kv_len, got q={q}, kv={k}")

    @classmethod
    def uniform(cls, batch_size: int, q_len: int, kv_len: int) -> Batch:
        return cls((q_len,) * batch_size, (kv_len,) * batch_size)

    @property
    def num_requests(self) -> int:
        return len(self.q_lens)

    @property
    def is_uniform(self) -> bool:
        return len(set(self.q_lens)) == 1 and len(set(self.kv_lens)) == 1

    @property
    def total_q(self) -> int:
        return sum(self.q_lens)

    @property
    def total_kv(self) -> int:
        return sum(self.kv_lens)

    @property
    def max_q(self) -> int:
        return max(self.q_lens)

    @property
    def max_kv(self) -> int:
        return max(self.kv_lens)

    @property
    def min_kv(self) -> int:
        return min(self.kv_lens)

    @cached_property
    def cu_seqlens_q(self) -> tuple[int, ...]:
        """Offsets of each request's queries in the packed [total_q, …] layout (length B + 1)."""
        return _cumulative(self.q_lens)

    @cached_property
    def cu_seqlens_k(self) -> tuple[int, ...]:
        return _cumulative(self.kv_lens)

    def visible_pairs(self, causal: bool = True, window: int | None = None) -> int:
        """(query, key) pairs one head computes over the batch: q·k − q(q−1)/2 per request when causal;
        with a left window w (causal), query position p sees min(p, w) + 1 keys: only the band."""
        if window is not None:
            return sum(windowed_pairs(q, k, window) for q, k in zip(self.q_lens, self.kv_lens))
        if not causal:
            return sum(q * k for q, k in zip(self.q_lens, self.kv_lens))
        return sum(causal_pairs(q, k) for q, k in zip(self.q_lens, self.kv_lens))

    def touched_kv(self, window: int | None = None) -> int:
        """KV tokens some query of the batch sees: every key, or with a left window w the last q + w of
        each request (a windowed decode reads w + 1 keys, not its whole cache)."""
        if window is None:
            return self.total_kv
        return sum(min(k, q + window) for q, k in zip(self.q_lens, self.kv_lens))

    @property
    def request_kinds(self) -> set[str]:
        """The workloads its requests are, each one of prefill, append, decode and spec-decode."""
        return {_request_kind(q, k) for q, k in zip(self.q_lens, self.kv_lens)}

    @property
    def kind(self) -> str:
        """The workload this batch is: prefill, append, decode, spec-decode, or mixed."""
        kinds = self.request_kinds
        return kinds.pop() if len(kinds) == 1 else "mixed"

    @property
    def decode_split(self) -> int | None:
        """Where the decodes of a mixed batch start: see `trailing_decodes`."""
        return trailing_decodes(self.q_lens)

    def to_mix(self) -> str:
        """This batch in the mix grammar: runs of equal requests as one segment each, in order."""
        segments = []
        i = 0
        while i < self.num_requests:
            j = i
            while j + 1 < self.num_requests and (self.q_lens[j + 1], self.kv_lens[j + 1]) == (
                self.q_lens[i],
                self.kv_lens[i],
            ):
                j += 1
            count, q, k = j - i + 1, self.q_lens[i], self.kv_lens[i]
            segments.append(f"{count if count > 1 else ''}q{_short(q)}" + (f"s{_short(k)}" if k != q else ""))
            i = j + 1
        return "_".join(segments)


def trailing_decodes(q_lens) -> int | None:
    """The index of the first request of a trailing run of decodes (q_len 1) that follows at least
    one other request — chunks, then decodes, as serving engines lay out a mixed batch, so each part is
    a contiguous slice for its own kernel — or None when the batch is not laid out that way."""
    q_lens = list(q_lens)
    first = len(q_lens)
    while first > 0 and q_lens[first - 1] == 1:
        first -= 1
    return first if 0 < first < len(q_lens) else None


def _request_kind(q: int, k: int) -> str:
    if q == k:
        return "prefill"
    if q == 1:
        return "decode"
    if q <= MAX_SPEC_DECODE:
        return "spec-decode"
    return "append"


def causal_pairs(q_len: int, kv_len: int) -> int:
    """Visible (query, key) pairs of one request under bottom-right causal: its query i of q_len sees
    kv_len − q_len + i + 1 keys, q·k − q(q−1)/2 in all."""
    return q_len * kv_len - q_len * (q_len - 1) // 2


def windowed_pairs(q_len: int, kv_len: int, window: int) -> int:
    """Visible (query, key) pairs of one request under bottom-right causal with a left window: the
    queries sit at positions kv_len − q_len … kv_len − 1, and position p sees keys max(0, p − window) … p."""
    first, last = kv_len - q_len, kv_len - 1
    growing_last = min(last, window)  # positions p <= window see p + 1 keys
    growing = (growing_last + first + 2) * (growing_last - first + 1) // 2 if growing_last >= first else 0
    flat = (last - max(first, window + 1) + 1) * (window + 1) if last > window else 0
    return growing + flat


def _cumulative(lengths: tuple[int, ...]) -> tuple[int, ...]:
    out = [0]
    for n in lengths:
        out.append(out[-1] + n)
    return tuple(out)


def _short(n: int) -> str:
    return f"{n // 1024}k" if n % 1024 == 0 else str(n)


def parse_mix(text: str) -> Batch:
    """A mix string as a Batch; a bad segment is a SpecError that names it."""
    if not isinstance(text, str) or not text.strip():
        raise SpecError("mix: empty; expected segments like 2q2k_32q1s1k ([count]q<q_len>[k][s<kv_len>[k]])")
    q_lens: list[int] = []
    kv_lens: list[int] = []
    for position, segment in enumerate(text.strip().split("_"), start=1):
        match = _SEGMENT.match(segment)
        if not match:
            raise SpecError(
                f"mix: segment {position} {segment!r} is not [count]q<q_len>[k][s<kv_len>[k]] (e.g. 2q2k, 32q1s1k)"
            )
        count = int(match["count"]) if match["count"] is not None else 1
        q = int(match["q"]) * (1024 if match["qk"] else 1)
        k = int(match["s"]) * (1024 if match["sk"] else 1) if match["s"] is not None else q
        if count < 1 or q < 1:
            raise SpecError(f"mix: segment {position} {segment!r} needs a count and q_len of at least 1")
        if k < q:
            raise SpecError(f"mix: segment {position} {segment!r} has kv_len {k} < q_len {q}")
        q_lens += [q] * count
        kv_lens += [k] * count
    return Batch(tuple(q_lens), tuple(kv_lens))


# ---- seeded length generators ---------------------------------------------------------------------

_GENERATOR = re.compile(r"^(?P<dist>uniform|lognormal):(?P<a>[0-9.]+):(?P<b>[0-9.]+)(?:@(?P<seed>\d+))?$")


@dataclass(frozen=True)
class Lengths:
    """KV lengths drawn from a distribution with a seed: `uniform:LOW:HIGH` (integers, both ends
    included) or `lognormal:MEDIAN:SIGMA` (rounded, at least 1). Written `dist:a:b@seed`."""

    dist: str
    a: float
    b: float
    seed: int = 0

    def __post_init__(self) -> None:
        if self.dist == "uniform" and not (1 <= self.a <= self.b and float(self.a).is_integer()):
            raise SpecError(f"lengths: uniform needs integers 1 <= LOW <= HIGH, got {self.a:g}:{self.b:g}")
        if self.dist == "lognormal" and not (self.a >= 1 and self.b > 0):
            raise SpecError(f"lengths: lognormal needs MEDIAN >= 1 and SIGMA > 0, got {self.a:g}:{self.b:g}")

    @classmethod
    def parse(cls, text: str, seed: int | None = None) -> Lengths:
        match = _GENERATOR.match(text.strip()) if isinstance(text, str) else None
        if not match:
            raise SpecError(f"lengths: {text!r} is not valid; expected uniform:LOW:HIGH or lognormal:MEDIAN:SIGMA")
        if match["seed"] is not None:
            seed = int(match["seed"])
        return cls(match["dist"], float(match["a"]), float(match["b"]), seed or 0)

    def __str__(self) -> str:
        return f"{self.dist}:{self.a:g}:{self.b:g}@{self.seed}"

    def draw(self, count: int, minimum: int = 1) -> tuple[int, ...]:
        rng = random.Random(self.seed)
        if self.dist == "uniform":
            values = [rng.randint(int(self.a), int(self.b)) for _ in range(count)]
        else:
            values = [round(math.exp(rng.gauss(math.log(self.a), self.b))) for _ in range(count)]
        return tuple(max(minimum, v) for v in values)

    def batch(self, workload: str, count: int, chunk: int = 1) -> Batch:
        """Requests of one workload with drawn lengths: prefill q = kv = drawn; decode q = 1;
        append and spec-decode q = chunk (the drawn length is the context, kept >= chunk)."""
        if workload == "prefill":
            lengths = self.draw(count)
            return Batch(lengths, lengths)
        q = 1 if workload == "decode" else chunk
        kv = self.draw(count, minimum=q)
        return Batch((q,) * count, kv)


def is_generator(text: str) -> bool:
    return text.startswith(("uniform:", "lognormal:"))
