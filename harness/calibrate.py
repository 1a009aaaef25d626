"""Measured ceilings of this device: the matmul rate per dtype, the device-to-device copy bandwidth
(bytes read + bytes written) and a read-only stream (a reduction that reads every byte once), stored
in results/calibration-<device>.csv. Rows use them for percent of peak and the roofline-bound time,
instead of datasheet numbers. The bandwidth ceiling is the higher of copy and read: attention reads
far more than it writes, and HBM serves a pure read stream faster than a half-read, half-write copy. The read
stream is a Triton reduction tuned on each GPU (`tune_reader` over READER_GRID: a quick timing of every shape,
then the three fastest timed in full), so that no attention kernel reads faster than its ceiling; the row
names the reader that won (`read_kernel`). Tables divide by the best ceiling ever measured on the GPU kind
(`harness.ceilings`)."""

from __future__ import annotations

import csv
import functools
import io
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from specs import DType

from .atomic import write_atomic
from .env import REPO_ROOT, Environment
from .timer import Repetition, time_callable


def calibration_file(device_slug: str, folder: Path | str | None = None) -> Path:
    """calibration-<device>.csv in FOLDER (default results/): one file per GPU kind, beside the results
    (a sweep's output folder, so that a sweep into /tmp never writes into the repository)."""
    return Path(folder if folder is not None else REPO_ROOT / "results") / f"calibration-{device_slug}.csv"


# problem sizes: big enough to saturate the device, small enough to take seconds. The read stream is the
# longer one: on an H200 (2026-11-29) the best stream read 4554 GB/s at 2 GiB and 4712 at 16 GiB, and a 4 GB
# decode had read "100.6%" of the 2 GiB figure. What a timed call pays once (a launch's start and tail, and,
# likely, the write-back of the lines the zeroing L2 flush left dirty: docs/perf-notes.md) weighs 3.5% on a
# 0.48 ms read and a few tenths of a percent on a 3.8 ms one
SIZES = {
    "cuda": {"matmul_n": 8192, "copy_bytes": 2 * 2**30, "read_bytes": 16 * 2**30},
    "cpu": {"matmul_n": 384, "copy_bytes": 32 * 2**20, "read_bytes": 32 * 2**20},
}


@dataclass(frozen=True)
class Calibration:
    device: str
    dtype: str
    matmul_tflops: float  # dense n×n×n product, random data, p50
    copy_gbps: float  # device-to-device copy, (read + written) bytes / p50
    matmul_n: int
    copy_bytes: int
    timestamp: str
    driver: str
    cuda: str
    torch: str
    git_commit: str
    host: str
    read_gbps: float | None = None  # read-only stream, bytes read / p50 (None in files that predate it)
    read_kernel: str = ""  # the tuned reader that set read_gbps: torch-sum or triton:BLOCK/ITERS/WARPS/STAGES

    @property
    def bandwidth_gbps(self) -> float:
        """The bandwidth ceiling: the faster of the copy and the read-only stream."""
        return max(self.copy_gbps, self.read_gbps or 0.0)


# vendor datasheet figures (dense, no sparsity), for display beside the measured ceilings only
DATASHEET = {
    "h100": {"bf16": 989.4, "fp16": 989.4, "fp32": 66.9, "gbps": 3350},  # H100 SXM5 80 GB
    "h200": {"bf16": 989.4, "fp16": 989.4, "fp32": 66.9, "gbps": 4800},  # H200 SXM 141 GB
}

COLUMNS = tuple(f.name for f in fields(Calibration))
OLDER_COLUMNS = (COLUMNS, COLUMNS[:-1], COLUMNS[:-2])  # without read_kernel; without read_gbps either


def measure(device: torch.device, env: Environment, dtypes=tuple(DType), timestamp: str = "") -> list[Calibration]:
    sizes = SIZES["cuda" if device.type == "cuda" else "cpu"]
    seconds = 5.0 if device.type == "cuda" else 0.5
    rep = Repetition(min_iterations=10, max_iterations=200, max_seconds=seconds, warmup=5)
    gen = torch.Generator(device=device)
    gen.manual_seed(0)
    copy_gbps = _copy_gbps(device, sizes["copy_bytes"], gen, rep)
    read_gbps, reader = _read_gbps(device, read_bytes(device, sizes["read_bytes"]), gen, rep)
    out = []
    n = sizes["matmul_n"]
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")  # fp32 means fp32 (no TF32), as in the fp32 specs
    try:
        for dtype in dtypes:
            a = torch.randn(n, n, generator=gen, device=device).to(dtype.torch_dtype)
            b = torch.randn(n, n, generator=gen, device=device).to(dtype.torch_dtype)
            ms = time_callable(lambda a=a, b=b: torch.mm(a, b), device, rep).p50_ms
            out.append(
                Calibration(
                    device=env.device,
                    dtype=str(dtype),
                    matmul_tflops=2 * n**3 / (ms / 1e3) / 1e12,
                    copy_gbps=copy_gbps,
                    matmul_n=n,
                    copy_bytes=sizes["copy_bytes"],
                    timestamp=timestamp,
                    driver=env.driver,
                    cuda=env.cuda,
                    torch=env.torch,
                    git_commit=env.git_commit,
                    host=env.host,
                    read_gbps=read_gbps,
                    read_kernel=reader,
                )
            )
    finally:
        torch.set_float32_matmul_precision(previous)
    return out


def _copy_gbps(device: torch.device, nbytes: int, gen: torch.Generator, rep: Repetition) -> float:
    """Device-to-device copy: bytes read plus bytes written over the p50 time."""
    src = torch.randn(nbytes // 4, generator=gen, device=device)
    dst = torch.empty_like(src)
    copy_ms = time_callable(lambda: dst.copy_(src), device, rep).p50_ms
    return 2 * nbytes / (copy_ms / 1e3) / 1e9


def read_bytes(device: torch.device, wanted: int) -> int:
    """The read stream's size: `wanted`, or a quarter of the GPU's free memory where that is less (a
    smaller card, or one that other work shares), rounded down to whole MiB."""
    if device.type != "cuda":
        return wanted
    free, _ = torch.cuda.mem_get_info(device)
    return max(2**20, min(wanted, free // 4) // 2**20 * 2**20)


def _read_gbps(device: torch.device, nbytes: int, gen: torch.Generator, rep: Repetition) -> tuple[float, str]:
    """Read-only stream: the fastest of torch's sum and, on a GPU, a Triton reduction tuned for this GPU
    (tune_reader over READER_GRID), each reading every byte once and writing almost nothing; (bytes read over
    the p50 time, the reader's name)."""
    src = torch.empty(nbytes // 2, dtype=torch.bfloat16, device=device).normal_(generator=gen)  # no fp32 copy
    candidates = {"torch-sum": lambda: src.sum(dtype=torch.float32)}
    if device.type == "cuda":
        quick = Repetition(min_iterations=5, max_iterations=20, max_seconds=0.5, warmup=2)
        timed = lambda fn: time_callable(fn, device, quick).p50_ms  # noqa: E731
        for shape in tune_reader(lambda shape: timed(_triton_reader(src, *shape)), READER_GRID):
            candidates["triton:" + "/".join(map(str, shape))] = _triton_reader(src, *shape)
    times = {name: time_callable(fn, device, rep).p50_ms for name, fn in candidates.items()}
    best = min(times, key=times.get)
    return nbytes / (times[best] / 1e3) / 1e9, best


# the tuning grid of the Triton read stream: (elements a load, loads a program, warps, pipeline stages). A
# program streams BLOCK × ITERS contiguous elements with STAGES loads in flight, as a decode program streams its
# ~1 MB of K and V; the five shapes tried before tuning (the first read 4478 GB/s on an H200 on 2026-11-23, and
# decode rows read up to 2.7% more a session later) are in it
READER_SHAPES = ((4096, 16, 8, 4), (4096, 64, 8, 4), (2048, 128, 4, 4), (8192, 32, 8, 3), (1024, 256, 4, 6))
READER_GRID = tuple(
    dict.fromkeys(
        READER_SHAPES
        + tuple(
            (block, iters, warps, stages)
            for block in (1024, 2048, 4096, 8192)
            for iters in (16, 64, 256)
            for warps in (4, 8)
            for stages in (2, 4)
            if block * iters <= 2**21  # at most 4 MiB of bf16 a program
        )
    )
)


def tune_reader(time_shape, grid=READER_GRID, keep: int = 3) -> list[tuple]:
    """The `keep` fastest shapes of `grid` by a quick timing each (`time_shape(shape)` -> ms), fastest first:
    the calibration then times these few with its full repetition and keeps the best. A shape that fails to
    compile or launch (too many registers or too much shared memory on this GPU) is passed over."""
    timed = []
    for shape in grid:
        try:
            timed.append((time_shape(shape), shape))
        except Exception:  # noqa: BLE001 - a shape this GPU cannot run is no ceiling
            continue
    return [shape for _, shape in sorted(timed)[:keep]]


def _triton_reader(src: torch.Tensor, block: int, iters: int, warps: int, stages: int):
    import triton

    n = src.numel()
    grid = (triton.cdiv(n, block * iters),)
    out = torch.empty(grid[0], dtype=torch.float32, device=src.device)
    kernel = _read_kernel()

    def read() -> torch.Tensor:  # a partial sum a program
        kernel[grid](src, out, n, BLOCK=block, ITERS=iters, STAGES=stages, num_warps=warps)
        return out

    return read


@functools.cache
def _read_kernel():
    import triton
    import triton.language as tl

    @triton.jit
    def read_kernel(X, OUT, N, BLOCK: tl.constexpr, ITERS: tl.constexpr, STAGES: tl.constexpr):
        pid = tl.program_id(0)
        acc = tl.zeros([BLOCK], tl.float32)
        base = pid.to(tl.int64) * BLOCK * ITERS
        for i in tl.range(0, ITERS, num_stages=STAGES):
            offs = base + i * BLOCK + tl.arange(0, BLOCK)
            acc += tl.load(X + offs, mask=offs < N, other=0.0, cache_modifier=".cg").to(tl.float32)
        tl.store(OUT + pid, tl.sum(acc, 0))

    return read_kernel


def save(rows: list[Calibration], path: Path | str) -> None:
    """Add rows to the calibration file, through a temporary file and a rename (a file from before
    read_gbps is rewritten with the new column, values kept): a failed write leaves it as it was."""
    path = Path(path)
    old = load(path) if path.exists() and path.stat().st_size else []
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(COLUMNS)
    for row in [*old, *rows]:
        writer.writerow(["" if getattr(row, c) is None else getattr(row, c) for c in COLUMNS])
    write_atomic(path, text.getvalue())


def load(path: Path | str) -> list[Calibration]:
    path = Path(path)
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) not in OLDER_COLUMNS:  # files without read_gbps or read_kernel load too
            raise ValueError(f"{path} is not an attnbench calibration file (columns {reader.fieldnames})")
        rows = []
        for line_no, raw in enumerate(reader, start=2):
            try:
                rows.append(
                    Calibration(
                        **{
                            **raw,
                            "matmul_tflops": float(raw["matmul_tflops"]),
                            "copy_gbps": float(raw["copy_gbps"]),
                            "matmul_n": int(raw["matmul_n"]),
                            "copy_bytes": int(raw["copy_bytes"]),
                            "read_gbps": float(raw["read_gbps"]) if raw.get("read_gbps") else None,
                            "read_kernel": raw.get("read_kernel") or "",
                        }
                    )
                )
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{path}, line {line_no}: {exc}") from None
    return rows


def ceilings_for(device_name: str, path: Path | str) -> dict[str, Calibration]:
    """dtype -> the newest calibration of this device (empty if it was never calibrated)."""
    newest: dict[str, Calibration] = {}
    for row in load(path):
        if row.device == device_name and (row.dtype not in newest or row.timestamp >= newest[row.dtype].timestamp):
            newest[row.dtype] = row
    return newest


def calibrate_command(console, device: str | None) -> None:
    """`run.py calibrate`: this device's ceilings measured, shown beside the datasheet's, appended to its file."""
    from rich.table import Table

    from .env import collect, now_utc, pick_device

    dev = pick_device(device)
    env = collect(dev)
    rows = measure(dev, env, timestamp=now_utc())
    path = calibration_file(env.device_slug)
    save(rows, path)
    out = Table(title=f"measured ceilings · {env.device} · torch {env.torch}")
    for col in (
        "dtype",
        "matmul TFLOP/s",
        "datasheet dense",
        "copy GB/s (read+write)",
        "read-only GB/s",
        "datasheet HBM",
        "reader",
    ):
        out.add_column(col, justify="right")
    sheet = DATASHEET.get(env.device_slug, {})
    for row in rows:
        out.add_row(
            row.dtype,
            f"{row.matmul_tflops:.1f}",
            str(sheet.get(row.dtype, "—")),
            f"{row.copy_gbps:.0f}",
            f"{row.read_gbps:.0f}",
            str(sheet.get("gbps", "—")),
            row.read_kernel,
        )
    console.print(out)
    console.print(f"appended to {path}")
