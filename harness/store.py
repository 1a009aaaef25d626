"""The results database: one `ResultRow` per (spec, backend, run); its fields are the CSV columns."""

from __future__ import annotations

import csv
import io
import types
import typing
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from enum import Enum
from pathlib import Path

from specs import ExperimentSpec


class Status(str, Enum):
    OK = "ok"
    OOM = "oom"
    UNSUPPORTED = "unsupported"
    UNAVAILABLE = "unavailable"
    INCORRECT = "incorrect"
    ERROR = "error"
    TIMEOUT = "timeout"

    def __str__(self) -> str:
        return self.value


# present exactly when the status is ok
TIMED_FIELDS = (
    "p50_ms", "p95_ms", "mean_ms", "std_ms", "min_ms", "max_ms", "n_iters", "p50_ci_low_ms", "p50_ci_high_ms",
    "tflops", "gbps", "tokens_per_s",
)  # fmt: skip
# known once the backend produced an output (ok or incorrect)
CHECK_FIELDS = ("rel_err", "max_abs_err", "checked_batch")
# only when ok, and only where there is a calibration / NVML
OK_ONLY_OPTIONAL = (
    "pct_peak_tflops", "pct_peak_gbps", "sm_clock_start_mhz", "sm_clock_end_mhz", "mem_clock_start_mhz",
    "mem_clock_end_mhz", "temp_start_c", "temp_end_c", "power_start_w", "power_end_w", "throttled",
)  # fmt: skip


@dataclass(frozen=True)
class ResultRow:
    # --- the run
    run_id: str
    timestamp: str  # UTC, ISO 8601
    # --- the spec (ExperimentSpec's fields)
    model: str
    workload: str
    batch_size: int
    q_len: int
    kv_len: int
    num_q_heads: int
    num_kv_heads: int
    head_dim: int
    dtype: str
    causal: bool
    page_size: int | None
    mix: str  # "" for a uniform batch; else the mix string or length generator (rebuilds the batch exactly)
    # --- the batch in totals (uniform: batch_size × q_len and batch_size × kv_len)
    total_q_tokens: int
    total_kv_tokens: int
    min_kv_len: int
    # --- the backend and the outcome
    backend: str
    backend_version: str
    status: Status
    reason: str  # why the status is not ok ('' when ok)
    backend_info: str  # what actually ran: chosen kernel, autotuned config ('' when the backend does not say)
    # --- latency (ms), over n_iters timed calls
    p50_ms: float | None
    p95_ms: float | None
    mean_ms: float | None
    std_ms: float | None
    min_ms: float | None
    max_ms: float | None
    n_iters: int | None
    p50_ci_low_ms: float | None  # 95% confidence interval of the median (order statistics)
    p50_ci_high_ms: float | None
    setup_ms: float | None  # prepare() plus the first call: layout conversion, plan(), compilation
    # --- metrics from p50
    tflops: float | None
    gbps: float | None
    tokens_per_s: float | None
    peak_mem_gib: float | None  # peak device memory of the task (inputs included); CUDA only
    # --- against this device's measured ceilings (`run.py calibrate`); empty when not calibrated
    ceiling_tflops: float | None  # measured matmul rate in this dtype
    ceiling_gbps: float | None  # measured bandwidth: the faster of a device copy and a read-only stream
    roofline_ms: float | None  # max(FLOPs / ceiling_tflops, bytes / ceiling_gbps): no kernel is faster
    pct_peak_tflops: float | None
    pct_peak_gbps: float | None
    # --- the check against the fp32 reference
    rel_err: float | None
    max_abs_err: float | None
    checked_batch: int | None
    # --- GPU telemetry (NVML) just before and just after the timed loop
    sm_clock_start_mhz: int | None
    sm_clock_end_mhz: int | None
    mem_clock_start_mhz: int | None
    mem_clock_end_mhz: int | None
    temp_start_c: int | None
    temp_end_c: int | None
    power_start_w: float | None
    power_end_w: float | None
    throttle_reasons: str  # NVML clock-event reasons at start and end
    throttled: bool | None  # a power, thermal or hardware slowdown was active
    # --- the environment
    device: str
    driver: str
    cuda: str
    torch: str
    git_commit: str
    timing_mode: str
    host: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", Status(self.status))
        if self.status is Status.OK:
            missing = [name for name in TIMED_FIELDS + CHECK_FIELDS if getattr(self, name) is None]
            if missing:
                raise ValueError(f"an ok row needs {', '.join(missing)}")
            if self.reason:
                raise ValueError("an ok row has no reason")
        else:
            present = [name for name in TIMED_FIELDS + OK_ONLY_OPTIONAL if getattr(self, name) is not None]
            if present:
                raise ValueError(f"a {self.status} row carries no timing, got {', '.join(present)}")
            if not self.reason:
                raise ValueError(f"a {self.status} row needs a reason")

    @property
    def spec(self) -> ExperimentSpec:
        spec_fields = {f.name for f in fields(ExperimentSpec)}
        return ExperimentSpec(**{k: v for k, v in asdict(self).items() if k in spec_fields})

    @property
    def task_key(self) -> tuple:
        """(spec, backend): what `--resume` matches on."""
        return (*self.spec.key, self.backend)


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(ResultRow))
# files written before batches could be ragged: the same columns without the mix and the totals
BATCH_COLUMNS = ("mix", "total_q_tokens", "total_kv_tokens", "min_kv_len")
LEGACY_COLUMNS: tuple[str, ...] = tuple(c for c in COLUMNS if c not in BATCH_COLUMNS)


class StoreError(ValueError):
    """A results file that is not a valid attnbench CSV; the message says which file, line and column."""


def _field_types() -> dict[str, tuple[type, bool]]:
    """column -> (base type, optional)."""
    hints = typing.get_type_hints(ResultRow)
    out = {}
    for name, hint in hints.items():
        args = typing.get_args(hint)
        optional = type(None) in args and (typing.get_origin(hint) in (typing.Union, types.UnionType))
        base = next((a for a in args if a is not type(None)), hint) if optional else hint
        out[name] = (base, optional)
    return out


_TYPES = _field_types()


def _to_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _from_cell(text: str, column: str, where: str):
    base, optional = _TYPES[column]
    if text == "":
        if optional:
            return None
        if base is str:
            return ""
        raise StoreError(f"{where}: column {column!r} is empty but required")
    try:
        if base is bool:
            if text not in ("True", "False"):
                raise ValueError
            return text == "True"
        if base is int:
            return int(text)
        if base is float:
            return float(text)
        if base is Status:
            return Status(text)
        return text
    except ValueError:
        allowed = f"; expected one of {', '.join(s.value for s in Status)}" if base is Status else ""
        raise StoreError(f"{where}: column {column!r} has {text!r}, not a {base.__name__}{allowed}") from None


def append_rows(path: Path | str, rows: Iterable[ResultRow]) -> None:
    """Append rows (writing the header first if the file is new); flushed at once so a killed sweep
    keeps every finished row. An existing file must already be an attnbench CSV of this schema (a
    file of the legacy schema is first rewritten, atomically and with every value kept, in this one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    if not new and _check_header(path) == LEGACY_COLUMNS:
        upgrade(path)
    with path.open("a", newline="") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow([_to_cell(getattr(row, c)) for c in COLUMNS])
        handle.flush()


def _check_header(path: Path) -> tuple[str, ...]:
    with path.open(newline="") as handle:
        header = next(csv.reader(handle), [])
    return _validate_header(header, path)


def upgrade(path: Path) -> None:
    """Rewrite a legacy-schema file in this schema, every row kept, through a temporary file."""
    import os

    rows = load_rows(path)
    tmp = path.with_name(path.name + ".upgrading")
    tmp.unlink(missing_ok=True)
    append_rows(tmp, rows)
    os.replace(tmp, path)


def _validate_header(header: list[str], path: Path) -> tuple[str, ...]:
    if tuple(header) in (COLUMNS, LEGACY_COLUMNS):
        return tuple(header)
    missing = [c for c in COLUMNS if c not in header]
    extra = [c for c in header if c not in COLUMNS]
    detail = []
    if missing:
        detail.append(f"missing columns: {', '.join(missing[:8])}{' …' if len(missing) > 8 else ''}")
    if extra:
        detail.append(f"unexpected columns: {', '.join(extra[:8])}{' …' if len(extra) > 8 else ''}")
    if not detail:
        detail.append("columns are in a different order")
    raise StoreError(f"{path} is not an attnbench results file of this version ({'; '.join(detail)})")


def load_rows(path: Path | str) -> list[ResultRow]:
    """Every row of one CSV, validated; a malformed or foreign file raises StoreError."""
    path = Path(path)
    if not path.exists():
        raise StoreError(f"{path}: no such file")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise StoreError(f"{path} is not a text CSV file") from None
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None:
        raise StoreError(f"{path} is empty: no header row")
    columns = _validate_header(header, path)
    rows = []
    for line_no, cells in enumerate(reader, start=2):
        where = f"{path}, line {line_no}"
        if not cells:
            continue
        if len(cells) != len(columns):
            raise StoreError(f"{where}: {len(cells)} cells, expected {len(columns)}")
        values = {c: _from_cell(cell, c, where) for c, cell in zip(columns, cells)}
        if columns == LEGACY_COLUMNS:  # a uniform batch: its totals follow from the spec
            b = values["batch_size"]
            values.update(mix="", total_q_tokens=b * values["q_len"], total_kv_tokens=b * values["kv_len"],
                          min_kv_len=values["kv_len"])  # fmt: skip
        try:
            rows.append(ResultRow(**values))
        except (ValueError, TypeError) as exc:
            raise StoreError(f"{where}: {exc}") from None
    return rows


def load_many(paths: Iterable[Path | str]) -> list[ResultRow]:
    rows: list[ResultRow] = []
    for path in paths:
        rows.extend(load_rows(path))
    return rows


def done_keys(path: Path | str, retry: Iterable[Status] = ()) -> set[tuple]:
    """Task keys already in a file, for --resume (an absent file holds none); a key whose newest
    row has a status in `retry` is left out, so that it runs again."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return set()
    retry = set(retry)
    return {row.task_key for row in latest(load_rows(path)) if row.status not in retry}


def latest(rows: Iterable[ResultRow]) -> list[ResultRow]:
    """One row per (device, spec, backend): the newest, so re-runs supersede older measurements."""
    newest: dict[tuple, ResultRow] = {}
    for row in rows:
        key = (row.device, row.task_key)
        if key not in newest or row.timestamp >= newest[key].timestamp:
            newest[key] = row
    return list(newest.values())
