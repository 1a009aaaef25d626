"""The harness as a hostile user tries it (issue #28): every bad input is one plain line on stderr and a
documented exit code, never a traceback, a box or a silently ignored option; nothing stored is ever
damaged (the file-damage cases compare file hashes before and after).

To add a case: one line in CASES, (argv, exit code, a fragment of the one stderr line). Cases that need
files or a running sweep have a test of their own below."""

from __future__ import annotations

import errno
import gzip
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import run
import tests.fake_backends  # noqa: F401  (registers the test-* backends)
from harness.store import Status, append_rows, load_rows

from .helpers import tiny_spec

ROOT = Path(__file__).resolve().parent.parent
NOWHERE = "/dev/null/x.csv"  # an output no sweep can write
SWEEP = ["sweep", "--device", "cpu", "-m", "Llama-3.1-8B", "-w", "decode", "--seq", "32", "--no-plots"]

CASES = [
    # typer's own errors: one line, no box
    (["sweep", "--dtype", "fp64"], 2, "Invalid value for '--dtype': 'fp64' is not one of"),
    (["sweep", "--preset", "nope"], 2, "Invalid value for '--preset'"),
    (["frobnicate"], 2, "No such command 'frobnicate'"),
    (["sweep", "--nope"], 2, "No such option: --nope"),
    (["sweep", "--timeout", "abc"], 2, "Invalid value for '--timeout': 'abc' is not a number"),
    # a value given but empty is refused, never ignored
    (["sweep", "--mix", ""], 2, "--mix: given but empty"),
    (["sweep", "--backend", " , "], 2, "--backend: given but empty"),
    (["sweep", "--lengths", ""], 2, "--lengths: given but empty"),
    # an empty item of a comma list is refused, never dropped
    (["sweep", "-o", NOWHERE, "--tp", "1,,2"], 2, "--tp: '1,,2' has an empty item, which is not allowed"),
    (["sweep", "-o", NOWHERE, "--batch", "1,,16"], 2, "--batch: '1,,16' has an empty item, which is not allowed"),
    (["sweep", "-o", NOWHERE, "--seq", "64,"], 2, "--seq: '64,' has an empty item, which is not allowed"),
    (["sweep", "-o", NOWHERE, "--page-size", ",16"], 2, "--page-size: ',16' has an empty item, which is not allowed"),
    (["sweep", "-o", NOWHERE, "--tp", "1", "--tp", ""], 2, "--tp: one of its values is empty, which is not allowed"),
    (["table", "results/h100-mla.csv", "-m", "DeepSeek-V3,"], 2, "--model: 'DeepSeek-V3,' has an empty item"),
    (["sweep", "-o", NOWHERE, "-b", "sdpa,,triton"], 2, "--backend: 'sdpa,,triton' has an empty item"),
    (["list", "-b", "sdpa,"], 2, "--backend: 'sdpa,' has an empty item"),
    # a variant's commas do not split the list: the named variant is looked for whole
    (["table", "results/h100-fp8.csv", "-b", "triton[a=1,b=2]"], 2, "--backend: 'triton[a=1,b=2]' not known"),
    # numbers are written with 0-9 (Python's int() reads any script's digits)
    (["sweep", "--batch", "٣"], 2, "--batch: '٣' has the digit '٣'; write numbers with 0-9"),
    (["sweep", "--seq", "３２"], 2, "--seq: '３２' has the digit '３'"),
    (["sweep", "--batch", "two"], 2, "--batch: expected positive integers, got two"),
    (["sweep", "--seed", "٣"], 2, "Invalid value for '--seed': '٣' is not an integer written with the digits 0-9"),
    (["sweep", "--page-size", "١٦"], 2, "--page-size: '١٦' is not valid"),
    (["sweep", "--mix", "٢q2k"], 2, "--mix: '٢q2k' has the digit '٢'"),
    (["sweep", "--lengths", "lognormal:١٠٠:1"], 2, "--lengths: 'lognormal:١٠٠:1' has the digit"),
    # the option at fault is the one named
    (["sweep", "--seed", "-1", "--lengths", "lognormal:100:1"], 2, "--seed: must be a finite number >= 0, got -1"),
    (["sweep", "--timeout", "1e400"], 2, "--timeout: must be a finite number > 0, got inf"),
    # user input echoed as it is: ':100:' is not an emoji code, '[red]' not markup
    (["sweep", "--lengths", "lognormal:100:-1"], 2, "'lognormal:100:-1' is not valid"),
    (["sweep", "-m", "[red]x[/]"], 2, "--model: '[red]x[/]' not known"),
    # Ray: a dead address is refused at once, without the Ray client's 40 s of retries
    (["sweep", "--ray", "ray://127.0.0.1:1", "--device", "cpu"], 2, "--ray: nothing answers at ray://127.0.0.1:1"),
    (["sweep", "--ray", "ray://nohost", "--device", "cpu"], 2, "--ray: 'ray://nohost' is not valid"),
    # --layer: named as typed, an empty value refused, a kind no model has said as such (-o NOWHERE: a case that
    # passes the plan by mistake stops at once, before measuring anything)
    (["sweep", "-o", NOWHERE, "--layer", ""], 2, "--layer: given but empty"),
    (["sweep", "-o", NOWHERE, "--layer", "windw"], 2, "--layer: 'windw' not known; expected any of full, window"),
    (["sweep", "-o", NOWHERE, "-m", "Llama-3.1-8B", "--layer", "window"], 2, "--layer: Llama-3.1-8B has no window"),
    # a sweep left with no specs says which option emptied it
    (["sweep", "-o", NOWHERE, "-m", "Llama-3.1-8B", "--mix", "draw:0", "-w", "prefill"], 2, "--workload: no mix"),
    (["sweep", "-o", NOWHERE, "-w", "spec-decode", "--chunk", "32", "--seq", "64"], 2, "--chunk: spec-decode drafts"),
    (["list", "-b", ""], 2, "--backend: given but empty"),
    (["plot", "results/h100-mla.csv", "--out-dir", NOWHERE, "--metric", ""], 2, "--metric: given but empty"),
    # an empty path is not the current folder (Path('') is '.'); more in test_an_empty_path_is_refused_...
    (["sweep", "-o", ""], 2, "Invalid value for '--output' / '-o': an empty path is not allowed"),
    (["sweep", "-o", NOWHERE, "--plot-dir", ""], 2, "Invalid value for '--plot-dir': an empty path is not allowed"),
    (["compare", "results/h100-mla.csv", "results/h100-mla.csv", "--spread", ""], 2, "'--spread': an empty path"),
]


def invoke(capsys, argv: list[str]) -> tuple[int, str, str]:
    code = run.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line(err: str, fragment: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert fragment in lines[0], err
    assert "Traceback" not in err and "╭" not in err and "💯" not in err


@pytest.mark.parametrize(("argv", "code", "fragment"), CASES, ids=[" ".join(c[0]) or "''" for c in CASES])
def test_bad_input_is_one_line_on_stderr(capsys, argv, code, fragment):
    exit_code, out, err = invoke(capsys, argv)
    assert exit_code == code, (out, err)
    assert_one_line(err, fragment)
    assert "error" not in out.lower()  # errors go to stderr, not stdout


MLA = ROOT / "results" / "h100-mla.csv"


EMPTY_PATHS = [
    (["table", ""], "'files'"),
    (["plot", str(MLA), "--out-dir", ""], "'--out-dir'"),
    (["report", str(MLA), "-o", ""], "'--output' / '-o'"),
    (["readme", "--check", ""], "'files'"),
    (["repair", ""], "'file'"),
]


@pytest.mark.parametrize(("argv", "named"), EMPTY_PATHS, ids=[f"{argv[0]} {named}" for argv, named in EMPTY_PATHS])
def test_an_empty_path_is_refused_not_taken_for_the_current_folder(tmp_path, monkeypatch, capsys, argv, named):
    """Path('') is '.': `table ''` read every CSV under the current folder, `plot --out-dir ''` and `report -o ''`
    wrote there. Refused, naming the option, with nothing read or written."""
    (tmp_path / "r.csv").write_bytes(MLA.read_bytes())
    monkeypatch.chdir(tmp_path)
    code, out, err = invoke(capsys, argv)
    assert code == 2, (out, err)
    assert_one_line(err, f"Invalid value for {named}: an empty path is not allowed; give a file or folder path")
    assert [p.name for p in tmp_path.iterdir()] == ["r.csv"]


def digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def some_rows(n: int = 2):
    from harness.env import Environment
    from harness.measure import MeasureConfig, make_row

    env = Environment("cpu", "", "", "2.x", "abc", "host", "wall", "")
    config = MeasureConfig(run_id="r1")
    specs = [tiny_spec("decode", kv_len=32 + i) for i in range(n)]
    return [make_row(s, "sdpa-math", "1", env, config, Status.UNSUPPORTED, "no") for s in specs]


# ---- files: nothing stored is damaged ----------------------------------------------------------


def test_repair_of_a_gzip_file_named_csv_refuses_it_and_changes_nothing(tmp_path, capsys):
    plain = tmp_path / "plain.csv"
    append_rows(plain, some_rows())
    path = tmp_path / "r.csv"
    path.write_bytes(gzip.compress(plain.read_bytes()))
    before = digest(path)
    code, _, err = invoke(capsys, ["repair", str(path)])
    assert code == 2
    assert_one_line(err, "is not a text CSV file (gzip-compressed data); nothing was changed")
    assert digest(path) == before and not (tmp_path / "r.csv.torn").exists()
    code, _, err = invoke(capsys, ["table", str(path)])  # read: called what it is, not "torn"
    assert code == 2 and "torn" not in err and "gzip-compressed" in err


def test_repair_of_a_file_of_other_columns_writes_nothing(tmp_path, capsys):
    path = tmp_path / "r.csv"
    path.write_text("a,b\n1,2\n3,")  # torn, but not ours: refused before anything is written
    before = digest(path)
    code, _, err = invoke(capsys, ["repair", str(path)])
    assert code == 2 and "not an attnbench results file" in err
    assert digest(path) == before and not (tmp_path / "r.csv.torn").exists()


class FullDisk:
    """`open` for harness.atomic whose writes land half their bytes, then fail with ENOSPC (a disk that
    fills mid-write), from the `after`-th write on."""

    def __init__(self, after: int = 0):
        self.after, self.writes = after, 0

    def __call__(self, path, mode="r", *args, **kwargs):
        handle = open(path, mode, *args, **kwargs)
        if "r" in mode:
            return handle
        disk = self

        class Half:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                handle.close()

            def fileno(self):
                return handle.fileno()

            def flush(self):
                handle.flush()

            def write(self, data):
                disk.writes += 1
                if disk.writes > disk.after:
                    handle.write(data[: len(data) // 2])
                    handle.flush()
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                return handle.write(data)

        return Half()


def test_an_append_on_a_full_disk_is_cut_back_and_says_how_much_it_needed(tmp_path, monkeypatch):
    import harness.atomic
    from harness.atomic import WriteError

    path = tmp_path / "r.csv"
    append_rows(path, some_rows())
    before = digest(path)
    monkeypatch.setattr(harness.atomic, "open", FullDisk(), raising=False)
    with pytest.raises(
        WriteError, match=r"no space left on the device: the write needed [\d,]+ bytes.*as it was before"
    ):
        append_rows(path, some_rows(1))
    assert digest(path) == before  # no torn row: the half-written one was cut off


def test_a_worker_that_cannot_start_is_one_line(tmp_path, monkeypatch, capsys):
    import harness.sweep
    from harness.errors import SweepError

    def no_worker(*args, **kwargs):
        raise SweepError("the measuring worker did not start within 300 s; see /tmp/attnbench-x.log")

    monkeypatch.setattr(harness.sweep, "run_with_progress", no_worker)
    code, _, err = invoke(capsys, ["sweep", "-b", "torch-naive", "-o", str(tmp_path / "r.csv"), "--no-plots"])
    assert code == 2
    assert_one_line(err, "the measuring worker did not start within 300 s")


def test_ctrl_c_while_drawing_the_plots_says_the_rows_are_kept(tmp_path, monkeypatch, capsys):
    import harness.report.plots
    import harness.sweep

    def measured(tasks, config, output, *args, **kwargs):
        rows = some_rows(len(tasks))
        append_rows(output, rows)
        return rows, 0

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(harness.sweep, "run_with_progress", measured)
    monkeypatch.setattr(harness.report.plots, "plot", interrupted)
    out = tmp_path / "r.csv"
    code, _, err = invoke(capsys, ["sweep", "-b", "torch-naive", "--device", "cpu", "-o", str(out)])
    assert code == 130
    assert f"interrupted while drawing the plots: every row is in {out}" in " ".join(err.split())
    assert len(load_rows(out)) == 3


def test_the_failed_rows_summary_fits_100_columns(tmp_path, monkeypatch, capsys):
    import dataclasses

    import harness.sweep

    why = "InductorError: ImportError: /tmp/torchinductor_root/4v/" + "c" * 60 + ".main.so: file too short " * 4

    def measured(tasks, config, output, *args, **kwargs):
        rows = [dataclasses.replace(r, status=Status.ERROR, reason=why) for r in some_rows(len(tasks))]
        append_rows(output, rows)
        return rows, 0

    monkeypatch.setattr(harness.sweep, "run_with_progress", measured)
    code, _, err = invoke(capsys, ["sweep", "-b", "torch-naive", "--device", "cpu", "-o", str(tmp_path / "r.csv"),
                                   "--no-plots"])  # fmt: skip
    assert code == 0, err
    assert max(len(line) for line in err.splitlines()) <= 100, err
    assert "error × 3: sdpa-math: InductorError: ImportError: /tmp/torchinductor_root/4v/" in " ".join(err.split())


def test_a_full_disk_mid_sweep_keeps_every_earlier_row_and_is_one_line(tmp_path, monkeypatch, capsys):
    import harness.atomic

    out = tmp_path / "r.csv"
    append_rows(out, some_rows())
    before = out.read_bytes()
    monkeypatch.setattr(harness.atomic, "open", FullDisk(after=1), raising=False)  # the sweep's 2nd row fails
    code, _, err = invoke(capsys, [*SWEEP, "--seq", "32,48", "-b", "sdpa-math", "--iterations", "2", "-o", str(out)])
    assert code == 2
    assert_one_line(err, "no space left on the device")
    assert "--resume" in err
    after = out.read_bytes()
    assert after.startswith(before) and after.endswith(b"\n") and len(load_rows(out)) == 3  # old 2 + one whole


def test_repair_on_a_full_disk_changes_neither_file(tmp_path, monkeypatch, capsys):
    import harness.atomic

    path = tmp_path / "r.csv"
    append_rows(path, some_rows())
    with path.open("ab") as handle:
        handle.write(b"torn,row")
    torn = tmp_path / "r.csv.torn"
    torn.write_text("an earlier torn row\n")
    before = digest(path), digest(torn)

    def no_room(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(harness.atomic.os, "fsync", no_room)  # the new file cannot be completed
    code, _, err = invoke(capsys, ["repair", str(path)])
    assert code == 2
    assert_one_line(err, "no space left on the device")
    assert (digest(path), digest(torn)) == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # the temporary file is gone


def test_output_through_a_link_to_dev_null_is_refused_before_measuring(tmp_path, capsys):
    link = tmp_path / "r.csv"
    link.symlink_to(os.devnull)
    code, _, err = invoke(capsys, [*SWEEP, "-b", "sdpa-math", "-o", str(link)])
    assert code == 2
    assert_one_line(err, f"--output: {link} is not a regular file (it points to {os.devnull})")


def test_spread_keeps_the_rows_of_the_other_devices(tmp_path, capsys):
    import dataclasses

    from harness.compare import SPREAD_COLUMNS
    from tests.test_store import ok_row

    spread_rows = lambda: [dataclasses.replace(ok_row(tiny_spec("decode"), p50_ms=p), run_id=r) for r, p in
                           (("a", 1.0), ("b", 1.1))]  # fmt: skip

    spread = tmp_path / "spread.csv"
    other = "H200,decode,12,3,0.01000,0.02000\n"
    spread.write_text(",".join(SPREAD_COLUMNS) + "\n" + other)
    results = tmp_path / "r.csv"
    append_rows(results, spread_rows())
    code, out, err = invoke(capsys, ["spread", str(results), "-o", str(spread)])
    assert code == 0, err
    text = spread.read_text()
    assert other in text and text.count("\n") > 2  # the H200 row kept, this device's added
    assert "rows of other devices kept" in " ".join(out.split())  # a long tmp path wraps the line at 100 columns


def test_report_into_an_unwritable_index_html_is_one_line_and_keeps_it(tmp_path, capsys):
    results = tmp_path / "r.csv"
    append_rows(results, some_rows())
    out = tmp_path / "report"
    (out / "index.html").mkdir(parents=True)  # not writable as a file, even for root
    code, _, err = invoke(capsys, ["report", str(results), "-o", str(out)])
    assert code == 2
    assert_one_line(err, "index.html is a directory")
    assert (out / "index.html").is_dir()


def test_a_results_file_with_swapped_columns_says_so(tmp_path, capsys):
    path = tmp_path / "r.csv"
    append_rows(path, some_rows())
    lines = path.read_text().splitlines()
    cells = lines[0].split(",")
    cells[2], cells[3] = cells[3], cells[2]
    path.write_text("\n".join([",".join(cells), *lines[1:]]) + "\n")
    code, _, err = invoke(capsys, ["table", str(path)])
    assert code == 2
    assert_one_line(err, "in another order (column 3 is 'workload', expected 'model')")


def test_ray_not_installed_is_one_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as where it is not installed
    code, _, err = invoke(capsys, [*SWEEP, "--ray", "auto", "-b", "sdpa-math"])
    assert code == 2
    assert_one_line(err, "--ray: Ray is not installed in this environment")
    assert "cuda" not in err


# ---- sweeps: a failure never looks like success ----------------------------------------------


def test_a_sweep_with_incorrect_and_error_rows_lists_them_and_exits_3(tmp_path, capsys):
    out = tmp_path / "r.csv"
    argv = ["sweep", "--device", "cpu", "-m", "Llama-3.1-8B", "-w", "append", "--seq", "32", "--chunk", "8",
            "-b", "test-top-left,test-raises,sdpa-math", "--iterations", "2", "--no-plots"]  # fmt: skip
    repo_calibration = ROOT / "results" / "calibration-cpu.csv"
    calibration_before = digest(repo_calibration)
    code, _, err = invoke(capsys, [*argv, "-o", str(out)])
    assert code == 3, err
    assert "incorrect × 1: test-top-left: relative error" in err
    assert "error × 1: test-raises: RuntimeError: kernel exploded on purpose" in err
    assert err.strip().splitlines()[-1].startswith("error: 1 rows are incorrect")
    statuses = sorted(r.status.value for r in load_rows(out))
    assert statuses == ["error", "incorrect", "ok"]
    # the ceilings went beside the output, not into the repository
    assert (tmp_path / "calibration-cpu.csv").exists()
    assert digest(repo_calibration) == calibration_before


def test_a_spec_larger_than_the_memory_is_skipped_before_anything_is_allocated():
    from frameworks import get_backend
    from specs import ExperimentSpec

    from .helpers import cpu_measurer

    huge = ExperimentSpec("decode", 999_999_999, 1, 999_999_999, 32, 8, 128, model="Llama-3.1-8B")
    assert huge.total_kv == 999_999_999**2 and "batch" not in huge.__dict__  # arithmetic, no request list
    row = cpu_measurer().measure(huge, get_backend("sdpa-math"))
    assert row.status is Status.OOM and row.reason.startswith("skipped: inputs and output need ")
    assert "GiB, more than 90% of the free RAM" in row.reason
    assert row.total_kv_tokens == 999_999_999**2 and "batch" not in huge.__dict__


def test_a_broken_adapter_claims_no_capability(tmp_path, monkeypatch):
    from frameworks.base import BACKENDS, register_broken

    name = register_broken("frameworks.zz_hostile_broken", SyntaxError("invalid syntax"))
    try:
        cells = BACKENDS[name].capability_cells()
        assert set(cells.values()) == {"? (did not import)"}
        assert "invalid syntax" in BACKENDS[name]().supports(tiny_spec("decode"))
    finally:
        BACKENDS.pop(name)


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry.name))
    return out


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads worker processes from /proc")
def test_sigterm_keeps_the_rows_ends_the_worker_at_once_and_prints_the_resume_hint(tmp_path):
    out = tmp_path / "r.csv"
    argv = [*SWEEP, "-b", "sdpa-math,test-hangs", "--iterations", "2", "-o", str(out)]
    code = f"import sys, tests.fake_backends, run; sys.exit(run.main({argv!r}))"
    driver = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and (not out.exists() or out.read_text().count("\n") < 2):
        time.sleep(0.05)  # sdpa-math's row is in: the worker is now inside test-hangs
    workers = [p for p in _children(driver.pid) if b"resource_tracker" not in Path(f"/proc/{p}/cmdline").read_bytes()]
    assert workers, "no worker process"
    time.sleep(0.5)
    stopped = time.monotonic()
    driver.send_signal(signal.SIGTERM)
    while any(Path(f"/proc/{w}").exists() for w in workers) and time.monotonic() - stopped < 10:
        time.sleep(0.02)
    worker_gone_s = time.monotonic() - stopped
    _, err = driver.communicate(timeout=30)
    assert driver.returncode == 143, err
    assert "terminated (SIGTERM): every finished row is in" in err and "--resume" in err
    assert worker_gone_s < 1.5, worker_gone_s  # the worker went with the driver (it would have slept an hour)
    assert [r.backend for r in load_rows(out)] == ["sdpa-math"]
