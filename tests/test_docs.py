"""The README and docs/ as a contract: every generated block matches what the committed CSVs give, every README
command runs as written (GPU-only ones are marked `# gpu` and skipped, the install `# setup`), the guide's
example adapter passes `check` on the CPU, the README stays short, and `sweep --help` reads."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import run
from harness.report.readme import generated_files, rewrite_files
from harness.store import labelled, load_many

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
runner = CliRunner()


README_COMMANDS_RUN = os.environ.get("ATTNBENCH_SKIP_README_COMMANDS") != "1"


@pytest.mark.skipif(README_COMMANDS_RUN, reason="checked by the README's own `run.py readme --check` (README_CLAIMS)")
def test_every_generated_block_matches_the_committed_csvs():
    """Where the README's commands are not run (ATTNBENCH_SKIP_README_COMMANDS=1), the check its `readme --check`
    makes, here."""
    found = rewrite_files(generated_files(ROOT), lambda paths: labelled(load_many(paths)))
    assert any(path == README for path, *_ in found)  # the README's verdict is generated
    stale = [str(path.relative_to(ROOT)) for path, _, old, new in found if old != new]
    assert stale == [], f"run `python3 run.py readme`: {stale}"


def test_the_readme_is_short_and_its_example_is_the_example_file():
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    shown = re.search(r"<!-- attnbench:example (\S+) -->\n```python\n(.*?)```\n", text, re.DOTALL)
    assert shown and (ROOT / shown.group(1)).read_text() == shown.group(2)
    assert text.index("## Adding a backend") < len(text) // 2  # near the top


def readme_commands() -> list[str]:
    """The lines of the README's bash blocks, in order, but those marked `# gpu`, `# setup` or `# tests` (the
    test suite itself: CI runs it)."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), re.DOTALL)
    lines = [line.strip() for block in blocks for line in block.splitlines() if line.strip()]
    return [line for line in lines if not re.search(r"#\s*(gpu|setup|tests)\b", line)]


def test_the_readme_commands_are_found():
    commands = readme_commands()
    assert "python3 run.py sweep --preset smoke" in commands
    assert any(c.startswith("python3 run.py check -b my-attention") for c in commands)
    assert not any("pip install" in c for c in commands)


def command_groups() -> list[list[str]]:
    """The README's commands in groups that run in order in one copy: a block that copies a file in and takes it
    out again (the guide's develop loop) is one group; every other command is a group of its own, so that the
    test runner spreads them over its workers."""
    groups: list[list[str]] = []
    open_group: list[str] | None = None
    for command in readme_commands():
        if command.startswith("cp "):
            open_group = [command]
        elif open_group is not None:
            open_group.append(command)
            if command.startswith("rm "):
                groups.append(open_group)
                open_group = None
        else:
            groups.append([command])
    return groups + ([open_group] if open_group else [])


def test_the_commands_fall_into_groups_that_keep_the_develop_loop_together():
    groups = command_groups()
    assert sum(map(len, groups)) == len(readme_commands())
    loop = next(g for g in groups if g[0].startswith("cp docs/examples/"))
    assert loop[-1].startswith("rm frameworks/") and any(c.startswith("python3 run.py check") for c in loop)


README_CHECK_COMMAND = "python3 run.py readme --check"
REPORT_COMMAND = "python3 run.py report results/ -o /tmp/report/"


def every_generated_block_matches_the_committed_csvs(done: subprocess.CompletedProcess) -> None:
    """`readme --check` exits 0 only when every block of the README and docs/ matches what the committed CSVs give
    (test_every_generated_block_matches_the_committed_csvs's check); the README's verdict is among them."""
    assert re.search(r"/README\.md: [1-9]\d* block\(s\) up to date$", done.stdout, re.MULTILINE), done.stdout


def the_report_is_one_page_under_3_mb(done: subprocess.CompletedProcess) -> None:
    """What the README says of `report results/`: one page, under 3 MB; the CSVs of results/ that are no results
    file (an A/B's table) are passed over with a line (test_report_page checks it here: the same command)."""
    assert "results/extra/h200-ab-triton-gluon-2026-11-29.csv skipped: not a results file" in done.stdout
    assert Path("/tmp/report/index.html").stat().st_size < 3_000_000


# what the README says a command gives, checked on its output beside its exit code
README_CLAIMS = {
    README_CHECK_COMMAND: every_generated_block_matches_the_committed_csvs,
    REPORT_COMMAND: the_report_is_one_page_under_3_mb,
}


def test_the_readme_claims_are_checked_on_commands_it_has():
    assert set(README_CLAIMS) <= {c.split("  #")[0].strip() for c in readme_commands()}


@pytest.mark.skipif(not README_COMMANDS_RUN, reason="ATTNBENCH_SKIP_README_COMMANDS=1")
@pytest.mark.parametrize("group", command_groups(), ids=lambda g: g[0].split("#")[0].strip()[:60])
def test_every_readme_command_runs_as_written_in_a_fresh_copy(tmp_path, group):
    """In a copy of the tracked files (a fresh clone), the commands of a group one after another, as a user would
    type them, in a user's environment: without the TRITON_INTERPRET=1 that conftest sets for the suite's own
    Triton tests (a user's CPU has no Triton backend, and `sweep --preset smoke` leaves it out; under the
    interpreter its five tasks were timed for over two minutes of this test's CPU time).
    test_the_smoke_presets_triton_tasks_pass_the_reference_under_the_interpreter checks those tasks."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    clone = tmp_path / "clone"
    for name in files:
        source = ROOT / name
        if source.is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, clone / name)
    user_env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env = {**user_env, "PYTHONPATH": str(clone), "COLUMNS": "100"}
    for command in group:
        claim = README_CLAIMS.get(command.split("  #")[0].strip())
        command = command.replace("python3 ", f"{sys.executable} ", 1) if command.startswith("python3 ") else command
        done = subprocess.run(["bash", "-c", command.split("  #")[0]], cwd=clone, env=env, capture_output=True,
                              text=True, timeout=600)  # fmt: skip
        assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        if claim is not None:
            claim(done)


def test_the_smoke_presets_triton_tasks_pass_the_reference_under_the_interpreter():
    """What `sweep --preset smoke` plans for the in-repo Triton kernels (each contender variant the preset's specs
    take: Llama-3.1-8B's heads, batch 2, 128 tokens) runs under the interpreter and matches the fp32 reference on
    every request, one call each: the check that makes a sweep exit 3 on an incorrect row, without the seven more
    interpreted calls a task (a first call, a warm-up, five samples) that the README's job timed."""
    pytest.importorskip("triton")
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("runs the Triton kernels under the interpreter (conftest sets TRITON_INTERPRET=1 on a CPU)")
    from harness.cli_options import Selection
    from harness.plan import plan_sweep

    from .helpers import run_info_after_checking

    _, _, tasks, _ = plan_sweep(Selection(backend=["triton[*]"], device="cpu"))
    planned = sorted((task.spec.workload.value, task.label) for task in tasks)
    assert ("decode", "triton") in planned and ("prefill", "triton") in planned and ("append", "triton") in planned
    for task in tasks:
        run_info_after_checking(task.label, task.spec)


def test_the_guides_example_adapter_passes_check_on_the_cpu(tmp_path, monkeypatch):
    """The example file, copied into an adapter module of its own, registers and runs `check` on the CPU."""
    adapter = tmp_path / "my_attention_example.py"
    shutil.copy(ROOT / "docs" / "examples" / "my_attention.py", adapter)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    __import__("my_attention_example")
    result = runner.invoke(run.app, ["check", "-b", "my-attention", "-m", "Llama-3.1-8B", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "3 ok" in result.output


def test_sweep_help_groups_its_options_and_shows_choices_without_cutting_names():
    result = runner.invoke(run.app, ["sweep", "--help"], env={"COLUMNS": "80", "TERM": "dumb"}, terminal_width=80)
    assert result.exit_code == 0, result.output
    text = result.output
    for panel in ("What to measure", "How to measure", "Where rows go", "Scale-out"):
        assert panel in text
    assert "<str>" not in text and "<list[str]>" not in text
    for name in ("--retry-unavailable", "--accelerator-type", "--min-iterations", "--plot-dir", "--keep-failed"):
        assert name in text  # whole, not cut at 80 columns
    assert max(len(line) for line in text.splitlines()) <= 80


def test_check_takes_the_sweeps_options_as_the_sweep_declares_them():
    """`check` shares what to measure and --timeout with `sweep`, declared once (harness/cli_options.py): the same
    names, help, metavar and default, and --backend's NAME[key=value,...] shown, not eaten as markup."""
    import typer.main

    commands = typer.main.get_command(run.app).commands
    sweep = {p.name: p for p in commands["sweep"].params}
    check = {p.name: p for p in commands["check"].params if p.name != "help"}
    assert set(check) < set(sweep)
    for name, param in check.items():
        assert (param.opts, param.help, param.metavar, param.default) == (
            sweep[name].opts, sweep[name].help, sweep[name].metavar, sweep[name].default
        ), name  # fmt: skip
    result = runner.invoke(run.app, ["check", "--help"], env={"COLUMNS": "200", "TERM": "dumb"}, terminal_width=200)
    assert "NAME[key=value,...] for a variant" in " ".join(result.output.split())


def test_list_fits_the_terminal():
    result = runner.invoke(run.app, ["list", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.output.splitlines()) <= run.console.width
