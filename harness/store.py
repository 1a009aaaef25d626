"""The results database: one `ResultRow` per (spec, backend, run); its fields are the CSV columns."""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import types
import typing
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields, replace
from enum import Enum
from pathlib import Path

import pandas as pd

from frameworks import label
from specs import ExperimentSpec

from .atomic import WriteError, append_checked, check_regular, write_atomic


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
    window: int | None  # left sliding window in keys ('' = full attention)
    sinks: bool  # learned per-head sink logits in the softmax
    softcap: float | None  # logit soft-cap ('' = none)
    tp: int  # tensor-parallel degree the heads are one GPU's share of (1 = unsharded)
    kv_dtype: str  # "" = K/V in dtype; "fp8_e4m3": an FP8 cache with fp32 scales
    fp8_attention: bool  # Q in e4m3 too (FA3's FP8 form)
    kv_scale: str  # FP8 scales: "tensor" or "head" ("" unquantized)
    kv_lora_rank: int | None  # MLA: the latent width (None: not MLA)
    rope_dim: int | None  # MLA: the rope width
    v_head_dim: int | None  # MLA: the value width (absorbed: kv_lora_rank; expanded: 128)
    # the output against the fp32 reference on the unquantized inputs (what FP8 costs; rel_err judges the kernel
    # against the dequantized ones); None when nothing is quantized
    rel_err_vs_unquantized: float | None
    # --- the batch in totals (uniform: batch_size × q_len and batch_size × kv_len)
    total_q_tokens: int
    total_kv_tokens: int
    min_kv_len: int
    # --- the backend and the outcome
    backend: str
    variant: str  # the backend's variant, canonical `key=value,…` ('' = its defaults): part of the task key
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
    gpu_uuid: str = ""  # which GPU of the host (its UUID; "" on a CPU and in files that predate the column)

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", Status(self.status))
        for name in (*CHECK_FIELDS, "rel_err_vs_unquantized"):  # an output with NaN has no error to state
            value = getattr(self, name)
            if isinstance(value, float) and math.isnan(value):
                object.__setattr__(self, name, None)
        if self.status is Status.OK:
            missing = [name for name in TIMED_FIELDS + CHECK_FIELDS if getattr(self, name) is None]
            if missing:
                raise ValueError(f"an ok row needs {', '.join(missing)}")
            if self.reason:
                raise ValueError("an ok row has no reason")
            if not all(math.isfinite(getattr(self, name)) for name in TIMED_FIELDS):
                raise ValueError("a latency or metric is nan or inf")
            if min(self.p50_ms, self.p95_ms, self.min_ms, self.max_ms, self.mean_ms) <= 0:
                raise ValueError("a latency is zero or negative")
        else:
            present = [name for name in TIMED_FIELDS + OK_ONLY_OPTIONAL if getattr(self, name) is not None]
            if present:
                raise ValueError(f"a {self.status} row carries no timing or metrics, got {', '.join(present)}")
            if not self.reason:
                raise ValueError(f"a {self.status} row needs a reason")

    @property
    def spec(self) -> ExperimentSpec:
        spec_fields = {f.name for f in fields(ExperimentSpec)}
        return ExperimentSpec(**{k: v for k, v in asdict(self).items() if k in spec_fields})

    @property
    def task_key(self) -> tuple:
        """(spec, backend): what `--resume` matches on."""
        return (*self.spec.key, self.backend, self.variant)


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(ResultRow))
# the batch in totals, added when batches could be ragged: older files held uniform batches only, whose
# totals follow from the spec
BATCH_COLUMNS = ("mix", "total_q_tokens", "total_kv_tokens", "min_kv_len")
# columns added after the first files were written, with the text an older file's rows get: a file whose
# header is this schema without some of them (in this order otherwise) loads, and is rewritten in this
# schema, every value kept, at its next append. A column added to ResultRow (or to ExperimentSpec) goes here.
ADDED_COLUMNS: dict[str, str] = {
    **dict.fromkeys(BATCH_COLUMNS, ""),  # derived from the spec in _parse
    "gpu_uuid": "",  # which GPU of a host: not recorded before multi-GPU sweeps
    "variant": "",  # rows from before variants ran each backend's defaults
    # rows from before attention forms: plain causal attention of an unsharded model
    "window": "",
    "sinks": "False",
    "softcap": "",
    "tp": "1",
    # FP8 and MLA (issue #32): older rows are unquantized, not latent attention
    "kv_dtype": "",
    "fp8_attention": "False",
    "kv_scale": "",
    "kv_lora_rank": "",
    "rope_dim": "",
    "v_head_dim": "",
    "rel_err_vs_unquantized": "",
}


class StoreError(ValueError):
    """A results file that is not a valid attnbench CSV; the message says which file, line and column."""


def _field_types() -> dict[str, tuple[type, bool]]:
    """column -> (base type, optional)."""
    out = {}
    for name, hint in typing.get_type_hints(ResultRow).items():
        args = typing.get_args(hint)
        optional = type(None) in args and typing.get_origin(hint) in (typing.Union, types.UnionType)
        out[name] = (next(a for a in args if a is not type(None)) if optional else hint, optional)
    return out


_TYPES = _field_types()
NUMERIC = [c for c, (base, _) in _TYPES.items() if base in (int, float)]
FLAGS = [c for c, (base, _) in _TYPES.items() if base is bool]
# the spec and the backend: what identifies a task (the device is added to tell GPUs apart)
SPEC_COLUMNS = tuple(f.name for f in fields(ExperimentSpec))
TASK_COLUMNS = (*SPEC_COLUMNS, "backend", "variant")


def _to_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, float):
        return repr(value)
    return str(value)


# ---- writing: one whole row per write, never onto a torn line ----------------------------------


def _csv_line(row: ResultRow) -> str:
    line = io.StringIO()
    csv.writer(line).writerow([_to_cell(getattr(row, c)) for c in COLUMNS])
    return line.getvalue()


def torn_line(path: Path) -> int | None:
    """The line number of a torn last line (a row without its newline: a killed writer, a full
    disk), or None when the file ends with a whole row."""
    with path.open("rb") as handle:  # the last byte only: this runs before every appended row
        if handle.seek(0, 2) == 0 or (handle.seek(-1, 2), handle.read(1))[1] == b"\n":
            return None
        handle.seek(0)
        return handle.read().count(b"\n") + 1


def check_text(path: Path) -> None:
    """A results file is text: a compressed or binary file (a .csv.gz renamed .csv) is refused as what it
    is, never called torn nor repaired."""
    with path.open("rb") as handle:
        head = handle.read(8192)
    kind = None
    if head.startswith(b"\x1f\x8b"):
        kind = "gzip-compressed data"
    elif head.startswith((b"PK\x03\x04", b"BZh", b"\xfd7zXZ", b"\x28\xb5\x2f\xfd")):
        kind = "a compressed archive"
    elif b"\x00" in head:
        kind = "binary data"
    else:
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as exc:
            if exc.start < len(head) - 4:  # not merely a character cut at the end of the sample
                kind = "not UTF-8 text"
    if kind:
        raise StoreError(f"{path} is not a text CSV file ({kind}); nothing was changed: decompress or convert it first")


def check_whole(path: Path) -> None:
    check_text(path)
    line = torn_line(path)
    if line is not None:
        raise StoreError(
            f"{path}, line {line}: the last row is torn (a killed writer or a full disk); "
            f"run `python3 run.py repair {path}` to move it to {path.name}.torn and keep every whole row"
        )


def repair(path: Path | str) -> tuple[int, Path | None]:
    """Move a torn last line into PATH.torn (appended), keeping every whole row; returns (whole
    rows kept, the .torn file or None when nothing was torn). Nothing is written unless the whole rows
    are a valid results file; the file is replaced atomically, and a failed write undoes the .torn append."""
    path = Path(path)
    check_regular(path)
    check_text(path)
    if torn_line(path) is None:
        return len(load_rows(path)), None
    text = path.read_bytes()
    cut = text.rfind(b"\n") + 1
    try:
        kept = len(_parse(text[:cut].decode(), path))  # refused here, before anything is written
    except UnicodeDecodeError:
        raise StoreError(f"{path} is not a text CSV file (not UTF-8 text); nothing was changed") from None
    torn = path.with_name(path.name + ".torn")
    before = torn.stat().st_size if torn.exists() else None
    append_checked(torn, text[cut:] + b"\n")
    try:
        write_atomic(path, text[:cut])
    except WriteError:
        with contextlib.suppress(OSError):
            torn.unlink() if before is None else os.truncate(torn, before)
        raise
    return kept, torn


def append_rows(path: Path | str, rows: Iterable[ResultRow]) -> None:
    """Append rows (writing the header first if the file is new); each row is written whole and
    flushed at once, so a killed sweep keeps every finished row; a write that fails (a full disk) is cut
    back, so the file never ends in a torn row, and raises WriteError. An existing file must already be an
    attnbench CSV of this schema and end with a whole row (a file of the legacy schema is first
    rewritten, atomically and with every value kept, in this one)."""
    path = Path(path)
    check_regular(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    if not new:
        check_whole(path)
        if _read_header(path) != COLUMNS:
            upgrade(path)
    else:
        header = io.StringIO()
        csv.writer(header).writerow(COLUMNS)
        append_checked(path, header.getvalue())
    for row in rows:
        append_checked(path, _csv_line(row))  # one write a row


def upgrade(path: Path) -> None:
    """Rewrite a legacy-schema file in this schema, every row kept, through a temporary file and a rename."""
    rows = load_rows(path)
    header = io.StringIO()
    csv.writer(header).writerow(COLUMNS)
    write_atomic(path, header.getvalue() + "".join(_csv_line(row) for row in rows))


def _read_header(path: Path) -> tuple[str, ...]:
    with path.open(newline="") as handle:
        return _validate_header(next(csv.reader(handle), []), path)


def _validate_header(header: list[str], path: Path) -> tuple[str, ...]:
    """The header as a tuple when it is this schema, or this schema without columns added since (in
    this order otherwise); else a StoreError that says what differs."""
    header = tuple(header)
    if header == COLUMNS:
        return header
    missing = [c for c in COLUMNS if c not in header]
    extra = [c for c in header if c not in COLUMNS]
    repeated = sorted({c for c in header if header.count(c) > 1})
    in_order = header == tuple(c for c in COLUMNS if c in header)
    if not extra and not repeated and in_order and set(missing) <= ADDED_COLUMNS.keys():
        return header
    if repeated:
        problem = f"repeated columns: {', '.join(repeated)}"
    elif not missing and not extra:  # the same names in another order
        expected = tuple(c for c in COLUMNS if c in header)
        at = next(i for i, (a, b) in enumerate(zip(header, expected)) if a != b)
        raise StoreError(
            f"{path} has this version's columns in another order (column {at + 1} is {header[at]!r}, expected "
            f"{expected[at]!r}); it is not an attnbench results file as written by this harness"
        )
    else:
        problem = (
            f"missing columns: {', '.join(missing)[:200] or 'none'}; unexpected: {', '.join(extra)[:200] or 'none'}"
        )
    raise StoreError(f"{path} is not an attnbench results file of this version ({problem})")


# ---- reading: any number of files into one typed, validated DataFrame ---------------------------


def read_frame(path: Path | str) -> pd.DataFrame:
    """One results CSV as a typed DataFrame (numbers as float or nullable Int64, flags as boolean,
    status as text), every cell and every row checked; the error names the file, line and column.
    A `line` column keeps each row's line in its file."""
    path = Path(path)
    if not path.exists():
        raise StoreError(f"{path}: no such file")
    check_whole(path)
    try:
        return _parse(path.read_text(), path)
    except UnicodeDecodeError:
        raise StoreError(f"{path} is not a text CSV file") from None


def _parse(text: str, path: Path) -> pd.DataFrame:
    records = list(csv.reader(io.StringIO(text)))
    if not records:
        raise StoreError(f"{path} is empty: no header row")
    columns = _validate_header(records[0], path)
    body = [(line, cells) for line, cells in enumerate(records[1:], start=2) if cells]
    for line, cells in body:
        if len(cells) != len(columns):
            raise StoreError(f"{path}, line {line}: {len(cells)} cells, expected {len(columns)}")
    frame = pd.DataFrame([cells for _, cells in body], columns=list(columns), dtype=str)
    frame["line"] = [line for line, _ in body]
    for column in COLUMNS:
        if column not in columns:
            frame[column] = ADDED_COLUMNS[column]  # not recorded then
    if "total_q_tokens" not in columns:  # a uniform batch: its totals follow from the spec
        for total, length in (("total_q_tokens", "q_len"), ("total_kv_tokens", "kv_len")):
            frame[total] = (pd.to_numeric(frame["batch_size"]) * pd.to_numeric(frame[length])).astype(str)
        frame["min_kv_len"] = frame["kv_len"]
    return _typed(frame[[*COLUMNS, "line"]], path)


def _first_line(frame: pd.DataFrame, bad: pd.Series) -> int:
    return int(frame.loc[bad, "line"].iloc[0])


def _typed(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Convert the text cells column by column; refuse what cannot be true, naming file and line."""
    for column in NUMERIC:
        text = frame[column]
        nan = text.str.lower().isin(["nan", "+nan", "-nan"])
        if nan.any():
            raise StoreError(f"{path}, line {_first_line(frame, nan)}: column {column!r} is nan")
        values = pd.to_numeric(text.where(text != ""), errors="coerce")
        bad = (text != "") & values.isna()
        base, optional = _TYPES[column]
        if bad.any():
            cell = text[bad].iloc[0]
            raise StoreError(
                f"{path}, line {_first_line(frame, bad)}: column {column!r} has {cell!r}, not a {base.__name__}"
            )
        if not optional and (text == "").any():
            raise StoreError(f"{path}, line {_first_line(frame, text == '')}: column {column!r} is empty but required")
        frame[column] = values.astype("Int64") if base is int else values.astype(float)
    for column in FLAGS:
        text = frame[column]
        bad = ~text.isin(["True", "False", ""])
        if bad.any():
            raise StoreError(
                f"{path}, line {_first_line(frame, bad)}: column {column!r} has {text[bad].iloc[0]!r}, not a bool"
            )
        frame[column] = text.map({"True": True, "False": False, "": None}).astype("boolean")
    statuses = [s.value for s in Status]
    bad = ~frame["status"].isin(statuses)
    if bad.any():
        raise StoreError(
            f"{path}, line {_first_line(frame, bad)}: column 'status' has {frame['status'][bad].iloc[0]!r}, "
            f"not a Status; expected one of {', '.join(statuses)}"
        )
    for line, record in zip(frame["line"], _records(frame)):
        try:
            ResultRow(**record)  # the row's own invariants: one place for writing and reading
        except (ValueError, TypeError) as exc:
            raise StoreError(f"{path}, line {line}: {exc}") from None
    return frame


def load_frame(paths: Iterable[Path | str]) -> pd.DataFrame:
    """Any number of results CSVs as one typed DataFrame; a `file` column says where each row came from."""
    frames = []
    for path in paths:
        frame = read_frame(path)
        frame["file"] = str(path)
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=[*COLUMNS, "line", "file"])
    return pd.concat(frames, ignore_index=True)


def rows_frame(rows: Iterable[ResultRow]) -> pd.DataFrame:
    """ResultRows (from a running sweep) as a frame typed exactly as load_frame's: through their CSV text."""
    lines = [",".join(COLUMNS)] + [_csv_line(row).rstrip("\r\n") for row in rows]
    return _parse("\n".join(lines) + "\n", Path("<rows>")).drop(columns="line")


def as_frame(data) -> pd.DataFrame:
    return data if isinstance(data, pd.DataFrame) else rows_frame(data)


def _records(frame: pd.DataFrame) -> list[dict]:
    """The frame's rows as dicts of Python values (missing values as None)."""
    return frame[list(COLUMNS)].astype(object).where(frame[list(COLUMNS)].notna(), None).to_dict("records")


def frame_rows(frame: pd.DataFrame) -> list[ResultRow]:
    return [ResultRow(**record) for record in _records(frame)]


def load_rows(path: Path | str) -> list[ResultRow]:
    """Every row of one CSV, validated; a malformed or foreign file raises StoreError."""
    return frame_rows(read_frame(path))


def load_many(paths: Iterable[Path | str]) -> list[ResultRow]:
    return frame_rows(load_frame(paths))


def latest(data):
    """One row per (device, spec, backend): the newest (the later in file order on a tie), so re-runs
    supersede older measurements. A frame in, a frame out; ResultRows in, ResultRows out."""
    frame = as_frame(data)
    keys = ["device", *TASK_COLUMNS]
    newest = frame.sort_values("timestamp", kind="stable").drop_duplicates(keys, keep="last")
    return newest if isinstance(data, pd.DataFrame) else frame_rows(newest)


def labelled(data):
    """Rows for showing: each backend named with its variant ('triton[splits=fill]', which is also how
    `-b` takes it), so that tables, plots, the report and compare keep variants apart. A frame in, a
    frame out; ResultRows in, ResultRows out (their variant then empty: it is in the name)."""
    if isinstance(data, pd.DataFrame):
        names = [label(b, v) for b, v in zip(data["backend"], data["variant"])]
        return data.assign(backend=names, variant="")  # as the rows: the variant is in the name
    return [replace(r, backend=label(r.backend, r.variant), variant="") if r.variant else r for r in data]


def done_keys(path: Path | str, retry: Iterable[Status] = (), device: str | None = None) -> set[tuple]:
    """Task keys already in a file, for --resume (an absent file holds none); a key whose newest
    row has a status in `retry` is left out, so that it runs again. device: only the rows of that device count
    (a file that holds another GPU's rows of the same tasks is measured again here, not taken as done)."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return set()
    rows = latest(load_rows(path))
    return {row.task_key for row in rows if row.status not in set(retry) and device in (None, row.device)}
