"""The sweep's tasks as Ray tasks (`run.py sweep --ray auto|ray://host:port`): each task asks for one
GPU (optionally of one `accelerator_type`), runs in a Ray worker process that sees only that GPU
(Ray sets CUDA_VISIBLE_DEVICES, so the task always measures cuda:0 — never a `ray.get_gpu_ids()`
index), and returns its row to the driver, which alone writes the CSV. No shared filesystem is
assumed: the device's ceilings are measured once by a first Ray task and travel with the config.
A task past its time limit is cancelled (`timeout`); a worker that dies gives an `error` row."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from ..measure import MeasureConfig, make_row
from ..plan import Task, longest_first
from ..store import ResultRow, Status

_MEASURER = None  # one per Ray worker process and config, so a spec's inputs serve its backends


def _measure(task: Task, config: MeasureConfig, commit: str) -> ResultRow:
    import torch

    from frameworks import BACKENDS, load_all

    from ..env import collect
    from ..measure import Measurer
    from ..plan import ensure_registered

    global _MEASURER
    load_all()
    ensure_registered(task)
    if _MEASURER is None or _MEASURER.config != config:
        _MEASURER = Measurer(config, collect(torch.device(config.device), commit))
    return _MEASURER.measure(task.spec, BACKENDS[task.backend](task.variant))


def _calibrate(config: MeasureConfig, commit: str):
    import torch

    from .. import calibrate
    from ..env import collect, now_utc

    env = collect(torch.device(config.device), commit)
    return env, calibrate.measure(torch.device(config.device), env, timestamp=now_utc())


def ray_rows(todo: list[Task], config: MeasureConfig, timeout_s: float, address: str, accelerator_type=None):
    """Yield (task, row) as Ray tasks finish."""
    import ray

    from .. import calibrate
    from ..env import git_commit

    connect(address)
    if not todo:  # everything resumed: no task, so no calibration task either
        return
    options = {"num_gpus": 1, "max_retries": 0}
    if accelerator_type:
        options["accelerator_type"] = accelerator_type
    check_cluster(ray.cluster_resources(), address, accelerator_type)
    commit = config.git_commit or git_commit()
    measure = ray.remote(_measure).options(**options)
    if config.calibration_path:  # once per sweep, on the kind of GPU the tasks ask for, before any row
        env, ceilings = ray.get(ray.remote(_calibrate).options(**options).remote(config, commit))
        path = calibrate.calibration_file(env.device_slug, Path(config.calibration_path).parent)  # the cluster's kind
        known = calibrate.ceilings_for(env.device, path)
        if not known and config.calibrate_if_missing:
            calibrate.save(ceilings, path)
            known = {c.dtype: c for c in ceilings}
        config = replace(config, calibration_path=None, ceilings=known or None, calibrate_if_missing=False)
    # as many tasks in flight as the cluster has GPUs, so a submitted task is a running one and its
    # time limit runs from its submission; the queue stays longest-first
    capacity = max(1, int(ray.cluster_resources().get("GPU", 1)))
    queue = longest_first(todo)[::-1]
    pending: dict = {}
    while queue or pending:
        while queue and len(pending) < capacity:
            task = queue.pop()
            pending[measure.remote(task, config, commit)] = (task, time.monotonic())
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
        for ref in ready:
            task, _ = pending.pop(ref)
            try:
                yield task, ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - a crashed or cancelled Ray worker: the task's row says so
                reason = f"the Ray task failed: {type(exc).__name__}: {exc}"
                yield task, _failed(task, config, Status.ERROR, reason)
        for ref, (task, started) in list(pending.items()):
            if time.monotonic() - started > timeout_s:
                ray.cancel(ref, force=True)
                pending.pop(ref)
                yield task, _failed(task, config, Status.TIMEOUT, f"no result within the {timeout_s:g} s time limit")


def connect(address: str):
    """Ray, connected to the cluster at ADDRESS; each way of failing is one line saying what to do."""
    if address.startswith("ray://"):  # the Ray client retries a dead address for about 40 s: ask the port first
        import socket

        host, _, port = address[len("ray://") :].rpartition(":")
        if not host or not port.isascii() or not port.isdigit():
            raise ValueError(f"--ray: {address!r} is not valid; expected ray://host:port")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
        except OSError as exc:
            raise ValueError(
                f"--ray: nothing answers at {address} ({exc.strerror or type(exc).__name__}); start the cluster's "
                "head with its client server (ray start --head --ray-client-server-port PORT) or fix the address"
            ) from None
    try:
        import ray
    except ImportError:
        raise ValueError(
            "--ray: Ray is not installed in this environment; install it (pip install -e '.[ray]') or leave out --ray"
        ) from None
    if ray.is_initialized():
        return ray
    try:
        ray.init(address=address, log_to_driver=False, configure_logging=False, logging_level="ERROR")
    except ConnectionError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"--ray: no Ray cluster to connect to at {address} ({first}); start one with `ray start --head "
            "--num-gpus N` or give its ray://host:port"
        ) from None
    except Exception as exc:  # noqa: BLE001 - Ray raises many kinds: one line whichever it is
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        raise ValueError(
            f"--ray: could not connect to the Ray cluster at {address}: {type(exc).__name__}: {first}"
        ) from None
    return ray


def check_cluster(resources: dict, address: str, accelerator_type: str | None = None) -> None:
    """A cluster with no GPU (of the asked type) would leave every task pending for ever: say so instead."""
    have = ", ".join(f"{v:g} {k}" for k, v in sorted(resources.items()) if not k.startswith(("node:", "memory",
                     "object_store")))  # fmt: skip
    if resources.get("GPU", 0) < 1:
        raise ValueError(f"--ray: the Ray cluster at {address} has no GPU (it has {have or 'nothing'}); every task "
                         "asks for one GPU: start its nodes with GPUs (ray start --num-gpus N)")  # fmt: skip
    if accelerator_type and resources.get(f"accelerator_type:{accelerator_type}", 0) <= 0:
        types = sorted(k.split(":", 1)[1] for k in resources if k.startswith("accelerator_type:"))
        raise ValueError(f"--accelerator-type: the Ray cluster at {address} has no {accelerator_type!r} GPU; it has "
                         f"{', '.join(types) or 'no typed GPU'}")  # fmt: skip


def _failed(task: Task, config: MeasureConfig, status: Status, reason: str) -> ResultRow:
    from ..env import Environment

    unknown = Environment("unknown (Ray worker)", "unknown", "", "", "", "", "", "")
    return make_row(task.spec, task.backend, "", unknown, config, status, reason, task.variant)
