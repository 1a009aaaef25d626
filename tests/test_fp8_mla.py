"""Issue #32 on the CPU: FP8 caches (e4m3 with per-tensor or per-head scales) and FP8 attention, latent
attention (MLA) in its absorbed and expanded forms: the spec fields and their one-line errors, FLOPs and
bytes, the quantize/dequantize round trip, the references, the adapters' plumbing and declines, the
Triton MLA decode kernel under the interpreter, and a CPU sweep through the CLI."""

import dataclasses

import pytest
import torch

from frameworks import AttentionInputs, get_backend, info_dict
from specs import MODELS, PRESETS, ExperimentSpec, SpecError

from .helpers import cpu_measurer, tiny_spec

CPU = torch.device("cpu")


def mla_decode(heads=16, batch=2, kv_len=40, latent=512, rope=64, **kw) -> ExperimentSpec:
    return ExperimentSpec("decode", batch, 1, kv_len, heads, 1, latent + rope, kv_lora_rank=latent, rope_dim=rope,
                          v_head_dim=latent, model="tiny-mla", **kw)  # fmt: skip


# ---- the spec -------------------------------------------------------------------------------------


def test_defaults_keep_a_spec_unquantized_and_not_latent():
    spec = ExperimentSpec("decode", 2, 1, 64, 8, 2, 64)
    fields = (spec.kv_dtype, spec.fp8_attention, spec.kv_scale, spec.kv_lora_rank, spec.form)
    assert fields == ("", False, "", None, "mha")
    assert spec.value_dim == 64 and spec.scale_bytes == 0
    assert spec.flops == 4 * 64 * 8 * 2 * 64  # 4 · D · Hq · pairs, as before
    assert spec.ideal_bytes == (2 * 2 * 8 * 64 + 2 * 2 * 64 * 2 * 64) * 2


def test_an_fp8_cache_counts_one_byte_an_element_plus_the_scales():
    bf16 = ExperimentSpec("decode", 2, 1, 64, 8, 2, 64)
    fp8 = ExperimentSpec("decode", 2, 1, 64, 8, 2, 64, kv_dtype="fp8_e4m3")
    assert fp8.kv_scale == "tensor" and fp8.flops == bf16.flops
    q_and_o = 2 * (2 * 8 * 64) * 2
    assert fp8.ideal_bytes == q_and_o + 2 * 2 * 64 * 2 * 64 * 1 + 2 * 4  # K and V at one byte, two fp32 scales
    per_head = ExperimentSpec("decode", 2, 1, 64, 8, 2, 64, kv_dtype="fp8_e4m3", kv_scale="head")
    assert per_head.scale_bytes == 2 * 2 * 4
    qkv = ExperimentSpec("decode", 2, 1, 64, 8, 2, 64, kv_dtype="fp8_e4m3", fp8_attention=True)
    assert qkv.ideal_bytes == (2 * 8 * 64) * (1 + 2) + 2 * 2 * 64 * 2 * 64 + 3 * 4  # Q in e4m3, O in bf16


def test_absorbed_mla_decode_reads_the_latent_cache_once():
    spec = mla_decode(heads=128, batch=4, kv_len=1000)
    assert spec.form == "mla-absorbed" and spec.value_dim == 512 and spec.gqa_group == 128
    assert spec.flops == 2 * 128 * (576 + 512) * 4 * 1000
    q, o, latent = 4 * 128 * 576 * 2, 4 * 128 * 512 * 2, 4 * 1000 * 576 * 2
    assert spec.ideal_bytes == q + o + latent
    fp8 = mla_decode(heads=128, batch=4, kv_len=1000, kv_dtype="fp8_e4m3")
    assert fp8.ideal_bytes == q + o + latent // 2 + 4  # one latent tensor, one scale


def test_expanded_mla_prefill_counts_its_own_value_width():
    spec = ExperimentSpec("prefill", 1, 100, 100, 128, 128, 192, kv_lora_rank=512, rope_dim=64, v_head_dim=128)
    assert spec.form == "mla-expanded" and spec.value_dim == 128
    pairs = 100 * 101 // 2
    assert spec.flops == 2 * 128 * (192 + 128) * pairs
    assert spec.ideal_bytes == (100 * 128 * (192 + 128) + 100 * 128 * (192 + 128)) * 2


def test_models_declare_their_latent_dims_and_forms_follow_the_workload():
    assert {m: MODELS[m].num_q_heads for m in ("DeepSeek-V3", "Kimi-K2", "DeepSeek-V2-Lite")} == {
        "DeepSeek-V3": 128, "Kimi-K2": 64, "DeepSeek-V2-Lite": 16}  # fmt: skip
    v3 = MODELS["DeepSeek-V3"]
    assert v3.attention("decode") == dict(num_q_heads=128, num_kv_heads=1, head_dim=576, kv_lora_rank=512,
                                          rope_dim=64, v_head_dim=512)  # fmt: skip
    assert v3.attention("prefill") == dict(num_q_heads=128, num_kv_heads=128, head_dim=192, kv_lora_rank=512,
                                           rope_dim=64, v_head_dim=128)  # fmt: skip
    assert MODELS["Llama-3.1-8B"].attention("decode") == dict(num_q_heads=32, num_kv_heads=8, head_dim=128)


def test_the_mla_and_fp8_presets():
    mla = PRESETS["mla"].specs()
    assert {s.form for s in mla} == {"mla-absorbed"} and {s.page_size for s in mla} == {64}
    assert {s.batch_size for s in mla} == {1, 8, 32, 128} and {s.kv_len for s in mla} == {1024, 4096, 16384, 65536}
    fp8 = PRESETS["fp8"].specs()
    assert {s.kv_dtype for s in fp8} == {"", "fp8_e4m3"} and {s.model for s in fp8} == {"Llama-3.1-8B", "Qwen3-30B-A3B"}
    assert {s.workload.value for s in fp8} == {"decode", "append", "mixed"}
    assert sum(s.kv_dtype == "" for s in fp8) == sum(s.kv_dtype == "fp8_e4m3" for s in fp8)
    serving = {s.model: s.form for s in PRESETS["serving"].specs() if s.model == "DeepSeek-V3" and s.mix == "64q4s4k"}
    assert serving == {"DeepSeek-V3": "mla-absorbed"}


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(kv_dtype="fp8"), "kv_dtype: 'fp8' is not valid; expected one of '' (the spec's dtype), fp8_e4m3"),
        (dict(fp8_attention=True), "fp8_attention: Q, K and V all in e4m3 needs kv_dtype=fp8_e4m3"),
        (dict(kv_scale="head"), "kv_scale: 'head' applies to an FP8 cache only"),
        (dict(kv_dtype="fp8_e4m3", kv_scale="token"), "kv_scale: 'token' is not valid; expected one of tensor, head"),
        (dict(rope_dim=64), "rope_dim: applies to MLA only"),
        (dict(kv_lora_rank=512, v_head_dim=512), "rope_dim: MLA (kv_lora_rank=512) needs rope_dim too"),
        (dict(kv_lora_rank=0), "kv_lora_rank: must be a positive integer or None"),
        (dict(kv_lora_rank=32, rope_dim=32, v_head_dim=32), "num_kv_heads: absorbed MLA"),
        (dict(kv_lora_rank=512, rope_dim=64, v_head_dim=128), "head_dim: MLA takes head_dim = kv_lora_rank + rope_dim"),
    ],
)
def test_bad_form_fields_are_one_line_naming_the_field(overrides, message):
    with pytest.raises(SpecError) as info:
        ExperimentSpec("decode", 2, 1, 64, 8, 2, 64, **overrides)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert str(info.value).startswith(message.split(":")[0] + ":")


# ---- quantization, inputs and the references -------------------------------------------------------


def test_quantize_round_trip_per_tensor_and_per_head():
    from frameworks._fp8 import E4M3, E4M3_MAX, dequantize, quantize

    gen = torch.Generator().manual_seed(0)
    t = torch.randn(3, 50, 4, 32, generator=gen) * torch.tensor([1.0, 10.0, 0.1, 3.0])[:, None]  # heads apart
    t = t.to(torch.bfloat16)
    q, scale = quantize(t)
    assert q.dtype is E4M3 and scale.dim() == 0
    assert scale.item() == pytest.approx(t.float().abs().max().item() / E4M3_MAX)
    assert q.float().abs().max().item() == E4M3_MAX  # the largest magnitude lands on e4m3's largest value
    per_head_q, per_head = quantize(t, per_head=True)
    assert per_head.shape == (4,)
    assert torch.allclose(per_head, t.float().abs().amax(dim=(0, 1, 3)) / E4M3_MAX)
    for values, s in ((q, scale), (per_head_q, per_head)):
        back = dequantize(values, s)
        norms = lambda x: x.transpose(2, 3).reshape(-1, 4).norm(dim=0)  # noqa: E731 - one a head
        rel = (norms(back - t.float()) / norms(t.float())).max().item()
        assert rel < 0.04  # e4m3 keeps 3 mantissa bits: about 2-3% of the norm
    # per-head scales serve a quiet head better than one scale for the whole tensor
    quiet = lambda values, s: (dequantize(values, s)[:, :, 2] - t.float()[:, :, 2]).norm().item()  # noqa: E731
    assert quiet(per_head_q, per_head) < quiet(q, scale)


@pytest.mark.parametrize("kv_scale", ["tensor", "head"])
def test_fp8_inputs_keep_the_drawn_tensors_and_the_reference_judges_the_dequantized_cache(kv_scale):
    from frameworks._fp8 import E4M3, dequantize
    from harness.inputs import make_inputs
    from harness.reference import reference_attention, relative_error

    spec = ExperimentSpec("decode", 2, 1, 40, 8, 2, 64, kv_dtype="fp8_e4m3", kv_scale=kv_scale)
    inputs = make_inputs(spec, CPU)
    assert inputs.k.dtype is E4M3 and inputs.v.dtype is E4M3 and inputs.q.dtype is torch.bfloat16
    assert inputs.k_scale.shape == (() if kv_scale == "tensor" else (2,)) and inputs.q_scale is None
    raw = inputs.unquantized
    assert raw.k.dtype is torch.bfloat16 and (dequantize(inputs.k, inputs.k_scale) - raw.k.float()).abs().max() < 0.2
    everyone = [0, 1]
    deq = reference_attention(spec, inputs, everyone)
    plain = ExperimentSpec("decode", 2, 1, 40, 8, 2, 64)
    exact = reference_attention(plain, raw, everyone)
    held = [dequantize(t, s).to(torch.bfloat16) for t, s in ((inputs.k, inputs.k_scale), (inputs.v, inputs.v_scale))]
    by_hand = reference_attention(plain, AttentionInputs(raw.q, *held), everyone)
    assert relative_error(spec, by_hand, deq, everyone) < 1e-2  # the reference is attention on what the cache holds
    assert 1e-3 < relative_error(spec, deq, exact, everyone) < 0.1  # and FP8 costs a few percent


def test_absorbed_mla_reference_against_a_hand_computation():
    from harness.inputs import make_inputs
    from harness.reference import reference_attention

    spec = mla_decode(heads=4, batch=2, kv_len=7, latent=8, rope=4)
    inputs = make_inputs(spec, CPU)
    assert inputs.q.shape == (2, 1, 4, 12) and inputs.k.shape == (2, 7, 1, 12) and inputs.v.shape == (2, 7, 1, 8)
    assert inputs.v.data_ptr() == inputs.k.data_ptr()  # the values are the latent's first columns, no copy
    out = reference_attention(spec, inputs, [0, 1])
    assert out.shape == (2, 1, 4, 8)
    for b in range(2):
        for h in range(4):
            q, latent = inputs.q[b, 0, h].float(), inputs.k[b, :, 0].float()
            weights = torch.softmax(latent @ q / 12**0.5, dim=0)  # scores over all 12 columns
            assert torch.allclose(out[b, 0, h], weights @ latent[:, :8], atol=1e-5)  # values: the first 8


def test_expanded_mla_reference_is_attention_with_its_own_value_width():
    from harness.inputs import make_inputs
    from harness.reference import reference_attention

    spec = ExperimentSpec("prefill", 1, 5, 5, 2, 2, 12, kv_lora_rank=16, rope_dim=4, v_head_dim=8, model="tiny")
    inputs = make_inputs(spec, CPU)
    assert inputs.q.shape == (1, 5, 2, 12) and inputs.k.shape == (1, 5, 2, 12) and inputs.v.shape == (1, 5, 2, 8)
    out = reference_attention(spec, inputs, [0])
    q, k, v = (t[0].float().transpose(0, 1) for t in (inputs.q, inputs.k, inputs.v))  # [H, S, D]
    scores = (q @ k.transpose(1, 2)) / 12**0.5
    scores = scores.masked_fill(torch.ones(5, 5, dtype=torch.bool).triu(1), float("-inf"))
    assert torch.allclose(out[0], (scores.softmax(-1) @ v).transpose(0, 1), atol=1e-5)


@pytest.mark.parametrize("workload", ["prefill", "append"])
def test_sdpa_runs_expanded_mla_and_its_flash_kernel_says_why_not(workload):
    """SDPA declares the expanded form (queries and keys 12 wide, values 8 here; DeepSeek's 192/128): the math kernel
    matches the fp32 reference with the narrower V, and the flash kernel, which needs one width, is unsupported with
    PyTorch's own reason."""
    from harness.store import Status

    q_len = 5 if workload == "prefill" else 2
    spec = ExperimentSpec(workload, 1, q_len, 5, 2, 2, 12, kv_lora_rank=16, rope_dim=4, v_head_dim=8, model="tiny")
    assert spec.form == "mla-expanded"
    measurer = cpu_measurer()
    ok = measurer.measure(spec, get_backend("sdpa-math"))
    assert ok.status is Status.OK and ok.rel_err < 1e-2, ok.reason
    flash = measurer.measure(spec, get_backend("sdpa-flash"))
    assert flash.status is Status.UNSUPPORTED and "same last dimension" in flash.reason, flash.reason


NAIVE_SPECS = {
    "fp8-tensor": dict(workload="decode", kv_dtype="fp8_e4m3"),
    "fp8-head-append": dict(workload="append", kv_dtype="fp8_e4m3", kv_scale="head"),
    "fp8-attention": dict(workload="append", kv_dtype="fp8_e4m3", fp8_attention=True),
    "mla-decode": "mla",
    "mla-decode-fp8": "mla-fp8",
    "mla-spec": "mla-spec",
    "mla-prefill": "mla-prefill",
}


def naive_spec(name: str) -> ExperimentSpec:
    given = NAIVE_SPECS[name]
    if given == "mla":
        return mla_decode(heads=8, latent=32, rope=16)
    if given == "mla-fp8":
        return mla_decode(heads=8, latent=32, rope=16, kv_dtype="fp8_e4m3")
    if given == "mla-prefill":
        return ExperimentSpec("prefill", 2, 20, 20, 4, 4, 24, kv_lora_rank=32, rope_dim=8, v_head_dim=16)
    if given == "mla-spec":
        return ExperimentSpec.from_mix("q3s20_q2s9", 8, 1, 48, kv_lora_rank=32, rope_dim=16, v_head_dim=32)
    return tiny_spec(**given)


@pytest.mark.parametrize("name", list(NAIVE_SPECS))
def test_torch_naive_runs_every_form_within_tolerance(name):
    spec = naive_spec(name)
    row = cpu_measurer().measure(spec, get_backend("torch-naive"))
    assert row.status.value == "ok", row.reason
    assert row.rel_err < (6e-2 if spec.fp8_attention else 2e-2)
    if spec.kv_dtype:
        assert row.rel_err_vs_unquantized > row.rel_err  # what the quantization costs, beside the kernel's error
        assert "dequantized" in info_dict(row.backend_info)["fp8"]
    else:
        assert row.rel_err_vs_unquantized is None


# ---- adapters: FlashInfer's plumbing through tests/fake_flashinfer.py -------------------------------


@pytest.fixture
def flashinfer(monkeypatch):
    import sys

    from . import fake_flashinfer

    fake_flashinfer.calls.clear()
    monkeypatch.setitem(sys.modules, "flashinfer", fake_flashinfer)
    return fake_flashinfer


def run_checked(name: str, spec: ExperimentSpec):
    """prepare + call on the CPU, checked against the reference like a measurement."""
    from harness.inputs import make_inputs
    from harness.reference import check_output, reference_attention

    backend = get_backend(name)
    assert backend.supports(spec) is None, backend.supports(spec)
    inputs = make_inputs(spec, CPU)
    out = backend.prepare(spec, inputs)()
    everyone = list(range(spec.batch_size))
    check = check_output(spec, out, reference_attention(spec, inputs, everyone), everyone)
    assert check.ok, check.problem
    return info_dict(backend.run_info())


@pytest.mark.parametrize(
    "spec",
    [
        tiny_spec("decode", kv_dtype="fp8_e4m3"),
        tiny_spec("decode", kv_dtype="fp8_e4m3", page_size=16),
        tiny_spec("append", kv_dtype="fp8_e4m3", page_size=16),
        ExperimentSpec.from_mix("q20s30_2q4s25_3q1s17", 8, 2, 64, page_size=16, kv_dtype="fp8_e4m3"),
        ExperimentSpec.from_mix("q1s7_q1s40_q1s100", 8, 2, 64, kv_dtype="fp8_e4m3"),
    ],
    ids=["decode-dense", "decode-paged", "append-paged", "mixed-paged", "ragged-decode-dense"],
)
def test_flashinfer_fp8_cache_plans_e4m3_and_passes_the_scales(flashinfer, spec):
    info = run_checked("flashinfer", spec)
    assert info["kv"] == "fp8_e4m3 (k_scale/v_scale per tensor)"


def test_flashinfer_declines_fp8_where_its_wrapper_takes_no_scales(flashinfer):
    backend = get_backend("flashinfer")
    assert "ragged-KV prefill wrapper takes no k_scale" in backend.supports(tiny_spec("append", kv_dtype="fp8_e4m3"))
    assert backend.supports(tiny_spec("decode", kv_dtype="fp8_e4m3", kv_scale="head")) == (
        "kv_scale head: FP8 scales tensor only"
    )
    assert backend.supports(tiny_spec("decode", kv_dtype="fp8_e4m3", fp8_attention=True)).startswith("fp8_attention:")
    assert "MLA wrapper takes no k_scale" in backend.supports(mla_decode(kv_dtype="fp8_e4m3", page_size=16))
    mixed = ExperimentSpec.from_mix("q20s30_3q1s17", 8, 2, 64, page_size=16, kv_dtype="fp8_e4m3")
    assert "BatchAttention" in get_backend("flashinfer[mixed=batch-attention]").supports(mixed)


@pytest.mark.parametrize("page", [None, 16, 64])
def test_flashinfer_mla_wrapper_runs_absorbed_decode(flashinfer, page):
    info = run_checked("flashinfer", mla_decode(heads=16, kv_len=100, page_size=page))  # the true 512 + 64
    assert flashinfer.calls == [("mla", 2)]
    assert info["path"].startswith("BatchMLAPagedAttentionWrapper")


def test_flashinfer_mla_wrapper_runs_a_ragged_speculative_step(flashinfer):
    spec = ExperimentSpec.from_mix("q3s20_q4s70_q2s9", 16, 1, 576, kv_lora_rank=512, rope_dim=64, v_head_dim=512,
                                   page_size=16)  # fmt: skip
    run_checked("flashinfer", spec)
    assert flashinfer.calls == [("mla", 3)]


@pytest.mark.parametrize("mix", [None, "q9_q30_q4"])
def test_flashinfer_runs_expanded_mla_prefill_with_head_dim_vo(flashinfer, mix):
    mla = dict(kv_lora_rank=512, rope_dim=64, v_head_dim=128)  # DeepSeek's expanded 192/128
    uniform = ExperimentSpec("prefill", 2, 24, 24, 4, 4, 192, **mla)
    spec = ExperimentSpec.from_mix(mix, 4, 4, 192, **mla) if mix else uniform
    run_checked("flashinfer", spec)
    assert flashinfer.calls[0][0] == "ragged-prefill"
    assert "dense K/V only" in get_backend("flashinfer").supports(dataclasses.replace(spec, page_size=16))


# ---- adapters: FA3's FP8 and qv= calls, FlashMLA's, through CPU stand-ins that compute the math ----------


class FakeFA3:
    """flash_attn_interface's three calls: checks the FP8 descales (fp32 [requests, KV heads]) and computes the
    attention of the dequantized inputs; qv= adds qv·v_cacheᵀ to q·k_cacheᵀ (FA3's absorbed MLA)."""

    def __init__(self):
        self.calls = []

    def _attend(self, q, k, v, causal, softmax_scale=None, qv=None, descales=None):
        if descales is not None:  # one request's row of each: [KV heads]; Q's applies to each head of a group
            dq, dk, dv = (d[0] for d in descales)
            dq = dq.repeat_interleave(q.shape[1] // k.shape[1])
            q, k, v = (t.float() * d[None, :, None] for t, d in zip((q, k, v), (dq, dk, dv)))
        scale = softmax_scale or (q.shape[-1] + (qv.shape[-1] if qv is not None else 0)) ** -0.5
        group = q.shape[1] // k.shape[1]
        kk, vv = (t.float().repeat_interleave(group, dim=1) for t in (k, v))
        scores = torch.einsum("qhd,khd->hqk", q.float(), kk)
        if qv is not None:
            scores = scores + torch.einsum("qhd,khd->hqk", qv.float(), vv)
        scores = scores * scale
        if causal:
            sq, sk = q.shape[0], k.shape[0]
            scores = scores.masked_fill(torch.arange(sk)[None, :] > torch.arange(sq)[:, None] + (sk - sq), -torch.inf)
        return torch.einsum("hqk,khd->qhd", scores.softmax(-1), vv).to(torch.bfloat16)

    def _descales(self, kw, b):
        names = ("q_descale", "k_descale", "v_descale")
        if not any(kw.get(n) is not None for n in names):
            return None
        for n in names:
            assert kw[n].dtype == torch.float32 and kw[n].dim() == 2, f"{n}: fp32 [requests, KV heads]"
        return [kw[n][b : b + 1].reshape(-1)[None] for n in names]

    def flash_attn_func(self, q, k, v, causal=False, softmax_scale=None, qv=None, **kw):
        self.calls.append(("func", _given(kw)))
        return torch.stack([self._attend(q[b], k[b], v[b], causal, softmax_scale, None, self._descales(kw, b))
                            for b in range(q.shape[0])])  # fmt: skip

    def flash_attn_varlen_func(self, q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, causal=False,
                               softmax_scale=None, **kw):  # fmt: skip
        self.calls.append(("varlen", _given(kw)))
        cq, ck = cu_seqlens_q.tolist(), cu_seqlens_k.tolist()
        parts = []
        for b in range(len(cq) - 1):
            rows, keys = slice(cq[b], cq[b + 1]), slice(ck[b], ck[b + 1])
            parts.append(self._attend(q[rows], k[keys], v[keys], causal, softmax_scale, None, self._descales(kw, b)))
        return torch.cat(parts)

    def flash_attn_with_kvcache(self, q, k_cache, v_cache, qv=None, cache_seqlens=None, page_table=None,
                                cu_seqlens_q=None, softmax_scale=None, causal=False, **kw):  # fmt: skip
        self.calls.append(
            ("kvcache", ["qv"] * (qv is not None) + ["page_table"] * (page_table is not None) + _given(kw))
        )
        assert cache_seqlens.dtype == torch.int32
        outs = []
        for b, n in enumerate(cache_seqlens.tolist()):
            if page_table is None:
                k, v = k_cache[b, :n], v_cache[b, :n]
            else:
                pages = page_table[b].long()
                k, v = k_cache[pages].flatten(0, 1)[:n], v_cache[pages].flatten(0, 1)[:n]
            if cu_seqlens_q is None:
                rows, qv_rows = q[b], None if qv is None else qv[b]
            else:
                a, e = cu_seqlens_q[b].item(), cu_seqlens_q[b + 1].item()
                rows, qv_rows = q[a:e], None if qv is None else qv[a:e]
            outs.append(self._attend(rows, k, v, causal, softmax_scale, qv_rows, self._descales(kw, b)))
        return torch.cat(outs) if cu_seqlens_q is not None else torch.stack(outs)


def _given(kw) -> list[str]:
    return [n for n in ("q_descale", "k_descale", "v_descale") if kw.get(n) is not None]


@pytest.fixture
def fa3(monkeypatch):
    import sys

    fake = FakeFA3()
    monkeypatch.setitem(sys.modules, "flash_attn_interface", fake)
    return fake


@pytest.mark.parametrize(
    "spec",
    [
        tiny_spec("append", kv_dtype="fp8_e4m3", fp8_attention=True),
        tiny_spec("decode", kv_dtype="fp8_e4m3", fp8_attention=True, kv_scale="head", page_size=16),
        ExperimentSpec.from_mix("q9_q30_q4", 8, 2, 64, kv_dtype="fp8_e4m3", fp8_attention=True),
    ],
    ids=["append", "paged-decode-per-head", "ragged"],
)
def test_fa3_fp8_passes_q_k_v_in_e4m3_with_descales(fa3, spec):
    run_checked("flash-attn3", spec)
    assert fa3.calls and all(args[-3:] == ["q_descale", "k_descale", "v_descale"] for _, args in fa3.calls)
    assert "fp8_attention" in get_backend("flash-attn3").supports(tiny_spec("decode", kv_dtype="fp8_e4m3"))


@pytest.mark.parametrize("page", [None, 16])
def test_fa3_runs_absorbed_mla_through_qv(fa3, page):
    info = run_checked("flash-attn3", mla_decode(heads=16, kv_len=50, page_size=page))
    assert fa3.calls[-1] == ("kvcache", ["qv"] + ["page_table"] * (page is not None))
    assert info["path"].startswith("flash_attn_with_kvcache(qv=")


def test_fa3_without_fp8_or_mla_in_its_build_is_unsupported_with_its_message(fa3, monkeypatch):
    from frameworks import Unsupported
    from harness.inputs import make_inputs

    def refuse(*args, **kw):
        raise RuntimeError("This flash attention build does not support FP8.")

    monkeypatch.setattr(fa3, "flash_attn_func", refuse)
    monkeypatch.setattr(fa3, "flash_attn_with_kvcache", refuse)
    for spec in (tiny_spec("append", kv_dtype="fp8_e4m3", fp8_attention=True), mla_decode(page_size=64)):
        with pytest.raises(Unsupported, match="this build: This flash attention build does not support FP8"):
            get_backend("flash-attn3").prepare(spec, make_inputs(spec, CPU))


def test_fa3_whose_absorbed_mla_probe_returns_a_wrong_value_is_unsupported(fa3, monkeypatch):
    """A wheel without the hdim 64 × value dim 512 kernel ran another one and returned garbage on an H100; the
    one-key probe (whose output must be that key's value) turns that into unsupported, before any timing."""
    from frameworks import Unsupported
    from harness.inputs import make_inputs

    real = fa3.flash_attn_with_kvcache
    monkeypatch.setattr(fa3, "flash_attn_with_kvcache", lambda *a, **kw: first(real(*a, **kw)) + 1.0)
    spec = mla_decode(heads=16, kv_len=50, page_size=64)
    with pytest.raises(Unsupported, match="this build: absorbed MLA .* did not return the key's value"):
        get_backend("flash-attn3").prepare(spec, make_inputs(spec, CPU))


def first(result):
    return result[0] if isinstance(result, (tuple, list)) else result


class FakeFlashMLA:
    def __init__(self):
        self.metadata_args = None

    def get_mla_metadata(self, cache_seqlens, num_q_tokens_per_head_k, num_heads_k):
        self.metadata_args = (cache_seqlens.tolist(), num_q_tokens_per_head_k, num_heads_k)
        return torch.zeros(4, 8, dtype=torch.int32), torch.zeros(len(cache_seqlens) + 1, dtype=torch.int32)

    def flash_mla_with_kvcache(self, q, k_cache, block_table, cache_seqlens, head_dim_v, tile_scheduler_metadata,
                               num_splits, softmax_scale=None, causal=False):  # fmt: skip
        assert q.dim() == 4 and k_cache.shape[1:] == (64, 1, 576) and block_table.dtype == torch.int32
        outs = []
        for b, n in enumerate(cache_seqlens.tolist()):
            latent = k_cache[block_table[b].long()].flatten(0, 1)[:n, 0].float()
            scores = torch.einsum("qhd,kd->hqk", q[b].float(), latent) * softmax_scale
            if causal:
                sq = q.shape[1]
                scores = scores.masked_fill(torch.arange(n)[None, :] > torch.arange(sq)[:, None] + (n - sq), -torch.inf)
            outs.append(torch.einsum("hqk,kd->qhd", scores.softmax(-1), latent[:, :head_dim_v]))
        return torch.stack(outs).to(q.dtype), None


class FakeFlashMLASchedMeta(FakeFlashMLA):
    """FlashMLA's interface since 2026 (9241ae3): get_mla_metadata returns an empty FlashMLASchedMeta and None,
    and the first flash_mla_with_kvcache call fills its schedule (an object without .shape: the H100's
    `AttributeError: 'FlashMLASchedMeta' object has no attribute 'shape'` of 2026-12-06)."""

    class FlashMLASchedMeta:
        tile_scheduler_metadata = None

    def get_mla_metadata(self, *args, **kwargs):
        self.metadata_args = args
        return self.FlashMLASchedMeta(), None

    def flash_mla_with_kvcache(self, q, k_cache, block_table, cache_seqlens, head_dim_v, tile_scheduler_metadata,
                               num_splits, softmax_scale=None, causal=False):  # fmt: skip
        assert isinstance(tile_scheduler_metadata, self.FlashMLASchedMeta) and num_splits is None
        if tile_scheduler_metadata.tile_scheduler_metadata is None:
            tile_scheduler_metadata.tile_scheduler_metadata = torch.zeros(6, 8, dtype=torch.int32)
        return super().flash_mla_with_kvcache(q, k_cache, block_table, cache_seqlens, head_dim_v, None, None,
                                              softmax_scale, causal)  # fmt: skip


@pytest.mark.parametrize("fake", [FakeFlashMLA, FakeFlashMLASchedMeta], ids=["tensors", "sched-meta"])
def test_flashmla_is_called_as_vllm_calls_it(monkeypatch, fake):
    import sys

    fake = fake()
    monkeypatch.setitem(sys.modules, "flash_mla", fake)
    spec = ExperimentSpec.from_mix("2q3s70_2q3s130", 16, 1, 576, kv_lora_rank=512, rope_dim=64, v_head_dim=512,
                                   page_size=64)  # fmt: skip
    info = run_checked("flashmla", spec)
    seqlens, per_head, kv_heads = fake.metadata_args
    assert list(map(int, seqlens)) == [70, 70, 130, 130] and (per_head, kv_heads) == (3 * 16, 1)
    # the schedule's parts: the tensor's rows, or those the first call put in the FlashMLASchedMeta
    assert info["page_size"] == 64 and info["sm_parts"] == (6 if isinstance(fake, FakeFlashMLASchedMeta) else 4)
    backend = get_backend("flashmla")
    assert backend.supports(mla_decode(page_size=128)) == "page_size 128: FlashMLA takes pages of 64 tokens only"
    assert "absorbed form only" in backend.supports(tiny_spec("decode", page_size=64))
    ragged = ExperimentSpec.from_mix("q2s70_q3s9", 16, 1, 576, kv_lora_rank=512, rope_dim=64, v_head_dim=512,
                                     page_size=64)  # fmt: skip
    assert "one query length for every request" in backend.supports(ragged)


def test_flashmla_without_its_wheel_is_unavailable_with_the_import_error():
    reason = get_backend("flashmla").availability(torch.device("cuda"))  # the import is tried before any GPU query
    assert reason.startswith("cannot import flash_mla: ModuleNotFoundError")


def test_backends_without_a_form_decline_it_in_one_line():
    from frameworks import BACKENDS, load_all

    load_all()
    absorbed, fp8 = mla_decode(page_size=64), tiny_spec("decode", kv_dtype="fp8_e4m3")
    for name in ("sdpa-math", "flex", "flash-attn2", "sdpa", "torch-compile"):
        backend = BACKENDS[name]()
        # SDPA takes the expanded form (a narrower V), not the absorbed one
        form = "takes expanded only" if name.startswith("sdpa") else "this backend has no latent attention"
        assert backend.supports(absorbed) == f"MLA absorbed form: {form}"
        reason = backend.supports(fp8)
        assert reason is not None and "\n" not in reason
    assert (
        BACKENDS["sdpa-math"]().supports(fp8)
        == "kv_dtype fp8_e4m3: this backend takes a KV cache in the spec's dtype only"
    )
    assert BACKENDS["triton"]().supports(absorbed) == "MLA absorbed form: this backend has no latent attention"
    assert BACKENDS["triton"]().supports(fp8) is None  # an FP8 cache in its kernels (tests/test_triton_forms.py)
    assert "FA4 has no FP8 attention on sm90" in BACKENDS["flash-attn4"]().supports(fp8)
    assert "fp8_dpa" in BACKENDS["transformer-engine"]().supports(fp8)
    assert BACKENDS["transformer-engine"]().supports(absorbed) == "MLA absorbed form: takes expanded only"


# ---- the Triton MLA decode kernel, under the interpreter --------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        mla_decode(heads=16, latent=64, rope=16, kv_len=70, page_size=16),
        mla_decode(heads=20, latent=64, rope=16, kv_len=45),  # a head block half full; dense: pages of one token
        ExperimentSpec.from_mix(
            "q3s40_q2s75_q4s9", 16, 1, 80, kv_lora_rank=64, rope_dim=16, v_head_dim=64, page_size=16
        ),  # speculative steps of three lengths  # fmt: skip
        ExperimentSpec.from_mix("q1s100_q1s5", 16, 1, 80, kv_lora_rank=64, rope_dim=16, v_head_dim=64),  # empty splits
        mla_decode(heads=16, batch=1, kv_len=40, page_size=64),  # the true 512 + 64 dims, one small case
    ],
    ids=["paged", "dense-20-heads", "ragged-spec", "ragged-empty-splits", "true-dims"],
)
def test_triton_mla_kernel_matches_the_reference(spec):
    backend = get_backend("triton-mla")
    if backend.availability(CPU):
        pytest.skip(backend.availability(CPU))
    info = run_checked("triton-mla", spec)
    assert info["splits"] >= 1 and info["block_h"] == 16
    if spec.mix == "q1s100_q1s5":
        assert info["splits"] == 4  # the 5-key request's last three splits hold nothing


def test_triton_mla_splits_fill_the_gpu_in_whole_tiles():
    from frameworks.triton_mla import BLOCK_N, split_plan

    assert split_plan(tokens=1, heads=128, longest=65536, multiprocessors=132) == (33, 63 * BLOCK_N)
    splits, split_len = split_plan(tokens=128, heads=128, longest=4096, multiprocessors=132)
    assert splits == 1 and split_len >= 4096  # 1024 programs without a split already fill it
    assert split_plan(tokens=2, heads=16, longest=10, multiprocessors=4) == (1, BLOCK_N)
    assert "absorbed form only" in get_backend("triton-mla").supports(tiny_spec("decode"))
    assert "power of two" in get_backend("triton-mla").supports(mla_decode(latent=48))


# ---- a CPU sweep through the CLI --------------------------------------------------------------------


def test_cli_sweep_of_mla_and_fp8_decodes_on_the_cpu_backends(tmp_path):
    from typer.testing import CliRunner

    import run
    from harness.store import Status, load_rows

    out = tmp_path / "fp8-mla.csv"
    args = ["sweep", "-m", "DeepSeek-V2-Lite,Llama-3.1-8B", "-w", "decode", "--batch", "2", "--seq", "40",
            "--kv-dtype", "default,fp8_e4m3", "-b", "torch-naive,sdpa-math,flex,triton-mla", "--iterations", "2",
            "--device", "cpu", "-o", str(out), "--no-plots"]  # fmt: skip
    result = CliRunner().invoke(run.app, args)
    assert result.exit_code == 0, result.output
    rows = {(r.model, r.kv_dtype, r.backend): r for r in load_rows(out)}
    assert len(rows) == 16
    for model in ("DeepSeek-V2-Lite", "Llama-3.1-8B"):
        for kv in ("", "fp8_e4m3"):
            naive = rows[(model, kv, "torch-naive")]
            assert naive.status is Status.OK, naive.reason
            assert (naive.rel_err_vs_unquantized is not None) == bool(kv)
    lite = rows[("DeepSeek-V2-Lite", "", "torch-naive")]
    assert (lite.num_kv_heads, lite.head_dim, lite.kv_lora_rank, lite.v_head_dim) == (1, 576, 512, 512)
    assert rows[("DeepSeek-V2-Lite", "", "triton-mla")].status is Status.OK
    assert rows[("DeepSeek-V2-Lite", "", "sdpa-math")].reason == "MLA absorbed form: takes expanded only"
    assert rows[("Llama-3.1-8B", "fp8_e4m3", "flex")].reason.startswith("kv_dtype fp8_e4m3: this backend takes")
    assert rows[("Llama-3.1-8B", "", "triton-mla")].status is Status.UNSUPPORTED
    assert "kv_dtype" in result.output or "fp8_e4m3" in result.output  # the table tells the two caches apart


@pytest.mark.parametrize(
    "args, message",
    [
        (["--kv-dtype", "fp4"], "--kv-dtype: 'fp4' is not valid; expected default (the input dtype) or fp8_e4m3"),
        (["--kv-scale", "head"], "--kv-scale: applies to an FP8 cache; add --kv-dtype fp8_e4m3"),
        (["--fp8-attention"], "--fp8-attention: applies to an FP8 cache; add --kv-dtype fp8_e4m3"),
        (["--kv-dtype", "fp8_e4m3", "--kv-scale", "row"], "--kv-scale: 'row' is not valid; expected tensor or head"),
    ],
)
def test_cli_bad_form_options_are_one_line(args, message, tmp_path):
    from typer.testing import CliRunner

    import run

    result = CliRunner().invoke(run.app, ["sweep", "-b", "torch-naive", "-o", str(tmp_path / "r.csv"), *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


# ---- on the GPU host (skipped on a CPU): every backend on each new form is ok, unsupported or unavailable ----

GPU_FORMS = {
    "fp8-decode-paged": lambda: ExperimentSpec("decode", 4, 1, 1000, 32, 8, 128, page_size=16, kv_dtype="fp8_e4m3"),
    "fp8-append-paged": lambda: ExperimentSpec("append", 2, 128, 1000, 32, 8, 128, page_size=16, kv_dtype="fp8_e4m3"),
    "fp8-attention": lambda: ExperimentSpec(
        "append", 2, 128, 1000, 32, 8, 128, kv_dtype="fp8_e4m3", fp8_attention=True
    ),  # fmt: skip
    "mla-decode-page64": lambda: mla_decode(heads=128, batch=4, kv_len=1000, page_size=64),
    "mla-decode-page16": lambda: mla_decode(heads=16, batch=4, kv_len=1000, page_size=16),
    "mla-spec-page64": lambda: ExperimentSpec(
        "spec-decode", 4, 4, 1000, 64, 1, 576, kv_lora_rank=512, rope_dim=64, v_head_dim=512, page_size=64
    ),  # fmt: skip
    "mla-prefill-expanded": lambda: ExperimentSpec(
        "prefill", 2, 512, 512, 16, 16, 192, kv_lora_rank=512, rope_dim=64, v_head_dim=128
    ),  # fmt: skip
}


@pytest.mark.gpu
@pytest.mark.parametrize("form", list(GPU_FORMS))
@pytest.mark.parametrize(
    "name", ["flashinfer", "flash-attn3", "flash-attn4", "flashmla", "transformer-engine", "triton-mla", "torch-naive"]
)
def test_gpu_backends_run_or_decline_each_form(name, form):
    from harness.store import Status

    from .helpers import measurer_on

    measurer = measurer_on("cuda", iterations=3, warmup=1)
    row = measurer.measure(GPU_FORMS[form](), get_backend(name))
    assert row.status in (Status.OK, Status.UNSUPPORTED, Status.UNAVAILABLE), (row.status, row.reason)
    if row.status is Status.OK and row.kv_dtype:
        assert row.rel_err_vs_unquantized is not None


# ---- the row: old files load, FP8 rows carry the second check ---------------------------------------

FP8_MLA_COLUMNS = ("kv_dtype", "fp8_attention", "kv_scale", "kv_lora_rank", "rope_dim", "v_head_dim",
                   "rel_err_vs_unquantized")  # fmt: skip


def test_files_from_before_the_fp8_and_mla_columns_load_and_keep_their_task_keys(tmp_path):
    import csv

    from harness.store import COLUMNS, _csv_line, append_rows, load_rows, read_frame

    from .test_store import ok_row

    old_rows = [ok_row(), ok_row(tiny_spec("append", page_size=16))]
    older = [c for c in COLUMNS if c not in FP8_MLA_COLUMNS]
    keep = [COLUMNS.index(c) for c in older]
    path = tmp_path / "old.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(older)
        for row in old_rows:
            writer.writerow([next(csv.reader([_csv_line(row)]))[i] for i in keep])
    loaded = load_rows(path)
    assert loaded == old_rows and [r.task_key for r in loaded] == [r.task_key for r in old_rows]
    frame = read_frame(path)
    assert frame["kv_dtype"].eq("").all() and not frame["fp8_attention"].any() and frame["kv_lora_rank"].isna().all()
    fp8 = ok_row(tiny_spec("decode", kv_dtype="fp8_e4m3"))
    append_rows(path, [dataclasses.replace(fp8, rel_err_vs_unquantized=0.03)])
    assert path.read_text().splitlines()[0] == ",".join(COLUMNS)
    assert [r.rel_err_vs_unquantized for r in load_rows(path)] == [None, None, 0.03]
    assert load_rows(path)[-1].spec == tiny_spec("decode", kv_dtype="fp8_e4m3")


def test_plots_keep_the_bf16_and_the_fp8_cache_on_separate_curves(tmp_path):
    from harness.report.plots import plot, with_form

    from .test_store import ok_row

    rows = [ok_row(tiny_spec("decode", kv_len=n, **kw)) for n in (64, 128) for kw in ({}, {"kv_dtype": "fp8_e4m3"})]
    assert [with_form(r).backend for r in rows[:2]] == ["torch-naive", "torch-naive (fp8 KV)"]
    qkv = ok_row(tiny_spec("decode", kv_dtype="fp8_e4m3", fp8_attention=True, kv_scale="head"))
    assert with_form(qkv).backend == "torch-naive (fp8 QKV, per head)"
    assert len(plot(rows, tmp_path)) == 1


# ---- with the attention forms (#31): a model's step, windowed FP8 specs, seeds -----------------------------


def test_model_step_keeps_the_bf16_and_the_fp8_cache_apart_and_sums_mla_layers():
    """gpt-oss-20b's two layer kinds, each with a bf16 and an FP8 cache: two steps, never one kind's bf16 row
    beside the other's FP8 one; DeepSeek-V2-Lite's 27 latent layers."""
    from harness.report.model_step import model_steps
    from specs import specs_for

    from .test_store import ok_row

    def spec(model, layer, **kw):
        return specs_for(model, layer, workload="decode", batch_size=1, q_len=1, kv_len=4096, **kw)

    rows = [
        ok_row(spec("gpt-oss-20b", "full"), p50_ms=0.5),
        ok_row(spec("gpt-oss-20b", "window"), p50_ms=0.02),
        ok_row(spec("gpt-oss-20b", "full", kv_dtype="fp8_e4m3"), p50_ms=0.3),
        ok_row(spec("gpt-oss-20b", "window", kv_dtype="fp8_e4m3"), p50_ms=0.01),
        ok_row(spec("DeepSeek-V2-Lite", "full"), p50_ms=0.2),
    ]
    steps = model_steps(rows).set_index(["model", "backend"])
    assert steps.loc[("gpt-oss-20b", "torch-naive"), "step_ms"] == pytest.approx(12 * 0.5 + 12 * 0.02)
    assert steps.loc[("gpt-oss-20b", "torch-naive (fp8 KV)"), "step_ms"] == pytest.approx(12 * 0.3 + 12 * 0.01)
    assert steps.loc[("DeepSeek-V2-Lite", "torch-naive"), "step_ms"] == pytest.approx(27 * 0.2)
    assert spec("DeepSeek-V2-Lite", "full").form == "mla-absorbed"  # the model's decode runs absorbed


def test_a_windowed_fp8_mla_spec_counts_the_band_at_one_byte_and_the_value_width():
    full = ExperimentSpec("decode", 2, 1, 1000, 16, 1, 576, kv_lora_rank=512, rope_dim=64, v_head_dim=512,
                          kv_dtype="fp8_e4m3")  # fmt: skip
    windowed = dataclasses.replace(full, window=127)
    assert windowed.visible_pairs == 2 * 128  # a windowed decode sees window + 1 keys
    assert windowed.flops == 2 * (576 + 512) * 16 * 2 * 128
    q, o = 2 * 16 * 576 * 2, 2 * 16 * 512 * 2  # Q in bf16, O in bf16 of the value width
    assert windowed.ideal_bytes == q + o + 2 * 128 * 576 * 1 + 4  # the latent once, one byte, one fp32 scale
    assert full.ideal_bytes == q + o + 2 * 1000 * 576 * 1 + 4


def test_the_seed_ignores_the_form_fields_and_counts_fp8_and_mla_fields():
    """One rule for both sides' later fields: a field added after mix counts only where it is not its default;
    the form fields (window, sinks, softcap, tp) never count (they leave Q, K and V alone)."""
    from harness.inputs import spec_seed

    base = tiny_spec("decode")
    assert spec_seed(dataclasses.replace(base, window=8, sinks=True, softcap=30.0, tp=2)) == spec_seed(base)
    fp8 = dataclasses.replace(base, kv_dtype="fp8_e4m3")
    assert spec_seed(fp8) != spec_seed(base)
    assert spec_seed(dataclasses.replace(fp8, window=8)) == spec_seed(fp8)
