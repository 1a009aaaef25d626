"""The Triton MLA decode's variants (frameworks/triton_mla.py: block_h, splits, grid) under the interpreter on
tiny latent dims, each against the fp32 reference: paged, ragged speculative steps, splits > 1 so the combines
run; the split rules on the host; and each variant at DeepSeek-V3's real shape on the GPU (marked `gpu`)."""

import pytest
import torch

from frameworks import get_backend
from specs import ExperimentSpec

from .test_fp8_mla import mla_decode, run_checked

CPU = torch.device("cpu")


def tiny(heads, **kw):
    return mla_decode(heads=heads, latent=64, rope=16, **kw)


SPECS = {
    "paged-64-heads": lambda: tiny(64, batch=1, kv_len=700, page_size=16),  # splits on 4 CPU "multiprocessors"
    "ragged-spec": lambda: ExperimentSpec.from_mix(
        "q3s40_q1s700", 16, 1, 80, kv_lora_rank=64, rope_dim=16, v_head_dim=64, page_size=16
    ),  # fmt: skip
}
VARIANTS = ["block_h=64,splits=work,grid=heads", "block_h=128,splits=work", "block_h=32,grid=heads"]


@pytest.mark.parametrize(
    "case,variant",
    [(case, variant) for case in SPECS for variant in VARIANTS if case == "paged-64-heads" or "work" in variant],
)
def test_triton_mla_variants_match_the_reference(case, variant):
    backend = get_backend("triton-mla")
    if backend.availability(CPU):
        pytest.skip(backend.availability(CPU))
    spec = SPECS[case]()
    info = run_checked(f"triton-mla[{variant}]", spec)
    choice = dict(item.split("=") for item in variant.split(","))
    assert info["block_h"] == int(choice["block_h"])
    assert info["block_dv"] == (32 if choice["block_h"] == "128" else 64)
    assert info["grid"] == choice.get("grid", "tokens")
    by_work = "splits=work" in variant
    assert info["combine"] == ("all-splits" if not by_work else "loop" if info["splits"] > 1 else "none")
    assert info["splits"] > 1 or case != "paged-64-heads"  # the combine runs


def test_one_work_split_writes_the_output_with_no_combine():
    backend = get_backend("triton-mla")
    if backend.availability(CPU):
        pytest.skip(backend.availability(CPU))
    info = run_checked("triton-mla[block_h=64,splits=work]", tiny(64, batch=8, kv_len=100, page_size=16))
    assert (info["splits"], info["combine"], info["num_warps"]) == (1, "none", 8)


def test_the_work_split_cuts_long_caches_and_not_short_ones():
    from frameworks.triton_mla import work_split

    splits, split_len = work_split([65536] * 8, 2, 132)  # DeepSeek-V3 at block_h=64: 16 programs unsplit, ~a wave split
    assert splits >= 8 and split_len % 128 == 0 and splits * split_len >= 65536
    assert work_split([4096] * 128, 2, 132)[0] == 1  # 256 programs already fill 132 multiprocessors
    assert work_split([65536], 4, 132)[0] >= 16  # one long request: its pieces fill the GPU


def test_variant_keys_say_what_a_sweep_measures():
    cls = type(get_backend("triton-mla"))
    assert cls.contender_variants() == [
        "",
        "block_h=64",
        "block_h=128",
        "splits=work",
        "grid=heads",
        "block_h=64,splits=work,grid=heads",
        "block_h=128,splits=work,grid=heads",
    ]
    few = tiny(16)
    assert not cls("block_h=64").variant_applies(few) and cls("splits=work").variant_applies(few)
    from harness.plan import plan_tasks

    planned = {(t.spec.num_q_heads, t.variant) for t in plan_tasks([few, tiny(64)], ["triton-mla[*]"])}
    assert (64, "block_h=64,splits=work,grid=heads") in planned  # the combinations run where their keys apply
    assert not any(heads == 16 and "block_h" in variant for heads, variant in planned)


# ---- on the GPU host (skipped on a CPU): each variant at DeepSeek-V3's real shape ----------------------------

GPU_VARIANTS = ["", "block_h=32", "block_h=64", "block_h=128", "splits=work", "grid=heads",
                "block_h=64,splits=work,grid=heads", "block_h=128,splits=work,grid=heads"]  # fmt: skip


@pytest.mark.gpu
@pytest.mark.parametrize("variant", GPU_VARIANTS)
@pytest.mark.parametrize("batch,kv_len", [(8, 4096), (2, 1000)])
def test_triton_mla_variants_on_gpu(variant, batch, kv_len):
    from harness.store import Status

    from .helpers import measurer_on

    measurer = measurer_on("cuda", iterations=3, warmup=1)
    spec = ExperimentSpec("decode", batch, 1, kv_len, 128, 1, 576, kv_lora_rank=512, rope_dim=64, v_head_dim=512,
                          page_size=64, model="DeepSeek-V3")  # fmt: skip
    row = measurer.measure(spec, get_backend(f"triton-mla[{variant}]" if variant else "triton-mla"))
    assert row.status is Status.OK, (row.status, row.reason)
