"""Ragged and mixed batches: the mix grammar, length generators, exact work accounting, the ragged
paged cache, and the CPU backends against the reference on tiny ragged batches."""

import pytest
import torch

from frameworks import get_backend
from frameworks._paged import to_paged_ragged
from harness.store import Status
from specs import Batch, ExperimentSpec, Lengths, SpecError, get_preset, parse_mix

from .helpers import cpu_measurer


@pytest.mark.parametrize("mix", ["2q2k_32q1s1k", "q257_7q1s1057_3q4s2051", "q512s4k_127q1s2k", "64q4s4k", "q5"])
def test_the_grammar_round_trips(mix):
    batch = parse_mix(mix)
    assert parse_mix(batch.to_mix()) == batch
    assert batch.to_mix() == parse_mix(batch.to_mix()).to_mix()


def test_the_grammar_reads_vllms_examples():
    batch = parse_mix("2q2k_32q1s1k")
    assert batch.q_lens == (2048, 2048) + (1,) * 32 and batch.kv_lens == (2048, 2048) + (1024,) * 32
    assert batch.kind == "mixed" and batch.num_requests == 34
    assert parse_mix("q257_7q1s1057_3q4s2051").kv_lens == (257,) + (1057,) * 7 + (2051,) * 3
    assert parse_mix("64q4s4k").kind == "spec-decode" and parse_mix("3q1s9").kind == "decode"


@pytest.mark.parametrize(
    "mix, message",
    [
        ("2q2k_32x1s1k", "segment 2 '32x1s1k'"),
        ("q4s2", "segment 1 'q4s2' has kv_len 2 < q_len 4"),
        ("0q4", "segment 1 '0q4' needs a count"),
        ("q8__q4", "segment 2 ''"),
        ("", "mix: empty"),
    ],
)
def test_a_bad_segment_is_named(mix, message):
    with pytest.raises(SpecError, match=None) as err:
        parse_mix(mix)
    assert message in str(err.value)


def test_flops_and_bytes_of_a_mixed_batch_are_the_sum_over_requests():
    # q=3 on kv=5 (append): pairs 3·5 − 3 = 12; q=1 on kv=4 (decode): 4; q=4 prefill: 4·4 − 6 = 10
    spec = ExperimentSpec.from_mix("q3s5_q1s4_q4", 4, 2, 8)
    assert spec.visible_pairs == 26
    assert spec.flops == 4 * 8 * 4 * 26
    # Q and O: (3 + 1 + 4) tokens × 4 heads × 8; K and V: (5 + 4 + 4) tokens × 2 heads × 8; bf16
    assert spec.ideal_bytes == (2 * 8 * 4 * 8 + 2 * 13 * 2 * 8) * 2
    assert spec.tokens == 8 and spec.batch_size == 3 and spec.q_len == 4 and spec.kv_len == 5
    uniform = ExperimentSpec("append", 3, 4, 9, 4, 2, 8)
    assert uniform.visible_pairs == 3 * (4 * 9 - 6) and not uniform.is_ragged


def test_a_spec_refuses_a_mix_that_disagrees_with_it():
    with pytest.raises(SpecError, match="is a mixed batch, not decode"):
        ExperimentSpec("decode", 2, 4, 5, 4, 2, 8, mix="q3s5_q1s4")
    with pytest.raises(SpecError, match="has 2 requests"):
        ExperimentSpec("mixed", 3, 3, 5, 4, 2, 8, mix="q3s5_q1s4")
    with pytest.raises(SpecError, match="mixed needs a mix"):
        ExperimentSpec("mixed", 2, 3, 5, 4, 2, 8)


def test_length_generators_are_seeded_and_rebuild_the_batch_exactly():
    a = ExperimentSpec.from_lengths("lognormal:64:0.5", "decode", 32, 4, 2, 8, seed=3)
    b = ExperimentSpec.from_lengths("lognormal:64:0.5@3", "decode", 32, 4, 2, 8)
    assert a.mix == "lognormal:64:0.5@3" and a == b and a.batch == b.batch
    rebuilt = ExperimentSpec(a.workload, a.batch_size, a.q_len, a.kv_len, 4, 2, 8, mix=a.mix)
    assert rebuilt.batch == a.batch and rebuilt.is_ragged
    other = ExperimentSpec.from_lengths("lognormal:64:0.5", "decode", 32, 4, 2, 8, seed=4)
    assert other.batch != a.batch
    appends = Lengths.parse("uniform:10:20@1").batch("append", 8, chunk=6)
    assert set(appends.q_lens) == {6} and all(10 <= k <= 20 for k in appends.kv_lens)
    with pytest.raises(SpecError, match="uniform needs integers"):
        Lengths.parse("uniform:20:10")


def test_the_ragged_paged_cache_holds_each_request_at_shuffled_pages():
    lens = (5, 17, 1, 33)
    k = torch.randn(sum(lens), 2, 4)
    v = torch.randn_like(k)
    paged = to_paged_ragged(k, v, lens, page_size=4)
    offset = 0
    for i, n in enumerate(lens):
        kk, vv = paged.request(i)
        assert torch.equal(kk, k[offset : offset + n]) and torch.equal(vv, v[offset : offset + n])
        offset += n
    assert paged.indptr().tolist() == [0, 2, 7, 8, 17] and paged.last_page_lens().tolist() == [1, 1, 1, 1]
    assert sorted(paged.indices().tolist()) == list(range(17))  # every page used once
    assert paged.indices().tolist() != list(range(17))  # and not in order


TINY_MIXES = ["q20_3q1s17_2q4s25", "2q9s30_q5", "3q1s7_q1s40"]


@pytest.mark.parametrize("mix", TINY_MIXES)
@pytest.mark.parametrize("name", ["torch-naive", "flex"])
def test_cpu_backends_pass_the_reference_on_ragged_and_mixed_batches(name, mix):
    spec = ExperimentSpec.from_mix(mix, 8, 2, 64)
    assert spec.is_ragged
    row = cpu_measurer().measure(spec, get_backend(name))
    assert row.status is Status.OK, row.reason
    assert row.rel_err < 2e-2 and row.checked_batch == spec.batch_size
    assert row.mix == spec.mix and row.total_q_tokens == spec.batch.total_q and row.min_kv_len == spec.batch.min_kv


def test_the_ragged_check_catches_rows_of_the_wrong_request():
    from harness.inputs import make_inputs
    from harness.reference import check_indices, check_output, reference_attention

    spec = ExperimentSpec.from_mix("q6s20_q4s9", 8, 2, 64)
    inputs = make_inputs(spec, torch.device("cpu"))
    assert inputs.q.shape == (10, 8, 64) and inputs.k.shape == (29, 2, 64)
    picked = check_indices(spec, torch.device("cpu"))
    ref = reference_attention(spec, inputs, picked)
    assert check_output(spec, ref.to(torch.bfloat16), ref, picked).ok
    assert not check_output(spec, torch.roll(ref, 1, dims=0), ref, picked).ok


def test_a_big_ragged_batch_checks_its_shortest_and_longest_request(monkeypatch):
    from harness import reference

    spec = ExperimentSpec.from_mix("q40s900_30q1s100_q2s5_20q1s300", 8, 2, 64)
    monkeypatch.setitem(reference.CHECK_FLOP_BUDGET, "cpu", 1.0)
    picked = reference.check_indices(spec, torch.device("cpu"))
    kv = spec.batch.kv_lens
    assert kv.index(min(kv)) in picked and kv.index(max(kv)) in picked and len(picked) == 2


def test_ragged_specs_are_unsupported_where_not_declared():
    spec = ExperimentSpec.from_mix("q20_3q1s17", 8, 2, 64)
    row = cpu_measurer().measure(spec, get_backend("sdpa-math"))
    assert row.status is Status.UNSUPPORTED and "ragged batch" in row.reason


def test_the_serving_preset_names_its_mixes():
    from specs import MIX_NAMES

    specs = get_preset("serving").specs()
    assert {MIX_NAMES[s.mix] for s in specs} == {
        "decode-heavy", "prefill-heavy", "chunked-prefill", "long-decode", "spec-decode", "prefill-lognormal",
    }  # fmt: skip
    assert {s.page_size for s in specs} == {None, 16}
    long = next(s for s in specs if MIX_NAMES[s.mix] == "long-decode")
    assert long.kv_len == 131072 and long.workload.value == "decode"


def test_batch_validation():
    with pytest.raises(SpecError, match="request 1 needs 1 <= q_len <= kv_len"):
        Batch((1, 5), (3, 4))
