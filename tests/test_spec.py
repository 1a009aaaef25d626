import dataclasses

import pytest

from specs import MODELS, PRESETS, DType, ExperimentSpec, SpecError, Workload, get_preset


def spec(**overrides):
    base = dict(workload="prefill", batch_size=2, q_len=8, kv_len=8, num_q_heads=4, num_kv_heads=2, head_dim=16)
    base.update(overrides)
    return ExperimentSpec(**base)


@pytest.mark.parametrize(
    "overrides, field",
    [
        (dict(batch_size=0), "batch_size"),
        (dict(head_dim=-4), "head_dim"),
        (dict(num_kv_heads=3), "num_q_heads"),
        (dict(workload="decode", q_len=2, kv_len=8), "q_len"),
        (dict(workload="prefill", q_len=4, kv_len=8), "q_len"),
        (dict(workload="append", q_len=9, kv_len=8), "q_len"),
        (dict(workload="train"), "workload"),
        (dict(dtype="fp8"), "dtype"),
        (dict(page_size=0), "page_size"),
        (dict(batch_size=2.5), "batch_size"),
    ],
)
def test_invalid_specs_name_the_field(overrides, field):
    with pytest.raises(SpecError) as info:
        spec(**overrides)
    assert str(info.value).startswith(field + ":")


def test_enum_errors_list_the_allowed_values():
    with pytest.raises(SpecError, match="expected one of prefill, append, decode"):
        spec(workload="train")
    with pytest.raises(SpecError, match="expected one of bf16, fp16, fp32"):
        spec(dtype="int8")


def test_strings_become_enums():
    s = spec(workload="append", q_len=4, dtype="fp16")
    assert s.workload is Workload.APPEND and s.dtype is DType.FP16


def test_prefill_causal_flops_count_the_triangle():
    # L = 4: visible pairs 1 + 2 + 3 + 4 = 10 a sequence, 30 over the batch of 3
    s = spec(q_len=4, kv_len=4, batch_size=3, num_q_heads=8, num_kv_heads=2, head_dim=64)
    assert s.visible_pairs == 30
    assert s.flops == 4 * 64 * 8 * 10 * 3


def test_append_flops_are_bottom_right():
    # Sq = 3, Sk = 5: query i sees 5 - 3 + i + 1 keys -> 3 + 4 + 5 = 12 (top-left would give 1+2+3 = 6)
    s = spec(workload="append", q_len=3, kv_len=5, batch_size=1, num_q_heads=4, num_kv_heads=1, head_dim=32)
    assert s.causal_offset == 2
    assert s.visible_pairs == 12
    assert s.flops == 4 * 32 * 4 * 12


def test_decode_flops_see_every_key():
    s = spec(workload="decode", q_len=1, kv_len=1000, batch_size=7, num_q_heads=32, num_kv_heads=8, head_dim=128)
    assert s.visible_pairs == 1000 * 7 and not s.is_masked
    assert s.flops == 4 * 128 * 32 * 1000 * 7


def test_non_causal_counts_all_pairs():
    s = spec(q_len=6, kv_len=6, causal=False)
    assert s.visible_pairs == 36 * s.batch_size and not s.is_masked


def test_bytes_count_q_k_v_read_and_o_written_with_gqa():
    s = spec(workload="decode", q_len=1, kv_len=100, batch_size=2, num_q_heads=32, num_kv_heads=4, head_dim=128)
    q_and_o = 2 * 2 * 1 * 32 * 128
    k_and_v = 2 * 2 * 100 * 4 * 128  # GQA: K/V have only the KV heads
    assert s.ideal_bytes == (q_and_o + k_and_v) * 2
    assert s.gqa_group == 8
    assert spec(dtype="fp32").ideal_bytes == 2 * spec(dtype="bf16").ideal_bytes


def test_models_have_the_published_shapes():
    assert (MODELS["Llama-3.1-8B"].num_q_heads, MODELS["Llama-3.1-8B"].num_kv_heads) == (32, 8)
    assert MODELS["Qwen3-30B-A3B"].gqa_group == 8
    assert MODELS["Qwen3-235B-A22B"].gqa_group == 16
    assert MODELS["Llama-3.1-70B"].num_q_heads == 64


def test_readme_preset_is_batch_256_by_4096_with_chunk_128():
    specs = PRESETS["readme"].specs()
    assert len(specs) == 3 * 3 + 4 * 2 * 3 + 3  # the new models once a layer kind (full, windowed); MLA once
    assert {s.batch_size for s in specs} == {256} and {s.kv_len for s in specs} == {4096}
    assert {s.q_len for s in specs if s.workload is Workload.APPEND} == {128}
    assert {s.model for s in specs} == {"Llama-3.1-8B", "Qwen3-30B-A3B", "Qwen3-235B-A22B", "gpt-oss-120b",
                                        "gpt-oss-20b", "Gemma-3-27B", "Gemma-2-9B", "DeepSeek-V2-Lite"}  # fmt: skip
    assert {(s.model, s.window, s.sinks, s.softcap) for s in specs if s.model.startswith("Gemma-2")} == {
        ("Gemma-2-9B", None, False, 50.0), ("Gemma-2-9B", 4096, False, 50.0)}  # fmt: skip
    mla = {s.workload.value: s.form for s in specs if s.model == "DeepSeek-V2-Lite"}
    assert mla == {"prefill": "mla-expanded", "append": "mla-expanded", "decode": "mla-absorbed"}


def test_full_preset_skips_chunks_longer_than_the_sequence_and_narrows():
    grid = get_preset("full").narrowed(models=["Qwen3-8B"], workloads=["append"], batch_sizes=[1], seq_lens=[512, 4096])
    specs = grid.specs()
    assert [(s.q_len, s.kv_len) for s in specs] == [(128, 512), (512, 512), (128, 4096), (512, 4096)]
    small = get_preset("full").narrowed(workloads=["append"], seq_lens=[256], models=["Qwen3-8B"], batch_sizes=[1])
    assert [(s.q_len, s.kv_len) for s in small.specs()] == [(128, 256)]


def test_narrowing_validates_names():
    with pytest.raises(SpecError, match="models: 'GPT-5' is not known"):
        get_preset("smoke").narrowed(models=["GPT-5"])
    with pytest.raises(SpecError, match="workloads"):
        get_preset("smoke").narrowed(workloads=["train"])
    with pytest.raises(SpecError, match="preset: 'huge'"):
        get_preset("huge")


def test_full_preset_specs_that_cannot_fit_are_skipped_with_a_reason():
    from harness.measure import memory_skip_reason

    h100 = 80 * 2**30
    specs = get_preset("full").narrowed(models=["Qwen3-235B-A22B"], workloads=["prefill"], batch_sizes=[256]).specs()
    skipped = {s.kv_len: memory_skip_reason(s, h100) for s in specs}
    assert skipped[4096] is None  # 36 GiB of Q, K, V, O fits
    # Q + O: 2·256·32768·64·128·2 B = 256 GiB; K + V with 4 KV heads: 16 GiB
    assert skipped[32768].startswith("skipped: inputs and output need 272.0 GiB, more than 90% of this GPU's 80.0 GiB")


def test_scaling_leaves_out_calls_above_its_flop_cap():
    grid = get_preset("scaling")
    kept = grid.specs()
    assert len(kept) == 62 and all(s.flops <= 20e12 for s in kept)
    key = lambda s: (s.model, s.workload.value, s.batch_size, s.kv_len)  # noqa: E731
    left_out = {key(s) for s in dataclasses.replace(grid, max_tflop=None).specs()} - {key(s) for s in kept}
    assert ("Llama-3.1-8B", "prefill", 1, 131072) in left_out and ("Llama-3.1-8B", "prefill", 1, 32768) not in left_out
    assert not any(w == "decode" for _, w, _, _ in left_out)  # decodes are cheap at any length
    assert ("Llama-3.1-8B", "decode", 16, 131072) in {key(s) for s in kept}


def test_a_sweep_narrowed_to_nothing_by_the_cap_says_so():
    from typer.testing import CliRunner

    import run

    result = CliRunner().invoke(run.app, ["sweep", "--preset", "scaling", "--seq", "131072", "-w", "prefill"])
    assert result.exit_code == 2
    assert "no specs" in result.output and "leaves out calls of more than 20 TFLOP" in result.output


def test_sizes_past_32_bits_are_refused_before_a_row_is_written(tmp_path):
    """A batch, length or token total past 2**31 - 1 is one clear line (it once wrote an `oom` row whose kv_len no
    int64 column holds, and every later read of the file failed); the file is left as it was."""
    import hashlib

    from typer.testing import CliRunner

    import run
    from specs.spec import MAX_SIZE

    with pytest.raises(SpecError, match="kv_len: must be at most 2,147,483,647"):
        ExperimentSpec("decode", 1, 1, MAX_SIZE + 1, 32, 8, 128)
    assert ExperimentSpec("decode", MAX_SIZE, 1, MAX_SIZE, 32, 8, 128).total_kv == MAX_SIZE**2  # under int64
    out = tmp_path / "kept.csv"
    out.write_text("not a results file\n")
    before = hashlib.sha256(out.read_bytes()).hexdigest()
    args = ["sweep", "-b", "torch-naive", "-m", "Llama-3.1-8B", "--device", "cpu", "-w", "decode", "-o", str(out)]
    for extra in (["--seq", "9" * 23], ["--lengths", "lognormal:128:50", "--batch", "4"]):
        result = CliRunner().invoke(run.app, args + extra)
        assert result.exit_code == 2 and "a 32-bit size" in result.output, result.output
    assert hashlib.sha256(out.read_bytes()).hexdigest() == before
