"""Plan a sweep: the (spec, backend variant) tasks, which module registers each backend, and the order
the workers take them in. Pure data and Python: no worker, no CUDA."""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass

from frameworks import BACKENDS, VariantError, label, load_all, parse_backend_arg
from specs import ExperimentSpec, SpecError


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
