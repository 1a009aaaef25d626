"""The in-repo Triton kernels' forms against the fp32 reference: a left window, sinks, a soft-cap, head dim
256 and an FP8 (e4m3) cache, on the CPU under TRITON_INTERPRET=1 (set by conftest when there is no GPU) at
tiny shapes, the interpreter being slow. fp16 where a form's share of the result is small, so that its
tighter tolerance (5e-3) catches a sink added twice or not at all. Real shapes: the `gpu` tests at the end
(python3 -m pytest -q -n 0 -m gpu tests/test_triton_forms.py)."""

from dataclasses import replace

import pytest
import torch

pytest.importorskip("triton")

from frameworks import get_backend
from frameworks._paged import to_paged, to_paged_ragged
from frameworks.triton import ops
from frameworks.triton.schedule import plan_work, window_start
from harness.inputs import make_inputs
from harness.reference import check_output, reference_attention
from specs import ExperimentSpec

from .helpers import run_info_after_checking, tiny_spec

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def cpu_only():
    """Tiny launches under the interpreter (on the CPU, at its granule of 16; the GPU's decode tiles are up to
    128 keys): the gpu tests below cover them at real sizes."""
    if DEVICE.type == "cuda":
        pytest.skip("covered at real sizes by the gpu tests of this file")


def _checked(spec, inputs, out):
    everyone = list(range(spec.batch_size))
    check = check_output(spec, out, reference_attention(spec, inputs, everyone), everyone)
    assert check.ok, check.problem


@pytest.mark.parametrize(
    "backend,spec",
    [
        ("triton", tiny_spec("prefill", group=2, batch=1, kv_len=40, window=9, sinks=True, softcap=2.0, dtype="fp16")),
        ("triton", tiny_spec("append", group=2, batch=2, kv_len=40, chunk=12, window=5, softcap=2.0, page_size=16)),
        (
            "triton[mixed_launches=1]",  # one varlen launch: a prompt, a chunk, speculative steps, a decode
            ExperimentSpec.from_mix(
                "q20_q9s30_2q4s25_q1s17", 4, 2, 64, window=6, sinks=True, softcap=2.0, page_size=16, dtype="fp16"
            ),
        ),  # fmt: skip
        (
            "triton[splits=work-fused,spec=varlen]",  # the chunks' varlen launch, then the decodes' work list
            ExperimentSpec.from_mix("q9s30_3q1s40", 4, 2, 64, window=7, sinks=True, dtype="fp16"),
        ),
    ],
)
def test_every_launch_computes_the_forms_of_its_spec(backend, spec):
    """Prefill and append (dense through tensor descriptors, paged gathered), a ragged batch in one varlen
    launch and a mixed one in two: each matches the reference with its forms, and its row says so."""
    cpu_only()
    info = run_info_after_checking(backend, spec)
    wanted = "+".join(f for f, on in (("window", True), ("sinks", spec.sinks), ("softcap", spec.softcap)) if on)
    assert all(launch["forms"] == wanted for launch in info.get("launches", [info])), info


def _poisoned_before_windows(spec, inputs, granule):
    """Inputs whose keys and values before each request's window_start are NaN: a kernel that reads a tile
    there (even masked: 0 · NaN is NaN) returns NaN. The reference runs on the clean inputs."""
    k, v = inputs.k.clone(), inputs.v.clone()
    if inputs.ragged:
        starts = spec.batch.cu_seqlens_k
        for i, n in enumerate(spec.batch.kv_lens):
            lo = starts[i]
            k[lo : lo + window_start(n, spec.window, granule)] = float("nan")
            v[lo : lo + window_start(n, spec.window, granule)] = float("nan")
    else:
        k[:, : window_start(spec.kv_len, spec.window, granule)] = float("nan")
        v[:, : window_start(spec.kv_len, spec.window, granule)] = float("nan")
    return k, v


@pytest.mark.parametrize(
    "op,page_size", [("decode", None), ("decode", 16), ("ragged", 16), ("work", None), ("work-fused", 16)]
)
def test_a_windowed_split_decode_reads_only_the_window_and_adds_each_sink_once(op, page_size):
    """Windows of 100 keys in caches of 300, 37 and 150 (uniform: 150) cut into splits of the window's keys
    (granules of 16): the tiles before each window are never read (they hold NaN here), the splits are sized
    on the window, and the sinks (made large enough to weigh ~5-10% of a row) join once, in the combine, in
    the fused merge, or where a request of one piece writes its output."""
    cpu_only()
    forms = dict(window=100, sinks=True, dtype="fp16")
    if op == "decode":
        spec = tiny_spec("decode", group=2, batch=2, kv_len=150, **forms)
    else:
        spec = ExperimentSpec.from_mix("q1s300_q1s37_q1s150", 4, 2, 64, **forms)
    inputs = make_inputs(spec, DEVICE)
    inputs = replace(inputs, sinks=inputs.sinks + 3.0)
    k, v = _poisoned_before_windows(spec, inputs, 16)
    cache = {}
    if page_size and inputs.ragged:
        paged = to_paged_ragged(k, v, spec.batch.kv_lens, page_size)
        k, v, cache = paged.k_pages, paged.v_pages, {"block_table": paged.block_table, "page_size": page_size}
    elif page_size:
        paged = to_paged(k, v, page_size)
        k, v, cache = paged.k_pages, paged.v_pages, {"block_table": paged.block_table, "page_size": page_size}
    elif inputs.ragged:
        cache = {"cu_seqlens_k": inputs.cu_seqlens_k}
    kw = {"granule": 16, "forms": ops.Forms(window=spec.window, sinks=inputs.sinks)}
    if op == "decode":
        launch = ops.Decode(inputs.q, k, v, spec.kv_len, cache.get("block_table"), page_size, num_splits=2, **kw)
        assert (launch.splits, launch.kw["tokens_per_split"]) == (2, 64)  # 102 keys from 48 on, not 150
    elif op == "ragged":
        kv_lens = torch.tensor(spec.batch.kv_lens, dtype=torch.int32, device=DEVICE)
        launch = ops.RaggedDecode(inputs.q, k, v, kv_lens, spec.kv_len, num_splits=3, **cache, **kw)
        assert (launch.splits, launch.tokens) == (3, 48)  # the longest window's 108 keys, not 300
    else:
        launch = ops.WorkDecode(inputs.q, k, v, spec.batch.kv_lens, sms=16, fused=op == "work-fused", **cache, **kw)
        assert launch.plan.splits == (3, 1, 3) and launch.plan.items[0].lo == 192  # 300's window from key 192
    _checked(spec, inputs, launch())


@pytest.mark.parametrize(
    "spec",
    [
        tiny_spec("prefill", group=2, batch=1, kv_len=40, kv_dtype="fp8_e4m3", kv_scale="tensor"),  # descriptors
        ExperimentSpec.from_mix("q20s30_3q1s17", 4, 2, 64, kv_dtype="fp8_e4m3", kv_scale="head", page_size=16),
    ],
)
def test_an_fp8_cache_is_read_as_e4m3_with_its_scales(spec):
    """Uniform prefill through tensor descriptors (one scale for the cache) and a mixed batch on pages of 16
    (a scale a KV head: the varlen launch and the ragged split decode): K and V reach the kernels as e4m3,
    the K scale folded into the score scale, the V scale into the output."""
    cpu_only()
    info = run_info_after_checking("triton", spec)
    assert all(launch["kv_dtype"] == "fp8_e4m3" for launch in info.get("launches", [info])), info


@pytest.mark.parametrize("page_size,scale", [(None, "tensor"), (16, "head")])
def test_an_fp8_split_decode_matches_the_reference(page_size, scale):
    cpu_only()
    spec = tiny_spec("decode", group=4, batch=2, kv_len=70, kv_dtype="fp8_e4m3", kv_scale=scale, sinks=True)
    inputs = make_inputs(spec, DEVICE)
    k, v, table = inputs.k, inputs.v, None
    if page_size:
        paged = to_paged(k, v, page_size)
        k, v, table = paged.k_pages, paged.v_pages, paged.block_table
    assert k.dtype == torch.float8_e4m3fn and inputs.k_scale.numel() == (2 if scale == "head" else 1)
    forms = ops.Forms(sinks=inputs.sinks, k_scale=inputs.k_scale, v_scale=inputs.v_scale)
    launch = ops.Decode(inputs.q, k, v, spec.kv_len, table, page_size, num_splits=3, granule=16, forms=forms)
    assert launch.splits == 3
    _checked(spec, inputs, launch())


def test_head_dim_256_with_gemma_2s_forms():
    """Gemma-2's head dim with its soft-cap and a window shorter than the cache, append and paged decode."""
    cpu_only()
    gemma = dict(group=2, batch=1, head_dim=256, window=16, softcap=50.0)
    for spec in (tiny_spec("append", kv_len=40, chunk=8, **gemma), tiny_spec("decode", kv_len=40, page_size=16,
                                                                              **gemma)):  # fmt: skip
        assert run_info_after_checking("triton", spec)["forms"] == "window+softcap"


def test_the_backend_declares_the_forms_and_refuses_what_it_lacks_in_one_line():
    triton = get_backend("triton")
    assert triton.caps.summary()["forms"] == "window+sinks+softcap"
    takes = [dict(window=128), dict(sinks=True), dict(softcap=50.0), dict(head_dim=256),
             dict(kv_dtype="fp8_e4m3", kv_scale="tensor"), dict(kv_dtype="fp8_e4m3", kv_scale="head")]  # fmt: skip
    assert [triton.supports(tiny_spec("decode", **kw)) for kw in takes] == [None] * len(takes)
    fp8_q = tiny_spec("decode", kv_dtype="fp8_e4m3", fp8_attention=True)
    assert triton.supports(fp8_q).startswith("fp8_attention: this backend takes FP8 K/V with queries in")
    assert triton.supports(tiny_spec("decode", head_dim=96)) == "head_dim 96: takes 64, 128, 256"


def test_a_spec_with_a_form_never_runs_the_gluon_kernels(monkeypatch):
    """The Gluon kernels take plain attention at head dim 64 or 128 only: on an sm90 GPU (faked here) a spec
    with a form, an FP8 cache or head dim 256 runs the Triton kernels, which its row names."""
    monkeypatch.setattr(ops, "gluon_capable", lambda device: True)
    triton = get_backend("triton")
    plain = tiny_spec("prefill", kv_len=40)
    assert triton._gluon(plain, make_inputs(plain, DEVICE), ops)
    for kw in (dict(window=8), dict(sinks=True), dict(softcap=30.0), dict(head_dim=256), dict(kv_dtype="fp8_e4m3")):
        spec = tiny_spec("prefill", kv_len=40, **kw)
        assert not triton._gluon(spec, make_inputs(spec, DEVICE), ops), kw


def test_head_dim_256_tunes_over_configurations_that_fit_shared_memory(monkeypatch):
    """At head dim 256 the autotuner prunes to the _WIDE configurations (Q and two or three stages of K and V
    in at most ~192 KiB of bf16), at 64 and 128 to the others, as before."""
    from frameworks.triton import kernels

    monkeypatch.setattr(kernels, "INTERPRET", False)  # the GPU's configuration lists, not the interpreter's one
    prefill, decode = kernels._prefill_configs(), kernels._decode_configs()
    for configs, rows in ((prefill, lambda c: c.kwargs["BLOCK_M"]), (decode, lambda c: 16)):
        wide = kernels._by_head_dim(configs, {}, HEAD_DIM=256)
        assert wide and all(kernels._wide(c) for c in wide)
        assert not any(kernels._wide(c) for c in kernels._by_head_dim(configs, {}, HEAD_DIM=128))
        for c in wide:  # Q, then K and V a stage, two bytes an element
            assert (rows(c) + 2 * c.kwargs["BLOCK_N"] * c.num_stages) * 256 * 2 <= 192 * 1024, c
    assert len(kernels._by_head_dim(prefill, {}, HEAD_DIM=64)) == 5


def test_the_work_list_of_a_windowed_decode_covers_each_window_once():
    kv_lens = [131072, 5000, 100, 0]
    plan = plan_work(kv_lens, 8, 132, window=4096)
    for request, n in enumerate(kv_lens):
        ranges = sorted((i.lo, i.hi) for i in plan.items if i.request == request and i.kv_head == 0)
        assert ranges[0][0] == window_start(n, 4096, 128) and ranges[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
        assert ranges[0][0] <= max(0, n - 1 - 4096) < ranges[0][0] + 128  # the granule that holds the first key
    assert plan.split_tokens <= 4096 + 128  # sized on the windows: the 128k cache reads 4224 keys, not 131072


# ---- real shapes on the GPU (skipped without CUDA): python3 -m pytest -q -n 0 -m gpu tests/test_triton_forms.py


@pytest.fixture(scope="module")
def measurer():
    from .helpers import measurer_on

    return measurer_on("cuda", iterations=5, warmup=2)


def _measured_ok(measurer, backend, spec, forms: str | None = None, kv_dtype: str | None = None):
    """One row at a real shape: ok, within the reference's tolerance, every launch a Triton (not Gluon) kernel
    that says it computed `forms` and read an FP8 cache where `kv_dtype` says so."""
    from harness.store import Status

    row = measurer.measure(spec, get_backend(backend))
    assert row.status is Status.OK, f"{row.status}: {row.reason}"
    assert row.rel_err < 2e-2, row.rel_err
    from frameworks import info_dict

    info = info_dict(row.backend_info)
    for launch in info.get("launches", [info]):
        assert not launch["kernel"].startswith("gluon"), row.backend_info
        assert launch.get("forms") == forms and launch.get("kv_dtype") == kv_dtype, row.backend_info
    return row


GEMMA = dict(num_q_heads=16, num_kv_heads=8, head_dim=256, softcap=50.0, model="Gemma-2-9B")
GPT_OSS = dict(num_q_heads=64, num_kv_heads=8, head_dim=64, sinks=True, model="gpt-oss-120b")


@pytest.mark.gpu
@pytest.mark.parametrize("window", [None, 4096])
@pytest.mark.parametrize(
    "workload,batch,q_len,kv_len,page",
    [("prefill", 1, 6000, 6000, None), ("append", 2, 512, 8192, 16), ("decode", 8, 1, 8192, None),
     ("decode", 8, 1, 8192, 16)],
)  # fmt: skip
def test_gemma_2_at_head_dim_256_on_gpu(measurer, workload, batch, q_len, kv_len, page, window):
    """Gemma-2-9B's layers (16/8 heads, d 256, soft-cap 50; half of them a 4096-key window): the d=256
    configurations fit the GPU's shared memory (the autotuner finds one that compiles) and match."""
    spec = ExperimentSpec(workload, batch, q_len, kv_len, window=window, page_size=page, **GEMMA)
    _measured_ok(measurer, "triton", spec, "window+softcap" if window else "softcap")


@pytest.mark.gpu
@pytest.mark.parametrize("splits", ["waves", "fill", "work", "work-fused"])
@pytest.mark.parametrize("page", [None, 16])
def test_gpt_oss_windowed_decode_with_sinks_on_gpu(measurer, splits, page):
    """gpt-oss (64/8 heads, d 64, a 128-key window and sinks): batch 1 on a 32k cache, each split rule sizing its
    splits on the window's ~256 keys, the sinks added once where a split request is combined."""
    spec = ExperimentSpec("decode", 1, 1, 32768, window=128, page_size=page, **GPT_OSS)
    _measured_ok(measurer, f"triton[splits={splits}]", spec, "window+sinks")


@pytest.mark.gpu
@pytest.mark.parametrize("window", [None, 128])
@pytest.mark.parametrize(
    "what", ["prefill", "q1000s3000_q200s9000_8q1s20000", "8q1s20000_q1s100_2q1s5000"]
)  # fmt: skip
def test_gpt_oss_prefill_and_ragged_batches_on_gpu(measurer, what, window):
    if what == "prefill":
        spec = ExperimentSpec("prefill", 1, 4096, 4096, window=window, **GPT_OSS)
    else:
        spec = ExperimentSpec.from_mix(what, window=window, page_size=16, **GPT_OSS)
    _measured_ok(measurer, "triton", spec, "window+sinks" if window else "sinks")


@pytest.mark.gpu
@pytest.mark.parametrize("scale", ["tensor", "head"])
@pytest.mark.parametrize(
    "what,page", [("decode", None), ("decode", 16), ("decode", 256), ("append", 64),
                  ("q300s1000_3q4s1500_5q1s700", 16), ("8q1s3000_q1s17", None)],
)  # fmt: skip
def test_fp8_cache_on_gpu(measurer, what, page, scale):
    """An FP8 cache (32/8 heads, d 128) in the decode (dense, paged gathered and through TMA), append and
    ragged kernels, one scale a tensor or a KV head: checked against the reference on the dequantized cache."""
    fp8 = dict(kv_dtype="fp8_e4m3", kv_scale=scale, page_size=page, model="gpu-test")
    if what in ("decode", "append"):
        spec = ExperimentSpec(what, 4, 1 if what == "decode" else 128, 8192, 32, 8, 128, **fp8)
    else:
        spec = ExperimentSpec.from_mix(what, 32, 8, 128, **fp8)
    _measured_ok(measurer, "triton", spec, kv_dtype="fp8_e4m3")
