"""Conformance: every registered backend that can run here agrees with the fp32 reference."""

import pytest
import torch

from frameworks import BACKENDS, get_backend, load_all
from harness.reference import check_indices, check_output, reference_attention
from harness.inputs import make_inputs
from harness.store import Status

from .helpers import cpu_measurer, tiny_spec

load_all()
PROJECT_BACKENDS = sorted(name for name, cls in BACKENDS.items() if cls.__module__.startswith("frameworks."))
CPU = torch.device("cpu")


def test_the_pytorch_backends_are_registered():
    expected = {"torch-naive", "torch-compile", "flex", "sdpa", "sdpa-flash", "sdpa-efficient", "sdpa-cudnn", "sdpa-math"}
    assert expected <= set(PROJECT_BACKENDS)


@pytest.mark.parametrize("name", PROJECT_BACKENDS)
def test_unavailable_backends_say_why(name):
    backend = get_backend(name)
    reason = backend.availability(CPU)
    if "cpu" in backend.devices and backend.library == "torch":
        assert reason is None
    elif "cpu" not in backend.devices:
        assert reason and "cuda" in reason
    else:  # a library backend that runs on the CPU: available, or says why not
        assert reason is None or backend.library in reason or "TRITON_INTERPRET" in reason


@pytest.mark.parametrize("group", [1, 4])
@pytest.mark.parametrize("workload", ["prefill", "append", "decode"])
@pytest.mark.parametrize("name", PROJECT_BACKENDS)
def test_backend_agrees_with_reference(name, workload, group):
    backend = get_backend(name)
    if backend.availability(CPU):
        pytest.skip(backend.availability(CPU))
    row = cpu_measurer().measure(tiny_spec(workload, group=group), backend)
    assert row.status is Status.OK, row.reason
    assert row.rel_err < 2e-2 and row.checked_batch == 2
    assert row.p50_ms > 0 and row.tflops > 0 and row.n_iters == 2


def test_reference_matches_an_independent_dense_computation():
    spec = tiny_spec("append", group=4, kv_len=20, chunk=7, batch=3)
    inputs = make_inputs(spec, CPU)
    ref = reference_attention(spec, inputs, [0, 2])
    q = inputs.q.double().transpose(1, 2)
    k = inputs.k.double().transpose(1, 2).repeat_interleave(spec.gqa_group, dim=1)
    v = inputs.v.double().transpose(1, 2).repeat_interleave(spec.gqa_group, dim=1)
    scores = q @ k.transpose(-1, -2) / spec.head_dim**0.5
    for i in range(spec.q_len):  # bottom-right: query i sees keys 0 .. kv_len - q_len + i
        scores[:, :, i, spec.kv_len - spec.q_len + i + 1 :] = float("-inf")
    dense = (scores.softmax(-1) @ v).transpose(1, 2)
    torch.testing.assert_close(ref, dense[[0, 2]].float(), rtol=1e-5, atol=1e-5)


def test_reference_chunks_queries_without_changing_the_result(monkeypatch):
    spec = tiny_spec("prefill", group=2, kv_len=64)
    inputs = make_inputs(spec, CPU)
    whole = reference_attention(spec, inputs, [0, 1])
    monkeypatch.setattr("harness.reference.SCORE_BLOCK_BYTES", 4 * spec.num_q_heads * spec.kv_len * 5)  # 5 rows a chunk
    torch.testing.assert_close(reference_attention(spec, inputs, [0, 1]), whole)


def test_check_catches_a_wrong_alignment_and_a_nan():
    spec = tiny_spec("append", kv_len=32, chunk=8)
    inputs = make_inputs(spec, CPU)
    ref = reference_attention(spec, inputs, [0, 1])
    assert check_output(spec, ref.to(spec.dtype.torch_dtype), ref, [0, 1]).ok
    shifted = torch.roll(ref, 1, dims=1)
    assert "relative error" in check_output(spec, shifted, ref, [0, 1]).problem
    poisoned = ref.clone()
    poisoned[1, 3, 0, 0] = float("nan")
    assert "NaN" in check_output(spec, poisoned, ref, [0, 1]).problem
    assert "shape" in check_output(spec, ref[:, :4], ref, [0, 1]).problem


def test_big_batches_check_a_bounded_slice_including_the_last_element(monkeypatch):
    spec = tiny_spec("prefill", batch=64, kv_len=64)
    monkeypatch.setitem(__import__("harness.reference", fromlist=["x"]).CHECK_FLOP_BUDGET, "cpu", spec.flops / 64 * 5)
    picked = check_indices(spec, CPU)
    assert len(picked) == 5 and picked[0] == 0 and picked[-1] == 63
    monkeypatch.setitem(__import__("harness.reference", fromlist=["x"]).CHECK_FLOP_BUDGET, "cpu", 1.0)
    assert check_indices(spec, CPU) == [63]


def test_inputs_are_seeded_by_the_spec():
    a, b = make_inputs(tiny_spec("decode"), CPU), make_inputs(tiny_spec("decode"), CPU)
    assert torch.equal(a.q, b.q) and torch.equal(a.v, b.v)
    c = make_inputs(tiny_spec("decode", kv_len=40), CPU)
    assert not torch.equal(a.q, c.q)
    assert a.q.shape == (2, 1, 8, 64) and a.k.shape == (2, 48, 2, 64)


def test_sdpa_unsupported_reason_keeps_pytorchs_words_without_noise():
    from frameworks.torch_sdpa import why_no_kernel

    messages = [
        "Memory efficient kernel not used because: (Triggered internally at /pytorch/aten/src/sdp_utils.cpp:986.)",
        "For dense input, both fused kernels require query, key and value to have the same num_heads. "
        "(Triggered internally at /pytorch/aten/src/sdp_utils.cpp:123.)",
    ]
    assert why_no_kernel(messages) == (
        "For dense input, both fused kernels require query, key and value to have the same num_heads."
    )


def test_sdpa_records_the_kernel_pytorch_chose():
    row = cpu_measurer().measure(tiny_spec("prefill"), get_backend("sdpa-math"))
    assert row.backend_info == "kernel=_scaled_dot_product_attention_math"


def test_a_broken_flash_attn_cute_is_hidden_from_transformer_engine(monkeypatch):
    """TE only tolerates ImportError when it probes FA4: an installed-but-broken FA4 is turned into one."""
    import sys
    import types

    from frameworks.transformer_engine import hide_broken_fa4

    monkeypatch.setattr("frameworks.transformer_engine.FA4_IMPORT_ERROR", "")  # restored after the test

    parent = types.ModuleType("flash_attn")
    parent.__path__ = []
    monkeypatch.setitem(sys.modules, "flash_attn", parent)
    # a finder whose module raises at import, as the real broken build does
    import importlib.abc
    import importlib.util

    class Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, name, path, target=None):
            return importlib.util.spec_from_loader(name, self) if name == "flash_attn.cute" else None

        def create_module(self, spec):
            return None

        def exec_module(self, module):
            raise AttributeError("module 'cutlass.cute.core' has no attribute 'ThrMma'")

    monkeypatch.setattr(sys, "meta_path", [Finder(), *sys.meta_path])
    monkeypatch.delitem(sys.modules, "flash_attn.cute", raising=False)
    note = hide_broken_fa4()
    assert "hidden" in note and "ThrMma" in note
    with pytest.raises(ImportError):
        import flash_attn.cute  # noqa: F401
    # FlashAttention-4's own row still gives the real reason, not "import halted"
    reason = get_backend("flash-attn4").availability(torch.device("cpu"))
    assert "ThrMma" in reason
    monkeypatch.delitem(sys.modules, "flash_attn.cute")
