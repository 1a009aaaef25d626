"""Attention forms (sliding window, sinks, soft-cap) and tensor-parallel shapes on the CPU: the fp32
reference against hand computations on tiny cases, FLOP and byte counts of windowed specs, one clear
line for every bad argument, the rows' columns, and the backends that take a form or refuse it."""

import csv
import dataclasses
import math
import os

import pytest
import torch

from frameworks import AttentionInputs
from harness.reference import reference_attention
from harness.store import COLUMNS, _csv_line, load_rows, read_frame
from specs import MODELS, PRESETS, ExperimentSpec, SpecError, SweepGrid, specs_for

E = math.e


def one_head(q_len, kv_len, q, k, v, sinks=None, **form) -> tuple[ExperimentSpec, AttentionInputs]:
    """A batch of one request, one head of dim 1 (scale 1): q, k, v given as lists of numbers."""
    workload = "decode" if q_len == 1 else "append"
    spec = ExperimentSpec(workload, 1, q_len, kv_len, 1, 1, 1, dtype="fp32", sinks=sinks is not None, **form)
    col = lambda xs: torch.tensor(xs, dtype=torch.float32).view(1, -1, 1, 1)  # noqa: E731
    return spec, AttentionInputs(col(q), col(k), col(v), sinks=None if sinks is None else torch.tensor(sinks))


def ref(spec, inputs) -> list[float]:
    return reference_attention(spec, inputs, [0]).flatten().tolist()


# keys 0, 1, 2 with scores q·k = 0, 1, 2 (q = 1) and values 10, 20, 30; the two queries sit at key
# positions 1 and 2 (bottom-right causal: q_len 2 against 3 keys)
K, V = [0.0, 1.0, 2.0], [10.0, 20.0, 30.0]


def test_window_keeps_the_last_window_plus_one_keys():
    spec, inputs = one_head(2, 3, [1.0, 1.0], K, V, window=1)
    first = (10 + 20 * E) / (1 + E)  # position 1 sees keys 0, 1
    second = (20 * E + 30 * E**2) / (E + E**2)  # position 2 sees keys 1, 2 (key 0 is outside the window)
    assert ref(spec, inputs) == pytest.approx([first, second], rel=1e-6)
    spec, inputs = one_head(1, 3, [1.0], K, V, window=1)  # a windowed decode: keys 1 and 2 only
    assert ref(spec, inputs) == pytest.approx([second], rel=1e-6)
    spec, inputs = one_head(1, 3, [1.0], K, V, window=2)  # the window covers the cache: plain attention
    assert ref(spec, inputs) == pytest.approx([(10 + 20 * E + 30 * E**2) / (1 + E + E**2)], rel=1e-6)


def test_a_sink_joins_the_denominator_with_no_value():
    spec, inputs = one_head(1, 3, [1.0], K, V, sinks=[0.5])
    expected = (10 + 20 * E + 30 * E**2) / (1 + E + E**2 + math.exp(0.5))
    assert ref(spec, inputs) == pytest.approx([expected], rel=1e-6)


def test_sinks_are_per_query_head_under_gqa():
    """Two query heads share one KV head; head h's row is v · e^s / (e^s + e^sink_h)."""
    spec = ExperimentSpec("decode", 1, 1, 1, 2, 1, 1, dtype="fp32", sinks=True)
    q = torch.tensor([1.0, 2.0]).view(1, 1, 2, 1)
    k, v = torch.ones(1, 1, 1, 1), torch.full((1, 1, 1, 1), 4.0)
    inputs = AttentionInputs(q, k, v, sinks=torch.tensor([0.0, 3.0]))
    heads = [4 * math.exp(s) / (math.exp(s) + math.exp(sink)) for s, sink in ((1.0, 0.0), (2.0, 3.0))]
    assert ref(spec, inputs) == pytest.approx(heads, rel=1e-6)


def test_softcap_bends_the_scores_before_the_mask():
    spec, inputs = one_head(2, 3, [1.0, 1.0], K, V, softcap=1.0)
    t1, t2 = math.tanh(1.0), math.tanh(2.0)
    first = (10 + 20 * math.exp(t1)) / (1 + math.exp(t1))
    second = (10 + 20 * math.exp(t1) + 30 * math.exp(t2)) / (1 + math.exp(t1) + math.exp(t2))
    assert ref(spec, inputs) == pytest.approx([first, second], rel=1e-6)


def test_window_sinks_and_softcap_together():
    spec, inputs = one_head(2, 3, [1.0, 1.0], K, V, sinks=[0.5], window=1, softcap=1.5)
    t0, t1, t2 = (1.5 * math.tanh(s / 1.5) for s in (0.0, 1.0, 2.0))
    sink = math.exp(0.5)
    first = (10 * math.exp(t0) + 20 * math.exp(t1)) / (math.exp(t0) + math.exp(t1) + sink)
    second = (20 * math.exp(t1) + 30 * math.exp(t2)) / (math.exp(t1) + math.exp(t2) + sink)
    assert ref(spec, inputs) == pytest.approx([first, second], rel=1e-6)


def test_ragged_reference_takes_the_forms_request_by_request():
    spec = ExperimentSpec.from_mix("q3s5_q1s4", 2, 1, 8, dtype="fp32", window=2, sinks=True, softcap=5.0)
    from harness.inputs import make_inputs

    inputs = make_inputs(spec, torch.device("cpu"))
    assert inputs.sinks.shape == (2,) and inputs.sinks.dtype == torch.float32
    packed = reference_attention(spec, inputs, [0, 1])
    for lo, hi, klo, khi in ((0, 3, 0, 5), (3, 4, 5, 9)):
        alone = ExperimentSpec("append" if hi - lo > 1 else "decode", 1, hi - lo, khi - klo, 2, 1, 8, dtype="fp32",
                               window=2, sinks=True, softcap=5.0)  # fmt: skip
        one = AttentionInputs(
            inputs.q[lo:hi][None], inputs.k[klo:khi][None], inputs.v[klo:khi][None], sinks=inputs.sinks
        )
        assert torch.allclose(packed[lo:hi], reference_attention(alone, one, [0])[0])


# ---- counts -------------------------------------------------------------------------------------


def test_windowed_prefill_counts_only_the_band():
    spec = ExperimentSpec("prefill", 1, 8, 8, 2, 1, 4, window=2)
    assert spec.visible_pairs == 1 + 2 + 6 * 3  # positions 0 and 1 see 1 and 2 keys, the rest 3
    assert spec.flops == 4 * 4 * 2 * 21
    assert spec.ideal_bytes == (2 * 8 * 2 * 4 + 2 * 8 * 1 * 4) * 2  # every key is seen by some query
    full = ExperimentSpec("prefill", 1, 8, 8, 2, 1, 4)
    assert full.visible_pairs == 36 and full.ideal_bytes == spec.ideal_bytes


def test_windowed_decode_reads_only_the_window():
    spec = ExperimentSpec("decode", 2, 1, 1000, 64, 8, 64, window=128)
    assert spec.visible_pairs == 2 * 129
    assert spec.ideal_bytes == (2 * 2 * 64 * 64 + 2 * 2 * 129 * 8 * 64) * 2
    flat = {s.ideal_bytes for s in PRESETS["windowed"].narrowed(models=["gpt-oss-120b"], batch_sizes=[1]).specs()
            if s.window is not None}  # fmt: skip
    assert len(flat) == 1  # the windowed preset's point: the same bytes at every context


def test_windowed_append_reads_chunk_plus_window_keys():
    spec = ExperimentSpec("append", 1, 16, 4096, 8, 8, 64, window=128)
    assert spec.ideal_bytes == (2 * 16 * 8 * 64 + 2 * (16 + 128) * 8 * 64) * 2
    assert spec.visible_pairs == 16 * 129


def test_sinks_and_softcap_add_no_counted_work():
    plain = ExperimentSpec("prefill", 2, 64, 64, 4, 2, 64)
    formed = ExperimentSpec("prefill", 2, 64, 64, 4, 2, 64, sinks=True, softcap=30)
    assert (formed.flops, formed.ideal_bytes) == (plain.flops, plain.ideal_bytes)


# ---- models, tensor parallelism, presets ---------------------------------------------------------


def test_models_declare_their_layer_kinds():
    oss = MODELS["gpt-oss-120b"]
    assert (oss.num_q_heads, oss.num_kv_heads, oss.head_dim, oss.num_layers) == (64, 8, 64, 36)
    assert [(k.name, k.count, k.window, k.sinks) for k in oss.layers] == [("full", 18, None, True),
                                                                         ("window", 18, 128, True)]  # fmt: skip
    assert MODELS["gpt-oss-20b"].num_layers == 24
    gemma3 = MODELS["Gemma-3-27B"]
    assert (gemma3.num_layers, gemma3.layer("window").count, gemma3.layer("window").window) == (62, 52, 1024)
    gemma2 = MODELS["Gemma-2-9B"]
    assert (gemma2.head_dim, gemma2.num_layers) == (256, 42) and {k.softcap for k in gemma2.layers} == {50.0}
    assert MODELS["Llama-3.1-8B"].layer("window") is None and MODELS["Llama-3.1-8B"].num_layers == 32


@pytest.mark.parametrize(
    ("tp", "heads"), [(1, (64, 8)), (2, (32, 4)), (4, (16, 2)), (8, (8, 1)), (16, (4, 1)), (64, (1, 1))]
)
def test_tp_divides_query_heads_and_replicates_kv_heads_past_their_count(tp, heads):
    spec = specs_for("Llama-3.1-70B", "full", tp, workload="decode", batch_size=4, q_len=1, kv_len=128)
    assert (spec.num_q_heads, spec.num_kv_heads, spec.tp) == (*heads, tp)


def test_tp_is_an_axis_of_the_grid_and_the_layer_kinds_multiply_the_specs():
    grid = SweepGrid(models=("gpt-oss-120b",), workloads=("decode",), batch_sizes=(1,), seq_lens=(512,), chunks=(1,),
                     tps=(1, 2, 4, 8))  # fmt: skip
    specs = grid.specs()
    assert [(s.window, s.tp, s.num_q_heads, s.num_kv_heads) for s in specs] == [
        (None, 1, 64, 8), (None, 2, 32, 4), (None, 4, 16, 2), (None, 8, 8, 1),
        (128, 1, 64, 8), (128, 2, 32, 4), (128, 4, 16, 2), (128, 8, 8, 1),
    ]  # fmt: skip
    assert all(s.sinks for s in specs)
    assert [s.window for s in grid.narrowed(layers=("window",)).specs()] == [128] * 4
    mixed = grid.narrowed(mixes=("spec-decode",), tps=(2,), layers=("window",)).specs()
    assert [(s.window, s.sinks, s.tp, s.num_q_heads) for s in mixed] == [(128, True, 2, 32)]


# ---- one clear line for every bad argument -------------------------------------------------------

BASE = dict(workload="decode", batch_size=1, q_len=1, kv_len=64, num_q_heads=4, num_kv_heads=2, head_dim=64)


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"window": 0}, "window: must be a positive number of keys or None"),
        ({"window": "128"}, "window: must be a positive number of keys or None"),
        ({"window": True}, "window: must be a positive number of keys or None"),
        ({"window": 8, "causal": False}, "window: a sliding window is causal"),
        ({"sinks": "yes"}, "sinks: must be true or false"),
        ({"softcap": -1.0}, "softcap: must be a positive number or None"),
        ({"softcap": True}, "softcap: must be a positive number or None"),
        ({"softcap": float("inf")}, "softcap: must be finite"),
        ({"tp": 0}, "tp: must be a positive integer"),
    ],
)
def test_bad_form_arguments_are_one_line_naming_the_field(form, message):
    with pytest.raises(SpecError) as info:
        ExperimentSpec(**{**BASE, **form})
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_bad_tp_and_layer_are_one_line():
    with pytest.raises(
        SpecError, match=r"^tp: 3 does not divide Llama-3.1-70B's 64 query heads; expected one of 1, 2,"
    ):
        specs_for("Llama-3.1-70B", "full", 3, **{k: BASE[k] for k in ("workload", "batch_size", "q_len", "kv_len")})
    with pytest.raises(SpecError, match=r"^tp: 3 does not divide gpt-oss-120b's 64 query heads"):
        PRESETS["windowed"].narrowed(tps=(1, 3))
    with pytest.raises(SpecError, match=r"^layer: Llama-3.1-8B has no window layers; it has full$"):
        specs_for("Llama-3.1-8B", "window", workload="decode", batch_size=1, q_len=1, kv_len=8)
    with pytest.raises(SpecError, match=r"^layers: 'sliding' is not valid; expected one of full, window$"):
        PRESETS["windowed"].narrowed(layers=("sliding",))


# ---- the row -------------------------------------------------------------------------------------


def test_rows_carry_the_form_and_files_from_before_it_load_as_plain_attention(tmp_path):
    from .test_store import ok_row

    formed = ok_row(ExperimentSpec(**{**BASE, "window": 32, "sinks": True, "softcap": 30.0, "tp": 4}))
    assert (formed.window, formed.sinks, formed.softcap, formed.tp) == (32, True, 30.0, 4)
    assert formed.spec.window == 32 and formed.spec.describe().endswith("window=32 sinks softcap=30 tp=4")
    plain = ok_row(ExperimentSpec(**BASE))
    path = tmp_path / "before-forms.csv"
    older = [c for c in COLUMNS if c not in ("window", "sinks", "softcap", "tp")]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(older)
        cells = next(csv.reader([_csv_line(plain)]))
        writer.writerow([cells[COLUMNS.index(c)] for c in older])
    assert load_rows(path) == [plain]
    frame = read_frame(path)
    assert frame["window"].isna().all() and (~frame["sinks"]).all() and frame["tp"].eq(1).all()


# ---- the CPU backends take the forms, or refuse them with the reason ------------------------------

FORMS = {
    "window": dict(window=5),
    "sinks": dict(sinks=True),
    "softcap": dict(softcap=2.0),
    "all": dict(window=5, sinks=True, softcap=2.0),
}
TAKES = {  # backend -> the forms it runs
    "torch-naive": {"window", "sinks", "softcap", "all"},
    "torch-naive[gqa=repeat]": {"window", "sinks", "softcap", "all"},
    "torch-compile": {"window", "sinks", "softcap", "all"},
    "flex": {"window", "softcap"},  # sinks need flex's log-sum-exp, which its CPU lowering does not return
    "sdpa": {"window"},
    "sdpa-math": {"window"},
}


def run_backend(name, spec):
    from frameworks import Unsupported, get_backend
    from harness.inputs import make_inputs
    from harness.reference import check_output

    backend = get_backend(name)
    reason = backend.supports(spec)
    if reason:
        return reason
    inputs = make_inputs(spec, torch.device("cpu"))
    try:
        out = backend.prepare(spec, inputs)()
    except Unsupported as exc:
        return str(exc)
    everyone = list(range(spec.batch_size))
    check = check_output(spec, out, reference_attention(spec, inputs, everyone), everyone)
    assert check.ok, (name, spec.describe(), check.problem)
    return None


@pytest.mark.parametrize("backend", list(TAKES))
@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("workload", ["prefill", "append", "decode"])
def test_cpu_backends_match_the_reference_or_say_which_form_they_lack(backend, form, workload):
    from .helpers import tiny_spec

    spec = tiny_spec(workload, group=2, batch=2, kv_len=24, chunk=8, head_dim=16, dtype="fp32", **FORMS[form])
    reason = run_backend(backend, spec)
    if form in TAKES[backend]:
        assert reason is None
    else:
        assert reason and reason.split(":")[0].split()[0] in ("sinks", "softcap"), reason


@pytest.mark.parametrize(("backend", "sinks"), [("torch-naive", True), ("flex", False)])
def test_ragged_batches_take_the_forms(backend, sinks):
    spec = ExperimentSpec.from_mix("q9s20_2q3s11_q1s30", 4, 2, 16, dtype="fp32", window=4, sinks=sinks, softcap=3.0)
    assert run_backend(backend, spec) is None


@pytest.mark.parametrize("ragged", [False, True])
def test_flex_folds_the_sinks_in_through_its_log_sum_exp(ragged, monkeypatch):
    """flex's sinks path as it runs on a GPU, with eager flex (which returns the log-sum-exp on the CPU
    too) in place of the compiled one: output · sigmoid(lse − sink) is the softmax with the sink."""
    from torch.nn.attention.flex_attention import flex_attention

    import frameworks.torch_flex as flex_module

    monkeypatch.setattr(flex_module, "_compiled_flex", lambda: flex_attention)
    monkeypatch.setattr(flex_module, "CPU_RETURNS_LSE", True)
    if ragged:
        spec = ExperimentSpec.from_mix("q9s20_q1s30", 4, 2, 16, dtype="fp32", window=4, sinks=True, softcap=3.0)
    else:
        spec = ExperimentSpec("append", 2, 8, 24, 4, 2, 16, dtype="fp32", window=5, sinks=True, softcap=2.0)
    assert run_backend("flex", spec) is None


# ---- the GPU libraries' calls, through CPU stand-ins (tests/fake_flash_attn.py, fake_flashinfer.py) ------


@pytest.fixture
def fakes(monkeypatch):
    """The FA2, FA3, FA4, Transformer Engine and FlashInfer modules replaced by CPU stand-ins."""
    import sys
    import types

    from . import fake_flash_attn, fake_flashinfer

    fake_flash_attn.calls.clear()
    fake_flashinfer.calls.clear()
    fa2 = fake_flash_attn.flash_attn_2()
    cute = fake_flash_attn.flash_attn_4()
    package = types.ModuleType("flash_attn")
    package.__dict__.update(vars(fa2), cute=cute)
    te = fake_flash_attn.transformer_engine()
    for name, module in {"flash_attn": package, "flash_attn.cute": cute, "flashinfer": fake_flashinfer,
                         "flash_attn_interface": fake_flash_attn.flash_attn_3(),
                         "transformer_engine": types.SimpleNamespace(pytorch=te), "transformer_engine.pytorch": te,
                         }.items():  # fmt: skip
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    monkeypatch.setattr("frameworks.transformer_engine.kernel_names", lambda call: [])
    return fake_flash_attn


GPU_TAKES = {  # backend -> the forms it passes to its library
    "flash-attn2": {"window", "softcap"},
    "flash-attn3": {"window", "softcap"},
    "flash-attn4": {"window", "sinks", "softcap", "all"},
    "transformer-engine": {"window", "sinks"},
    "flashinfer": {"window", "softcap"},
    # its sink wrapper takes sinks and a window, no soft-cap; a spec without sinks runs the wrappers (a sweep
    # never plans this variant there: it does not apply)
    "flashinfer[sinks=attention-sink]": {"window", "sinks", "softcap"},
}


@pytest.mark.parametrize("backend", list(GPU_TAKES))
@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("workload", ["prefill", "append", "decode"])
def test_gpu_adapters_pass_the_forms_to_their_library(fakes, backend, form, workload):
    from .helpers import tiny_spec

    spec = tiny_spec(workload, group=2, batch=2, kv_len=24, chunk=8, head_dim=64, **FORMS[form])
    reason = run_backend(backend, spec)
    if form not in GPU_TAKES[backend]:
        assert reason and "\n" not in reason and reason.split()[0].rstrip(":,") in ("sinks", "softcap", "window")
        return
    assert reason is None
    if backend.startswith("flash-attn"):
        name, kw = fakes.calls[-1]
        assert kw.get("window_size") == ((spec.window, 0) if spec.window else kw.get("window_size"))
        assert kw.get("softcap") == (spec.softcap if spec.softcap else kw.get("softcap"))
        if backend == "flash-attn4":
            assert kw["learnable_sink"] == ((spec.num_q_heads,) if spec.sinks else None)


def test_flashinfer_plans_window_left_and_soft_cap_on_ragged_batches(fakes):
    from . import fake_flashinfer

    for page in (None, 16):
        spec = ExperimentSpec.from_mix("q20s30_2q4s25_3q1s17", 8, 2, 64, page_size=page, window=6, softcap=20.0)
        assert run_backend("flashinfer", spec) is None
    assert [c[0] for c in fake_flashinfer.calls] == ["ragged-prefill", "decode", "paged-prefill", "decode"]
    spec = ExperimentSpec.from_mix("q20s30_q1s17", 8, 2, 64, window=6)
    assert run_backend("flashinfer[mixed=batch-attention]", spec).startswith("window, sinks, soft-cap: BatchAttention")


def test_flashinfer_sink_wrapper_runs_on_pages_too(fakes):
    from . import fake_flashinfer

    spec = ExperimentSpec("append", 2, 8, 40, 8, 2, 64, page_size=16, window=10, sinks=True)
    assert run_backend("flashinfer[sinks=attention-sink]", spec) is None
    assert fake_flashinfer.calls == [("attention-sink", 2)]
    reason = run_backend("flashinfer", spec)
    assert reason.startswith("sinks: FlashInfer's prefill and decode wrappers take no sink logits;")


@pytest.mark.parametrize("page", [None, 16])
def test_flashinfer_sink_wrapper_takes_a_ragged_batch_in_one_call(fakes, page):
    """gpt-oss's serving batches (sinks, a window on half the layers): the attention-sink wrapper planned with
    qo_indptr over the whole ragged batch, its pages or the dense cache as pages of one token, checked against the
    fp32 reference; the default variant still says why it does not run."""
    from . import fake_flashinfer

    spec = ExperimentSpec.from_mix("q20s30_2q4s25_3q1s17", 8, 2, 64, page_size=page, window=6, sinks=True)
    assert run_backend("flashinfer[sinks=attention-sink]", spec) is None
    assert fake_flashinfer.calls == [("attention-sink", 6)]
    assert run_backend("flashinfer", spec).startswith("sinks: FlashInfer's prefill and decode wrappers")


def test_a_fa3_wheel_built_without_softcap_refuses_with_the_reason(fakes, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "flash_attn_interface", fakes.flash_attn_3(build_refuses=("softcap",)))
    from .helpers import tiny_spec

    reason = run_backend("flash-attn3", tiny_spec("prefill", head_dim=64, softcap=30.0))
    assert reason == "this build: This flash attention build does not support tanh softcapping."
    assert run_backend("flash-attn3", tiny_spec("prefill", head_dim=64, window=8)) is None


@pytest.mark.parametrize(
    "message",
    ["FlashAttention forward only supports head dimension at most 128", "This build does not support FP8"],
)
def test_a_wheel_without_a_head_dim_refuses_in_the_probe_not_as_an_error(message):
    """The shared FA3 wheel raises the first message for head dim 256 (H100, 2026-12-05): the probe makes it
    unsupported with the library's words, not an error row."""
    from frameworks import Unsupported
    from frameworks.base import probe_build
    from harness.inputs import make_inputs

    from .helpers import tiny_spec

    def refuse(q, k, v):
        raise RuntimeError(message)

    spec = tiny_spec("prefill")
    with pytest.raises(Unsupported, match=f"this build: {message}"):
        probe_build(refuse, make_inputs(spec, torch.device("cpu")))


# ---- the CLI: a CPU sweep over gpt-oss, and the model's attention per step ------------------------------


def test_cli_sweep_of_gpt_oss_on_the_cpu_backends(tmp_path):
    """Both layer kinds of gpt-oss-20b at tp 8 (8 query heads, 1 KV head, head dim 64, sinks everywhere,
    a 128-token window in half the layers), decode on a 256-token cache: ok where a backend takes sinks
    (and the window), unsupported with the form named elsewhere; the row says window, sinks and tp."""
    from typer.testing import CliRunner

    import run
    from harness.store import Status

    out = tmp_path / "oss.csv"
    backends = "torch-naive,flex,sdpa-math,triton,flashinfer"  # torch-compile's forms: TAKES above
    args = ["sweep", "--preset", "windowed", "-m", "gpt-oss-20b", "--seq", "256", "--batch", "2", "--tp", "8",
            "-b", backends, "--device", "cpu", "--iterations", "2", "--no-plots", "-o", str(out)]  # fmt: skip
    result = CliRunner().invoke(run.app, args)
    assert result.exit_code == 0, result.output
    rows = {(r.backend, r.window): r for r in load_rows(out)}
    assert len(rows) == 10
    for (backend, window), row in rows.items():
        assert (row.sinks, row.softcap, row.tp, row.num_q_heads, row.num_kv_heads, row.head_dim) == (
            True, None, 8, 8, 1, 64)  # fmt: skip
        assert window in (None, 128)
        if backend == "torch-naive":
            assert row.status is Status.OK, row.reason
        elif backend == "flex":  # sinks need flex's log-sum-exp, which its CPU lowering does not return
            assert row.status is Status.UNSUPPORTED and row.reason.startswith("sinks: flex on the CPU"), row.reason
        elif backend == "sdpa-math":
            assert (
                row.status is Status.UNSUPPORTED and row.reason == "sinks: this backend does not take attention sinks"
            )
        elif backend == "triton":  # the window and the sinks in its kernels, under the interpreter here
            assert row.status is Status.OK, row.reason
        else:  # flashinfer needs CUDA: unavailable on a CPU run, whatever the form
            assert row.status is Status.UNAVAILABLE
    table = CliRunner().invoke(run.app, ["table", str(out), "--model-step", "--format", "markdown"])
    assert table.exit_code == 0, table.output
    assert "| gpt-oss-20b | decode | 2 | 256 | 8 | torch-naive |" in table.output
    assert "unsupported: full, window" in table.output  # sdpa-math and flex: the kinds grouped by status
    assert "gpt-oss-20b: step = 12 full + 12 window (128 keys) layers × their p50" in table.output
    # the terminal's table: 100 columns, every cell whole (folded, never cut), a label's brackets kept
    table = CliRunner().invoke(run.app, ["table", str(out), "--model-step"])
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert max(len(line) for line in lines) <= 100 and "…" not in table.output
    assert any(line.split()[:2] == ["gpt-oss-20b", "decode"] and "torch-naive" in line for line in lines)
    assert "gpt-oss-20b: step = 12 full + 12 window (128 keys) layers × their p50" in table.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tp", "3"], "--tp: 3 does not divide gpt-oss-20b's 64 query heads; expected one of 1, 2, 4, 8, 16, 32, 64"),
        (["--tp", "0"], "--tp: expected positive integers, got 0"),
        (["--layer", "sliding"], "--layer: 'sliding' not known; expected any of full, window"),
    ],
)
def test_cli_bad_tp_and_layer_are_one_line(args, message, tmp_path):
    from typer.testing import CliRunner

    import run

    out = tmp_path / "x.csv"
    result = CliRunner().invoke(run.app, ["sweep", "--preset", "windowed", "-m", "gpt-oss-20b", "-b", "torch-naive",
                                          "--device", "cpu", "-o", str(out), "--no-plots", *args])  # fmt: skip
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and message in lines[0], result.output
    assert not out.exists()


def test_model_step_sums_layers_times_p50_over_the_kinds():
    """A hand-made frame: gpt-oss-120b decode at 32k on two backends (one lacks the windowed kind) and at
    tp 2; Gemma-2-9B's two kinds; a Llama row (one kind: its step is 32 × p50)."""
    from harness.measure import make_row
    from harness.report.model_step import model_steps, render_model_steps
    from harness.store import Status

    from .test_store import CONFIG, ENV, ok_row

    def spec(model, layer, tp=1, kv=32768):
        return specs_for(model, layer, tp, workload="decode", batch_size=1, q_len=1, kv_len=kv)

    rows = [
        ok_row(spec("gpt-oss-120b", "full"), p50_ms=0.5),
        ok_row(spec("gpt-oss-120b", "window"), p50_ms=0.02),
        ok_row(spec("gpt-oss-120b", "full", tp=2), p50_ms=0.3),
        ok_row(spec("gpt-oss-120b", "window", tp=2), p50_ms=0.01),
        dataclasses.replace(ok_row(spec("gpt-oss-120b", "full"), p50_ms=0.4), backend="sdpa"),
        make_row(spec("gpt-oss-120b", "window"), "sdpa", "", ENV, CONFIG, Status.UNSUPPORTED, "sinks: no"),
        ok_row(spec("Gemma-2-9B", "full", kv=8192), p50_ms=0.25),
        ok_row(spec("Gemma-2-9B", "window", kv=8192), p50_ms=0.125),
        ok_row(spec("Llama-3.1-8B", "full", kv=8192), p50_ms=0.1),
    ]
    steps = model_steps(rows).set_index(["model", "tp", "backend"])
    assert steps.loc[("gpt-oss-120b", 1, "torch-naive"), "step_ms"] == pytest.approx(18 * 0.5 + 18 * 0.02)
    assert steps.loc[("gpt-oss-120b", 2, "torch-naive"), "step_ms"] == pytest.approx(18 * 0.3 + 18 * 0.01)
    sdpa = steps.loc[("gpt-oss-120b", 1, "sdpa")]
    assert math.isnan(sdpa["step_ms"]) and sdpa["missing"] == "window: unsupported" and sdpa["full_ms"] == 0.4
    assert steps.loc[("Gemma-2-9B", 1, "torch-naive"), "step_ms"] == pytest.approx(21 * 0.25 + 21 * 0.125)
    assert steps.loc[("Llama-3.1-8B", 1, "torch-naive"), "step_ms"] == pytest.approx(32 * 0.1)
    text = render_model_steps(model_steps(rows))
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "| gpt-oss-120b | decode | 1 | 32768 | 1 | torch-naive | 0.500 | 0.020 | 9.360 |" in text
    # the terminal's table keeps a variant's brackets (data, not Rich markup) and fits 100 columns
    from rich.console import Console

    from harness.report.model_step import terminal_model_steps

    labelled_rows = [dataclasses.replace(r, backend="triton[splits=work]") for r in rows[:2]]
    console = Console(width=100, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    for part in terminal_model_steps(model_steps(labelled_rows + rows)):
        console.print(part)
    shown = console.export_text()
    assert "triton[splits=work]" in shown.replace("\n", "").replace(" ", "") or "triton[split" in shown
    assert max(len(line) for line in shown.splitlines()) <= 100
    # the same step on 16-token pages is a line of its own, its context saying the pages
    paged = [dataclasses.replace(r, page_size=16) for r in rows[:2]]
    text = render_model_steps(model_steps(rows[:2] + paged))
    assert "| gpt-oss-120b | decode | 1 | 32768 p16 | 1 | torch-naive | 0.500 | 0.020 | 9.360 |" in text
    assert "| gpt-oss-120b | decode | 1 | 32768 | 1 | torch-naive |" in text


def test_plots_draw_a_model_step_and_the_windowed_layers_apart(tmp_path):
    from harness.report import plots
    from harness.report.model_step import model_steps, plot_model_steps

    from .test_store import ok_row

    rows = [
        ok_row(
            specs_for("gpt-oss-20b", layer, 2, workload="decode", batch_size=1, q_len=1, kv_len=kv),
            p50_ms=(0.01 if layer == "window" else 0.001 * kv / 1024),
        )  # fmt: skip
        for layer in ("full", "window")
        for kv in (1024, 4096, 16384)
    ]
    step = plot_model_steps(model_steps(rows), tmp_path)
    assert [p.name for p in step] == ["h100_gpt-oss-20b_step_decode_b1_tp2.png"]
    curves = plots.plot(rows, tmp_path)
    assert [p.name for p in curves] == ["h100_gpt-oss-20b_b1_bf16_tp2.png"]


def test_plot_tp_draws_a_line_a_backend_against_tp_for_specs_at_several_degrees(tmp_path):
    """A panel per (workload, layer kind) where a spec was measured at two tp or more; a spec at one tp only
    draws nothing."""
    from harness.report.plots import plot_tp

    from .test_store import ok_row

    def decode(layer, tp):
        return specs_for("gpt-oss-120b", layer, tp, workload="decode", batch_size=8, q_len=1, kv_len=4096)

    rows = [ok_row(decode(layer, tp), p50_ms=1.0 / tp) for layer in ("full", "window") for tp in (1, 2, 4, 8)]
    assert [p.name for p in plot_tp(rows, tmp_path)] == ["h100_gpt-oss-120b_tp.png"]
    assert (tmp_path / "h100_gpt-oss-120b_tp.png").stat().st_size > 10_000
    assert plot_tp([ok_row(decode("full", 2))], tmp_path / "none") == []


def test_a_readme_block_can_hold_a_models_attention_step(tmp_path):
    """`view=steps`: the decode step summed over the model's layer kinds, only backends that ran every kind."""
    from harness.report.readme import rewrite_readme
    from harness.store import append_rows, labelled, load_many

    from .test_store import ok_row

    def decode(layer):
        return specs_for("gpt-oss-120b", layer, 1, workload="decode", batch_size=8, q_len=1, kv_len=4096)

    full_only = dataclasses.replace(ok_row(decode("full"), p50_ms=0.3), backend="sdpa")
    append_rows(tmp_path / "r.csv", [ok_row(decode("full"), p50_ms=0.5), ok_row(decode("window"), p50_ms=0.02),
                                     full_only])  # fmt: skip
    text = "<!-- attnbench:table files=r.csv view=steps -->\n<!-- /attnbench:table -->\n"
    new, blocks = rewrite_readme(text, tmp_path, lambda paths: labelled(load_many(paths)))
    assert blocks == 1
    assert "| gpt-oss-120b | decode | 8 | 4096 | 1 | torch-naive | 0.500 | 0.020 | 9.360 |" in new
    assert "sdpa" not in new  # no window row: no step
    # page= keeps dense rows (page=dense) or those of some page sizes; the paged step is said apart
    paged = [dataclasses.replace(ok_row(decode(k), p50_ms=t), page_size=16)
             for k, t in (("full", 0.6), ("window", 0.03))]  # fmt: skip
    append_rows(tmp_path / "r.csv", paged)
    load = lambda paths: labelled(load_many(paths))  # noqa: E731
    both, _ = rewrite_readme(text, tmp_path, load)
    assert "| 4096 p16 | 1 | torch-naive | 0.600 | 0.030 |" in both and "| 4096 | 1 | torch-naive | 0.500 |" in both
    dense, _ = rewrite_readme(text.replace("view=steps", "page=dense view=steps"), tmp_path, load)
    assert "p16" not in dense and "| 4096 | 1 | torch-naive | 0.500 |" in dense
    only16, _ = rewrite_readme(text.replace("view=steps", "page=16 view=steps"), tmp_path, load)
    assert "| 4096 p16 |" in only16 and "| 4096 | 1 |" not in only16
    for bad in ("paged", "0", "²", "16,,dense"):
        with pytest.raises(ValueError, match=f"page='{bad}' is not valid; expected dense or page sizes"):
            rewrite_readme(text.replace("view=steps", f"page={bad} view=steps"), tmp_path, load)
    with pytest.raises(ValueError, match="'page' given twice"):
        rewrite_readme(text.replace("view=steps", "page=16 page=dense view=steps"), tmp_path, load)
    # through the files' rewrite (run.py readme): the line names the file
    from harness.report.readme import rewrite_files

    (tmp_path / "doc.md").write_text(text.replace("view=steps", "page=0 view=steps"))
    with pytest.raises(ValueError, match=r"doc\.md: README table marker: page='0' is not valid"):
        rewrite_files([tmp_path / "doc.md"], load)


def test_transformer_engine_declines_sinks_on_a_ragged_batch_only():
    """TE 2.20's learnable sinks run in its unfused path, whose THD padding mask failed on a ragged batch on the
    H100: such a spec is unsupported with that reason (not an error row); a uniform batch with sinks is not."""
    from frameworks import get_backend

    backend = get_backend("transformer-engine")
    ragged = ExperimentSpec.from_mix("q512s4k_3q1s1k", 64, 8, 64, sinks=True)
    assert "sinks on a ragged batch" in backend.supports(ragged)
    assert backend.supports(ExperimentSpec.from_mix("q512s4k_3q1s1k", 64, 8, 64)) is None
    assert backend.supports(ExperimentSpec("decode", 2, 1, 1024, 64, 8, 64, sinks=True)) is None
