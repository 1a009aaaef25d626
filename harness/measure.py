"""Measure one (spec, backend): availability ▸ support ▸ inputs ▸ prepare ▸ check ▸ time ▸ row."""

from __future__ import annotations

import gc
import os
import time
import traceback
from dataclasses import dataclass, field, fields

import torch

from frameworks import AttentionInputs, Backend, Unsupported, info_text
from specs import ExperimentSpec

from . import calibrate
from .atomic import WriteError
from .env import Environment, now_utc
from .inputs import make_inputs
from .reference import check_indices, check_output, reference_attention, relative_error
from .store import ResultRow, Status
from .telemetry import Telemetry, describe_reasons, gpu_uuid, pci_bus_id
from .timer import Repetition, TimingMode, check_mode, default_mode, time_callable

# the inputs plus the output must fit in this share of the GPU's memory, or the spec is skipped
MEMORY_HEADROOM = 0.9


@dataclass(frozen=True)
class MeasureConfig:
    device: str = "cpu"
    repetition: Repetition = Repetition()
    timing: str | None = None  # TimingMode value; None = events on CUDA, wall on CPU
    run_id: str = ""
    calibration_path: str | None = None  # ceilings for percent-of-peak; None = no ceilings
    calibrate_if_missing: bool = False  # measure and store the ceilings when the file has none for this device
    ceilings: dict | None = None  # dtype -> Calibration, given instead of a file (Ray workers have none)
    l2_flush: str = "zero"  # how the L2 is evicted before each timed call (timer.L2_FLUSHES); in timing_mode
    git_commit: str | None = None  # the commit the rows name; None: asked of git (`--git-commit` for a copy)

    @property
    def timing_mode(self) -> TimingMode:
        device = torch.device(self.device)
        return check_mode(self.timing or default_mode(device), device)


def memory_skip_reason(spec: ExperimentSpec, device_bytes: int, what: str = "this GPU's") -> str | None:
    """Why a spec is skipped before running (its inputs and output alone do not fit), or None. Worked out
    from the spec's numbers alone: nothing is allocated (a uniform batch does not even list its requests)."""
    need = spec.ideal_bytes  # Q, K, V and O: the floor of any backend's footprint
    if need > MEMORY_HEADROOM * device_bytes:
        return (
            f"skipped: inputs and output need {need / 2**30:,.1f} GiB, "
            f"more than {MEMORY_HEADROOM:.0%} of {what} {device_bytes / 2**30:,.1f} GiB"
        )
    return None


def available_ram_bytes() -> int | None:
    """The memory this host can still give (MemAvailable), or None where it cannot be read."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def make_row(
    spec: ExperimentSpec,
    backend: str,
    version: str,
    env: Environment,
    config: MeasureConfig,
    status: Status,
    reason: str = "",
    variant: str = "",
    **measured,
) -> ResultRow:
    """A row with every measured field None unless given; `variant` is the backend's canonical variant."""
    values = {name: None for name in MEASURED_FIELDS}
    values.update(backend_info="", throttle_reasons="")
    values.update(measured)
    return ResultRow(
        run_id=config.run_id,
        timestamp=now_utc(),
        **spec.to_dict(),
        total_q_tokens=spec.total_q,
        total_kv_tokens=spec.total_kv,
        min_kv_len=spec.min_kv,
        backend=backend,
        variant=variant,
        backend_version=version,
        status=status,
        reason=_one_line(reason),
        **values,
        device=env.device,
        driver=env.driver,
        cuda=env.cuda,
        torch=env.torch,
        git_commit=env.git_commit,
        timing_mode=config.timing_mode.label_for(config.l2_flush),
        host=env.host,
        gpu_uuid=env.gpu_uuid,
    )


_FIXED = {"run_id", "timestamp", "backend", "variant", "backend_version", "status", "reason", "device", "driver",
          "cuda", "torch", "git_commit", "timing_mode", "host", "gpu_uuid", "total_q_tokens", "total_kv_tokens",
          "min_kv_len"}  # fmt: skip
MEASURED_FIELDS = tuple(
    f.name for f in fields(ResultRow) if f.name not in _FIXED and f.name not in {g.name for g in fields(ExperimentSpec)}
)


def ceiling_fields(spec: ExperimentSpec, ceilings: dict) -> dict:
    """The device's measured ceilings for this spec's dtype and the roofline-bound time."""
    cal = ceilings.get(str(spec.dtype))
    if cal is None:
        return {}
    bandwidth = cal.bandwidth_gbps
    roofline_s = max(spec.flops / (cal.matmul_tflops * 1e12), spec.ideal_bytes / (bandwidth * 1e9))
    return dict(ceiling_tflops=cal.matmul_tflops, ceiling_gbps=bandwidth, roofline_ms=roofline_s * 1e3)


def _one_line(text: str, limit: int = 500) -> str:
    """On one line and at most `limit` characters: a long reason keeps its head and its tail (a wrapped
    exception names the real error last, after the wrapper's traceback)."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    head = limit // 2
    return text[:head] + " … " + text[len(text) - (limit - head - 3) :]


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
    reference_unquantized: torch.Tensor | None = None  # FP8 specs: the reference on the inputs before quantization


class Measurer:
    """Measures tasks one after another in this process, keeping one spec's inputs between backends."""

    def __init__(self, config: MeasureConfig, env: Environment):
        self.config = config
        self.env = env
        self.device = torch.device(config.device)
        self.state: SpecState | None = None
        self.telemetry = (
            Telemetry(self.device.index or 0, pci_bus_id(self.device), gpu_uuid(self.device))
            if self.device.type == "cuda"
            else None
        )
        self.ceilings = self._load_ceilings()

    def _load_ceilings(self) -> dict:
        if self.config.ceilings is not None:
            return self.config.ceilings
        path = self.config.calibration_path
        if path is None:
            return {}
        ceilings = calibrate.ceilings_for(self.env.device, path)
        if not ceilings and self.config.calibrate_if_missing:
            rows = calibrate.measure(self.device, self.env, timestamp=now_utc())
            try:
                calibrate.save(rows, path)
            except WriteError as exc:  # a full disk: the ceilings still serve this sweep, the file is unchanged
                print(f"the measured ceilings were not stored: {exc}", flush=True)
            ceilings = {r.dtype: r for r in rows}
        return ceilings

    def _state_for(self, spec: ExperimentSpec) -> SpecState:
        if self.state is not None and self.state.spec == spec:
            return self.state
        self.state = None
        # the previous spec's inputs go before the next are drawn; on a GPU, also anything a library
        # left in a reference cycle (0.1 s a spec, nothing beside GPU timings)
        _release(self.device, collect_cycles=self.device.type == "cuda")
        state = SpecState(spec)
        try:
            state.inputs = make_inputs(spec, self.device)
        except BaseException as exc:
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

    def _error_vs_unquantized(self, state: SpecState, out: torch.Tensor) -> float | None:
        """The second check of an FP8 spec: the output against the fp32 reference on the inputs before
        quantization (what FP8 costs); None when nothing is quantized."""
        unquantized = state.inputs.unquantized
        if unquantized is None:
            return None
        if state.reference_unquantized is None:
            state.reference_unquantized = reference_attention(state.spec, unquantized, state.batch_indices)
        return relative_error(state.spec, out, state.reference_unquantized, state.batch_indices)

    def memory_skip_reason(self, spec: ExperimentSpec) -> str | None:
        if self.device.type != "cuda":  # the CPU: against the RAM free now
            free = available_ram_bytes()
            return None if free is None else memory_skip_reason(spec, free, "the free RAM,")
        return memory_skip_reason(spec, torch.cuda.get_device_properties(self.device).total_memory)

    def measure(self, spec: ExperimentSpec, backend: Backend) -> ResultRow:
        config, env = self.config, self.env
        unavailable = backend.availability(self.device)
        version = "" if unavailable else backend.version()

        bounds = ceiling_fields(spec, self.ceilings)

        def row(status: Status, reason: str = "", **measured) -> ResultRow:
            return make_row(
                spec, backend.name, version, env, config, status, reason, backend.variant, **bounds, **measured
            )

        if unavailable:
            return row(Status.UNAVAILABLE, unavailable)
        reason = self.memory_skip_reason(spec)  # first: an adapter's own check may list the requests
        if reason:
            return row(Status.OOM, reason)
        reason = backend.supports(spec)
        if reason:
            return row(Status.UNSUPPORTED, reason)

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
            info = info_text(backend.run_info())

            batch_indices, reference = self._reference(state)
            check = check_output(spec, out, reference, batch_indices)
            checked = dict(rel_err=check.rel_err, max_abs_err=check.max_abs_err, checked_batch=check.checked_batch)
            if check.problem is None or "relative error" in check.problem:  # an output of the right shape
                checked["rel_err_vs_unquantized"] = self._error_vs_unquantized(state, out)
            if not check.ok:
                return row(Status.INCORRECT, check.problem, setup_ms=setup_ms, backend_info=info, **checked)
            out = None

            start = self.telemetry.snapshot() if self.telemetry else None
            timing = time_callable(fn, self.device, config.repetition, config.timing_mode, config.l2_flush)
            end = self.telemetry.snapshot() if self.telemetry else None
            peak = torch.cuda.max_memory_allocated(self.device) / 2**30 if self.device.type == "cuda" else None
            seconds = timing.p50_ms / 1e3
            tflops, gbps = spec.flops / seconds / 1e12, spec.ideal_bytes / seconds / 1e9
            ci_low, ci_high = timing.p50_ci_ms
            return row(
                Status.OK,
                p50_ms=timing.p50_ms,
                p95_ms=timing.p95_ms,
                mean_ms=timing.mean_ms,
                std_ms=timing.std_ms,
                min_ms=timing.min_ms,
                max_ms=timing.max_ms,
                n_iters=timing.n,
                p50_ci_low_ms=ci_low,
                p50_ci_high_ms=ci_high,
                setup_ms=setup_ms,
                tflops=tflops,
                gbps=gbps,
                tokens_per_s=spec.tokens / seconds,
                peak_mem_gib=peak,
                pct_peak_tflops=100 * tflops / bounds["ceiling_tflops"] if bounds else None,
                pct_peak_gbps=100 * gbps / bounds["ceiling_gbps"] if bounds else None,
                backend_info=info,
                **telemetry_fields(start, end),
                **checked,
            )
        except Unsupported as exc:
            return row(Status.UNSUPPORTED, str(exc))
        except Exception as exc:  # noqa: BLE001 - every failure becomes a row, the sweep goes on
            failed = True  # a traceback's frames may hold tensors in reference cycles
            return row(Status.OOM if is_oom(exc) else Status.ERROR, describe_exception(exc))
        finally:
            del fn, out
            _release(self.device, collect_cycles=locals().get("failed", False))


def telemetry_fields(start, end) -> dict:
    if start is None and end is None:
        return {}
    pick = lambda snap, attr: getattr(snap, attr) if snap is not None else None
    return dict(
        sm_clock_start_mhz=pick(start, "sm_clock_mhz"),
        sm_clock_end_mhz=pick(end, "sm_clock_mhz"),
        mem_clock_start_mhz=pick(start, "mem_clock_mhz"),
        mem_clock_end_mhz=pick(end, "mem_clock_mhz"),
        temp_start_c=pick(start, "temp_c"),
        temp_end_c=pick(end, "temp_c"),
        power_start_w=pick(start, "power_w"),
        power_end_w=pick(end, "power_w"),
        throttle_reasons=describe_reasons(start, end),
        throttled=any(s.throttled for s in (start, end) if s is not None),
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _release(device: torch.device, collect_cycles: bool = False) -> None:
    """Hand freed memory back. Tensors go with their last reference; a full garbage collection
    (about 0.1 s with torch and its compilers loaded) runs only where cycles may hold them: after a
    failure, whose traceback frames reference the tensors of the failed call, and between specs on
    a GPU."""
    if collect_cycles:
        gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
