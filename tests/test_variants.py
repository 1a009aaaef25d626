"""Variants as part of what a row is: parsed from -b, kept apart by resume, latest, compare and the
report, listed by `run.py list --json`; old rows load with an empty variant."""

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import run
from frameworks import info_dict, info_text
from harness.plan import plan_tasks, resolve_backends
from harness.report.html import reproduce_command
from harness.store import COLUMNS, _csv_line, labelled, latest, load_frame, load_rows
from specs import ExperimentSpec, SpecError

from .test_store import ok_row

runner = CliRunner()
SWEEP = ["sweep", "--preset", "smoke", "-w", "decode", "-m", "Llama-3.1-8B", "--no-plots", "--iterations", "2",
         "--warmup", "0"]  # fmt: skip


def test_backend_arguments_resolve_to_canonical_variants():
    pairs = resolve_backends(["torch-naive", "torch-naive[gqa=repeat]", "torch-naive[ gqa = repeat ]", "flashinfer[*]"])
    assert pairs == [
        ("torch-naive", ""),
        ("torch-naive", "gqa=repeat"),
        ("flashinfer", ""),
        ("flashinfer", "mixed=batch-attention"),
        ("flashinfer", "sinks=attention-sink"),
    ]
    assert resolve_backends(["torch-naive[gqa=grouped]"]) == [("torch-naive", "")]  # the default is said by ''


@pytest.mark.parametrize(
    "text, message",
    [
        ("torch-naive[gqa=rows]", "variant gqa='rows' is not valid; expected one of grouped, repeat"),
        ("torch-naive[split=2]", "no variant key 'split'; its keys: gqa"),
        ("sdpa[x=1]", "no variant key 'x'; its keys: none"),
        ("torch-naive[gqa]", "variant 'gqa' is not key=value"),
        ("nope[gqa=repeat]", "'nope' not known"),
    ],
)
def test_a_bad_variant_names_what_is_allowed(text, message):
    with pytest.raises(SpecError, match=message.replace("[", r"\[")):
        resolve_backends([text])


def test_a_star_beside_keys_is_refused_naming_both_forms():
    with pytest.raises(SpecError, match=r"\* stands alone, NAME\[\*\]"):
        resolve_backends(["triton[*,spec=varlen]"])


def test_a_ranking_view_refuses_another_metric_in_one_line():
    for view in ("--verdict", "--winners", "--model-step"):
        append = str(Path(__file__).resolve().parent.parent / "results" / "h100-append.csv")
        result = runner.invoke(run.app, ["table", append, view, "--metric", "tflops"])
        assert result.exit_code == 2 and f"--metric: {view} ranks by p50_ms" in result.output, result.output


def test_a_variant_that_changes_nothing_for_a_spec_is_not_planned():
    gqa = ExperimentSpec("decode", 2, 1, 32, 8, 2, 64, model="tiny")
    mha = ExperimentSpec("decode", 2, 1, 32, 4, 4, 64, model="tiny")
    tasks = plan_tasks([gqa, mha], ["torch-naive", "torch-naive[gqa=repeat]"])
    assert [(t.spec.num_kv_heads, t.variant) for t in tasks] == [(2, ""), (2, "gqa=repeat"), (4, "")]
    assert tasks[1].label == "torch-naive[gqa=repeat]" and tasks[0].key != tasks[1].key


def test_a_sweep_whose_every_variant_changes_nothing_says_so_in_one_line(tmp_path):
    """Decodes with only triton[spec=split-kv] (a key for speculative steps, appends and mixed batches) plan no task:
    one line naming the option and why, exit 2, no file written; with a backend that runs beside it, the sweep says
    how many (spec, variant) pairs it did not plan (a table's "—")."""
    out = tmp_path / "none.csv"
    result = runner.invoke(run.app, [*SWEEP, "-b", "triton[spec=split-kv]", "-o", str(out), "--device", "cpu"])
    assert result.exit_code == 2 and not out.exists(), result.output
    assert "--backend: triton[spec=split-kv]: no task to run" in result.output and "Traceback" not in result.output
    result = runner.invoke(run.app, [*SWEEP, "-b", "torch-naive,triton[spec=split-kv]", "-o", str(out), "--device",
                                     "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output
    planned = {r.backend for r in load_rows(out)}
    assert planned == {"torch-naive"} and "pairs not planned" in result.output


def test_two_variants_sweep_then_resume_measures_nothing(tmp_path):
    out = tmp_path / "v.csv"
    args = [*SWEEP, "-b", "torch-naive,torch-naive[gqa=repeat]", "-o", str(out), "--device", "cpu"]
    first = runner.invoke(run.app, args)
    assert first.exit_code == 0, first.output
    rows = load_rows(out)
    assert sorted(r.variant for r in rows) == ["", "gqa=repeat"]
    assert {info_dict(r.backend_info)["gqa"] for r in rows} == {"grouped rows", "repeat K/V"}
    again = runner.invoke(run.app, [*args, "--resume"])
    assert again.exit_code == 0, again.output
    assert "0 measured now" in again.output and len(load_rows(out)) == 2


def test_compare_pairs_rows_by_variant(tmp_path):
    spec = ExperimentSpec("decode", 2, 1, 32, 8, 2, 64, model="tiny")
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    from harness.store import append_rows

    append_rows(a, [ok_row(spec, p50_ms=1.0), ok_row(spec, p50_ms=4.0, variant="gqa=repeat")])
    append_rows(b, [ok_row(spec, p50_ms=1.0), ok_row(spec, p50_ms=4.0, variant="gqa=repeat")])
    result = runner.invoke(run.app, ["compare", str(a), str(b), "--no-spread"])
    assert result.exit_code == 0, result.output
    assert "2 compared" in result.output and "geometric mean of B/A = 1.0000" in result.output


def test_latest_and_labels_keep_variants_apart(tmp_path):
    spec = ExperimentSpec("decode", 2, 1, 32, 32, 8, 128, model="Llama-3.1-8B")
    rows = [ok_row(spec, p50_ms=1.0), ok_row(spec, p50_ms=4.0, variant="gqa=repeat")]
    assert len(latest(rows)) == 2
    named = labelled(rows)
    assert [r.backend for r in named] == ["torch-naive", "torch-naive[gqa=repeat]"]
    command = reproduce_command(named[1])
    assert "-b 'torch-naive[gqa=repeat]'" in command


def test_rows_written_before_variants_load_with_an_empty_variant(tmp_path):
    path = tmp_path / "old.csv"
    older = [c for c in COLUMNS if c not in ("variant", "gpu_uuid")]
    row = ok_row()
    cells = dict(zip(COLUMNS, next(csv.reader([_csv_line(row)]))))
    cells["backend_info"] = "varlen;schedule=longest-first;BLOCK_M=128"  # the pre-JSON string form
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(older)
        writer.writerow([cells[c] for c in older])
    frame = load_frame([path])
    assert list(frame["variant"]) == [""]
    info = info_dict(frame["backend_info"].iloc[0])
    assert info == {"path": "varlen", "schedule": "longest-first", "BLOCK_M": "128"}
    assert info_text({"kernel": "x", "splits": 2}) == '{"kernel":"x","splits":2}'


def test_list_json_describes_every_backend():
    result = runner.invoke(run.app, ["list", "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    catalog = {b["name"]: b for b in json.loads(result.output)}
    naive = catalog["torch-naive"]
    assert naive["available"] is True and naive["reason"] == "" and naive["capabilities"]["devices"]
    assert naive["variants"] == [
        {"key": "gqa", "values": ["grouped", "repeat"], "default": "grouped", "contenders": [],
         "help": naive["variants"][0]["help"]}
    ]  # fmt: skip
    assert catalog["flashinfer"]["available"] is False and catalog["flashinfer"]["reason"]
    assert {"mixed", "sinks"} == {v["key"] for v in catalog["flashinfer"]["variants"]}
    assert {v["key"] for v in catalog["triton"]["variants"]} >= {"splits", "gluon", "schedule"}


def test_star_takes_no_keys_and_keys_that_meet_plan_no_repeat():
    """NAME[key=value][*] is refused (its keys would be dropped); where spec=auto sends a batch's decodes to the work
    list, splits changes nothing and is not planned; spec=varlen beside mixed_launches=1 repeats mixed_launches=1;
    a uniform batch takes the uniform rule whether written as a workload or as a mix of equal requests."""
    from frameworks.triton import _auto_split_kv

    with pytest.raises(SpecError, match=r"\[\*\] stands alone"):
        resolve_backends(["triton[spec=varlen][*]"])
    steps_and_decodes = ExperimentSpec.from_mix("q4s900_2q1s17", 32, 8, 128)
    chunk_and_decodes = ExperimentSpec.from_mix("q20s30_3q1s17", 32, 8, 128)
    assert [t.variant for t in plan_tasks([steps_and_decodes], ["triton[*]"])] == ["", "spec=varlen"]
    assert [t.variant for t in plan_tasks([chunk_and_decodes], ["triton[*]"])] == ["", "splits=work"]
    asked = ["triton[spec=varlen,mixed_launches=1]", "triton[mixed_launches=1]", "triton[splits=work,spec=varlen]"]
    planned = [t.variant for t in plan_tasks([steps_and_decodes], asked)]
    assert planned == ["mixed_launches=1", "splits=work,spec=varlen"]
    as_mix = ExperimentSpec.from_mix("17q4s300", 32, 8, 128, page_size=16)
    as_workload = ExperimentSpec("spec-decode", 17, 4, 300, 32, 8, 128, page_size=16)
    assert _auto_split_kv(as_mix) == _auto_split_kv(as_workload) is False  # 136 row-block programs
