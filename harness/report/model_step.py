"""A model's attention time in one forward step: for each model, batch and context (or mix), per backend,
the sum over the model's layer kinds of (layers of that kind × the p50 of that kind's row). gpt-oss-120b at
a 32k decode is 18 × (full-attention row) + 18 × (128-token-window row), both with sinks. A step is shown
only when every kind of the model has an ok row; otherwise the kinds that have none say why."""

from __future__ import annotations

import pandas as pd

from frameworks import label

from ..store import Status, as_frame, latest
from .plots import fp8_note

# what one step is: the rows of the kinds of one model that add up (the form columns tell the kinds apart; a
# bf16 and an FP8 cache are steps of their own)
STEP_KEYS = ["device", "model", "workload", "batch_size", "q_len", "kv_len", "mix", "page_size", "dtype", "tp",
             "kv_dtype", "fp8_attention", "kv_scale", "backend", "variant"]  # fmt: skip


def _kind_of(row, kinds) -> str | None:
    """The name of the model's layer kind whose form the row has, or None."""
    window = None if pd.isna(row.window) else int(row.window)
    softcap = None if pd.isna(row.softcap) else float(row.softcap)
    for kind in kinds:
        if (kind.window, kind.sinks, kind.softcap) == (window, bool(row.sinks), softcap):
            return kind.name
    return None


def model_steps(data) -> pd.DataFrame:
    """One line per (device, model, workload, batch, context, page size, dtype, tp, KV cache, backend): each kind's
    p50 (`<kind>_ms`), `context` (the kv length or the mix's name, `p16` after it on 16-token pages), `step_ms` =
    Σ layers × p50 (NaN unless every kind is ok) and `missing` (the kinds
    without an ok row, with their status). Rows of models without declared layer kinds are left out."""
    from specs import MIX_NAMES, MODELS

    frame = latest(as_frame(data))
    frame = frame[frame["model"].isin([m for m, shape in MODELS.items() if shape.layers])]
    columns = [*STEP_KEYS[:-1], "context", "full_ms", "window_ms", "step_ms", "missing"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    frame = frame.assign(kind=[_kind_of(r, MODELS[r.model].layers) for r in frame.itertuples()])
    frame = frame[frame["kind"].notna()]
    out = []
    for key, group in frame.groupby(STEP_KEYS, dropna=False, sort=False):
        line = dict(zip(STEP_KEYS, key))
        fp8 = fp8_note(line["kv_dtype"], line["fp8_attention"], line["kv_scale"])
        line["backend"] = label(line["backend"], line.pop("variant")) + fp8  # 'flashinfer (fp8 KV)', as plots name it
        kinds = MODELS[line["model"]].layers
        line["context"] = MIX_NAMES.get(line["mix"], line["mix"]) if line["mix"] else f"{line['kv_len']}"
        if not pd.isna(line["page_size"]):  # a paged step beside the dense one of the same shape: said apart
            line["context"] += f" p{int(line['page_size'])}"
        step, missing = 0.0, []
        for kind in kinds:
            rows = group[group["kind"] == kind.name]
            ok = rows[rows["status"] == Status.OK.value]
            if ok.empty:
                status = rows["status"].iloc[0] if not rows.empty else "not measured"
                missing.append(f"{kind.name}: {status}")
                line[f"{kind.name}_ms"] = float("nan")
                continue
            p50 = float(ok["p50_ms"].iloc[0])
            line[f"{kind.name}_ms"] = p50
            step += kind.count * p50
        line["step_ms"] = float("nan") if missing else step
        line["missing"] = "; ".join(missing)
        out.append(line)
    result = pd.DataFrame(out).reindex(columns=columns)
    return result.sort_values(["model", "workload", "batch_size", "kv_len", "tp", "step_ms"], kind="stable",
                              na_position="last").reset_index(drop=True)  # fmt: skip


def _missing_short(missing: str) -> str:
    """'full: unsupported; window: unsupported' as 'unsupported: full, window' (kinds grouped by status), so that
    the table's step cell takes fewer columns than the backend's name."""
    by_status: dict[str, list[str]] = {}
    for part in missing.split("; "):
        kind, _, status = part.partition(": ")
        by_status.setdefault(status, []).append(kind)
    return "; ".join(f"{status}: {', '.join(kinds)}" for status, kinds in by_status.items())


STEP_HEADER = ("model", "workload", "B", "context", "tp", "backend", "full ms", "window ms", "step ms")


def _step_cells(r) -> list[str]:
    """A step line's cells, in STEP_HEADER's order: its step, or the kinds it lacks grouped by status."""
    number = lambda v: "" if pd.isna(v) else f"{v:.3f}"  # noqa: E731
    step = _missing_short(r.missing) if r.missing else number(r.step_ms)
    return [r.model, r.workload, str(r.batch_size), str(r.context), str(r.tp), r.backend, number(r.full_ms),
            number(r.window_ms), step]  # fmt: skip


def _legend(steps: pd.DataFrame) -> list[str]:
    """Each model's layers, a line each: what its step sums."""
    from specs import MODELS

    lines = []
    for model in dict.fromkeys(steps["model"]):
        parts = [f"{k.count} {k.name}" + (f" ({k.window} keys)" if k.window else "") for k in MODELS[model].layers]
        lines.append(f"{model}: step = {' + '.join(parts)} layers × their p50")
    return lines


def render_model_steps(steps: pd.DataFrame) -> str:
    """The steps as a Markdown table, the fastest backend of each (model, workload, batch, context, tp) first,
    with each model's layers in a legend under it."""
    lines = ["| " + " | ".join(STEP_HEADER) + " |", "|" + "---|" * len(STEP_HEADER)]
    lines += ["| " + " | ".join(_step_cells(r)) + " |" for r in steps.itertuples()]
    return "\n".join([*lines, "", *_legend(steps)])


def terminal_model_steps(steps: pd.DataFrame):
    """The steps as a Rich table for a terminal of 100 columns: every cell whole, a long backend name or a missing
    kind's reason folded onto a second line rather than cut (a Markdown table's cells are cut with an ellipsis,
    `triton[split…` for two variants alike), and the layers legend under it."""
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False)
    for name in STEP_HEADER[:5]:
        table.add_column(name, no_wrap=True)
    table.add_column("backend", overflow="fold")
    for name in ("full ms", "window ms"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("step ms", justify="right", overflow="fold")
    for r in steps.itertuples():
        table.add_row(*(Text(c) for c in _step_cells(r)))  # Text, not markup: [splits=work] is no Rich style tag
    return table, Text("\n".join(_legend(steps)))


def plot_model_steps(steps: pd.DataFrame, out_dir) -> list:
    """One PNG per (device, model, workload, batch, tp) of uniform batches: a model's attention per step
    against the context (log-log), a line per backend, only where every layer kind has an ok row."""
    from pathlib import Path

    from ..env import device_slug
    from .plots import _pyplot, _save, _slug, backend_colours

    done = steps[steps["step_ms"].notna() & (steps["mix"] == "")]
    if done.empty:
        return []
    plt = _pyplot()
    written = []
    keys = ["device", "model", "workload", "batch_size", "tp"]
    for (device, model, workload, batch, tp), group in done.groupby(keys, sort=True):
        backends = sorted(group["backend"].unique())
        colour = backend_colours(backends, plt)
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for backend in backends:
            mine = group[group["backend"] == backend].sort_values("kv_len")
            ax.plot(mine["kv_len"], mine["step_ms"], "-o", color=colour[backend], label=backend)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("context (KV tokens)")
        ax.set_ylabel("attention per step (ms, Σ layers × p50)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
        sharded = f" · tp {tp}" if tp > 1 else ""
        ax.set_title(f"{model} {workload} · batch {batch}{sharded} · {device}", fontsize="medium")
        fig.tight_layout()
        name = f"{device_slug(device)}_{_slug(model)}_step_{workload}_b{batch}{f'_tp{tp}' if tp > 1 else ''}.png"
        written.append(_save(plt, fig, Path(out_dir) / name))
    return written
