"""Drawn serving batches (specs/draw.py): a pure function of the seed, every regime covered, within the
budgets, and `draw:SEED` wherever a mix is, the row holding the concrete batch."""

from collections import Counter

import pytest

from specs import ExperimentSpec, SpecError, get_preset, parse_mix, resolve_mix
from specs.draw import MAX_KV_TOKENS, MAX_PROMPT_TOKENS, REGIMES, draw, draw_batch, expand_draws, regime_of
from specs.presets import GENERALIZATION_DRAWS, MIX_NAMES, SweepGrid

SEEDS = range(200)


def test_a_draw_is_a_pure_function_of_its_seed():
    first = [draw_batch(seed) for seed in SEEDS]
    assert first == [draw_batch(seed) for seed in reversed(SEEDS)][::-1]  # no state carried between draws
    assert len(set(first)) >= 195  # distinct batches, not a few repeated
    for mix in first:
        assert parse_mix(mix).to_mix() == mix  # concrete and canonical: the row rebuilds it without the generator


def _features(batch):
    q, k = batch.q_lens, batch.kv_lens
    decodes = [kv for ql, kv in zip(q, k) if ql == 1]
    return {
        "one long among short": len(decodes) >= 8
        and max(decodes) >= 16_384
        and sorted(decodes)[-2] <= max(decodes) / 4,
        "tiny": batch.num_requests <= 4,
        "large": batch.num_requests >= 128,
        "prompt": any(ql == kv for ql, kv in zip(q, k) if ql > 1),
        "chunk": any(16 < ql < kv for ql, kv in zip(q, k)),
        "spec step": any(1 < ql <= 16 and ql < kv for ql, kv in zip(q, k)),
        "128k cache": max(k) >= 100_000,
        "few-token cache": min(k) <= 16,
        "mixed": batch.kind == "mixed",
    }


def test_the_draws_cover_every_regime_and_stay_within_the_budgets():
    regimes, features, kinds = Counter(), Counter(), Counter()
    for seed in SEEDS:
        batch = draw(seed)
        regimes[regime_of(seed)] += 1
        kinds[batch.kind] += 1
        features.update(name for name, present in _features(batch).items() if present)
        assert 1 <= batch.num_requests <= 257 and batch.max_kv <= 131_072
        assert batch.total_kv <= MAX_KV_TOKENS * 1.01
        assert sum(q for q in batch.q_lens if q > 1) <= MAX_PROMPT_TOKENS + 16 * batch.num_requests
        if batch.kind == "mixed":
            assert batch.decode_split is not None or 1 not in batch.q_lens  # decodes last, as engines lay them out
        if regime_of(seed) == "decode-skewed":
            assert _features(batch)["one long among short"], seed
        if regime_of(seed) == "tiny":
            assert batch.num_requests <= 4
        if regime_of(seed) == "large":
            assert batch.num_requests >= 128
    assert set(regimes) == set(REGIMES) and min(regimes.values()) >= 28
    assert set(kinds) == {"decode", "mixed", "spec-decode", "prefill", "append"}
    assert all(features[name] >= 5 for name in _features(draw(0))), features


def test_draw_stands_wherever_a_mix_does_and_the_spec_holds_the_concrete_batch():
    assert expand_draws("draw:3-5") == ["draw:3", "draw:4", "draw:5"]
    assert expand_draws("2q2k") == ["2q2k"]
    spec = resolve_mix("draw:7").spec("Llama-3.1-8B", page_size=16)
    assert spec.mix == draw_batch(7) and not spec.mix.startswith("draw")
    assert spec == ExperimentSpec.from_mix(draw_batch(7), 32, 8, 128, model="Llama-3.1-8B", page_size=16)
    grid = SweepGrid(("Llama-3.1-8B",), ("mixed",), (1,), (1,), (1,), page_sizes=(None, 64), mixes=("draw:0-9",))
    assert len(grid.specs()) == 20 and {s.mix for s in grid.specs()} == {draw_batch(s) for s in range(10)}
    for bad in ("draw:x", "draw:5-3", "draw:-1", "draw:0-999999"):
        with pytest.raises(SpecError, match="draw:"):
            SweepGrid(("Llama-3.1-8B",), ("mixed",), (1,), (1,), (1,), mixes=(bad,))


def test_the_generalization_preset_draws_distinct_batches_dense_and_paged_and_names_them_by_seed():
    specs = get_preset("generalization").specs()
    assert GENERALIZATION_DRAWS >= 100 and len(specs) == 2 * GENERALIZATION_DRAWS
    assert {s.page_size for s in specs} == {None, 16} and {s.model for s in specs} == {"Llama-3.1-8B"}
    assert len({s.mix for s in specs}) == GENERALIZATION_DRAWS
    assert {MIX_NAMES[s.mix] for s in specs} == {f"draw:{seed}" for seed in range(GENERALIZATION_DRAWS)}
    assert Counter(regime_of(seed) for seed in range(GENERALIZATION_DRAWS)) == dict.fromkeys(REGIMES, 15)
