"""Local workers: a sweep's tasks measured in worker processes of this host, one a GPU (or N on a CPU), each
with a time limit.

The worker keeps one spec's inputs between its backends. A task that hangs is killed at its time
limit (`timeout`), a worker that dies takes only its task with it (`error`, with the signal), and
every row is appended to the CSV the moment it exists, so a killed sweep loses nothing."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from frameworks import BACKENDS
from specs import SpecError

from ..env import Environment, collect, git_commit
from ..errors import SweepError
from ..measure import MeasureConfig, Measurer, make_row
from ..plan import Task, ensure_registered
from ..store import ResultRow, Status
from . import schedule

WORKER_START_TIMEOUT_S = 300.0
STOP_GRACE_S = 1.0  # at the end, how long the workers have, together, to exit before they are killed
FAILED = (Status.INCORRECT, Status.ERROR, Status.TIMEOUT)  # the statuses a worker logs, and a sweep lists at its end


def _worker_main(conn, config: MeasureConfig, commit: str, log_path: str) -> None:
    # the worker's own chatter (compiler logs, library warnings) goes to a log, not over the progress bar
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    import torch

    from frameworks import BACKENDS as registry
    from frameworks import load_all

    load_all()
    env = collect(torch.device(config.device), commit)
    measurer = Measurer(config, env)
    conn.send(("ready", env))
    while True:
        task = conn.recv()
        if task is None:
            return
        ensure_registered(task)
        print(f"--- {task.spec.describe()} :: {task.label}", flush=True)
        row = measurer.measure(task.spec, registry[task.backend](task.variant))
        if row.status in FAILED:  # the log says why, beside the spec's header
            print(f"    {row.status}: {row.reason}", flush=True)
        conn.send(("row", row))


class WorkerPool:
    """One worker process at a time, restarted after a timeout, a crash or an error. `env` is set in
    the worker's environment before it starts (CUDA_VISIBLE_DEVICES: the one GPU it sees)."""

    def __init__(self, config: MeasureConfig, log_path: Path, env: dict[str, str] | None = None):
        self.worker_env = env or {}
        self.config = config
        self.commit = config.git_commit or git_commit()
        self.log_path = log_path
        self.ctx = mp.get_context("spawn")
        self.process = None
        self.conn = None
        self.env: Environment | None = None
        self.stopping = False  # asked to exit (ask_to_stop), not yet joined

    def _start(self) -> None:
        self.stopping = False
        parent, child = self.ctx.Pipe()
        self.process = self.ctx.Process(
            target=_worker_main, args=(child, self.config, self.commit, str(self.log_path)), daemon=True
        )
        with environment(self.worker_env):  # a spawned child copies the parent's environment at start
            self.process.start()
        child.close()
        self.conn = parent
        if not parent.poll(WORKER_START_TIMEOUT_S):
            self._kill()
            raise SweepError(
                f"the measuring worker did not start within {WORKER_START_TIMEOUT_S:.0f} s; see {self.log_path}"
            )
        try:
            _, env = parent.recv()
        except EOFError:
            self._kill()
            raise SweepError(f"the measuring worker died while starting; see {self.log_path}") from None
        self.env = env

    def _kill(self) -> None:
        if self.process is not None and self.process.is_alive():
            os.kill(self.process.pid, signal.SIGKILL)
        if self.process is not None:
            self.process.join(10)
        if self.conn is not None:
            self.conn.close()
        self.process = self.conn = None

    def _reap(self) -> int | None:
        """Wait for a worker whose pipe broke, and return its exit code (negative: the signal).
        Read only after the process is joined: before that, under load, it may still be None."""
        exitcode = None
        if self.process is not None:
            self.process.join(10)
            exitcode = self.process.exitcode
        self._kill()
        return exitcode

    def ask_to_stop(self) -> None:
        """Tell the worker to exit, without waiting: a sweep asks every worker first, then waits for each
        (one after another, four GPU workers took about a minute to wind down after the last row)."""
        if self.process is not None and self.process.is_alive() and not self.stopping:
            try:
                self.conn.send(None)
                self.stopping = True
            except (OSError, EOFError):
                pass

    def close(self, grace_s: float = STOP_GRACE_S) -> None:
        stop_workers([self], grace_s)

    def run(self, task: Task, timeout_s: float) -> ResultRow:
        if self.process is None:
            self._start()
        env = self.env

        def failed(status: Status, reason: str) -> ResultRow:
            backend = BACKENDS[task.backend](task.variant)
            return make_row(task.spec, task.backend, backend.version(), env, self.config, status, reason, task.variant)

        try:
            self.conn.send(task)
            if not self.conn.poll(timeout_s):
                self._kill()
                return failed(Status.TIMEOUT, f"no result within the {timeout_s:g} s time limit; the worker was killed")
            _, row = self.conn.recv()
        except (EOFError, OSError, BrokenPipeError):
            exitcode = self._reap()
            if exitcode is None:
                how = "the worker process died"
            elif exitcode < 0:
                how = f"the worker process was killed by signal {signal.Signals(-exitcode).name}"
            else:
                how = f"the worker process exited with code {exitcode}"
            return failed(Status.ERROR, f"{how} while measuring; see {self.log_path}")
        if row.status is Status.ERROR:
            self._kill()  # a CUDA error can poison the context: the next task gets a fresh process
        return row


def stop_workers(pools: list[WorkerPool], grace_s: float = STOP_GRACE_S) -> None:
    """Ask every worker to exit at once, give them `grace_s` together, then kill those still running. Their
    rows are all in the parent by then; one slow to tear down (CUDA, compile pools) costs a second, not 10 s
    a worker one after another (four GPU workers took about a minute to wind down after the last row)."""
    for pool in pools:
        pool.ask_to_stop()
    deadline = time.monotonic() + grace_s
    for pool in pools:
        process = pool.process
        if process is not None and pool.stopping:
            process.join(max(0.0, deadline - time.monotonic()))
    for pool in pools:
        process = pool.process
        if process is not None and process.is_alive():
            os.kill(process.pid, signal.SIGKILL)  # all first: a process may take a while to die
    for pool in pools:
        pool.stopping = False
        pool._kill()


@contextlib.contextmanager
def environment(values: dict[str, str]):
    """Set these environment variables for the duration of a `with` block."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def local_rows(
    todo: list[Task], config: MeasureConfig, timeout_s: float, workers: list[dict[str, str]] | None = None
) -> Iterator[tuple[Task, ResultRow]]:
    """Yield (task, row) as the workers finish them. `workers`: one environment per worker process (e.g.
    {"CUDA_VISIBLE_DEVICES": "3"}); with more than one, the tasks go out from one queue in the order
    harness/workers/schedule.py plans for the makespan. Ended early (Ctrl-C, SIGTERM, a failed write), the
    workers are killed now, not after their task."""
    pools = [WorkerPool(config, log_path_for(config.run_id), env) for env in (workers or [{}])]
    rows = _serial(todo, pools[0], timeout_s) if len(pools) == 1 else _parallel(todo, pools, timeout_s)
    try:
        yield from rows
    except BaseException:
        for pool in pools:
            pool._kill()
        raise
    finally:
        rows.close()
        stop_workers(pools)


def _serial(todo: list[Task], pool: WorkerPool, timeout_s: float):
    for task in todo:
        yield task, pool.run(task, timeout_s)


def _parallel(todo: list[Task], pools: list[WorkerPool], timeout_s: float):
    """One thread a worker pulls tasks from a shared queue, in the order schedule.py plans, the next
    task of the spec it holds first; rows come back in the order they finish. Workers start one after
    another, so that the first of a GPU kind calibrates it alone."""
    import queue
    import threading

    for pool in pools:
        pool._start()
    costs = schedule.estimate_costs(todo, max_seconds=pools[0].config.repetition.max_seconds)
    tasks = schedule.SpecQueue(schedule.plan(todo, costs, len(pools)), lambda task: task.spec)
    done: queue.Queue = queue.Queue()
    stop = threading.Event()

    def work(pool: WorkerPool) -> None:
        held = None  # the spec whose inputs the worker holds
        while not stop.is_set():
            task = tasks.take(held)
            if task is None:
                return
            held = task.spec
            try:
                done.put((task, pool.run(task, timeout_s)))
            except Exception as exc:  # noqa: BLE001 - a worker that cannot restart: report, keep the others
                done.put((task, exc))

    threads = [threading.Thread(target=work, args=(pool,), daemon=True) for pool in pools]
    for thread in threads:
        thread.start()
    try:
        for _ in range(len(todo)):
            task, row = done.get()
            if isinstance(row, Exception):
                raise row
            yield task, row
    finally:
        stop.set()
        deadline = time.monotonic() + 1
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))


def log_path_for(run_id: str) -> Path:
    return Path(tempfile.gettempdir()) / f"attnbench-{run_id}.log"


def local_gpu_count() -> int:
    """GPUs on this host, through NVML (no CUDA context in this process), else torch."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml.nvmlDeviceGetCount()
    except Exception:
        import torch

        return torch.cuda.device_count()


def worker_environments(gpus: str | None, workers: int | None, on_gpu: bool) -> list[dict[str, str]] | None:
    """One environment per worker process: a GPU each for --gpus, plain copies for --workers (CPU)."""
    if gpus is not None:
        count = local_gpu_count()
        items = [g.strip() for g in gpus.split(",")]  # an empty item (0,,1) is a typo, not a GPU
        valid = gpus == "all" or all(g.isdigit() and int(g) < count for g in items)
        if not valid:
            have = ", ".join(map(str, range(count))) or "none"
            raise SpecError(f"--gpus: {gpus!r} is not valid; expected 'all' or ids of this host's GPUs ({have})")
        ids = list(range(count)) if gpus == "all" else [int(g) for g in items]
        return [{"CUDA_VISIBLE_DEVICES": str(i)} for i in dict.fromkeys(ids)]
    if workers is not None and workers > 1:
        if on_gpu:
            raise SpecError("--workers: for CPU sweeps; on GPUs give --gpus (one worker a GPU)")
        return [{} for _ in range(workers)]
    return None
