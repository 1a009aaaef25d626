"""Which GPU kernels a call ran, for adapters whose library picks a kernel by itself."""

from __future__ import annotations


def cuda_kernel_names(fn) -> list[str]:
    """Names of the CUDA kernels one call of fn launched, in order, per the PyTorch profiler."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return [e.name for e in prof.events() if str(getattr(e, "device_type", "")).endswith("CUDA")]
