"""The adapter contract: a backend says what it supports and returns a timed closure.

    @register("my-backend")
    class MyBackend(Backend):
        library = "my_lib"                       # import name; its version goes in every row
        devices = ("cuda",)                      # device types it runs on
        def supports(self, spec) -> str | None:  # None, or why this spec cannot run
            ...
        def prepare(self, spec, inputs):         # everything but the kernel happens here
            ...
            return lambda: my_lib.attention(q, k, v)   # O as [B, Sq, Hq, D]

The harness owns inputs, the reference check, timing and storage; an adapter owns only its setup and
the kernel call. Adapters import their library lazily (inside methods), so a missing library makes
the backend *unavailable* instead of breaking the import of `frameworks`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Callable, ClassVar

if TYPE_CHECKING:
    import torch

    from harness.inputs import AttentionInputs
    from specs import ExperimentSpec


class Unsupported(Exception):
    """Raised by `prepare()` when the library itself declines the spec (its own capability check);
    the harness records the row as `unsupported` with this message as the reason."""


class Backend:
    name: ClassVar[str] = ""  # set by @register
    library: ClassVar[str] = "torch"  # module whose import decides availability and gives the version
    devices: ClassVar[tuple[str, ...]] = ("cuda",)
    min_compute_capability: ClassVar[tuple[int, int] | None] = None  # CUDA only
    upstream: ClassVar[str] = ""  # where the kernel comes from, for `run.py list`
    distribution: ClassVar[str | None] = None  # pip distribution whose version the rows carry, when the module has none

    def availability(self, device: "torch.device") -> str | None:
        """None if this backend can run on `device`, else why not (missing library or device)."""
        if device.type not in self.devices:
            return f"needs a {' or '.join(self.devices)} device, this run is on {device.type}"
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

    def supports(self, spec: "ExperimentSpec") -> str | None:
        """None if the spec can run, else the reason it cannot (dtype, head dim, paging, ...)."""
        return None

    def prepare(self, spec: "ExperimentSpec", inputs: "AttentionInputs") -> Callable[[], "torch.Tensor"]:
        raise NotImplementedError

    def run_info(self) -> str:
        """After the first call: what actually ran (chosen kernel, autotuned config), or ''."""
        return ""


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
