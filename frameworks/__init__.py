"""Backends: one adapter module per library, found automatically (adding a backend = adding a file).

An adapter module that fails to import (a typo, a missing helper) does not take the others down: it
is registered as an unavailable backend that carries the import error."""

from __future__ import annotations

import importlib
import pkgutil

from .base import (
    BACKENDS,
    AttentionInputs,
    Backend,
    Caps,
    KVLayout,
    Unsupported,
    VariantError,
    VariantKey,
    info_dict,
    info_text,
    label,
    parse_backend_arg,
    register,
    register_broken,
)

_FAILED: dict[str, str] = {}  # module -> backend name of its placeholder


def adapter_modules() -> list[str]:
    """Every adapter module of this package (files and sub-packages not starting with '_')."""
    return [
        f"{__name__}.{info.name}"
        for info in pkgutil.iter_modules(__path__)
        if info.name != "base" and not info.name.startswith("_")
    ]


def load_all() -> dict[str, type[Backend]]:
    """Import every adapter module so that its @register runs; a module that fails becomes an
    unavailable placeholder backend with the error."""
    for module in adapter_modules():
        if module in _FAILED:
            continue
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - any import-time failure of one adapter
            _FAILED[module] = register_broken(module, exc)
    return BACKENDS


def get_backend(text: str) -> Backend:
    """The backend named by 'NAME' or 'NAME[key=value,...]', set to that variant; a ValueError
    (VariantError for a bad variant) naming what is allowed."""
    load_all()
    name, choice = parse_backend_arg(text)
    if name not in BACKENDS:
        raise ValueError(f"backend: {name!r} is not known; expected one of {', '.join(sorted(BACKENDS))}")
    return BACKENDS[name](choice)


__all__ = [
    "BACKENDS", "AttentionInputs", "Backend", "Caps", "KVLayout", "Unsupported", "VariantError", "VariantKey",
    "adapter_modules", "get_backend", "info_dict", "info_text", "label", "load_all", "parse_backend_arg", "register",
]  # fmt: skip
