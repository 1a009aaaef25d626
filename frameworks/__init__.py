"""Backends: one adapter module per library, found automatically (adding a backend = adding a file)."""

from __future__ import annotations

import importlib
import pkgutil

from .base import BACKENDS, Backend, Unsupported, register


def load_all() -> dict[str, type[Backend]]:
    """Import every adapter module in this package so that its @register runs."""
    for info in pkgutil.iter_modules(__path__):
        if info.name != "base" and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    return BACKENDS


def get_backend(name: str) -> Backend:
    load_all()
    try:
        return BACKENDS[name]()
    except KeyError:
        raise ValueError(f"backend: {name!r} is not known; expected one of {', '.join(sorted(BACKENDS))}") from None


__all__ = ["BACKENDS", "Backend", "Unsupported", "get_backend", "load_all", "register"]
