"""Issue #32 on the CPU: FP8 caches (e4m3 with per-tensor or per-head scales) and FP8 attention, latent
attention (MLA) in its absorbed and expanded forms: the spec fields and their one-line errors, FLOPs and
bytes, the quantize/dequantize round trip, the references, the adapters' plumbing and declines, the
Triton MLA decode kernel under the interpreter, and a CPU sweep through the CLI."""

import pytest

from specs import MODELS, PRESETS, ExperimentSpec, SpecError


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
