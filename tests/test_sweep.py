"""The sweep survives every way a backend can fail, keeps rows as they come, and resumes."""

import csv

import pytest

import tests.fake_backends  # noqa: F401  (registers the test-* backends)
from harness.measure import MeasureConfig
from harness.plan import plan_tasks
from harness.store import Status, load_rows
from harness.sweep import run_sweep
from harness.timer import Repetition
from specs import SpecError

from .helpers import tiny_spec

CONFIG = MeasureConfig(device="cpu", repetition=Repetition(iterations=2, warmup=0))


def test_each_failure_gets_its_status_and_the_sweep_goes_on(tmp_path):
    out = tmp_path / "r.csv"
    specs = [tiny_spec("append", group=4, kv_len=32, chunk=8)]
    backends = [
        "torch-naive", "test-top-left", "test-raises", "test-oom", "test-kills-process",
        "test-hangs", "test-missing-library", "test-declines", "sdpa-math",
    ]  # fmt: skip
    rows = list(run_sweep(plan_tasks(specs, backends), CONFIG, out, timeout_s=8))
    status = {r.backend: r for r in rows}
    assert [r.backend for r in rows] == backends
    assert status["torch-naive"].status is Status.OK
    assert status["test-top-left"].status is Status.INCORRECT
    assert "relative error" in status["test-top-left"].reason and status["test-top-left"].rel_err > 0.05
    assert status["test-raises"].status is Status.ERROR and "kernel exploded on purpose" in status["test-raises"].reason
    assert status["test-oom"].status is Status.OOM
    assert status["test-kills-process"].status is Status.ERROR and "SIGKILL" in status["test-kills-process"].reason
    assert status["test-hangs"].status is Status.TIMEOUT
    assert status["test-missing-library"].status is Status.UNAVAILABLE
    assert "attnbench_no_such_library" in status["test-missing-library"].reason
    assert (
        status["test-declines"].status is Status.UNSUPPORTED and status["test-declines"].reason == "head_dim 128 only"
    )
    assert status["sdpa-math"].status is Status.OK  # after a kill and a hang the restarted worker still measures
    # every row reached the file, in order, the moment it was measured
    assert [r.backend for r in load_rows(out)] == backends
    assert len({r.run_id for r in rows}) == 1 and all(r.device for r in rows)


def test_top_left_is_right_for_prefill():
    from frameworks import get_backend

    from .helpers import cpu_measurer

    row = cpu_measurer().measure(tiny_spec("prefill", kv_len=32), get_backend("test-top-left"))
    assert row.status is Status.OK


def test_rows_are_on_disk_before_the_sweep_ends(tmp_path):
    out = tmp_path / "r.csv"
    specs = [tiny_spec("decode"), tiny_spec("prefill", kv_len=16)]
    sweep = run_sweep(plan_tasks(specs, ["torch-naive"]), CONFIG, out, timeout_s=60)
    first = next(sweep)
    assert first.status is Status.OK
    on_disk = load_rows(out)  # the sweep is paused after its first row
    assert len(on_disk) == 1 and on_disk[0].task_key == first.task_key
    sweep.close()  # stop early, like a killed sweep: what was measured stays
    assert len(load_rows(out)) == 1


def test_resume_skips_what_the_file_holds(tmp_path):
    out = tmp_path / "r.csv"
    specs = [tiny_spec("decode"), tiny_spec("append", kv_len=32, chunk=8)]
    first = list(run_sweep(plan_tasks(specs[:1], ["torch-naive", "sdpa-math"]), CONFIG, out, timeout_s=60))
    assert len(first) == 2
    skipped = []
    second = list(
        run_sweep(
            plan_tasks(specs, ["torch-naive", "sdpa-math"]),
            CONFIG,
            out,
            timeout_s=60,
            resume=True,
            on_row=lambda task, row: skipped.append(task.key) if row is None else None,
        )
    )
    assert len(skipped) == 2 and len(second) == 2
    assert {r.workload for r in second} == {"append"}
    assert len(load_rows(out)) == 4
    with out.open() as handle:
        assert sum(1 for line in csv.reader(handle) if line and line[0] == "run_id") == 1  # one header


def test_resume_counts_only_this_devices_rows(tmp_path):
    """A file that holds another GPU's rows of the same tasks: --resume measures them here (they are not this
    device's), and skips them once this device's rows are in."""
    import dataclasses

    from harness.store import append_rows, done_keys

    out = tmp_path / "other.csv"
    spec = tiny_spec("decode")
    mine = list(run_sweep(plan_tasks([spec], ["torch-naive"]), CONFIG, tmp_path / "mine.csv", timeout_s=60))[0]
    append_rows(out, [dataclasses.replace(mine, device="NVIDIA H200")])
    assert done_keys(out) == {mine.task_key} and done_keys(out, device=mine.device) == set()
    again = list(run_sweep(plan_tasks([spec], ["torch-naive"]), CONFIG, out, timeout_s=60, resume=True))
    assert len(again) == 1 and again[0].device == mine.device
    assert list(run_sweep(plan_tasks([spec], ["torch-naive"]), CONFIG, out, timeout_s=60, resume=True)) == []


def test_unknown_backend_is_refused_with_the_valid_names():
    with pytest.raises(SpecError, match="expected any of .*torch-naive"):
        plan_tasks([tiny_spec("decode")], ["torch-naiv"])


def test_resume_retries_error_and_timeout_rows_unless_keep_failed(tmp_path):
    out = tmp_path / "r.csv"
    spec = tiny_spec("decode")
    first = list(run_sweep(plan_tasks([spec], ["torch-naive", "test-raises"]), CONFIG, out, timeout_s=60))
    assert [r.status for r in first] == [Status.OK, Status.ERROR]
    kept = list(
        run_sweep(
            plan_tasks([spec], ["torch-naive", "test-raises"]), CONFIG, out, timeout_s=60, resume=True, keep_failed=True
        )
    )
    assert kept == []
    retried = list(
        run_sweep(plan_tasks([spec], ["torch-naive", "test-raises"]), CONFIG, out, timeout_s=60, resume=True)
    )
    assert [r.backend for r in retried] == ["test-raises"]  # the ok row is kept, the error runs again
    assert len(load_rows(out)) == 3


def test_resume_retries_an_unavailable_backend_only_when_asked(tmp_path):
    """A library missing at the first sweep may be installed before --resume --retry-unavailable: its pairs run
    again (here it is still missing, so the new row says unavailable again); a plain --resume keeps them."""
    out = tmp_path / "u.csv"
    tasks = plan_tasks([tiny_spec("decode")], ["torch-naive", "test-missing-library"])
    first = list(run_sweep(tasks, CONFIG, out, timeout_s=60))
    assert [r.status for r in first] == [Status.OK, Status.UNAVAILABLE]
    assert list(run_sweep(tasks, CONFIG, out, timeout_s=60, resume=True)) == []
    again = list(run_sweep(tasks, CONFIG, out, timeout_s=60, resume=True, retry_unavailable=True))
    assert [(r.backend, r.status) for r in again] == [("test-missing-library", Status.UNAVAILABLE)]
    assert len(load_rows(out)) == 3


def test_the_worker_is_replaced_after_an_error_row(tmp_path):
    from harness.workers.local import WorkerPool

    pool = WorkerPool(CONFIG, tmp_path / "log")
    try:
        spec = tiny_spec("decode")
        ok = pool.run(plan_tasks([spec], ["torch-naive"])[0], 60)
        first_pid = pool.process.pid
        assert ok.status is Status.OK
        error = pool.run(plan_tasks([spec], ["test-raises"])[0], 60)
        assert error.status is Status.ERROR and pool.process is None  # a possibly poisoned worker is gone
        again = pool.run(plan_tasks([spec], ["torch-naive"])[0], 60)
        assert again.status is Status.OK and pool.process.pid != first_pid
    finally:
        pool.close()


def test_workers_are_all_asked_to_stop_before_any_is_waited_for(tmp_path):
    """A sweep of several workers winds them down together: after ask_to_stop each one exits by itself
    (exit code 0, no kill), so close() only reaps it."""
    from harness.workers.local import WorkerPool

    pools = [WorkerPool(CONFIG, tmp_path / f"log{i}") for i in range(2)]
    try:
        for pool in pools:
            pool._start()
        processes = [pool.process for pool in pools]
        for pool in pools:
            pool.ask_to_stop()
        for process in processes:
            process.join(30)
            assert process.exitcode == 0
    finally:
        for pool in pools:
            pool.close()
    assert all(pool.process is None and not pool.stopping for pool in pools)


def test_workers_that_do_not_exit_are_killed_together_after_a_second(tmp_path):
    """Three workers busy in a hung call never read the stop: stop_workers gives them one second together,
    then kills them all (one after another at 10 s each, this took 30 s)."""
    import time

    from harness.workers.local import STOP_GRACE_S, WorkerPool, stop_workers

    pools = [WorkerPool(CONFIG, tmp_path / f"log{i}") for i in range(3)]
    try:
        for pool in pools:
            pool._start()
            pool.conn.send(plan_tasks([tiny_spec("decode")], ["test-hangs"])[0])
        processes = [pool.process for pool in pools]
        time.sleep(0.5)  # the calls are under way
        started = time.monotonic()
        stop_workers(pools)
        elapsed = time.monotonic() - started
    finally:
        stop_workers(pools)
    assert not any(process.is_alive() for process in processes)
    assert all(process.exitcode == -9 for process in processes)  # killed, not exited
    assert STOP_GRACE_S * 0.9 <= elapsed < 5  # one grace for all, not one a worker


def _keys(rows):
    return sorted(r.task_key for r in rows)


def test_two_cpu_workers_give_exactly_the_rows_of_one_even_when_one_is_killed(tmp_path):
    specs = [tiny_spec("decode"), tiny_spec("append", kv_len=32, chunk=8), tiny_spec("prefill", kv_len=24)]
    backends = ["torch-naive", "sdpa-math", "test-kills-process", "test-declines"]
    one = list(run_sweep(plan_tasks(specs, backends), CONFIG, tmp_path / "one.csv", timeout_s=60))
    two = list(run_sweep(plan_tasks(specs, backends), CONFIG, tmp_path / "two.csv", timeout_s=60, workers=[{}, {}]))
    assert _keys(two) == _keys(one) and len(set(_keys(two))) == len(two) == 12
    assert _keys(load_rows(tmp_path / "two.csv")) == _keys(one)
    status = {(r.backend, r.workload): r.status for r in two}
    assert {s for (b, _), s in status.items() if b == "test-kills-process"} == {Status.ERROR}
    assert {s for (b, _), s in status.items() if b in ("torch-naive", "sdpa-math")} == {Status.OK}


def test_workers_get_their_own_environment(tmp_path):
    from harness.workers.local import environment

    with environment({"ATTNBENCH_PROBE": "3"}):
        assert __import__("os").environ["ATTNBENCH_PROBE"] == "3"
    assert "ATTNBENCH_PROBE" not in __import__("os").environ


def test_longest_tasks_go_first_with_a_specs_backends_together():
    from harness.plan import longest_first

    small, big = tiny_spec("decode"), tiny_spec("prefill", kv_len=64)
    ordered = longest_first(plan_tasks([small, big], ["torch-naive", "sdpa-math"]))
    assert [(t.spec, t.backend) for t in ordered] == [
        (big, "torch-naive"), (big, "sdpa-math"), (small, "torch-naive"), (small, "sdpa-math"),
    ]  # fmt: skip


def test_resume_after_the_driver_is_killed_loses_and_repeats_nothing(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "r.csv"
    root = __import__("pathlib").Path(__file__).resolve().parent.parent
    args = [sys.executable, str(root / "run.py"), "sweep", "-m", "Llama-3.1-8B", "-w", "decode,append", "--seq",
            "32,48", "--chunk", "8", "-b", "torch-naive,sdpa-math", "--iterations", "2", "--workers", "2",
            "--device", "cpu", "--no-plots", "-o", str(out)]  # fmt: skip
    driver = subprocess.Popen(args, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and (not out.exists() or out.read_text().count("\n") < 3):
        time.sleep(0.05)
    os.kill(driver.pid, signal.SIGKILL)  # the parent, mid-sweep
    driver.wait()
    before = out.read_text().count("\n") - 1
    assert 2 <= before < 8, before
    finished = subprocess.run([*args, "--resume"], cwd=root, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    rows = load_rows(out)
    keys = _keys(rows)
    assert len(keys) == len(set(keys)) == 8  # every task once: 2 × (decode + append) × 2 backends


def test_an_sdpa_task_without_a_causal_bias_imports_no_compiler():
    """A worker whose tasks are SDPA prefills and decodes never imports Dynamo or Inductor (a second of CPU each
    time a worker starts): the kernel is named through the autograd profiler, and PyTorch's causal bias module,
    which imports Dynamo, only for an append's bottom-right mask."""
    import subprocess
    import sys
    from pathlib import Path

    code = """if True:
        import sys, torch
        from frameworks import get_backend
        from harness.inputs import make_inputs
        from tests.helpers import tiny_spec
        for workload in ("prefill", "decode"):
            spec, backend = tiny_spec(workload), get_backend("sdpa-math")
            backend.prepare(spec, make_inputs(spec, torch.device("cpu")))()
            assert "math" in backend.run_info(), backend.run_info()
        print(sorted(m for m in ("torch._dynamo", "torch._inductor") if m in sys.modules))
    """
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[-2] == "[]"


def test_gpus_takes_all_or_this_hosts_ids_and_names_them_otherwise(monkeypatch):
    """--gpus: 'all' or comma-separated ids below the host's GPU count (repeats run once); an empty item, a name or
    an id the host lacks is one SpecError naming the option and the ids there are."""
    from harness.workers import local

    monkeypatch.setattr(local, "local_gpu_count", lambda: 2)
    assert local.worker_environments("all", None, True) == [
        {"CUDA_VISIBLE_DEVICES": "0"},
        {"CUDA_VISIBLE_DEVICES": "1"},
    ]
    assert local.worker_environments("1, 0,1", None, True) == [
        {"CUDA_VISIBLE_DEVICES": "1"},
        {"CUDA_VISIBLE_DEVICES": "0"},
    ]
    for bad in ("0,,1", "2", "gpu0", "", "0,"):
        with pytest.raises(
            SpecError, match=r"--gpus: .* is not valid; expected 'all' or ids of this host's GPUs \(0, 1\)"
        ):
            local.worker_environments(bad, None, True)
