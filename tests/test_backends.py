"""Conformance: every registered backend that can run here agrees with the fp32 reference."""

import os
import re
from dataclasses import replace

import pytest
import torch

from frameworks import (
    BACKENDS,
    Caps,
    KVLayout,
    VariantError,
    get_backend,
    info_dict,
    label,
    load_all,
    parse_backend_arg,
)
from harness.inputs import make_inputs
from harness.options import split_items, split_list
from harness.reference import check_indices, check_output, reference_attention
from harness.store import Status
from specs import DType, Workload

from .helpers import cpu_measurer, tiny_spec

load_all()
PROJECT_BACKENDS = sorted(name for name, cls in BACKENDS.items() if cls.__module__.startswith("frameworks."))
CPU = torch.device("cpu")


def test_the_pytorch_backends_are_registered():
    expected = {
        "torch-naive",
        "torch-compile",
        "flex",
        "sdpa",
        "sdpa-flash",
        "sdpa-efficient",
        "sdpa-cudnn",
        "sdpa-math",
    }
    assert expected <= set(PROJECT_BACKENDS)


@pytest.mark.parametrize("name", PROJECT_BACKENDS)
def test_unavailable_backends_say_why(name):
    backend = get_backend(name)
    reason = backend.availability(CPU)
    if "cpu" in backend.caps.devices and backend.library == "torch":
        assert reason is None
    elif "cpu" not in backend.caps.devices:
        assert reason == "needs a cuda device, this run is on cpu"
    else:  # a library backend that runs on the CPU: available, or says why not
        assert reason is None or backend.library in reason or "TRITON_INTERPRET" in reason


LONG_KV = 320  # spans several KV blocks of every kernel here (32 to 128 keys a block): splits and chunks run


def specs_from_caps(caps: Caps) -> list:
    """Tiny specs a backend declares it runs: each workload at KV 48 in its first dtype, and in EVERY dtype
    it declares an append (decode where it has no append) at KV 320, which spans several KV blocks, so that a
    kernel's split or chunking of the KV length runs and a backend that claims fp32 but computes in bf16
    fails fp32's tolerance; GQA group 4 (1 without GQA), dense or paged (a page size it takes). The same set
    again in each latent-attention form it declares (`MLA_SHAPES`), so a backend of MLA only runs somewhere."""
    head_dim = 64 if caps.head_dims is None or 64 in caps.head_dims else min(caps.head_dims)
    group = 4 if caps.gqa else 1
    page = None if KVLayout.DENSE in caps.layouts else max(16, caps.page_size_multiple)
    workloads = [w for w in ("prefill", "append", "decode", "spec-decode") if Workload(w) in caps.workloads]
    dtypes = sorted(caps.dtypes, key=str)
    shaped = [lambda s: s] + [lambda s, form=form: replace(s, **MLA_SHAPES[form]) for form in sorted(caps.mla)]
    out = []
    for shape in shaped:
        for w in workloads:
            kw = {"chunk": 4} if w == "spec-decode" else {}
            out.append(shape(tiny_spec(w, group=group, head_dim=head_dim, dtype=dtypes[0], page_size=page, **kw)))
        long = next((w for w in ("append", "decode", "spec-decode", "prefill") if w in workloads), None)
        for dtype in dtypes if long else ():
            kw = {"chunk": 4} if long == "spec-decode" else {}
            spec = tiny_spec(long, group=group, head_dim=head_dim, dtype=dtype, page_size=page, kv_len=LONG_KV, **kw)
            out.append(shape(spec))
    return out


# DeepSeek's MLA scaled down (a 64-wide latent and 16 rope columns; expanded q/k of 48, values of 32)
MLA_SHAPES = {
    "mla-absorbed": dict(num_q_heads=16, num_kv_heads=1, head_dim=80, kv_lora_rank=64, rope_dim=16, v_head_dim=64),
    "mla-expanded": dict(num_q_heads=4, num_kv_heads=4, head_dim=48, kv_lora_rank=64, rope_dim=16, v_head_dim=32),
}


def test_conformance_specs_cover_every_declared_dtype_and_a_long_kv():
    specs = specs_from_caps(Caps(dtypes={DType.BF16, DType.FP32}, devices={"cpu"}))
    assert {s.dtype for s in specs} == {DType.BF16, DType.FP32}
    assert max(s.kv_len for s in specs) >= 300


def test_a_backend_that_claims_fp32_but_computes_in_bf16_fails_its_conformance_specs():
    from frameworks import Backend

    class Bf16Inside(Backend):
        name = "test-bf16-inside"
        caps = Caps(dtypes={DType.BF16, DType.FP32}, devices={"cpu"})

        def prepare(self, spec, inputs):
            # bf16's precision: inputs and output rounded to bf16 (the products summed in fp32, as kernels do)
            q, k, v = (t.transpose(1, 2).to(torch.bfloat16).float() for t in (inputs.q, inputs.k, inputs.v))
            row, col = torch.arange(spec.q_len)[:, None], torch.arange(spec.kv_len)[None, :]
            visible = col <= row + spec.causal_offset if spec.is_masked else torch.ones_like(col > row)
            sdpa = torch.nn.functional.scaled_dot_product_attention
            out = lambda: sdpa(q, k, v, attn_mask=visible, scale=inputs.scale, enable_gqa=True)
            return lambda: out().transpose(1, 2).to(torch.bfloat16).to(inputs.q.dtype)

    measurer = cpu_measurer()
    specs = [s for s in specs_from_caps(Bf16Inside.caps) if s.dtype is DType.FP32]
    rows = [measurer.measure(spec, Bf16Inside()) for spec in specs]
    bf16 = [
        measurer.measure(spec, Bf16Inside()) for spec in specs_from_caps(Bf16Inside.caps) if spec.dtype is DType.BF16
    ]
    assert all(r.status is Status.OK for r in bf16), [r.reason for r in bf16]  # right in what it computes in
    assert any(r.status is Status.INCORRECT and "fp32" in r.reason for r in rows), [(r.status, r.reason) for r in rows]


@pytest.mark.parametrize("name", PROJECT_BACKENDS)
def test_each_available_backend_runs_what_it_declares(name):
    """Specs built from the declaration: every one runs ok or is declined by the library at run time,
    and at least one runs ok (an adapter that declines everything fails)."""
    backend = get_backend(name)
    if backend.availability(CPU):
        pytest.skip(backend.availability(CPU))
    measurer = cpu_measurer()
    rows = [measurer.measure(spec, backend) for spec in specs_from_caps(backend.caps)]
    assert all(r.status in (Status.OK, Status.UNSUPPORTED) for r in rows), [
        (r.status, r.dtype, r.kv_len, r.reason) for r in rows
    ]
    assert any(r.status is Status.OK for r in rows), [r.reason for r in rows]
    for dtype in backend.caps.dtypes:  # each declared dtype runs somewhere, not only declines
        assert any(r.status is Status.OK for r in rows if r.dtype == str(dtype)), (dtype, [r.reason for r in rows])


@pytest.mark.parametrize("group", [1, 4])
@pytest.mark.parametrize("workload", ["prefill", "append", "decode"])
@pytest.mark.parametrize("name", PROJECT_BACKENDS)
def test_backend_agrees_with_reference(name, workload, group):
    backend = get_backend(name)
    if backend.availability(CPU):
        pytest.skip(backend.availability(CPU))
    spec = tiny_spec(workload, group=group)
    if backend.supports(spec):
        pytest.skip(backend.supports(spec))
    row = cpu_measurer().measure(spec, backend)
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
    # which kernel ran, in PyTorch's words (a compact JSON object); the test reads only that it is the math one
    assert row.backend_info.startswith('{"kernel":') and "math" in info_dict(row.backend_info)["kernel"]


DENSE_ONLY = [n for n in PROJECT_BACKENDS if KVLayout.PAGED not in BACKENDS[n].caps.layouts]


@pytest.mark.parametrize("name", DENSE_ONLY)
def test_a_paged_spec_on_a_dense_only_backend_is_unsupported_never_a_dense_ok(name):
    backend = get_backend(name)
    row = cpu_measurer().measure(tiny_spec("decode", page_size=16), backend)
    assert row.status in (Status.UNSUPPORTED, Status.UNAVAILABLE)
    if row.status is Status.UNSUPPORTED:
        assert row.reason == "paged KV (page_size 16): this backend reads dense K/V only"


def test_caps_refuse_with_the_field_and_what_is_allowed():
    caps = Caps(dtypes={DType.BF16}, head_dims={64, 128}, workloads={Workload.DECODE},
                layouts={KVLayout.PAGED}, page_size_multiple=256, gqa=False)  # fmt: skip
    assert caps.reason(tiny_spec("decode", dtype="fp16")) == "dtype fp16: takes bf16"
    assert caps.reason(tiny_spec("decode", dtype="bf16", head_dim=96)) == "head_dim 96: takes 64, 128"
    assert caps.reason(tiny_spec("prefill", dtype="bf16")) == "workload prefill: takes decode"
    assert "paged KV cache only" in caps.reason(tiny_spec("decode", dtype="bf16"))
    assert (
        caps.reason(tiny_spec("decode", dtype="bf16", page_size=16)) == "page_size 16: needs a multiple of 256 tokens"
    )
    assert "GQA group 4" in caps.reason(tiny_spec("decode", dtype="bf16", page_size=256))
    assert caps.reason(tiny_spec("decode", group=1, dtype="bf16", page_size=512)) is None


def test_an_adapter_that_declines_inside_prepare_is_unsupported_with_its_words():
    from frameworks import Backend, Unsupported

    class DeclinesLate(Backend):
        name = "declines-late"
        caps = Caps(devices={"cpu"})

        def prepare(self, spec, inputs):
            raise Unsupported("the library has no kernel for this")

    row = cpu_measurer().measure(tiny_spec("decode"), DeclinesLate())
    assert row.status is Status.UNSUPPORTED and row.reason == "the library has no kernel for this"
    assert row.p50_ms is None and row.rel_err is None


def test_an_adapter_module_that_fails_to_import_becomes_an_unavailable_backend(tmp_path, monkeypatch):
    import frameworks

    (tmp_path / "my_broken_adapter.py").write_text("import attnbench_module_that_does_not_exist\n")
    monkeypatch.setattr(frameworks, "__path__", [*frameworks.__path__, str(tmp_path)])
    monkeypatch.setattr(frameworks, "_FAILED", {})
    registry = dict(BACKENDS)
    try:
        load_all()
        backend = get_backend("my-broken-adapter")
        reason = backend.availability(CPU)
        assert (
            "frameworks.my_broken_adapter failed to import" in reason
            and "attnbench_module_that_does_not_exist" in reason
        )
        assert {"torch-naive", "sdpa-math"} <= set(BACKENDS)  # the others still load
    finally:
        BACKENDS.clear()
        BACKENDS.update(registry)


def test_flashattention4_decode_never_asks_for_a_split_on_sm90():
    from frameworks.flash_attn4 import fa4_splits

    assert fa4_splits(Workload.DECODE, (9, 0)) == 1
    assert fa4_splits(Workload.DECODE, (10, 0)) == 0
    assert fa4_splits(Workload.PREFILL, (10, 0)) == 1


def test_flex_gets_blocks_that_compile_for_chunks_off_its_block():
    from frameworks.torch_flex import flex_kernel_options

    assert flex_kernel_options(127) == {"BLOCK_M": 64, "BLOCK_N": 64}
    assert flex_kernel_options(128) is None and flex_kernel_options(1) is None
    # short queries: the decode kernel packs q_len × group rows; past one 128-row mask block it needs 64 × 64
    assert flex_kernel_options(9, 16) == {"BLOCK_M": 64, "BLOCK_N": 64}
    assert flex_kernel_options(8, 16) is None and flex_kernel_options(1, 16) is None
    assert flex_kernel_options(4, 16) is None and flex_kernel_options(16, 8) is None


def test_a_backend_argument_names_a_variant_and_odd_shapes_are_refused():
    """'NAME' or 'NAME[key=value,...]' (spaces allowed around the parts); a list of them splits at the commas
    outside brackets; a label is the name with its canonical variant in brackets (none for the defaults)."""
    assert parse_backend_arg("sdpa") == ("sdpa", {})
    assert parse_backend_arg(" triton[splits=fill, gluon=off] ") == ("triton", {"splits": "fill", "gluon": "off"})
    assert parse_backend_arg("triton[]") == ("triton", {})
    for text, words in [("triton[splits]", "'splits' is not key=value"), ("triton[splits=]", "is not key=value"),
                        ("triton[gluon=on,gluon=off]", "'gluon' given twice"), ("triton[gluon=on", "expected NAME or"),
                        ("triton[a=1][b=2]", "expected NAME or")]:  # fmt: skip
        with pytest.raises(VariantError, match=re.escape(words)):
            parse_backend_arg(text)
    assert issubclass(VariantError, ValueError)
    assert split_list(["sdpa, triton[splits=fill,gluon=off]", "flashinfer[mixed=one-call] "], "--backend") == [
        "sdpa", "triton[splits=fill,gluon=off]", "flashinfer[mixed=one-call]"
    ]  # fmt: skip
    assert split_items("") == [""] and split_items("triton") == ["triton"] and split_items("a,,b[c,d]") == [
        "a", "", "b[c,d]"
    ]  # fmt: skip
    assert label("triton", "splits=fill") == "triton[splits=fill]" and label("sdpa", "") == "sdpa"


def test_a_key_without_its_value_names_what_the_key_takes():
    """'triton[paged_prompt]' is one line that says what paged_prompt takes; an unknown bare key, the backend's
    keys; a backend without variants, that it has none."""
    load_all()
    for text, said in [
        ("triton[paged_prompt]", "variant 'paged_prompt' is not key=value; paged_prompt takes long, triton, gluon"),
        ("triton[splits=]", "splits takes waves, fill, work, work-fused"),
        ("triton[nokey]", "; its keys: gluon, gluon_grid, splits"),
        ("sdpa[x]", "; sdpa has no variant keys"),
    ]:
        with pytest.raises(VariantError, match=re.escape(said)):
            get_backend(text)


def test_a_variant_is_canonical_and_bad_keys_or_values_name_what_is_allowed():
    """The real adapters' declared keys: the canonical string keeps the non-default keys in declaration order,
    the instance's choice holds every key; a key or value not declared is a VariantError naming the allowed."""
    triton, naive = BACKENDS["triton"], BACKENDS["torch-naive"]
    assert triton.variant_string({"splits": "fill", "gluon": "off"}) == "gluon=off,splits=fill"
    assert triton.variant_string({"splits": "waves", "mixed_streams": "1"}) == "mixed_streams=1"  # a default: unsaid
    assert triton.variant_string({}) == "" and naive.variant_string({"gqa": "grouped"}) == ""
    backend = get_backend("triton[splits=fill,gluon=off]")
    assert backend.variant == "gluon=off,splits=fill" and backend.name == "triton"
    assert backend.choice == {key.name: key.default for key in triton.variants} | {"splits": "fill", "gluon": "off"}
    assert set(backend.choice) == {"gluon", "gluon_grid", "paged_prompt", "splits", "spec", "schedule", "varlen_config",
                                   "varlen_tma", "page_prefetch", "mixed_streams", "mixed_launches",
                                   "gluon_balance", "gluon_pack"}  # fmt: skip
    made = [triton("splits=fill"), triton({"splits": "fill"}), get_backend("triton[splits=fill]")]
    assert all(b.choice == made[0].choice and b.variant == "splits=fill" for b in made)
    assert get_backend("triton").variant == "" and get_backend("triton").choice["splits"] == "waves"
    assert get_backend("flashinfer[mixed=one-call]").choice == {"mixed": "one-call", "sinks": "prefill-decode"}
    assert get_backend("torch-naive[gqa=repeat]").variant == "gqa=repeat"
    refused = [
        ("triton[split=fill]", "backend triton: no variant key 'split'; its keys: gluon, gluon_grid, splits, spec, "
         "schedule"),
        ("triton[splits=even]", "backend triton: variant splits='even' is not valid; expected one of waves, fill, "
         "work, work-fused (default waves)"),
        ("flashinfer[mixed=both]", "variant mixed='both' is not valid; expected one of split, one-call, "
         "batch-attention (default split)"),
        ("torch-naive[gqa=tiled]", "variant gqa='tiled' is not valid; expected one of grouped, repeat "
         "(default grouped)"),
        ("sdpa[gqa=repeat]", "backend sdpa: no variant key 'gqa'; its keys: none (this backend has no variants)"),
    ]  # fmt: skip
    for text, words in refused:
        with pytest.raises(VariantError, match=re.escape(words)):
            get_backend(text)
    with pytest.raises(VariantError, match="no variant key 'splits'"):
        naive({"splits": "fill"})
    with pytest.raises(ValueError, match="backend: 'tritonn' is not known"):
        get_backend("tritonn[splits=fill]")


def test_a_default_sweep_measures_the_contenders_on_the_specs_where_a_key_changes_something():
    """contender_variants: the defaults, then each declared contender; variant_applies: a non-default key that
    changes nothing for the spec (its row would repeat the default's) is not planned."""
    from specs import ExperimentSpec

    assert BACKENDS["flashinfer"].contender_variants() == ["", "mixed=batch-attention", "sinks=attention-sink"]
    assert BACKENDS["triton"].contender_variants() == [
        "",
        "gluon=long",
        "splits=work",
        "spec=varlen",
        "spec=split-kv",
        "paged_prompt=gluon",
    ]
    assert BACKENDS["torch-naive"].contender_variants() == [""]
    assert BACKENDS["sdpa"].contender_variants() == [""]
    mixed = ExperimentSpec.from_mix("q20s30_3q1s17", 8, 2, 64)
    paged_mix = ExperimentSpec.from_mix("q20s30_3q1s17", 8, 2, 64, page_size=16)
    decodes = ExperimentSpec.from_mix("3q1s7_q1s40", 8, 2, 64)  # a ragged batch of decodes only
    decode, prefill = tiny_spec("decode"), tiny_spec("prefill")
    # gluon=long differs from on only from a Gluon row block (128) up, on plain attention in a dense cache, where no
    # request computes the query-key pairs of a GLUON_LONG-token prompt (a 256-token chunk on 8192 keys does)
    short_prompts, long_prompts = (ExperimentSpec.from_mix(m, 8, 2, 64) for m in ("q800_q300", "q1600_q300"))
    windowed = ExperimentSpec.from_mix("q800_q300", 8, 2, 64, window=128)
    # spec=split-kv: a chunk of <= 64 tokens on a cache of 64 keys a token or more goes on its work list (draw:79's
    # q51s25164 beside a prompt and decodes, scaled down), whole with decodes alone; one key short, to varlen
    long_cache_chunk = ExperimentSpec.from_mix("q40_q17s1088_3q1s17", 8, 2, 64)
    for text, applies_to, not_to in [
        ("flashinfer[mixed=batch-attention]", [mixed, decodes], [decode, prefill]),
        ("torch-naive[gqa=repeat]", [decode, prefill, mixed], [tiny_spec("decode", group=1)]),
        ("triton[splits=fill]", [decode, mixed, decodes], [prefill, tiny_spec("append")]),
        (  # spec=auto (the default) takes the work list for mixed batches, for steps or short chunks where the
            # row-block kernel would run at most 33 programs (64 on pages), and for ragged ones on pages or on a dense
            # cache of SPLIT_KV_AUTO_KEYS keys: varlen differs there, split-kv on the rest of what the list can take
            "triton[spec=varlen]",
            [
                long_cache_chunk,
                ExperimentSpec.from_mix("q17s1088_3q1s17", 8, 2, 64),
                tiny_spec("spec-decode", chunk=4),  # 2 requests × 2 KV heads: 4 programs
                tiny_spec("spec-decode", chunk=4, page_size=16),
                tiny_spec("spec-decode", chunk=4, kv_len=64, batch=32, page_size=16),  # 64 programs on pages
                ExperimentSpec.from_mix("q4s1535_q4s90", 8, 2, 64),
                ExperimentSpec.from_mix("16q4s1536_q4s1500", 8, 2, 64),  # 34 programs, a long enough cache
                ExperimentSpec.from_mix("17q4s300", 8, 2, 64, page_size=16),
                tiny_spec("append", chunk=17, kv_len=1088),
            ],  # fmt: skip
            [
                decode,
                mixed,
                decodes,
                ExperimentSpec.from_mix("16q4s1535_q4s1500", 8, 2, 64),  # 34 programs on short dense caches
                tiny_spec("spec-decode", chunk=4, kv_len=1536, batch=17),  # uniform, 34 programs
                tiny_spec("spec-decode", chunk=4, kv_len=64, batch=33, page_size=16),  # 66 programs on pages
                tiny_spec("append", chunk=17, kv_len=1088, batch=17),
                tiny_spec("append", chunk=17, kv_len=1087),
            ],  # fmt: skip
        ),
        (
            "triton[spec=split-kv]",
            [
                ExperimentSpec.from_mix("16q4s1535_q4s1500", 8, 2, 64),
                tiny_spec("spec-decode", chunk=4, kv_len=1536, batch=17),
                tiny_spec("spec-decode", chunk=4, kv_len=64, batch=33, page_size=16),
                tiny_spec("append", chunk=17, kv_len=1088, batch=17),
            ],  # fmt: skip
            [
                decode,
                mixed,
                decodes,
                long_cache_chunk,
                tiny_spec("spec-decode", chunk=4),
                tiny_spec("spec-decode", chunk=4, page_size=16),
                ExperimentSpec.from_mix("16q4s1536_q4s1500", 8, 2, 64),
                tiny_spec("append", chunk=17, kv_len=1087),
                ExperimentSpec.from_mix("q40_q17s1087_3q1s17", 8, 2, 64),
            ],  # fmt: skip
        ),
        ("triton[gluon=off]", [prefill, mixed, long_prompts], [decode, decodes]),
        (
            "triton[gluon=long]",
            [short_prompts, tiny_spec("append", chunk=256, kv_len=512)],
            [
                long_prompts,
                windowed,
                decode,
                mixed,
                tiny_spec("append", chunk=256, kv_len=8192),
                ExperimentSpec.from_mix("q800_q300", 8, 2, 64, page_size=16),
            ],
        ),
        (  # the default (prompts) takes the persistent grid where the varlen requests are two or more whole
            # prompts of a row block or more: tiles differs there only
            "triton[gluon_grid=tiles]",
            [ExperimentSpec.from_mix(m, 8, 2, 64) for m in ("q300_q200", "q300_q128_q4s90_3q1s17")],
            [
                prefill,
                mixed,
                windowed,
                ExperimentSpec.from_mix("q300_q200s600", 8, 2, 64),
                ExperimentSpec.from_mix("q300_q127_3q1s17", 8, 2, 64),
            ],
        ),
        (  # persistent differs from the default where that resolves to tiles; never where Gluon does not run
            "triton[gluon_grid=persistent]",
            [mixed, ExperimentSpec.from_mix("q300_q200s600", 8, 2, 64)],
            [
                prefill,
                windowed,
                ExperimentSpec.from_mix("q300_q200", 8, 2, 64),
                ExperimentSpec.from_mix("q300_q200s600", 8, 2, 256),
            ],  # fmt: skip
        ),
        (
            "triton[gluon_grid=blocks]",
            [mixed, ExperimentSpec.from_mix("q300_q200", 8, 2, 64)],
            [prefill, windowed, ExperimentSpec.from_mix("q300_q200", 8, 2, 256)],
        ),  # fmt: skip
        (
            "triton[paged_prompt=gluon]",
            [tiny_spec("prefill", kv_len=128, page_size=16), tiny_spec("append", chunk=128, kv_len=256, page_size=16)],
            [
                prefill,
                tiny_spec("prefill", page_size=16),
                paged_mix,
                tiny_spec("decode", page_size=16),
                tiny_spec("prefill", kv_len=128, page_size=16, window=64),
                tiny_spec("append", chunk=128, kv_len=1024, page_size=16),  # the default (long) takes Gluon there
            ],
        ),
        (
            "triton[paged_prompt=triton]",
            [tiny_spec("append", chunk=128, kv_len=1024, page_size=16)],
            [tiny_spec("prefill", kv_len=1023, page_size=16), prefill],
        ),
        ("triton[mixed_streams=1]", [mixed], [decodes, decode]),
        ("triton[varlen_tma=off]", [mixed], [paged_mix, decode]),
        ("triton[page_prefetch=all]", [paged_mix, tiny_spec("decode", page_size=16)], [mixed, decode]),
        ("triton[splits=fill,mixed_streams=1]", [mixed], [decode]),  # every non-default key must apply
        ("triton", [decode, prefill, mixed], []),
    ]:
        backend = get_backend(text)
        assert all(backend.variant_applies(spec) for spec in applies_to), text
        assert not any(backend.variant_applies(spec) for spec in not_to), text


@pytest.mark.parametrize("what", ["prefill", "append", "decode", "q9_2q1s17_q4s12"])
def test_torch_naive_runs_gqa_grouped_or_repeated_and_says_which(what):
    """torch-naive's gqa variant: query heads folded into rows (grouped, the default) or K/V repeated to every
    query head in the call (repeat, Hugging Face's eager attention): both pass the reference on a GQA spec
    (group 4), and the row says which ran."""
    from specs import ExperimentSpec

    spec = ExperimentSpec.from_mix(what, 8, 2, 64) if "q" in what[:2] else tiny_spec(what, group=4)
    assert spec.gqa_group == 4
    for text, gqa in [("torch-naive", "grouped rows"), ("torch-naive[gqa=repeat]", "repeat K/V")]:
        row = cpu_measurer().measure(spec, get_backend(text))
        assert row.status is Status.OK and row.rel_err < 2e-2, (text, row.reason)
        assert info_dict(row.backend_info)["gqa"] == gqa and row.variant == get_backend(text).variant, row.backend_info


MAPS = """7f01-7f02 r--p 00000000 103:02 11 /opt/venv/nvidia/cudnn/lib/libcudnn_graph.so.9
7f02-7f03 r-xp 00001000 103:02 12 /opt/venv/nvidia/cudnn/lib/libcudnn.so.9
7f03-7f04 rw-p 00000000 00:00 0
7f04-7f05 r-xp 00001000 103:02 13 /lib/x86_64-linux-gnu/libc.so.6
"""


def test_te_imports_with_the_cudnn_pytorch_loaded(monkeypatch):
    """TE's import looks for libcudnn in CUDNN_PATH first: for the import only, it names the folder of the
    cuDNN PyTorch loaded (libcudnn.so.9, not its parts), unless the user set one; nothing loaded: unchanged."""
    from frameworks.transformer_engine import loaded_library_dir, torch_cudnn_for_te

    assert loaded_library_dir("libcudnn.so", MAPS) == "/opt/venv/nvidia/cudnn/lib"
    assert loaded_library_dir("libcudnn.so", MAPS.replace("libcudnn.so.9", "libcudnn_ops.so.9")) is None
    monkeypatch.delenv("CUDNN_PATH", raising=False)
    monkeypatch.delenv("CUDNN_HOME", raising=False)
    with torch_cudnn_for_te(MAPS) as folder:
        assert folder == os.environ["CUDNN_PATH"] == "/opt/venv/nvidia/cudnn/lib"
    assert "CUDNN_PATH" not in os.environ
    with torch_cudnn_for_te("") as folder:
        assert folder is None and "CUDNN_PATH" not in os.environ
    monkeypatch.setenv("CUDNN_HOME", "/usr/local/cudnn")
    with torch_cudnn_for_te(MAPS) as folder:
        assert folder is None and "CUDNN_PATH" not in os.environ


def test_a_cudnn_part_that_does_not_load_leaves_te_to_say_why(tmp_path, monkeypatch):
    """A file in PyTorch's cuDNN folder that is no library: the preload passes over it (TE's own import then
    reports what it misses as an `unavailable` row) instead of raising out of availability()."""
    from frameworks.transformer_engine import torch_cudnn_for_te

    (tmp_path / "libcudnn_broken.so.9").write_text("not an ELF file")
    monkeypatch.delenv("CUDNN_PATH", raising=False)
    monkeypatch.delenv("CUDNN_HOME", raising=False)
    maps = f"7f02-7f03 r-xp 00001000 103:02 12 {tmp_path}/libcudnn.so.9\n"
    with torch_cudnn_for_te(maps) as folder:
        assert folder == str(tmp_path) == os.environ["CUDNN_PATH"]
    assert "CUDNN_PATH" not in os.environ


@pytest.mark.parametrize(
    "mix, long",
    [("q800_q300", False), ("q1600_q300", True), ("q1536", True), ("q1535", False), ("q744s13919_q300", True),
     ("q453s1680_q300", False), ("q8s11499_q917", False)],
)  # fmt: skip
def test_gluon_long_keeps_the_gluon_kernels_for_heavy_requests_only(monkeypatch, mix, long):
    """gluon=long: the Gluon kernels where a request computes the query-key pairs of a GLUON_LONG-token prompt or
    more (a long prompt, or a chunk on a long cache: draw:103's 744 tokens on 13,919 keys), the autotuned Triton kernel
    below; gluon=on takes them at any length (on an sm90 GPU, faked here: the CPU has none)."""
    from types import SimpleNamespace

    import torch

    from frameworks.triton import GLUON_LONG, ops
    from specs import ExperimentSpec

    assert GLUON_LONG == 1536
    monkeypatch.setattr(ops, "gluon_capable", lambda device: True)
    spec = ExperimentSpec.from_mix(mix, 8, 2, 64)
    inputs = SimpleNamespace(**{name: torch.zeros(4, 2, 64) for name in "qkv"})
    assert get_backend("triton")._gluon(spec, inputs, ops) is True
    assert get_backend("triton[gluon=long]")._gluon(spec, inputs, ops) is long
    assert get_backend("triton[gluon=off]")._gluon(spec, inputs, ops) is False
