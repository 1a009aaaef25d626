"""Plan a sweep: the (spec, backend variant) tasks, which module registers each backend, and the order
the workers take them in. Pure data and Python: no worker, no CUDA."""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from frameworks import BACKENDS, VariantError, label, load_all, parse_backend_arg
from specs import LAYER_NAMES, MODELS, ExperimentSpec, SpecError, Workload, get_preset

if TYPE_CHECKING:
    from .cli_options import Selection


@dataclass(frozen=True)
class Task:
    spec: ExperimentSpec
    backend: str
    module: str  # the module whose import registers the backend (adapters may live outside frameworks/)
    variant: str = ""  # the backend's canonical variant ('' = its defaults)

    @property
    def key(self) -> tuple:
        return (*self.spec.key, self.backend, self.variant)

    @property
    def label(self) -> str:
        return label(self.backend, self.variant)


def resolve_backends(backend_args: Iterable[str]) -> list[tuple[str, str]]:
    """'NAME' or 'NAME[key=value,...]' (or 'NAME[*]': the defaults and every contender variant the backend
    declares) as (name, canonical variant) pairs, repeats dropped; a SpecError naming what is allowed."""
    load_all()
    out: list[tuple[str, str]] = []
    for text in backend_args:
        star = text.strip().endswith("[*]")
        try:
            name, choice = parse_backend_arg(text.strip()[:-3] if star else text)
        except VariantError as exc:
            raise SpecError(str(exc)) from None
        if star and choice:  # 'triton[spec=varlen][*]': the keys would be dropped silently
            raise SpecError(f"--backend: {text.strip()!r}: [*] stands alone, NAME[*] (the defaults and every "
                            "contender); name the keys of one variant as NAME[key=value,...]")  # fmt: skip
        if name not in BACKENDS:
            raise SpecError(f"--backend: {name!r} not known; expected any of {', '.join(sorted(BACKENDS))}")
        try:
            variants = BACKENDS[name].contender_variants() if star else [BACKENDS[name].variant_string(choice)]
        except VariantError as exc:
            raise SpecError(str(exc)) from None
        out += [(name, v) for v in variants if (name, v) not in out]
    return out


def plan_tasks(specs: Iterable[ExperimentSpec], backend_args: Iterable[str]) -> list[Task]:
    """Every (spec, backend variant), spec-major so that backends of one spec share its inputs. A variant
    whose non-default keys change nothing for a spec (`VariantKey.applies`) is not planned for it: its row
    would repeat the default's."""
    pairs = resolve_backends(backend_args)
    tasks = []
    for spec in specs:
        for name, variant in pairs:
            if variant and not BACKENDS[name](variant).variant_applies(spec):
                continue
            tasks.append(Task(spec, name, BACKENDS[name].__module__, variant))
    return tasks


def ensure_registered(task: Task) -> None:
    """Adapters outside frameworks/ (tests) register when their module is imported; frameworks'
    own, broken ones included, are registered by load_all()."""
    if task.backend not in BACKENDS:
        importlib.import_module(task.module)


def longest_first(tasks: list[Task]) -> list[Task]:
    """Tasks by decreasing estimated cost (FLOPs plus 300 × bytes, an H100's balance point), the
    backends of one spec kept together so that a worker reuses its inputs: the tail stays short."""
    cost = {t.spec: t.spec.flops + 300 * t.spec.ideal_bytes for t in tasks}
    return sorted(tasks, key=lambda t: -cost[t.spec])  # stable: spec-major order within equal costs


def fp8_options(grid, kv_scale: str | None, fp8_attention: bool) -> dict:
    """--kv-scale and --fp8-attention as grid fields; each needs an FP8 cache in the sweep."""
    given = {"--kv-scale": kv_scale is not None, "--fp8-attention": fp8_attention}
    for option, set_ in given.items():
        if set_ and "fp8_e4m3" not in grid.kv_dtypes:
            raise SpecError(f"{option}: applies to an FP8 cache; add --kv-dtype fp8_e4m3")
    if kv_scale is not None and kv_scale not in ("tensor", "head"):
        raise SpecError(f"--kv-scale: {kv_scale!r} is not valid; expected tensor or head")
    return dict(kv_scale=kv_scale, fp8_attention=fp8_attention or None)


def why_no_specs(grid, workloads: list[str] | None) -> str:
    """What left a narrowed sweep with no specs, naming the option: a layer kind none of its models has, a -w
    that none of its mixes is, draft lengths spec-decode cannot take, chunks longer than every sequence."""
    from specs import layer_kinds

    if grid.layers and not any(layer_kinds(model, grid.layers) for model in grid.models):
        wanted = " or ".join(grid.layers)
        kinds = {m: ", ".join(k.name for k in MODELS[m].layers) for m in grid.models}
        if len(grid.models) == 1:
            return f"--layer: {grid.models[0]} has no {wanted} layers (it has {kinds[grid.models[0]]})"
        each = "; ".join(f"{m}: {k}" for m, k in kinds.items())
        return f"--layer: no model of this sweep has {wanted} layers ({each})"
    if grid.mixes and workloads:
        return f"--workload: no mix of this sweep is a {' or '.join(workloads)} batch (a mix fixes its workload)"
    if set(grid.workloads) == {Workload.SPEC_DECODE}:
        return "--chunk: spec-decode drafts 2 to 16 tokens, at most --seq; give such a --chunk"
    cap = f"; this preset leaves out calls of more than {grid.max_tflop:g} TFLOP" if grid.max_tflop else ""
    return f"the narrowed sweep has no specs (is every --chunk longer than every --seq?{cap})"


def plan_sweep(what: Selection, check_device: bool = True):
    """`run.py sweep`/`check`'s options (`what`) as the narrowed preset's specs ×
    backend variants (tasks), and the device they run on; a SpecError naming the option for a bad value.
    `check_device=False`: the devices are elsewhere (a Ray cluster), the device named is taken as it is."""
    from frameworks import load_all
    from specs import Lengths

    from .env import pick_device
    from .options import (
        check_ascii_digits,
        check_known,
        check_number,
        dedupe,
        parse_ints,
        parse_kv_dtypes,
        parse_page_sizes,
        split_list,
    )

    mix, lengths, seed, device, backend = what.mix, what.lengths, what.seed, what.device, what.backend
    if lengths is not None and not lengths.strip():
        raise SpecError("--lengths: given but empty; expected uniform:LOW:HIGH or lognormal:MEDIAN:SIGMA")
    mixes = split_list(mix, "--mix")
    check_ascii_digits("--mix", mixes)
    check_ascii_digits("--lengths", [lengths] if lengths else None)
    check_number("--seed", seed, minimum=0)
    if mix and lengths:
        raise SpecError("--mix and --lengths: give one of them (a mix fixes every request's lengths)")
    if lengths:
        try:
            lengths = str(Lengths.parse(lengths, seed))
        except SpecError as exc:  # name the option as it is typed
            raise SpecError(f"--{exc}" if str(exc).startswith("lengths:") else str(exc)) from None
    models, workloads = dedupe(split_list(what.model, "--model")), dedupe(split_list(what.workload, "--workload"))
    check_known("--model", models, MODELS)
    check_known("--workload", workloads, [w.value for w in Workload])
    chunks = dedupe(parse_ints(what.chunk, "--chunk"))
    layers = dedupe(split_list(what.layer, "--layer"))
    check_known("--layer", layers, LAYER_NAMES)
    narrowed = get_preset(getattr(what.preset, "value", what.preset)).narrowed
    try:
        grid = narrowed(
            models=models,
            workloads=workloads,
            batch_sizes=dedupe(parse_ints(what.batch, "--batch")),
            seq_lens=dedupe(parse_ints(what.seq, "--seq")),
            chunks=chunks,
            dtype=what.dtype,
            page_sizes=parse_page_sizes(what.page_size),
            mixes=dedupe(mixes),
            lengths=lengths,
            layers=layers,
            tps=dedupe(parse_ints(what.tp, "--tp")),
            kv_dtypes=parse_kv_dtypes(what.kv_dtype),
        )
    except SpecError as exc:  # a tp that does not divide a model's heads: the option named as it is typed
        raise SpecError(f"--{exc}" if str(exc).startswith("tp:") else str(exc)) from None
    grid = grid.narrowed(**fp8_options(grid, what.kv_scale, what.fp8_attention))
    chunked = {Workload.APPEND, Workload.SPEC_DECODE}
    if lengths and Workload.MIXED in grid.workloads:
        raise SpecError("--lengths: draws one workload at a time; give -w prefill, append, decode or spec-decode")
    if chunks and not grid.mixes and not chunked & set(grid.workloads):
        raise SpecError(
            f"--chunk: applies to append and spec-decode only; this sweep's workloads are "
            f"{', '.join(map(str, grid.workloads))}"
        )
    specs = grid.specs()
    if grid.mixes and workloads:  # a mix fixes its own workload: -w filters the mixes
        specs = [s for s in specs if s.workload.value in workloads]
    if not specs:
        raise SpecError(why_no_specs(grid, workloads))
    names = dedupe(split_list(backend, "--backend") or [])
    # no --backend: every backend, with the variants each declares as contenders (those that can win)
    names = names or [f"{name}[*]" for name in sorted(load_all())]
    tasks = plan_tasks(specs, names)
    if not tasks:  # every name a variant that runs nothing else than its backend's defaults on these specs
        raise SpecError(
            f"--backend: {', '.join(names)}: no task to run; on the {len(specs)} spec(s) here every variant would run "
            "its backend's defaults, and a variant is planned only where it changes what runs (run.py list says "
            "where each key applies)"
        )
    if not check_device:
        if device not in ("cuda", "cpu"):
            raise SpecError(f"--device: {device!r} is not valid; expected one of cuda, cpu")
        return specs, names, tasks, device
    return specs, names, tasks, pick_device(device).type
