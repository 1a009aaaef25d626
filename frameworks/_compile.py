"""Shared torch.compile set-up for the compiled backends."""

from __future__ import annotations

import functools


@functools.cache
def configure_dynamo() -> None:
    """A sweep compiles one graph per shape: lift dynamo's recompile limit (default 8, after which it
    silently falls back to eager and we would time the wrong thing) and fail loudly if it is hit."""
    import torch._dynamo

    config = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit", "accumulated_cache_size_limit"):
        if hasattr(config, name):
            setattr(config, name, 4096)
    if hasattr(config, "fail_on_recompile_limit_hit"):
        config.fail_on_recompile_limit_hit = True
