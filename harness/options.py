"""Checks of command-line input, done before anything is measured: each failure is a SpecError
whose one-line message names the option and what is allowed."""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from specs import SpecError


def dedupe(values: Sequence[str] | None) -> list[str] | None:
    """Keep the first of each repeated value, in order; None stays None."""
    return None if values is None else list(dict.fromkeys(values))


def check_known(option: str, values: Iterable[str] | None, known: Iterable[str]) -> None:
    """Every value is one of `known`, else an error naming the unknown ones and the allowed ones."""
    known = list(known)
    unknown = [v for v in values or () if v not in known]
    if unknown:
        raise SpecError(
            f"{option}: {', '.join(map(repr, unknown))} not known; expected any of {', '.join(map(str, known))}"
        )


def check_number(option: str, value: float | None, *, minimum: float, inclusive: bool = True) -> None:
    """A finite number at least (or above) `minimum`; None means 'not given' and passes."""
    if value is None:
        return
    bad = isinstance(value, float) and not math.isfinite(value)
    bad = bad or (value < minimum if inclusive else value <= minimum)
    if bad:
        bound = f">= {minimum:g}" if inclusive else f"> {minimum:g}"
        raise SpecError(f"{option}: must be a finite number {bound}, got {value!r}")


def _writable_dir(path: Path) -> bool:
    """Can a file be created in this existing directory (real permission, not os.access alone)?"""
    if not os.access(path, os.W_OK | os.X_OK):
        return False
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".attnbench-probe-"):
            return True
    except OSError:
        return False


def _first_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def check_output_file(option: str, path: Path) -> None:
    """A results file we can append to: an existing regular, writable file, or a new file whose
    nearest existing ancestor is a writable directory."""
    if path.is_symlink() and not path.exists():
        raise SpecError(f"{option}: {path} is a dangling symbolic link; give a .csv file path")
    if path.exists():
        if path.is_dir():
            raise SpecError(f"{option}: {path} is a directory; give a .csv file path")
        if not path.is_file():  # /dev/null, a FIFO, a device (or a link to one) would swallow every row
            target = f" (it points to {os.path.realpath(path)})" if path.is_symlink() else ""
            raise SpecError(f"{option}: {path} is not a regular file{target}; give a .csv file path")
        try:
            with path.open("a"):
                pass
        except OSError as exc:
            raise SpecError(f"{option}: {path} cannot be written ({exc.strerror or exc})") from None
        return
    base = _first_existing(path.parent)
    if not base.is_dir():
        raise SpecError(f"{option}: {base} is a file, so {path} cannot be created under it")
    if not _writable_dir(base):
        raise SpecError(f"{option}: cannot create {path}: {base} is not writable")


def check_output_dir(option: str, path: Path) -> None:
    """A folder we can write files into: an existing writable folder, or one we can create."""
    if path.exists() and not path.is_dir():
        raise SpecError(f"{option}: {path} is a file, not a folder")
    base = _first_existing(path)
    if not base.is_dir():
        raise SpecError(f"{option}: {base} is a file, so the folder {path} cannot be created")
    if not _writable_dir(base):
        raise SpecError(f"{option}: {base} is not writable")


def check_input_files(option: str, paths: Iterable[Path]) -> None:
    for path in paths:
        if not path.exists():
            raise SpecError(f"{option}: {path}: no such file")
        if path.is_dir():
            raise SpecError(f"{option}: {path} is a directory, not a results CSV")


def results_files(paths: Iterable[Path]) -> tuple[list[Path], list[str]]:
    """The results CSVs among `paths`, a folder standing for every CSV under it (sorted), and one note for
    each file passed over: this project's other CSVs (a GPU's measured ceilings, the between-run spread) and
    any CSV whose header is not a results file's (A/B logs, explorations, kernel profiles), so that
    `results/*.csv results/extra/` or `results/` works. A path that does not exist is an error, and so is a
    compressed or binary file named on the command line, or one with a results file's columns repeated or in
    another order (inside a folder, either is passed over with a note)."""
    import csv

    from .calibrate import OLDER_COLUMNS as CALIBRATION
    from .compare import SPREAD_COLUMNS
    from .store import ADDED_COLUMNS, COLUMNS, StoreError, _validate_header, check_text

    core = set(COLUMNS) - set(ADDED_COLUMNS)  # the columns every results file has
    kinds = {**dict.fromkeys(CALIBRATION, "measured ceilings"), tuple(SPREAD_COLUMNS): "spread"}
    kept, notes = [], []
    expanded: list[Path] = []
    named: set[Path] = set()
    for path in map(Path, paths):
        if not path.exists():
            raise SpecError(f"files: {path}: no such file or folder")
        expanded += sorted(path.rglob("*.csv")) if path.is_dir() else [path]
        named |= set() if path.is_dir() else {path}
    for path in dict.fromkeys(expanded):
        try:
            check_text(path)  # a compressed or binary file is called what it is
            with open(path, newline="") as handle:
                header = tuple(next(csv.reader(handle), ()))
        except (StoreError, OSError, UnicodeDecodeError) as exc:
            if path in named and isinstance(exc, StoreError):  # named on the command line: refused, one line
                raise
            kind = str(exc).partition(" (")[2].partition(")")[0] if isinstance(exc, StoreError) else ""
            notes.append(f"{path} skipped: not a text CSV" + (f" ({kind})" if kind else ""))
            continue
        if header in kinds:
            notes.append(f"{path} passed over: {kinds[header]}, not results")
            continue
        try:
            _validate_header(list(header), path)
        except StoreError:
            if path in named and not core - set(header):  # a results file's columns, damaged: say how
                raise
            shown = ", ".join(header[:4]) + (", …" if len(header) > 4 else "")
            notes.append(f"{path} skipped: not a results file (columns {shown})")
            continue
        kept.append(path)
    return kept, notes


def only_results(files: Iterable[Path], console) -> list[Path]:
    """The results CSVs among files (results_files); the project's other CSVs (ceilings, spread) are passed over
    with a note on the console, so that `results/*.csv` works; none left is an error."""
    from rich.markup import escape

    kept, notes = results_files(files)
    for note in notes:
        console.print(f"[dim]{escape(note)}[/]", soft_wrap=True)
    if not kept:
        raise ValueError("files: none of them is a results CSV")
    return kept


def plots_beside(output: Path, repo: Path) -> Path:
    """Where a sweep's plots go when --plot-dir is not given: the repository's plots/ for a file in its
    results/ folder (the committed results and their committed figures), else a folder beside the CSV named
    after it (`-o /tmp/x/run.csv` -> /tmp/x/run-plots/), so that a sweep elsewhere never rewrites plots/."""
    output = Path(output).resolve()
    if output.parent == (repo / "results").resolve():
        return repo / "plots"
    return output.parent / f"{output.stem}-plots"


# ---- numbers as typed on a command line: ASCII digits only ---------------------------------------

_INT = r"[+-]?[0-9]+"
_FLOAT = r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?:inf|infinity|nan)"


def check_ascii_number(option: str, text: str, integer: bool = True) -> None:
    """Python's int() and float() read any script's digits ('٣', '３'); a command line's numbers are 0-9."""
    import re

    if not re.fullmatch(_INT if integer else _FLOAT, text.strip(), flags=re.IGNORECASE):
        kind = "an integer" if integer else "a number"
        raise SpecError(f"{option}: {text!r} is not {kind} written with the digits 0-9")


def check_ascii_digits(option: str, values: Iterable[str] | None) -> None:
    """No digit outside 0-9 in a value that holds numbers (a mix string, a length generator)."""
    for value in values or ():
        odd = next((ch for ch in value if ch.isdigit() and not ch.isascii()), None)
        if odd is not None:
            raise SpecError(f"{option}: {value!r} has the digit {odd!r}; write numbers with 0-9")


def _number_parser(integer: bool):
    """A typer `parser` for an int or float option that takes only the digits 0-9."""

    def parse(value):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
        try:
            check_ascii_number("", str(value), integer)
        except SpecError as exc:
            raise ValueError(str(exc).split(": ", 1)[1]) from None
        return int(value) if integer else float(value)

    parse.__name__ = "integer" if integer else "float"
    return parse


ASCII_INT = _number_parser(True)
ASCII_FLOAT = _number_parser(False)


def _path_parser(value) -> Path:
    """A typer `parser` for a path option or argument: '' is refused (Path('') is the current folder, so an empty
    value would read or write there without saying so)."""
    if isinstance(value, Path):
        return value
    if str(value) == "":
        raise ValueError("an empty path is not allowed; give a file or folder path ('.' for the current folder)")
    return Path(value)


PATH = _path_parser


def split_items(text: str) -> list[str]:
    """A comma-separated list whose items may hold commas inside brackets (a backend's variant:
    'sdpa,triton[a=1,b=2]' -> ['sdpa', 'triton[a=1,b=2]']); items stripped, empty ones kept ('1,,2' -> 3 items)."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    return [*parts, current.strip()]


def split_list(values: list[str] | None, option: str | None = None) -> list[str] | None:
    """`-b a,b -b c` -> [a, b, c] (commas inside a variant's brackets do not split); None stays None. With
    `option`, a value given but empty ('') is an error, never a silently ignored option, and so is an empty item
    of a list ('1,,2', '1,2,'), never dropped."""
    if not values:
        return None
    split = [split_items(value) for value in values]
    items = [v for parts in split for v in parts if v]
    if option:
        if not items:
            raise SpecError(f"{option}: given but empty; give a value or leave the option out")
        for value, parts in zip(values, split, strict=True):
            if not value.strip():  # `--tp 1 --tp ''`
                raise SpecError(f"{option}: one of its values is empty, which is not allowed; give a value each time")
            if not all(parts):
                raise SpecError(
                    f"{option}: {value!r} has an empty item, which is not allowed; separate values by one comma"
                )
    return items or None


def parse_ints(values: list[str] | None, field: str) -> list[int] | None:
    from harness.options import check_ascii_digits

    items = split_list(values, field)
    if items is None:
        return None
    check_ascii_digits(field, items)  # int() would read '٣' as 3
    try:
        out = [int(v) for v in items]
    except ValueError:
        raise SpecError(f"{field}: expected positive integers, got {', '.join(items)}") from None
    if any(v < 1 for v in out):
        raise SpecError(f"{field}: expected positive integers, got {', '.join(items)}")
    return out


def parse_page_sizes(values: list[str] | None) -> list[int | None] | None:
    """--page-size 1,16,dense -> [1, 16, None]."""
    items = split_list(values, "--page-size")
    if items is None:
        return None
    out = []
    for item in items:
        if item == "dense":
            out.append(None)
        elif item.isascii() and item.isdigit() and int(item) >= 1:
            out.append(int(item))
        else:
            raise SpecError(f"--page-size: {item!r} is not valid; expected positive integers or 'dense'")
    return list(dict.fromkeys(out))


def parse_kv_dtypes(values: list[str] | None) -> list[str] | None:
    """--kv-dtype default,fp8_e4m3 -> ['', 'fp8_e4m3']."""
    items = split_list(values, "--kv-dtype")
    if items is None:
        return None
    for item in items:
        if item not in ("default", "fp8_e4m3"):
            raise SpecError(f"--kv-dtype: {item!r} is not valid; expected default (the input dtype) or fp8_e4m3")
    return list(dict.fromkeys("" if item == "default" else item for item in items))
