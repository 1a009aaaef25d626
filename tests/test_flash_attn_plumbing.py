"""FA3's scheduler variant and FA4's paged path, through CPU stand-ins of the libraries
(tests/fake_flash_attn.py): the arguments each variant passes and the output against the fp32
reference. The real libraries run in tests/test_gpu.py on the GPU host."""

import sys
import types

import pytest
import torch

from harness.plan import plan_tasks
from specs import ExperimentSpec

from . import fake_fa_cache as fake_flash_attn
from .helpers import run_info_after_checking

CPU = torch.device("cpu")


@pytest.fixture
def fa(monkeypatch):
    fake_flash_attn.calls.clear()
    monkeypatch.setitem(sys.modules, "flash_attn_interface", fake_flash_attn)
    cute = types.ModuleType("flash_attn.cute")
    cute.flash_attn_varlen_func = fake_flash_attn.flash_attn_varlen_func
    cute.flash_attn_func = fake_flash_attn.flash_attn_func
    monkeypatch.setitem(sys.modules, "flash_attn.cute", cute)
    return fake_flash_attn


def run(backend_arg: str, spec):
    return run_info_after_checking(backend_arg, spec)


@pytest.mark.parametrize("page", [None, 16])
def test_fa3_scheduler_variants_pass_what_vllm_passes(fa, page):
    spec = ExperimentSpec("decode", 3, 1, 40, 8, 2, 64, page_size=page)
    assert run("flash-attn3", spec)["scheduler"] == "heuristic"
    assert fa.calls[-1] == ("flash_attn_with_kvcache", {"num_splits": 0, "metadata": False})
    assert run("flash-attn3[scheduler=metadata]", spec)["scheduler"] == "metadata"
    assert [name for name, _ in fa.calls[-2:]] == ["get_scheduler_metadata", "flash_attn_with_kvcache"]
    assert fa.calls[-2][1]["page_size"] == page and fa.calls[-1][1]["metadata"] is True
    assert run("flash-attn3[scheduler=none]", spec)["scheduler"] == "none"
    assert fa.calls[-1][1]["num_splits"] == 1


def test_fa3_metadata_on_a_paged_mixed_batch(fa):
    spec = ExperimentSpec.from_mix("q20s30_2q4s25_3q1s17", 8, 2, 64, page_size=16)
    info = run("flash-attn3[scheduler=metadata]", spec)
    assert info["scheduler"] == "metadata" and info["page_size"] == 16
    assert ("get_scheduler_metadata", {"page_size": 16, "batch_size": 6}) in fa.calls  # after the build probe


def test_the_scheduler_contender_is_planned_only_where_it_changes_the_call():
    decode = ExperimentSpec("decode", 2, 1, 64, 8, 2, 64)
    prefill = ExperimentSpec("prefill", 2, 64, 64, 8, 2, 64)
    dense_mix = ExperimentSpec.from_mix("q20s30_3q1s17", 8, 2, 64)
    tasks = plan_tasks([decode, prefill, dense_mix], ["flash-attn3[*]"])
    assert [(t.spec.workload.value, t.variant) for t in tasks] == [
        ("decode", ""), ("decode", "scheduler=metadata"), ("prefill", ""), ("mixed", ""),
    ]  # fmt: skip


@pytest.mark.parametrize("mix", [None, "q20s30_2q4s25_3q1s17"])
def test_fa4_runs_a_paged_cache_through_its_page_table(fa, mix):
    spec = (
        ExperimentSpec("decode", 3, 1, 40, 8, 2, 64, page_size=16)
        if mix is None
        else ExperimentSpec.from_mix(mix, 8, 2, 64, page_size=16)
    )
    info = run("flash-attn4", spec)
    assert info == {"call": "flash_attn_varlen_func(page_table, seqused_k)", "num_splits": 1, "page_size": 16}
    assert fa.calls == [("flash_attn_varlen_func", {"page_table": True, "num_splits": 1})]
