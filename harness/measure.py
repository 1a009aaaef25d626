"""Measure one (spec, backend): availability ▸ support ▸ inputs ▸ prepare ▸ check ▸ time ▸ row."""

from __future__ import annotations

import datetime as dt
import gc
import time
import traceback
from dataclasses import dataclass, field

import torch

from frameworks import Backend, Unsupported
from specs import ExperimentSpec

from .env import Environment
from .inputs import AttentionInputs, input_bytes, make_inputs
from .reference import check_indices, check_output, reference_attention
from .store import ResultRow, Status
from .timer import time_callable, timing_mode

# the inputs plus the output must fit in this share of the GPU's memory, or the spec is skipped
MEMORY_HEADROOM = 0.9


@dataclass(frozen=True)
class MeasureConfig:
    device: str = "cpu"
    iterations: int = 20
    warmup: int = 3
    max_seconds: float = 30.0  # cap on the timed loop of one task (iterations shrink to fit, at least 5)
    run_id: str = ""


def now_utc() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def make_row(
    spec: ExperimentSpec,
    backend: str,
    version: str,
    env: Environment,
    config: MeasureConfig,
    status: Status,
    reason: str = "",
    **measured,
) -> ResultRow:
    """A row with every measured field None unless given."""
    measured_fields = {
        name: None
        for name in (
            "p50_ms", "p95_ms", "mean_ms", "std_ms", "min_ms", "max_ms", "n_iters", "setup_ms",
            "tflops", "gbps", "tokens_per_s", "peak_mem_gib", "rel_err", "max_abs_err", "checked_batch",
        )
    }  # fmt: skip
    measured_fields.update(measured)
    return ResultRow(
        run_id=config.run_id,
        timestamp=now_utc(),
        **spec.to_dict(),
        backend=backend,
        backend_version=version,
        status=status,
        reason=_one_line(reason),
        backend_info=measured_fields.pop("backend_info", ""),
        **measured_fields,
        device=env.device,
        driver=env.driver,
        cuda=env.cuda,
        torch=env.torch,
        git_commit=env.git_commit,
        timing_mode=timing_mode(torch.device(config.device)),
        host=env.host,
    )


def _one_line(text: str, limit: int = 500) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    message = str(exc)
    return isinstance(exc, (RuntimeError, MemoryError)) and (
        "out of memory" in message.lower() or "can't allocate memory" in message or isinstance(exc, MemoryError)
    )


def describe_exception(exc: BaseException) -> str:
    """Type, message and the innermost frame of project or library code."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


@dataclass
class SpecState:
    """Inputs and reference of the spec being measured, shared by its backends."""

    spec: ExperimentSpec
    inputs: AttentionInputs | None = None
    inputs_error: BaseException | None = None
    batch_indices: list[int] = field(default_factory=list)
    reference: torch.Tensor | None = None


class Measurer:
    """Measures tasks one after another in this process, keeping one spec's inputs between backends."""

    def __init__(self, config: MeasureConfig, env: Environment):
        self.config = config
        self.env = env
        self.device = torch.device(config.device)
        self.state: SpecState | None = None

    def _state_for(self, spec: ExperimentSpec) -> SpecState:
        if self.state is not None and self.state.spec == spec:
            return self.state
        self.state = None
        _release(self.device)
        state = SpecState(spec)
        try:
            state.inputs = make_inputs(spec, self.device)
        except BaseException as exc:  # noqa: BLE001 - recorded per backend as oom / error
            if isinstance(exc, KeyboardInterrupt):
                raise
            state.inputs_error = exc
        self.state = state
        return state

    def _reference(self, state: SpecState) -> tuple[list[int], torch.Tensor]:
        if state.reference is None:
            state.batch_indices = check_indices(state.spec, self.device)
            state.reference = reference_attention(state.spec, state.inputs, state.batch_indices)
        return state.batch_indices, state.reference

    def memory_skip_reason(self, spec: ExperimentSpec) -> str | None:
        if self.device.type != "cuda":
            return None
        need = input_bytes(spec)
        total = torch.cuda.get_device_properties(self.device).total_memory
        if need > MEMORY_HEADROOM * total:
            return (
                f"skipped: inputs and output need {need / 2**30:.1f} GiB, "
                f"more than {MEMORY_HEADROOM:.0%} of this GPU's {total / 2**30:.1f} GiB"
            )
        return None

    def measure(self, spec: ExperimentSpec, backend: Backend) -> ResultRow:
        config, env = self.config, self.env
        version = backend.version() if backend.availability(self.device) is None else ""

        def row(status: Status, reason: str = "", **measured) -> ResultRow:
            return make_row(spec, backend.name, version, env, config, status, reason, **measured)

        reason = backend.availability(self.device)
        if reason:
            return row(Status.UNAVAILABLE, reason)
        reason = backend.supports(spec)
        if reason:
            return row(Status.UNSUPPORTED, reason)
        reason = self.memory_skip_reason(spec)
        if reason:
            return row(Status.OOM, reason)

        state = self._state_for(spec)
        if state.inputs_error is not None:
            exc = state.inputs_error
            return row(Status.OOM if is_oom(exc) else Status.ERROR, "inputs: " + describe_exception(exc))

        fn = out = None
        try:
            if self.device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats(self.device)
            t0 = time.perf_counter()
            fn = backend.prepare(spec, state.inputs)
            out = fn()
            _sync(self.device)
            setup_ms = (time.perf_counter() - t0) * 1e3
            info = backend.run_info()

            batch_indices, reference = self._reference(state)
            check = check_output(spec, out, reference, batch_indices)
            checked = dict(rel_err=check.rel_err, max_abs_err=check.max_abs_err, checked_batch=check.checked_batch)
            if not check.ok:
                return row(Status.INCORRECT, check.problem, setup_ms=setup_ms, backend_info=info, **checked)
            out = None

            timing = time_callable(fn, self.device, config.iterations, config.warmup, config.max_seconds)
            peak = (
                torch.cuda.max_memory_allocated(self.device) / 2**30 if self.device.type == "cuda" else None
            )
            seconds = timing.p50_ms / 1e3
            return row(
                Status.OK,
                p50_ms=timing.p50_ms,
                p95_ms=timing.p95_ms,
                mean_ms=timing.mean_ms,
                std_ms=timing.std_ms,
                min_ms=timing.min_ms,
                max_ms=timing.max_ms,
                n_iters=timing.n,
                setup_ms=setup_ms,
                tflops=spec.flops / seconds / 1e12,
                gbps=spec.ideal_bytes / seconds / 1e9,
                tokens_per_s=spec.tokens / seconds,
                peak_mem_gib=peak,
                backend_info=info,
                **checked,
            )
        except Unsupported as exc:
            return row(Status.UNSUPPORTED, str(exc))
        except Exception as exc:  # noqa: BLE001 - every failure becomes a row, the sweep goes on
            return row(Status.OOM if is_oom(exc) else Status.ERROR, describe_exception(exc))
        finally:
            del fn, out
            _release(self.device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
