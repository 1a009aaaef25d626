"""The verdict (harness/report/verdict.py) on a hand-made results file: the best of every library a batch, win rate
within 5%, geomean and worst ratio to the best, variants grouped into their library's best; the CLI table
and the plot."""

import dataclasses
import math

import pytest
from typer.testing import CliRunner

import run
from harness.measure import make_row
from harness.report.verdict import batch_lines, render_verdict_markdown, verdict
from harness.store import Status, append_rows, labelled, load_frame, load_rows
from specs import ExperimentSpec
from specs.draw import draw_batch

from .test_store import CONFIG, ENV, ok_row

runner = CliRunner()

# four batches; p50 ms of each (backend, variant); None: the row failed
TIMES = {
    "draw:0": {("fast", ""): 1.00, ("lib", ""): 1.04, ("lib", "path=b"): 2.0, ("slow", ""): 2.0},
    "draw:1": {("fast", ""): 1.00, ("lib", ""): 1.50, ("lib", "path=b"): 1.20, ("slow", ""): 4.0},
    "draw:2": {("fast", ""): 2.00, ("lib", ""): 1.00, ("lib", "path=b"): 0.90, ("slow", ""): None},
    "draw:3": {("fast", ""): 1.00, ("lib", ""): 3.00, ("lib", "path=b"): None, ("slow", ""): 1.00},
}


def _spec(name, page_size=None):
    mix = draw_batch(int(name.split(":")[1]))
    return ExperimentSpec.from_mix(mix, 32, 8, 128, model="Llama-3.1-8B", page_size=page_size)


@pytest.fixture
def results(tmp_path):
    path = tmp_path / "drawn.csv"
    rows = []
    for name, times in TIMES.items():
        spec = _spec(name)
        for (backend, variant), p50 in times.items():
            if p50 is None:
                row = make_row(spec, backend, "", ENV, CONFIG, Status.UNSUPPORTED, "no")
            else:
                row = ok_row(spec, p50_ms=p50)
            rows.append(dataclasses.replace(row, backend=backend, variant=variant))
    # an older, slower row of the same task is superseded by the newest
    stale = dataclasses.replace(rows[0], p50_ms=0.5, timestamp="2000-01-01T00:00:00+00:00")
    append_rows(path, [stale, *rows])
    return path


def test_each_library_is_its_best_variant_a_batch_and_says_which(results):
    lines = batch_lines(load_frame([results])).set_index(["batch", "library"])
    assert len(lines) == 4 + 4 + 3  # slow did not run draw:2
    assert lines.loc[("draw:1 dense", "lib"), "variant"] == "lib[path=b]"
    assert lines.loc[("draw:1 dense", "lib"), "p50_ms"] == 1.2
    assert lines.loc[("draw:0 dense", "lib"), "variant"] == "lib"  # the default won there
    assert lines.loc[("draw:0 dense", "fast"), "best_ms"] == 1.0  # the stale 0.5 is not the newest row
    assert lines.loc[("draw:2 dense", "fast"), "ratio"] == pytest.approx(0.45)  # 0.9 (lib[path=b]) ÷ 2.0


def test_win_rate_geomean_and_worst_by_hand(results):
    table = verdict(load_frame([results])).set_index("library")
    fast, lib, slow = table.loc["fast"], table.loc["lib"], table.loc["slow"]
    assert list(table.index) == ["fast", "lib", "slow"]  # by win rate, then geomean
    # fast: best on 0, 1, 3; 2.0 against 0.9 on draw:2
    assert (fast.batches, fast.ran, fast.wins, fast.win_rate) == (4, 4, 3, 0.75)
    assert fast.geomean == pytest.approx(0.45**0.25) and fast.worst == pytest.approx(0.45)
    assert fast.worst_batch == "draw:2 dense"
    # lib: 1.04 is within 5% of 1.0 on draw:0, best on draw:2; 1.2 on draw:1, 3.0 on draw:3
    assert (lib.ran, lib.wins) == (4, 2)
    assert lib.geomean == pytest.approx(math.prod([1 / 1.04, 1 / 1.2, 1.0, 1 / 3]) ** 0.25)
    assert lib.worst == pytest.approx(1 / 3) and lib.variants == "default 50%, path=b 50%"
    # slow: a tie with the best on draw:3 is a win; draw:2 not run counts against its win rate only
    assert (slow.ran, slow.wins, slow.win_rate) == (3, 1, 0.25)
    assert slow.geomean == pytest.approx((0.5 * 0.25 * 1.0) ** (1 / 3))
    # a wider window: lib's 1.2 on draw:1 is within 25%
    assert verdict(load_frame([results]), within=0.25).set_index("library").loc["lib", "wins"] == 3


def test_the_verdict_reads_stored_and_labelled_rows_alike(results):
    frame = load_frame([results])
    expected = verdict(frame)
    for data in (labelled(frame), labelled(load_rows(results)), load_rows(results)):
        assert verdict(data).drop(columns="variants").equals(expected.drop(columns="variants"))
        assert list(verdict(data)["variants"]) == list(expected["variants"])


def test_devices_are_judged_apart_and_the_table_fits_100_columns(results, tmp_path):
    rows = load_rows(results)
    other = [dataclasses.replace(r, device="NVIDIA H200") for r in rows if r.backend != "slow"]
    table = verdict(rows + other)
    assert set(table["device"]) == {rows[0].device, "NVIDIA H200"}
    assert set(table[table["device"] == "NVIDIA H200"]["library"]) == {"fast", "lib"}
    long = dataclasses.replace(rows[1], backend="transformer-engine", variant="a_very_long_variant=value_of_it")
    text = render_verdict_markdown(verdict([*rows, long]))
    assert max(len(line) for line in text.splitlines()) <= 100, text


def test_cli_table_verdict_and_plot(results, tmp_path):
    out = runner.invoke(run.app, ["table", str(results), "--verdict", "--format", "markdown"])
    assert out.exit_code == 0, out.output
    assert "| lib | 4 | 50% |" in out.output and "| fast | 4 | 75% | 0.82 | 0.45 | draw:2 dense |" in out.output
    out = runner.invoke(run.app, ["table", str(results), "--verdict", "--within", "-1"])
    assert out.exit_code == 2 and "--within" in out.output
    out = runner.invoke(run.app, ["table", str(results), "--verdict", "--within", "0.125", "--format", "markdown"])
    assert out.exit_code == 0 and "win: within 12.5% of the best time" in out.output  # the threshold used, unrounded
    out = runner.invoke(run.app, ["table", str(results), "--within", "0.1"])  # no --verdict: said, not ignored
    assert out.exit_code == 2 and "--within: only means something with --verdict" in out.output
    out = runner.invoke(run.app, ["plot", str(results), "--out-dir", str(tmp_path / "plots")])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "plots" / "cpu_verdict.png").exists() or any((tmp_path / "plots").glob("*_verdict.png"))


def test_a_library_without_an_ok_row_is_listed_and_never_wins(results):
    rows = load_rows(results)
    never = [
        make_row(rows[i].spec, "never", "", ENV, CONFIG, status, "no")
        for i, status in ((1, Status.UNSUPPORTED), (5, Status.UNSUPPORTED), (9, Status.ERROR))  # three batches
    ]
    table = verdict([*rows, *never]).set_index("library")
    assert list(table.index)[-1] == "never" and table.loc["slow", "win_rate"] == 0.25  # the others unchanged
    assert (table.loc["never", "ran"], table.loc["never", "win_rate"]) == (0, 0.0)
    assert table.loc["never", "variants"] == "none ok: 2 unsupported, 1 error"
    assert "| never | 0 | 0% | — | — |" in render_verdict_markdown(verdict([*rows, *never]))


def test_a_readme_block_can_hold_the_verdict(results):
    """`<!-- attnbench:table files=… view=verdict -->`: `run.py readme` writes the verdict table there."""
    from harness.report.readme import rewrite_readme
    from harness.store import load_many

    text = f"x\n<!-- attnbench:table files={results.name} view=verdict -->\n<!-- /attnbench:table -->\ny\n"
    new, blocks = rewrite_readme(text, results.parent, lambda paths: labelled(load_many(paths)))
    assert blocks == 1 and render_verdict_markdown(verdict(load_rows(results))) in new
    assert new.startswith("x\n") and new.endswith("y\n")


def test_a_batch_name_says_its_form_first_and_a_tiny_ratio_is_not_zero():
    """The worst batch's label names its form right after the workload or mix (w128, cap50, tp4, fp8), so a label
    cut to its cell still tells a windowed layer from the full one; a ratio below 0.01 shows a digit, not 0.00."""
    from types import SimpleNamespace

    from harness.report.verdict import batch_name, ratio_text

    base = dict(mix="", workload="decode", batch_size=256, kv_len=4096, page_size=float("nan"), window=float("nan"),
                softcap=float("nan"), tp=1, kv_dtype="", fp8_attention=False)  # fmt: skip
    assert batch_name(SimpleNamespace(**base)) == "decode B256 kv4096 dense"
    assert batch_name(SimpleNamespace(**base | {"window": 128.0})) == "decode w128 B256 kv4096 dense"
    shard = base | {"mix": "q2_q1s5", "tp": 4, "page_size": 16.0, "kv_dtype": "fp8_e4m3"}
    assert batch_name(SimpleNamespace(**shard)) == "q2_q1s5 tp4 fp8_e4m3 page 16"
    assert (ratio_text(0.0014), ratio_text(0.5), ratio_text(float("nan"))) == ("0.001", "0.50", "—")


def test_the_verdict_by_content_judges_each_kind_of_batch_apart(results):
    """--verdict --by-content: one verdict a kind of batch (decodes, speculative steps, mixed, prompts, chunks), each
    over its own batches; a bare --by-content without --verdict is one clear error."""
    from harness.report.verdict import batch_content, verdict_by_content

    assert [batch_content(m, "mixed") for m in ("4q1s100", "q4s100_q1s9", "q30_q40", "q30s60_q20s90", "q30_q1s9")] == [
        "decodes", "speculative steps", "prompts", "chunks", "mixed"]  # fmt: skip
    assert batch_content("", "append") == "chunks" and batch_content("lognormal:2048:0.8@0", "decode") == "decodes"
    parts = dict(verdict_by_content(load_frame([results])))
    kinds = {name: batch_content(draw_batch(int(name.split(":")[1])), "mixed") for name in TIMES}
    assert set(parts) == set(kinds.values())
    for kind, table in parts.items():  # each kind's batches only
        assert set(table["batches"]) == {sum(k == kind for k in kinds.values())}
    out = runner.invoke(run.app, ["table", str(results), "--verdict", "--by-content", "--format", "markdown"])
    assert out.exit_code == 0 and all(f"### {kind}" in out.output for kind in parts), out.output
    out = runner.invoke(run.app, ["table", str(results), "--by-content"])
    assert out.exit_code == 2 and "--by-content: only means something with --verdict" in out.output
