"""tools/ab_env.py: the interleaved A/B of one backend under two environments."""

import os

import pytest

from tools import ab_env

from .helpers import cpu_measurer


def test_the_sides_alternate_so_neither_always_runs_first():
    assert ab_env.order(3) == [(0, "a"), (0, "b"), (1, "b"), (1, "a"), (2, "a"), (2, "b")]


def test_the_environment_is_restored_after_each_side(monkeypatch):
    monkeypatch.setenv("ATTNBENCH_AB_KEPT", "before")
    monkeypatch.delenv("ATTNBENCH_AB_NEW", raising=False)
    with ab_env.environment({"ATTNBENCH_AB_KEPT": "a", "ATTNBENCH_AB_NEW": "b"}):
        assert os.environ["ATTNBENCH_AB_KEPT"] == "a" and os.environ["ATTNBENCH_AB_NEW"] == "b"
    assert os.environ["ATTNBENCH_AB_KEPT"] == "before" and "ATTNBENCH_AB_NEW" not in os.environ
    assert ab_env.parse_env("A=1, B=x=y") == {"A": "1", "B": "x=y"}
    with pytest.raises(SystemExit, match="'oops' is not NAME=VALUE"):
        ab_env.parse_env("A=1,oops")


def test_each_side_runs_under_its_environment(monkeypatch):
    """The Triton adapter reads ATTNBENCH_TRITON_SCHEDULE at prepare: each side's rows say its own."""
    pytest.importorskip("triton")
    from specs import ExperimentSpec

    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setenv("ATTNBENCH_TRITON_MIXED_LAUNCHES", "1")
    spec = ExperimentSpec.from_mix("q5_q20s30", 8, 2, 64, model="tiny")
    rows = ab_env.run_ab([spec], "triton", {"ATTNBENCH_TRITON_SCHEDULE": "simple"},
                         {"ATTNBENCH_TRITON_SCHEDULE": "longest-first"}, 2, cpu_measurer())  # fmt: skip
    assert [(r["round"], r["side"]) for r in rows] == ab_env.order(2)
    assert all(r["status"] == "ok" for r in rows)
    for r in rows:
        wanted = "simple" if r["side"] == "a" else "longest-first"
        assert r["backend_info"].startswith(f"varlen;schedule={wanted};")
    table = ab_env.summarise(rows)
    assert len(table) == 1 and table["b_over_a"].iloc[0] > 0
    assert table["configs"].iloc[0] == "same"  # the interpreter has one config


def test_the_summary_says_when_the_sides_ran_different_configs():
    """The tiles A/B of 2026-11-29: the switch also moved the autotuner's pick, which the table must show."""
    big = "varlen;schedule=longest-first;BLOCK_M=128,BLOCK_N=128,warps=8,stages=3,kv_loads=gather"
    capped = "varlen;schedule=tiles;BLOCK_M=128,BLOCK_N=64,warps=8,stages=2,maxnreg=128,kv_loads=gather"
    rows = [{"spec": "s", "side": side, "round": r, "status": "ok", "p50_ms": 1.0, "backend_info": info}
            for r, side, info in [(0, "a", big), (0, "b", capped), (1, "b", capped), (1, "a", big)]]  # fmt: skip
    line = ab_env.summarise(rows).iloc[0]
    assert line["configs"] == (
        "a: BLOCK_M=128,BLOCK_N=128,warps=8,stages=3 | b: BLOCK_M=128,BLOCK_N=64,warps=8,stages=2,maxnreg=128"
    )
    mixed = (
        "two launches;varlen;BLOCK_M=128,BLOCK_N=128,warps=8,stages=3,kv_loads=tma;"
        "ragged-decode;splits=3;BLOCK_N=64,warps=4,stages=3"
    )
    assert ab_env.configs(mixed) == "BLOCK_M=128,BLOCK_N=128,warps=8,stages=3 + BLOCK_N=64,warps=4,stages=3"
    # the Gluon A/B of 2026-11-29 showed an empty side: a Gluon kernel's config is named too
    gluon = "gluon-pp;BLOCK_M=128,BLOCK_N=64,warps=4+4+producer,stages=2,kv_loads=tma"
    assert ab_env.configs(gluon) == "gluon-pp;BLOCK_M=128,BLOCK_N=64,warps=4+4+producer,stages=2"


def test_the_summary_divides_the_medians_and_keeps_the_rounds_range():
    rows = [{"spec": "s", "side": side, "round": r, "status": "ok", "p50_ms": ms}
            for r, side, ms in [(0, "a", 2.0), (0, "b", 1.0), (1, "b", 1.2), (1, "a", 2.0), (2, "a", 3.0),
                                (2, "b", 1.5)]]  # fmt: skip
    line = ab_env.summarise(rows).iloc[0]
    assert line["a_ms"] == 2.0 and line["b_ms"] == 1.2 and line["b_over_a"] == pytest.approx(0.6)
    assert line["round_ratio_min"] == pytest.approx(0.5) and line["round_ratio_max"] == pytest.approx(0.6)


def test_the_tools_narrow_a_preset_as_the_sweep_does():
    from tools.narrow import preset_specs, spec_label

    specs = preset_specs("serving", models="Llama-3.1-8B", mixes="decode-heavy", pages="16")
    assert [spec_label(s) for s in specs] == ["Llama-3.1-8B decode-heavy page 16"]
    assert len(preset_specs("serving")) == 36  # empty narrowings keep the preset's axes
    (prefill,) = preset_specs("readme", models="Qwen3-30B-A3B", workloads="prefill")
    assert spec_label(prefill) == "Qwen3-30B-A3B prefill B256 S4096 dense"


def test_the_tools_narrow_batch_and_length_too():
    from tools.narrow import preset_specs, spec_label

    specs = preset_specs("scaling", models="Llama-3.1-8B", workloads="decode", batches="1", seq_lens="131072")
    assert [spec_label(s) for s in specs] == ["Llama-3.1-8B decode B1 S131072 dense"]
    assert len(preset_specs("scaling", workloads="decode", batches="1,16")) == 3 * 2 * 4
