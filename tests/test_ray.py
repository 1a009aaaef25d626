"""The same sweep as Ray tasks, on a local Ray with fake GPU resources (2 "GPUs" on the CPU): the
same rows as the local workers, failures recorded, and the CLI against a running cluster."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import tests.fake_backends  # noqa: F401  (registers the test-* backends)
from harness.plan import plan_tasks
from harness.store import Status, load_rows
from harness.sweep import run_sweep

from .helpers import tiny_spec
from .test_sweep import CONFIG, _keys

ray = pytest.importorskip("ray", reason="ray is not installed (pip install -e '.[ray]')")
pytestmark = pytest.mark.xdist_group("ray")  # one Ray at a time on this machine, both tests in one process
ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
RAY_CLI = [sys.executable, "-m", "ray.scripts.scripts"]


@pytest.fixture(scope="session")
def ray_stops():
    """`ray stop` runs while the next tests do (it waits seconds for the killed processes to be gone, idle);
    the run waits for it at its end."""
    stops: list[subprocess.Popen] = []
    yield stops
    for stop in stops:
        stop.wait(timeout=120)


@pytest.fixture(scope="module")
def ray_cluster(ray_stops):
    """One local Ray head with 2 fake GPUs for this module's tests (starting Ray takes seconds a time), stopped
    after them: its processes would otherwise stay up, on the worker's CPU, until the whole run ends."""
    start = subprocess.run([*RAY_CLI, "start", "--head", "--num-cpus=2", "--num-gpus=2", "--include-dashboard=false",
                            "--disable-usage-stats"], capture_output=True, text=True, env=ENV, timeout=180)  # fmt: skip
    if start.returncode != 0:
        pytest.skip(f"a local Ray head did not start here: {start.stderr.strip()[-200:]}")
    try:
        yield "auto"
    finally:
        stop = [*RAY_CLI, "stop", "--force"]
        ray_stops.append(subprocess.Popen(stop, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV))


def test_ray_tasks_give_the_rows_of_the_local_workers(tmp_path, ray_cluster):
    specs = [tiny_spec("decode"), tiny_spec("append", kv_len=32, chunk=8)]
    backends = ["torch-naive", "sdpa-math", "test-kills-process", "test-declines"]
    # generous limits: a Ray task's limit runs from its submission, so it includes starting a Ray worker
    # (torch imported afresh after test-kills-process killed one), which a loaded 2-core machine makes slow
    local = list(run_sweep(plan_tasks(specs, backends), CONFIG, tmp_path / "local.csv", timeout_s=300))
    ray.init(address=ray_cluster, log_to_driver=False, configure_logging=False, logging_level="ERROR")
    try:
        remote = list(
            run_sweep(plan_tasks(specs, backends), CONFIG, tmp_path / "ray.csv", timeout_s=300, ray_address="auto")
        )
    finally:
        ray.shutdown()  # this process lets go; the cluster stays for the next test
    assert _keys(remote) == _keys(local) and _keys(load_rows(tmp_path / "ray.csv")) == _keys(local)
    by_key = {r.task_key: r.status for r in local}
    assert {r.task_key: r.status for r in remote} == by_key  # ok, error (a killed worker), unsupported alike
    killed = [r for r in remote if r.backend == "test-kills-process"]
    assert all(r.status is Status.ERROR and "Ray task failed" in r.reason for r in killed)


def test_cli_sweep_on_a_running_ray_cluster(tmp_path, ray_cluster):
    out = tmp_path / "r.csv"
    args = [sys.executable, "run.py", "sweep", "--ray", ray_cluster, "--device", "cpu", "-m", "Llama-3.1-8B", "-w",
            "decode", "--seq", "32", "-b", "torch-naive,sdpa-math", "--iterations", "2", "--no-plots",
            "-o", str(out)]  # fmt: skip
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env=ENV, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    rows = load_rows(out)
    assert sorted(r.backend for r in rows) == ["sdpa-math", "torch-naive"]
    assert all(r.status is Status.OK for r in rows)
    again = subprocess.run([*args, "--resume"], cwd=ROOT, capture_output=True, text=True, env=ENV, timeout=300)
    assert again.returncode == 0 and len(load_rows(out)) == 2  # resume works the same


def test_a_cluster_without_the_gpus_a_task_asks_for_is_one_clear_error():
    from harness.workers.ray import check_cluster

    with pytest.raises(ValueError, match=r"--ray: the Ray cluster at auto has no GPU \(it has 2 CPU\)"):
        check_cluster({"CPU": 2.0, "memory": 1e9, "node:10.0.0.1": 1.0}, "auto")
    with pytest.raises(ValueError, match="--accelerator-type: .* no 'H200' GPU; it has H100"):
        check_cluster({"CPU": 2.0, "GPU": 1.0, "accelerator_type:H100": 1.0}, "auto", "H200")
    check_cluster({"CPU": 2.0, "GPU": 1.0, "accelerator_type:H100": 1.0}, "auto", "H100")  # no error
