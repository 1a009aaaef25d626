"""The FlashInfer adapter's ragged plumbing on the CPU, through a stand-in for its wrappers
(tests/fake_flashinfer.py): which wrapper runs which requests (vLLM's split of a mixed batch, the
decode wrapper for all-decode batches, one call otherwise), and that the CSR offsets, page ids and
output slices it builds give the reference result. The real library is checked by tests/test_gpu.py."""

import sys

import pytest
import torch

from frameworks import VariantError, get_backend
from specs import ExperimentSpec

from . import fake_flashinfer
from .helpers import run_info_after_checking

CPU = torch.device("cpu")


@pytest.fixture
def flashinfer(monkeypatch):
    fake_flashinfer.calls.clear()
    monkeypatch.setitem(sys.modules, "flashinfer", fake_flashinfer)
    return fake_flashinfer


def run(spec, backend="flashinfer"):
    """Prepare and call `backend` (a variant: 'flashinfer[mixed=one-call]') on `spec`; the info it reports."""
    return run_info_after_checking(backend, spec)


@pytest.mark.parametrize("page", [None, 1, 16])
def test_a_mixed_batch_is_split_as_vllm_splits_it(flashinfer, page):
    spec = ExperimentSpec.from_mix("q20s30_2q4s25_3q1s17", 8, 2, 64, page_size=page)  # chunk, 2 spec, 3 decodes
    info = run(spec)
    prefill = "ragged-prefill" if page is None else "paged-prefill"
    assert flashinfer.calls == [(prefill, 3), ("decode", 3)]
    assert info.startswith("split: BatchPrefillWith") and "for 3 + BatchDecodeWithPagedKVCacheWrapper" in info
    assert info.endswith("dense" if page is None else f"page_size={page}")


@pytest.mark.parametrize("page", [None, 16])
def test_an_all_decode_batch_runs_the_decode_wrapper(flashinfer, page):
    spec = ExperimentSpec.from_mix("q1s7_q1s40_q1s100_q1s2", 8, 2, 64, page_size=page)
    info = run(spec)
    assert flashinfer.calls == [("decode", 4)]
    assert info.startswith("BatchDecodeWithPagedKVCacheWrapper(tensor cores)")
    assert ("pages of one token" in info) == (page is None)


@pytest.mark.parametrize("mix", ["q9_q1s40_q5s20", "2q12_q7s9"])  # a decode in the middle; no decodes
def test_other_ragged_batches_are_one_prefill_call(flashinfer, mix):
    run(ExperimentSpec.from_mix(mix, 8, 2, 64, page_size=16))
    assert flashinfer.calls == [("paged-prefill", 3)]


def test_one_call_mode_runs_a_mixed_batch_through_the_prefill_wrapper(flashinfer):
    info = run(ExperimentSpec.from_mix("q20s30_3q1s17", 8, 2, 64), "flashinfer[mixed=one-call]")
    assert flashinfer.calls == [("ragged-prefill", 4)] and info == "BatchPrefillWithRaggedKVCacheWrapper;dense"
    expected = r"variant mixed='both' is not valid; expected one of split, one-call, batch-attention \(default split\)"
    with pytest.raises(VariantError, match=expected):
        run(ExperimentSpec.from_mix("q20s30_3q1s17", 8, 2, 64), "flashinfer[mixed=both]")


def test_the_stand_in_catches_a_wrong_page_table(flashinfer, monkeypatch):
    """The fake is strict enough to fail a broken adapter: last-page lengths off by one are refused."""
    from frameworks import _paged

    real = _paged.RaggedPagedKV.last_page_lens
    monkeypatch.setattr(_paged.RaggedPagedKV, "last_page_lens", lambda self: real(self) + 1)
    with pytest.raises(AssertionError, match="last page lengths"):
        run(ExperimentSpec.from_mix("q20s30_3q1s16", 8, 2, 64, page_size=16))


@pytest.mark.parametrize("page", [None, 16])
def test_a_uniform_decode_reads_a_dense_cache_as_pages_of_one_token(flashinfer, page):
    """One page a sequence would leave FlashInfer nothing to split at batch 1 (a page is its unit of work)."""
    from tests.helpers import tiny_spec

    spec = tiny_spec("decode", group=4, kv_len=40, page_size=page)
    info = run(spec)
    assert flashinfer.calls == [("decode", spec.batch_size)]
    assert info.endswith("dense (pages of one token)" if page is None else "paged, page_size=16")


@pytest.mark.parametrize("page", [None, 1, 16])
@pytest.mark.parametrize("mix", ["q20s30_2q4s25_3q1s17", "q1s7_q1s40", "2q12_q7s9"])
def test_batch_attention_mode_runs_any_ragged_batch_in_one_call(flashinfer, mix, page):
    spec = ExperimentSpec.from_mix(mix, 8, 2, 64, page_size=page)
    info = run(spec, "flashinfer[mixed=batch-attention]")
    assert flashinfer.calls == [("batch-attention", spec.batch.num_requests)]
    assert fake_flashinfer.planned_workspace_bytes == 2**30  # not the library's own 384 MiB
    assert info.startswith("BatchAttention (one persistent launch);")
    assert info.endswith("dense" if page is None else f"page_size={page}")


def test_batch_attention_mode_without_it_in_the_library_is_unsupported(flashinfer, monkeypatch):
    from harness.store import Status

    from .helpers import cpu_measurer

    monkeypatch.delattr(fake_flashinfer, "BatchAttention")
    backend = get_backend("flashinfer[mixed=batch-attention]")
    monkeypatch.setattr(type(backend), "availability", lambda self, device: None)
    row = cpu_measurer().measure(ExperimentSpec.from_mix("q20s30_3q1s17", 8, 2, 64), backend)
    assert row.status is Status.UNSUPPORTED and "no BatchAttention" in row.reason
