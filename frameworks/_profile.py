"""Profiler helper shared by the harness (graph check) and adapters that report which kernel ran."""

from __future__ import annotations

from collections.abc import Callable


def kernel_names(fn: Callable[[], object]) -> list[str]:
    """Names of the GPU kernels (and memcpy/memset work) one call of fn runs, in order, per the profiler."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return [e.name for e in prof.events() if str(getattr(e, "device_type", "")).endswith("CUDA")]
