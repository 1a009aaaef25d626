"""Writes that never damage what is stored: a whole file goes to a temporary file in the same folder and
is renamed over the old one (atomic on POSIX); an append is checked and, when it fails, cut back to the
file's old length. A failed write leaves the file as it was and says why (and, for a full disk, how much
space the write needed)."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tempfile
from pathlib import Path


class WriteError(ValueError):
    """A write that failed and was undone; the message names the file, the cause and what to do."""


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def describe_failure(path: Path, exc: OSError, needed: int) -> str:
    """One line: the file, what went wrong, that the file is unchanged, and what to do."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        free = _free_bytes(path.parent)
        room = f"; {free:,} bytes free there" if free is not None else ""
        return (
            f"{path}: no space left on the device: the write needed {needed:,} bytes{room}; nothing of this write "
            "was kept, the file is as it was before it; free some space and run again"
        )
    return f"{path}: cannot be written ({exc.strerror or exc}); the file is as it was before this write"


def check_regular(path: Path, option: str = "") -> None:
    """An existing target must be a regular file: a symlink to /dev/null or a FIFO would swallow the rows."""
    head = f"{option}: " if option else ""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            raise WriteError(f"{head}{path} is a dangling symbolic link; give a plain file path") from None
        return
    if not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
        target = f" (it points to {os.path.realpath(path)})" if os.path.islink(path) else ""
        raise WriteError(f"{head}{path} is {kind}{target}; give a plain file path")


def write_atomic(path: Path | str, data: bytes | str) -> None:
    """Replace PATH's contents with DATA through a temporary file in the same folder and a rename: the
    file is either wholly old or wholly new. A symlink target is written through (the link stays)."""
    path = Path(path)
    check_regular(path)
    if os.path.islink(path):
        path = Path(os.path.realpath(path))
    payload = data.encode() if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise WriteError(describe_failure(path, exc, len(payload))) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists():
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
        else:
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise WriteError(describe_failure(path, exc, len(payload))) from None


def append_checked(path: Path | str, data: bytes | str) -> None:
    """Append DATA in one write and flush it; if the write fails or lands short, cut the file back to its
    old length, so that it never ends in a torn row, and raise WriteError."""
    path = Path(path)
    check_regular(path)
    payload = data.encode() if isinstance(data, str) else data
    try:
        before = os.stat(path).st_size
    except FileNotFoundError:
        before = None
    try:
        with open(path, "ab") as handle:
            handle.write(payload)
            handle.flush()
            after = os.fstat(handle.fileno()).st_size
        if after != (before or 0) + len(payload):
            raise OSError(errno.EIO, f"the file grew by {after - (before or 0)} bytes, not {len(payload)}")
    except OSError as exc:
        with contextlib.suppress(OSError):
            if before is None:
                os.unlink(path)
            else:
                os.truncate(path, before)
        raise WriteError(describe_failure(path, exc, len(payload))) from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
