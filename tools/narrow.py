"""The specs of a preset narrowed the way `run.py sweep` narrows one (`SweepGrid.narrowed`), and a
short label a spec, for the development tools (profile_kernels, ab)."""

from __future__ import annotations

from specs import MIX_NAMES, ExperimentSpec, Workload, get_preset


def _items(text: str) -> list[str] | None:
    """Comma-separated items as a list; an empty text is None (the preset's own axis)."""
    return [t.strip() for t in text.split(",") if t.strip()] or None


def _ints(text: str) -> list[int] | None:
    """Comma-separated whole numbers as a list; an empty text is None (the preset's own axis)."""
    items = _items(text)
    return [int(t) for t in items] if items else None


def preset_specs(
    preset: str,
    models: str = "",
    mixes: str = "",
    workloads: str = "",
    pages: str = "",
    batches: str = "",
    seq_lens: str = "",
) -> list:
    """Comma-separated narrowings, each empty for the preset's own axis; pages: 'dense' or a page size."""
    page_items = _items(pages)
    workload_items = _items(workloads)
    grid = get_preset(preset).narrowed(
        models=_items(models),
        batch_sizes=_ints(batches),
        seq_lens=_ints(seq_lens),
        mixes=_items(mixes),
        workloads=[Workload(w) for w in workload_items] if workload_items else None,
        page_sizes=[None if p == "dense" else int(p) for p in page_items] if page_items else None,
    )
    return grid.specs()


def spec_label(spec: ExperimentSpec) -> str:
    """'Llama-3.1-8B decode-heavy page 16', 'Llama-3.1-8B prefill B256 S4096 dense'."""
    what = MIX_NAMES.get(spec.mix, spec.mix) or f"{spec.workload.value} B{spec.batch_size} S{spec.kv_len}"
    return f"{spec.model} {what} {'dense' if spec.page_size is None else f'page {spec.page_size}'}"
