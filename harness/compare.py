"""A/B comparison of two sets of rows: per matching (spec, backend), the ratio of p50s, whether the
difference is significant given both 95% intervals, and the geometric mean of the ratios.
Usable across library versions (same GPU) or across GPUs (same spec)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .stats import geometric_mean
from .store import TASK_COLUMNS, ResultRow, Status, as_frame, latest
from .telemetry import uuid_key


@dataclass(frozen=True)
class Comparison:
    label: str  # spec and backend
    backend: str
    a: ResultRow | None
    b: ResultRow | None
    verdict: str  # faster, slower, not significant, or why there is no comparison

    @property
    def ratio(self) -> float | None:
        """B's p50 over A's: below 1 means B is faster."""
        if self.comparable:
            return self.b.p50_ms / self.a.p50_ms
        return None

    @property
    def comparable(self) -> bool:
        return self.verdict.startswith(("faster", "slower", "not significant"))

    @property
    def significant(self) -> bool:
        return self.verdict.startswith(("faster", "slower"))


def _label(row: ResultRow) -> str:
    return row.spec.describe()


def _key(row: ResultRow, same_device: bool = True) -> tuple:
    """spec + backend, and the device unless two GPUs are compared on purpose (`same_device=False`)."""
    return (row.device, *row.task_key) if same_device else row.task_key


DEFAULT_MIN_EFFECT = 0.01  # the precision the adaptive timer aims for (±1%): no claims below it


def on_gpu(rows: list[ResultRow], prefix: str | None, option: str, path) -> list[ResultRow]:
    """The rows measured on the GPU whose UUID starts with `prefix` ("GPU-" and case ignored), to compare
    the GPUs of one host with each other; every row when no prefix is given. None matching: a one-line
    error that names the option and the GPUs the file's rows do name."""
    if not prefix:
        return rows
    key = lambda uuid: uuid_key(uuid) or ""  # noqa: E731
    kept = [r for r in rows if key(r.gpu_uuid).startswith(key(prefix))]
    if not kept:
        named = sorted({key(r.gpu_uuid)[:8] for r in rows if r.gpu_uuid})
        raise ValueError(
            f"{option}: no row of {path} was measured on a GPU whose UUID starts with {prefix!r}; "
            f"its rows name {', '.join(named) if named else 'no GPU (written before rows named theirs)'}"
        )
    return kept


def judge(a: ResultRow, b: ResultRow, min_effect: float = DEFAULT_MIN_EFFECT) -> str:
    """Significant when the two p50 intervals do not overlap and the ratio is at least min_effect
    away from 1 (callers raise min_effect to the between-run spread). A significant verdict says when
    either side ran thermally throttled."""
    if a.status is not Status.OK or b.status is not Status.OK:
        return f"not both ok (A {a.status}, B {b.status})"
    if a.timing_mode != b.timing_mode:
        return f"timing modes differ (A {a.timing_mode}, B {b.timing_mode})"
    if None in (a.p50_ci_low_ms, a.p50_ci_high_ms, b.p50_ci_low_ms, b.p50_ci_high_ms):
        return "no confidence interval"
    ratio = b.p50_ms / a.p50_ms
    overlap = a.p50_ci_low_ms <= b.p50_ci_high_ms and b.p50_ci_low_ms <= a.p50_ci_high_ms
    if overlap or abs(ratio - 1) < min_effect:
        return "not significant"
    verdict = "faster" if ratio < 1 else "slower"
    hot = [side for side, row in (("A", a), ("B", b)) if row.throttled]
    return verdict + (f" ({' and '.join(hot)} throttled)" if hot else "")


def compare(
    a_rows: Iterable[ResultRow],
    b_rows: Iterable[ResultRow],
    min_effect: float = DEFAULT_MIN_EFFECT,
    spread: dict[tuple[str, str], float] | None = None,
    same_device: bool = True,
) -> list[Comparison]:
    """Per (device, spec, backend): a row is compared only with a row of the same GPU kind, unless
    `same_device` is False (one GPU against another: per (spec, backend)). With `spread` ((device, workload) ->
    between-run spread), a difference must also exceed the spread of both sides' devices to be called
    significant."""
    spread = spread or {}
    a_by_key = {_key(r, same_device): r for r in latest(a_rows)}
    b_by_key = {_key(r, same_device): r for r in latest(b_rows)}
    out = []
    for key in list(dict.fromkeys([*a_by_key, *b_by_key])):
        a, b = a_by_key.get(key), b_by_key.get(key)
        some = a or b
        if a is None or b is None:
            verdict = "only in B" if a is None else "only in A"
        else:
            noise = max(spread.get((a.device, a.workload), 0.0), spread.get((b.device, b.workload), 0.0))
            verdict = judge(a, b, max(min_effect, noise))
        out.append(Comparison(_label(some), some.backend, a, b, verdict))
    return out


@dataclass(frozen=True)
class Summary:
    compared: int
    significant: int
    faster: int
    slower: int
    not_comparable: int
    geomean_ratio: float | None  # of B/A p50 over comparable pairs

    @property
    def share_not_significant(self) -> float | None:
        return (self.compared - self.significant) / self.compared if self.compared else None


def why_not(comparisons: list[Comparison]) -> dict[str, int]:
    """Why the pairs that were not compared were not: 'only in A', 'only in B', 'not both ok', 'timing modes
    differ', 'no confidence interval', with their counts, most frequent first."""
    reasons: dict[str, int] = {}
    for c in comparisons:
        if not c.comparable:
            reason = c.verdict.split(" (")[0]
            reasons[reason] = reasons.get(reason, 0) + 1
    return dict(sorted(reasons.items(), key=lambda kv: -kv[1]))


def summarize(comparisons: list[Comparison]) -> Summary:
    comparable = [c for c in comparisons if c.comparable]
    return Summary(
        compared=len(comparable),
        significant=sum(c.significant for c in comparable),
        faster=sum(c.verdict.startswith("faster") for c in comparable),
        slower=sum(c.verdict.startswith("slower") for c in comparable),
        not_comparable=len(comparisons) - len(comparable),
        geomean_ratio=geometric_mean([c.ratio for c in comparable]) if comparable else None,
    )


# ---- between-run spread --------------------------------------------------------------------------

SPREAD_COLUMNS = ["device", "workload", "keys", "runs", "spread_p90", "spread_max"]


def between_run_spread(data) -> pd.DataFrame:
    """How far the p50 of the same (spec, backend, library version, kernel) moves between runs
    (separate processes, often separate sessions): per key, the largest |p50 / median − 1| over its
    runs; per (device, workload), the 90th percentile and the maximum of that over keys."""
    ok = as_frame(data).query("status == 'ok'")
    key = ["device", *TASK_COLUMNS, "backend_version", "backend_info"]
    per_run = ok.groupby([*key, "run_id"], dropna=False)["p50_ms"].last().reset_index()
    per_key = per_run.groupby(key, dropna=False)["p50_ms"].agg(
        runs="count", spread=lambda p50: (p50 / p50.median() - 1).abs().max()
    )
    per_key = per_key[per_key["runs"] > 1].reset_index()
    table = per_key.groupby(["device", "workload"]).agg(
        keys=("spread", "size"), runs=("runs", "max"), spread_p90=("spread", lambda s: s.quantile(0.9)),
        spread_max=("spread", "max"),
    )  # fmt: skip
    return table.reset_index()[SPREAD_COLUMNS]


def load_spread(path, required: bool = False) -> dict[tuple[str, str], float]:
    """(device, workload) -> the 90th-percentile between-run spread; {} when the file is absent (an error when
    `required`: a path the user named)."""
    if not Path(path).is_file():
        if required:
            raise ValueError(f"--spread: {path} is not a file (run.py spread writes one)")
        return {}
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError):
        table = pd.DataFrame()
    if list(table.columns) != SPREAD_COLUMNS:
        raise ValueError(f"--spread: {path} is not a spread table (run.py spread writes one)")
    return {(r.device, r.workload): float(r.spread_p90) for r in table.itertuples()}


def render_comparison(comparisons, rows_a, rows_b, a, b, noise, spread_path, show="significant", all_rows=False,
                      across_gpus=False) -> list:  # fmt: skip
    """What `run.py compare` prints, in order: what is compared, the counts (faster, slower, same, not comparable
    and why), the between-run spreads of the GPUs compared, then a table of the rows that differ (`show` =
    'all': every compared row; `all_rows`: also the rows of one side only). Strings and a rich Table."""
    from rich.markup import escape
    from rich.table import Table

    s = summarize(comparisons)
    out: list = [f"B = {b} against A = {a}: ratio = B p50 / A p50 (below 1: B is faster)"]
    if s.compared:
        out.append(
            f"{s.compared} compared: {s.faster} faster, {s.slower} slower, {s.compared - s.significant} same "
            f"(not significant, {s.share_not_significant:.0%}); geometric mean of B/A = {s.geomean_ratio:.4f}"
        )
    else:
        gpus = {r.device for r in rows_a} != {r.device for r in rows_b} and not across_gpus
        out.append("nothing compared" + (" (other GPU kinds: --across-gpus pairs them by spec)" if gpus else ""))
    reasons = why_not(comparisons)
    if reasons:
        out.append(f"{s.not_comparable} not comparable: " + ", ".join(f"{n} {why}" for why, n in reasons.items()))
    devices = {r.device for r in [*rows_a, *rows_b]}
    workloads = {c.a.workload for c in comparisons if c.comparable}
    used = {k: v for k, v in noise.items() if k[0] in devices and k[1] in workloads}
    if used:
        shown = ", ".join(f"{d} {w} ±{v:.1%}" for (d, w), v in sorted(used.items()))
        out.append(f"between-run spread from {spread_path}: {shown}")
    several = len(devices) > 1 and not across_gpus
    table = Table(title="the rows that differ" if show == "significant" else "every compared row", title_justify="left")
    for col in ("spec", "backend", "A p50 ms", "B p50 ms", "ratio", "verdict"):
        table.add_column(col, overflow="fold")
    colours = {"faster": "green", "slower": "red", "not significant": "dim"}
    listed = 0
    for c in comparisons:
        if show == "significant" and not c.significant and not (all_rows and not c.comparable):
            continue
        if not all_rows and (c.a is None or c.b is None):
            continue
        colour = next((k for v, k in colours.items() if c.verdict.startswith(v)), "yellow")
        label = (f"{(c.a or c.b).device}: " if several else "") + c.label
        table.add_row(escape(label), escape(c.backend), _p50(c.a), _p50(c.b),
                      f"{c.ratio:.3f}" if c.ratio is not None else "—", f"[{colour}]{c.verdict}[/]")  # fmt: skip
        listed += 1
    if listed:
        out.append(table)
    elif show == "significant" and s.compared:
        out.append("no row differs significantly (--show all lists every compared row)")
    one_sided = sum(c.a is None or c.b is None for c in comparisons)
    if one_sided and not all_rows:
        out.append(f"{one_sided} rows are in only one of the files (not listed; --all lists them)")
    return out


def _p50(row: ResultRow | None) -> str:
    return f"{row.p50_ms:.4g}" if row and row.p50_ms is not None else (row.status.value if row else "—")


def save_spread(table: pd.DataFrame, path) -> pd.DataFrame:
    """Write the spread of these devices into PATH, keeping the rows of the other devices an existing
    spread file holds (a run on one GPU kind never drops another's), through a temporary file and a
    rename; returns what was written."""
    from .atomic import check_regular, write_atomic

    path = Path(path)
    check_regular(path)
    if path.exists() and path.stat().st_size:
        try:
            old = pd.read_csv(path, dtype={"device": str, "workload": str})
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path} is not an attnbench spread file ({exc}); nothing was changed") from None
        if list(old.columns) != SPREAD_COLUMNS:
            raise ValueError(
                f"{path} is not an attnbench spread file (columns {list(old.columns)}); nothing was changed: "
                "give another --output"
            )
        table = pd.concat([old[~old["device"].isin(set(table["device"]))], table], ignore_index=True)
        table = table.sort_values(["device", "workload"], kind="stable").reset_index(drop=True)
    write_atomic(path, table.to_csv(index=False, float_format="%.5f"))
    return table
