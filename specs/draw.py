"""Drawn serving batches: `draw_batch(seed)` is a whole batch as an engine would hand it to attention, as a
concrete mix string of the grammar (specs/batch.py), a pure function of the seed.

The seed picks the regime (seed mod 7, so any 7 consecutive seeds hold each once) and `random.Random(seed)`
draws everything else: how many requests, the share of decodes, speculative steps, prefill chunks and whole
prompts, and the cache lengths, from a few tokens to 128k. The regimes are what engines see:

- `decode-skewed`: one long cache (16k-128k) among 8-192 decodes on caches at most an eighth of it: the long
  request's splits decide the time;
- `decode-spread`: 2-256 decodes whose caches spread lognormally (median 128-16k, sigma 0.3-1.5);
- `mixed`: chunks of prompts (and sometimes whole prompts and speculative steps) before 0-192 decodes;
- `spec-decode`: 1-128 speculative steps of one draft length (2-8 tokens), sometimes with decodes after;
- `prompts`: 1-16 whole prompts (lognormal around 128-4k tokens), sometimes with a few decodes after;
- `tiny`: 1-4 requests of any kind on caches of 4 to 128k tokens;
- `large`: 128-256 decodes, sometimes behind one chunk.

Requests are laid out as engines lay out a mixed batch: prompts, chunks and speculative steps first, decodes
last (`specs.batch.trailing_decodes`). A batch holds at most MAX_KV_TOKENS cache tokens and MAX_PROMPT_TOKENS
query tokens of prompts and chunks, so that every drawn batch fits a GPU and a call stays in milliseconds.
The page size is not drawn: it is the sweep's axis (`--page-size`), so the same batch runs dense and paged.

On the command line `draw:SEED` or `draw:FIRST-LAST` stands wherever a mix does (`expand_draws`); the row
holds the concrete mix string, from which the batch is rebuilt without the generator."""

from __future__ import annotations

import math
import random
import re

from .batch import MAX_SPEC_DECODE, Batch
from .spec_errors import SpecError

REGIMES = ("decode-skewed", "decode-spread", "mixed", "spec-decode", "prompts", "tiny", "large")
MAX_KV_TOKENS = 1_500_000  # a batch's cache tokens (Llama-3.1-8B: 6 GB of bf16 K and V)
MAX_PROMPT_TOKENS = 16_384  # query tokens of a batch's prompts and chunks
MAX_CACHE = 131_072
_DRAW = re.compile(r"^draw:(?P<first>\d+)(?:-(?P<last>\d+))?$")
MAX_DRAWS = 10_000  # batches one draw:FIRST-LAST may expand to


def regime_of(seed: int) -> str:
    return REGIMES[seed % len(REGIMES)]


def draw_batch(seed: int) -> str:
    """The batch of this seed as a concrete, canonical mix string (`Batch.to_mix`)."""
    return draw(seed).to_mix()


def draw(seed: int) -> Batch:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SpecError(f"draw: the seed must be a non-negative integer, got {seed!r}")
    rng = random.Random(seed)
    requests = _REGIME[regime_of(seed)](rng)
    return _batch(requests)


def is_draw(text: str) -> bool:
    return isinstance(text, str) and text.startswith("draw:")


def expand_draws(text: str) -> list[str]:
    """`draw:SEED` -> [itself]; `draw:FIRST-LAST` -> one `draw:SEED` a seed, both ends included; anything
    else -> [text]. A malformed draw is a SpecError that says the form."""
    if not is_draw(text):
        return [text]
    match = _DRAW.match(text.strip())
    if not match:
        raise SpecError(f"mix: {text!r} is not valid; expected draw:SEED or draw:FIRST-LAST (e.g. draw:0-119)")
    first = int(match["first"])
    last = int(match["last"]) if match["last"] is not None else first
    if last < first or last - first + 1 > MAX_DRAWS:
        raise SpecError(f"mix: {text!r} needs FIRST <= LAST and at most {MAX_DRAWS} seeds")
    return [f"draw:{seed}" for seed in range(first, last + 1)]


def seed_of_draw(text: str) -> int:
    """The seed of `draw:SEED` (one seed, not a range)."""
    expanded = expand_draws(text)
    if len(expanded) != 1 or not is_draw(expanded[0]):
        raise SpecError(f"mix: {text!r} is not one drawn batch (draw:SEED)")
    return int(expanded[0].split(":")[1])


# ---- the regimes: each returns requests as (q_len, kv_len) in the engine's order ---------------------


def _decode_skewed(rng: random.Random) -> list[tuple[int, int]]:
    long = _log_uniform(rng, 16_384, MAX_CACHE)
    short = _lognormal_caches(rng, _log_uniform(rng, 8, 192), _log_uniform(rng, 16, 2048), 1.0, hi=long // 8)
    short.insert(rng.randrange(len(short) + 1), long)
    return [(1, k) for k in short]


def _decode_spread(rng: random.Random) -> list[tuple[int, int]]:
    count = _log_uniform(rng, 2, 256)
    caches = _lognormal_caches(rng, count, _log_uniform(rng, 128, 16_384), rng.uniform(0.3, 1.5))
    return [(1, k) for k in caches]


def _mixed(rng: random.Random) -> list[tuple[int, int]]:
    first = [_prompt(rng, _log_uniform(rng, 64, 4096)) for _ in range(rng.choice((0, 0, 1, 2)))]
    first += [_chunk(rng) for _ in range(rng.randint(1, 4))]
    if rng.random() < 0.25:
        draft = rng.choice((2, 3, 4, 5))
        first += _spec_steps(rng, rng.randint(1, 32), draft)
    decodes = _lognormal_caches(rng, rng.randint(0, 192), _log_uniform(rng, 256, 8192), rng.uniform(0.5, 1.2))
    return first + [(1, k) for k in decodes]


def _spec_decode(rng: random.Random) -> list[tuple[int, int]]:
    steps = _spec_steps(rng, _log_uniform(rng, 1, 128), rng.choice((2, 3, 4, 4, 5, 8)))
    if rng.random() < 0.25:
        steps += [(1, k) for k in _lognormal_caches(rng, rng.randint(1, 64), _log_uniform(rng, 256, 8192), 0.8)]
    return steps


def _prompts(rng: random.Random) -> list[tuple[int, int]]:
    median = _log_uniform(rng, 128, 4096)
    count = rng.randint(1, 16)
    requests = [(n, n) for n in _lognormal_caches(rng, count, median, 0.8, hi=16_384, lo=16)]
    if rng.random() < 0.3:
        requests += [(1, k) for k in _lognormal_caches(rng, rng.randint(1, 16), _log_uniform(rng, 256, 8192), 0.8)]
    return requests


def _tiny(rng: random.Random) -> list[tuple[int, int]]:
    first, decodes = [], []
    for _ in range(rng.randint(1, 4)):
        kind = rng.choices(("decode", "spec", "chunk", "prompt"), weights=(6, 1.5, 1.5, 1))[0]
        if kind == "decode":
            decodes.append((1, _log_uniform(rng, 4, MAX_CACHE)))
        elif kind == "spec":
            first += _spec_steps(rng, 1, rng.choice((2, 4, 8)))
        elif kind == "chunk":
            first.append(_chunk(rng))
        else:
            first.append(_prompt(rng, _log_uniform(rng, 16, 8192)))
    return first + decodes


def _large(rng: random.Random) -> list[tuple[int, int]]:
    first = [_chunk(rng, hi=2048)] if rng.random() < 0.3 else []
    caches = _lognormal_caches(rng, rng.randint(128, 256), _log_uniform(rng, 256, 8192), rng.uniform(0.3, 1.2))
    return first + [(1, k) for k in caches]


_REGIME = {
    "decode-skewed": _decode_skewed,
    "decode-spread": _decode_spread,
    "mixed": _mixed,
    "spec-decode": _spec_decode,
    "prompts": _prompts,
    "tiny": _tiny,
    "large": _large,
}


# ---- the pieces ---------------------------------------------------------------------------------------


def _log_uniform(rng: random.Random, lo: int, hi: int) -> int:
    """An integer between lo and hi (both included), uniform in its logarithm: as many batches of 2-4
    requests as of 128-256, as many caches of 1k-2k tokens as of 64k-128k."""
    return min(hi, max(lo, round(math.exp(rng.uniform(math.log(lo), math.log(hi + 1))) - 0.5)))


def _lognormal_caches(
    rng: random.Random, count: int, median: int, sigma: float, hi: int = MAX_CACHE, lo: int = 2
) -> list[int]:
    """Lengths around the median, lo to hi; decode caches hold at least 2 tokens (a one-token cache is a
    one-token prompt)."""
    return [min(hi, max(lo, round(math.exp(rng.gauss(math.log(median), sigma))))) for _ in range(count)]


def _prompt(rng: random.Random, length: int) -> tuple[int, int]:
    return (length, length)


def _chunk(rng: random.Random, hi: int = 4096) -> tuple[int, int]:
    """A chunk of a prompt (more query tokens than a speculative step) after the part already cached."""
    q = _log_uniform(rng, MAX_SPEC_DECODE + 1, hi)
    return (q, q + _log_uniform(rng, 1, 32_768))


def _spec_steps(rng: random.Random, count: int, draft: int) -> list[tuple[int, int]]:
    caches = _lognormal_caches(rng, count, _log_uniform(rng, 256, 16_384), 0.8)
    return [(draft, max(k, draft + 1)) for k in caches]


def _batch(requests: list[tuple[int, int]]) -> Batch:
    """The requests within the budgets: prompt and chunk tokens cut to MAX_PROMPT_TOKENS (requests dropped
    from the end of that part, one always kept), then every cache longer than a decode's scaled down so that
    the batch holds at most MAX_KV_TOKENS cache tokens."""
    first = [r for r in requests if r[0] > 1]
    decodes = [r for r in requests if r[0] == 1]
    while len(first) > 1 and sum(q for q, _ in first) > MAX_PROMPT_TOKENS:
        first.pop()
    if first and first[0][0] > MAX_PROMPT_TOKENS:
        q, k = first[0]
        first[0] = (MAX_PROMPT_TOKENS, k - q + MAX_PROMPT_TOKENS)
    requests = first + decodes
    total = sum(k for _, k in requests)
    if total > MAX_KV_TOKENS:
        scale = MAX_KV_TOKENS / total
        requests = [(q, q if q == k else max(q + 1, int(k * scale))) for q, k in requests]
    return Batch(tuple(q for q, _ in requests), tuple(k for _, k in requests))
