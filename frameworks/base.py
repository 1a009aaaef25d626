"""The adapter contract: a backend declares what it can run as data (`Caps`) and returns a timed
closure.

    @register("my-backend")
    class MyBackend(Backend):
        library = "my_lib"                        # import name; its version goes in every row
        caps = Caps(dtypes={BF16, FP16}, head_dims={64, 128}, layouts={DENSE, PAGED})

        def prepare(self, spec, inputs):          # everything but the kernel happens here
            ...
            return lambda: my_lib.attention(q, k, v)   # O as [B, Sq, Hq, D]

The generic `supports(spec)` reads `caps`; an adapter adds a rule `caps` cannot say in `check(spec)`.
The harness owns inputs, the reference check, timing and storage; an adapter owns only its setup and
the kernel call. Adapters import their library lazily (inside methods), so a missing library makes
the backend *unavailable* instead of breaking the import of `frameworks`. This module (and
`_profile`) is all an adapter needs besides `specs`: `frameworks/` never imports `harness/`.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, ClassVar

from specs import DType, ExperimentSpec, Workload

if TYPE_CHECKING:
    import torch


class Unsupported(Exception):
    """Raised by `prepare()` when the library itself declines the spec (its own capability check);
    the harness records the row as `unsupported` with this message as the reason."""


@dataclass(frozen=True)
class AttentionInputs:
    """Uniform batch: q [B, Sq, Hq, D]; k, v [B, Sk, Hkv, D]. Ragged batch (`ragged`): packed,
    q [Σ q_len, Hq, D] and k, v [Σ kv_len, Hkv, D], request i's rows at cu_seqlens_q[i] …
    cu_seqlens_q[i + 1] (int32 offsets on the device; `spec.batch` has them as Python ints too).
    Contiguous, in the spec's dtype, on one device. Adapters convert layouts in `prepare()` and never
    write into these tensors; a ragged call returns O packed like q."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    cu_seqlens_q: torch.Tensor | None = None
    cu_seqlens_k: torch.Tensor | None = None

    @property
    def ragged(self) -> bool:
        return self.cu_seqlens_q is not None

    @property
    def device(self) -> torch.device:
        return self.q.device

    @property
    def scale(self) -> float:
        return self.q.shape[-1] ** -0.5


class KVLayout(str, Enum):
    DENSE = "dense"  # K/V as [B, Sk, Hkv, D]
    PAGED = "paged"  # K/V in pages of page_size tokens, placed through a block table

    def __str__(self) -> str:
        return self.value


def _frozen(values: Iterable | None) -> frozenset | None:
    return None if values is None else frozenset(values)


@dataclass(frozen=True)
class Caps:
    """What a backend can run, as data. `None` for head_dims means any."""

    dtypes: frozenset = frozenset(DType)
    head_dims: frozenset | None = None
    workloads: frozenset = frozenset(Workload)
    layouts: frozenset = frozenset({KVLayout.DENSE})
    page_size_multiple: int = 1  # paged: the page size must be a multiple of this
    ragged: bool = False  # takes requests of different lengths in one call
    gqa: bool = True  # native grouped-query attention (K/V never repeated)
    devices: frozenset = frozenset({"cuda"})

    def __post_init__(self) -> None:
        for name in ("dtypes", "head_dims", "workloads", "layouts", "devices"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        object.__setattr__(self, "dtypes", frozenset(DType(d) for d in self.dtypes))
        object.__setattr__(self, "workloads", frozenset(Workload(w) for w in self.workloads))
        object.__setattr__(self, "layouts", frozenset(KVLayout(x) for x in self.layouts))

    def reason(self, spec: ExperimentSpec) -> str | None:
        """Why this declaration rules the spec out, or None."""
        if spec.dtype not in self.dtypes:
            return f"dtype {spec.dtype}: takes {_listed(self.dtypes)}"
        if self.head_dims is not None and spec.head_dim not in self.head_dims:
            return f"head_dim {spec.head_dim}: takes {_listed(self.head_dims)}"
        if spec.workload not in self.workloads:
            return f"workload {spec.workload}: takes {_listed(self.workloads)}"
        layout = KVLayout.DENSE if spec.page_size is None else KVLayout.PAGED
        if layout not in self.layouts:
            if layout is KVLayout.PAGED:
                return f"paged KV (page_size {spec.page_size}): this backend reads dense K/V only"
            return "dense KV: this backend reads a paged KV cache only (give a page size)"
        if spec.page_size is not None and spec.page_size % self.page_size_multiple:
            return f"page_size {spec.page_size}: needs a multiple of {self.page_size_multiple} tokens"
        if getattr(spec, "is_ragged", False) and not self.ragged:
            return "ragged batch: this backend takes requests of one length only"
        if spec.gqa_group > 1 and not self.gqa:
            return f"GQA group {spec.gqa_group}: this backend needs as many K/V heads as query heads"
        return None

    def summary(self) -> dict[str, str]:
        """One cell per capability, for `run.py list`."""
        kv = "+".join(str(x) for x in sorted(self.layouts, key=str))
        if KVLayout.PAGED in self.layouts and self.page_size_multiple > 1:
            kv += f" (page ×{self.page_size_multiple})"
        return {
            "dtypes": _listed(self.dtypes),
            "head dims": "any" if self.head_dims is None else _compact(sorted(self.head_dims)),
            "workloads": _listed(self.workloads) if self.workloads != frozenset(Workload) else "all",
            "KV": kv,
            "ragged": "yes" if self.ragged else "no",
            "GQA": "yes" if self.gqa else "no",
            "devices": _listed(self.devices),
        }


def _compact(values: list[int]) -> str:
    """'64, 128', or '8–256 step 8' for a long even progression."""
    steps = {b - a for a, b in zip(values, values[1:])}
    if len(values) > 4 and len(steps) == 1:
        return f"{values[0]}–{values[-1]} step {steps.pop()}"
    return ", ".join(map(str, values))


def _listed(values: Iterable) -> str:
    order = {str(m): i for i, m in enumerate([*DType, *Workload])}
    return ", ".join(sorted((str(v) for v in values), key=lambda s: (order.get(s, 99), len(s), s)))


class Backend:
    name: ClassVar[str] = ""  # set by @register
    library: ClassVar[str] = "torch"  # module whose import decides availability and gives the version
    caps: ClassVar[Caps] = Caps()
    min_compute_capability: ClassVar[tuple[int, int] | None] = None  # CUDA only
    upstream: ClassVar[str] = ""  # where the kernel comes from, for `run.py list`
    distribution: ClassVar[str | None] = None  # pip distribution whose version the rows carry, when the module has none

    @classmethod
    def capability_cells(cls) -> dict[str, str]:
        """The declared capabilities, one cell each, for `run.py list`."""
        return cls.caps.summary()

    def availability(self, device: torch.device) -> str | None:
        """None if this backend can run on `device`, else why not (missing library or device)."""
        if device.type not in self.caps.devices:
            return f"needs a {' or '.join(sorted(self.caps.devices))} device, this run is on {device.type}"
        try:
            importlib.import_module(self.library)
        except Exception as exc:  # ImportError, but also broken builds raising OSError/RuntimeError
            return f"cannot import {self.library}: {type(exc).__name__}: {exc}".splitlines()[0][:300]
        if device.type == "cuda" and self.min_compute_capability is not None:
            import torch

            cc = torch.cuda.get_device_capability(device)
            if cc < self.min_compute_capability:
                need = ".".join(map(str, self.min_compute_capability))
                return f"needs compute capability >= {need}, this GPU is {cc[0]}.{cc[1]}"
        return None

    def version(self) -> str:
        if self.distribution:
            from importlib import metadata

            try:
                return metadata.version(self.distribution)
            except metadata.PackageNotFoundError:
                pass
        try:
            module = importlib.import_module(self.library)
        except Exception:
            return ""
        return str(getattr(module, "__version__", "")) or _dist_version(self.library)

    def supports(self, spec: ExperimentSpec) -> str | None:
        """None if the spec can run, else the reason: the declaration first, then the adapter's own rule."""
        return self.caps.reason(spec) or self.check(spec)

    def check(self, spec: ExperimentSpec) -> str | None:
        """A rule of the library that `caps` cannot say (override where needed); None = no objection."""
        return None

    def prepare(self, spec: ExperimentSpec, inputs: AttentionInputs) -> Callable[[], torch.Tensor]:
        raise NotImplementedError

    def run_info(self) -> str:
        """After the first call: what actually ran (chosen kernel, autotuned config), or ''."""
        return ""


def env_choice(name: str, default: str, allowed: Sequence[str]) -> str:
    """An adapter switch read from the environment when a spec is prepared (which variant a measurement
    runs; backend_info says which ran): one of `allowed`, else a ValueError naming the variable."""
    value = os.environ.get(name, default)
    if value not in allowed:
        raise ValueError(f"{name}: {value!r} is not valid; expected {', '.join(allowed)}")
    return value


def probe_build(attention: Callable, inputs: AttentionInputs) -> None:
    """Call a library's [B, S, H, D] attention on one token: wheels built for some head dims or
    dtypes only refuse here (Unsupported), not inside the timed loop."""
    first = (lambda t: t[None, :1]) if inputs.ragged else (lambda t: t[:1, :1])
    try:
        attention(first(inputs.q), first(inputs.k), first(inputs.v))
    except RuntimeError as exc:
        if "build" in str(exc) or "not supported" in str(exc).lower():
            raise Unsupported(f"this build: {exc}") from None
        raise


def first_output(result):
    """The output tensor of a library call that returns it alone or as (out, lse, ...)."""
    return result[0] if isinstance(result, (tuple, list)) else result


def _dist_version(module_name: str) -> str:
    from importlib import metadata

    for dist in metadata.packages_distributions().get(module_name.split(".")[0], []):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return ""


BACKENDS: dict[str, type[Backend]] = {}


def register(name: str) -> Callable[[type[Backend]], type[Backend]]:
    def wrap(cls: type[Backend]) -> type[Backend]:
        if name in BACKENDS and BACKENDS[name] is not cls:
            raise ValueError(f"backend {name!r} is registered twice ({BACKENDS[name].__module__}, {cls.__module__})")
        cls.name = name
        BACKENDS[name] = cls
        return cls

    return wrap


class BrokenAdapter(Backend):
    """Stands in for an adapter module that failed to import: listed, never run, with the error."""

    import_error: ClassVar[str] = ""
    # it declares nothing: what the adapter would run is unknown, so it never appears to run anything
    caps = Caps(dtypes=(), workloads=(), layouts=(), head_dims=(), ragged=False, gqa=False, devices={"cuda", "cpu"})
    upstream = "(adapter did not import)"

    @classmethod
    def capability_cells(cls) -> dict[str, str]:
        return dict.fromkeys(Caps().summary(), "? (did not import)")

    def supports(self, spec) -> str | None:
        return self.import_error or "the adapter did not import"

    def availability(self, device) -> str | None:
        return self.import_error


def register_broken(module: str, exc: BaseException) -> str:
    """Register `module`'s import failure as an unavailable backend named after its file."""
    name = module.rsplit(".", 1)[-1].replace("_", "-")
    if name in BACKENDS:
        name += "-broken"
    error = f"adapter {module} failed to import: {type(exc).__name__}: {exc}".splitlines()[0][:300]
    cls = type(f"Broken_{module.replace('.', '_')}", (BrokenAdapter,), {"__module__": module, "import_error": error})
    register(name)(cls)
    return name
