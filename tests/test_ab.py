"""tools/ab.py: the interleaved A/B of two backend variants."""

import pytest

from frameworks import info_dict, info_text
from tools import ab

from .helpers import cpu_measurer


def test_the_sides_alternate_so_neither_always_runs_first():
    assert ab.order(3) == [(0, "a"), (0, "b"), (1, "b"), (1, "a"), (2, "a"), (2, "b")]


def test_each_side_is_a_backend_variant_and_a_bad_one_is_refused_naming_the_allowed():
    backend = ab.side_backend("triton[mixed_streams=1]")
    assert (backend.name, backend.variant, backend.choice["mixed_streams"]) == ("triton", "mixed_streams=1", "1")
    assert (
        ab.side_backend("triton").variant == "" and ab.side_backend("torch-naive[gqa=repeat]").variant == "gqa=repeat"
    )
    with pytest.raises(SystemExit, match=r"--a: .*mixed_streams='3' is not valid; expected one of 2, 1"):
        ab.side_backend("triton[mixed_streams=3]", "--a")
    with pytest.raises(SystemExit, match=r"--b: .*no variant key 'streams'; its keys: gluon, "):
        ab.run_ab([], "triton", "triton[streams=1]", 1, cpu_measurer())
    with pytest.raises(SystemExit, match=r"--a/--b: .*'tritonn' is not known"):
        ab.side_backend("tritonn")


def test_each_side_runs_its_variant(monkeypatch):
    """triton[schedule=simple] against the default longest-first: each side's rows say its own."""
    pytest.importorskip("triton")
    from specs import ExperimentSpec

    monkeypatch.setenv("TRITON_INTERPRET", "1")
    spec = ExperimentSpec.from_mix("q5_q20s30", 8, 2, 64, model="tiny")
    rows = ab.run_ab([spec], "triton[mixed_launches=1,schedule=simple]", "triton[mixed_launches=1]", 2, cpu_measurer())
    assert [(r["round"], r["side"]) for r in rows] == ab.order(2)
    assert all(r["status"] == "ok" for r in rows)
    for r in rows:
        wanted = "simple" if r["side"] == "a" else "longest-first"
        info = info_dict(r["backend_info"])
        assert (info["kernel"], info["schedule"]) == ("varlen", wanted), r["backend_info"]
        canonical = "triton[schedule=simple,mixed_launches=1]" if r["side"] == "a" else "triton[mixed_launches=1]"
        assert r["backend"] == canonical  # the variant in its canonical order
    table = ab.summarise(rows)
    assert len(table) == 1 and table["b_over_a"].iloc[0] > 0
    assert table["configs"].iloc[0] == "same"  # the interpreter has one config


def test_the_summary_says_when_the_sides_ran_different_configs():
    """The tiles A/B of 2026-11-29: the variant also moved the autotuner's pick, which the table must show."""
    big = info_text({"kernel": "varlen", "schedule": "longest-first", "BLOCK_M": 128, "BLOCK_N": 128, "warps": 8,
                     "stages": 3, "kv_loads": "gather"})  # fmt: skip
    capped = info_text({"kernel": "varlen", "schedule": "tiles", "BLOCK_M": 128, "BLOCK_N": 64, "warps": 8,
                        "stages": 2, "maxnreg": 128, "kv_loads": "gather"})  # fmt: skip
    rows = [{"spec": "s", "side": side, "round": r, "status": "ok", "p50_ms": 1.0, "backend_info": info}
            for r, side, info in [(0, "a", big), (0, "b", capped), (1, "b", capped), (1, "a", big)]]  # fmt: skip
    line = ab.summarise(rows).iloc[0]
    assert line["configs"] == (
        "a: BLOCK_M=128,BLOCK_N=128,warps=8,stages=3 | b: BLOCK_M=128,BLOCK_N=64,warps=8,stages=2,maxnreg=128"
    )
    mixed = {"kernel": "two launches", "streams": 2, "launches": [
        {"kernel": "varlen", "schedule": "longest-first", "BLOCK_M": 128, "BLOCK_N": 128, "warps": 8, "stages": 3,
         "kv_loads": "tma"},
        {"kernel": "ragged-decode", "splits": 3, "split_rule": "waves", "BLOCK_N": 64, "warps": 4, "stages": 3,
         "kv_loads": "gather"},
    ]}  # fmt: skip
    expected = "BLOCK_M=128,BLOCK_N=128,warps=8,stages=3 + BLOCK_N=64,warps=4,stages=3"
    assert ab.configs(mixed) == ab.configs(info_text(mixed)) == expected  # a dict, or the row's JSON text
    # the Gluon A/B of 2026-11-29 showed an empty side: a Gluon kernel's config is named too
    gluon = {
        "kernel": "gluon-pp",
        "BLOCK_M": 128,
        "BLOCK_N": 64,
        "warps": "4+4+producer",
        "stages": 2,
        "kv_loads": "tma",
    }
    assert ab.configs(info_text(gluon)) == "gluon-pp;BLOCK_M=128,BLOCK_N=64,warps=4+4+producer,stages=2"
    ahead = {"kernel": "prefill", "BLOCK_M": 64, "BLOCK_N": 32, "QK_AHEAD": True, "warps": 4, "stages": 2}
    assert ab.configs(ahead) == "BLOCK_M=64,BLOCK_N=32,QK_AHEAD=True,warps=4,stages=2"
    assert ab.configs("") == ab.configs(None) == ab.configs('{"gqa":"grouped rows"}') == ""  # nothing configured


def test_the_summary_divides_the_medians_and_keeps_the_rounds_range():
    rows = [{"spec": "s", "side": side, "round": r, "status": "ok", "p50_ms": ms}
            for r, side, ms in [(0, "a", 2.0), (0, "b", 1.0), (1, "b", 1.2), (1, "a", 2.0), (2, "a", 3.0),
                                (2, "b", 1.5)]]  # fmt: skip
    line = ab.summarise(rows).iloc[0]
    assert line["a_ms"] == 2.0 and line["b_ms"] == 1.2 and line["b_over_a"] == pytest.approx(0.6)
    assert line["round_ratio_min"] == pytest.approx(0.5) and line["round_ratio_max"] == pytest.approx(0.6)


def test_the_tools_narrow_a_preset_as_the_sweep_does():
    from tools.narrow import preset_specs, spec_label

    specs = preset_specs("serving", models="Llama-3.1-8B", mixes="decode-heavy", pages="16")
    assert [spec_label(s) for s in specs] == ["Llama-3.1-8B decode-heavy page 16"]
    assert (
        len(preset_specs("serving")) == 48
    )  # four models (one MLA) × six mixes × dense and page 16  # empty narrowings keep the preset's axes
    (prefill,) = preset_specs("readme", models="Qwen3-30B-A3B", workloads="prefill")
    assert spec_label(prefill) == "Qwen3-30B-A3B prefill B256 S4096 dense"


def test_the_tools_narrow_batch_and_length_too():
    from tools.narrow import preset_specs, spec_label

    specs = preset_specs("scaling", models="Llama-3.1-8B", workloads="decode", batches="1", seq_lens="131072")
    assert [spec_label(s) for s in specs] == ["Llama-3.1-8B decode B1 S131072 dense"]
    assert len(preset_specs("scaling", workloads="decode", batches="1,16")) == 3 * 2 * 4
