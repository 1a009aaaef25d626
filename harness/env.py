"""The environment fingerprint every row carries: device, driver, CUDA, torch, git commit."""

from __future__ import annotations

import datetime as dt
import platform
import re
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Environment:
    device: str  # GPU name as the driver reports it, or the CPU model
    device_slug: str  # short name for file names: h100, h200, cpu, ...
    driver: str
    cuda: str
    torch: str
    python: str
    git_commit: str
    host: str
    gpu_uuid: str = ""  # the measuring GPU's UUID (what tells the GPUs of one host apart); "" on a CPU


def pick_device(requested: str | None = None) -> torch.device:
    if requested:
        if requested not in ("cuda", "cpu"):
            raise ValueError(f"--device: {requested!r} is not valid; expected one of cuda, cpu")
        if requested == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device: cuda was asked for, but PyTorch sees no CUDA GPU here")
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def now_utc() -> str:
    """The time a row or a calibration names: UTC, to the second, ISO 8601."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def gpu_name() -> str | None:
    """The GPU's name without creating a CUDA context in this (parent) process."""
    try:
        import pynvml

        pynvml.nvmlInit()
        name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0))
        return name.decode() if isinstance(name, bytes) else name
    except Exception:
        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def device_name(device: torch.device | str) -> str | None:
    """The name a row of this device carries in its `device` column (a GPU's, read through NVML so that the parent
    process makes no CUDA context; the CPU's model), None where it cannot be told."""
    return gpu_name() if torch.device(device).type == "cuda" else _cpu_name()


def device_slug(name: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'h100'; 'NVIDIA H200' -> 'h200'; anything else: a filesystem-safe slug."""
    match = re.search(r"\b([A-Z]{1,2}\d{2,4}[A-Z]?)\b", name)
    if match:
        return match.group(1).lower()
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:32] or "device"


def git_commit() -> str:
    """The repository's commit (`git rev-parse`, '-dirty' with uncommitted changes), or 'unknown' where the
    tree has no .git (a copy: `run.py sweep --git-commit` then says which commit it is)."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        )
        if sha.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _nvidia_driver() -> str:
    try:
        import pynvml  # nvidia-ml-py

        pynvml.nvmlInit()
        version = pynvml.nvmlSystemGetDriverVersion()
        return version.decode() if isinstance(version, bytes) else str(version)
    except Exception:
        pass
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def collect(device: torch.device, commit: str | None = None) -> Environment:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        slug, driver, cuda = device_slug(name), _nvidia_driver(), torch.version.cuda or ""
        from .telemetry import gpu_uuid  # the same UUID telemetry finds the GPU in NVML by

        uuid = gpu_uuid(device) or ""
    else:
        name, slug, driver, cuda, uuid = _cpu_name(), "cpu", "", "", ""
    return Environment(
        device=name,
        device_slug=slug,
        driver=driver,
        cuda=cuda,
        torch=torch.__version__,
        python=platform.python_version(),
        git_commit=commit if commit is not None else git_commit(),
        host=socket.gethostname(),
        gpu_uuid=uuid,
    )
