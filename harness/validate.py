"""Cross-check the harness timer against `triton.testing.do_bench` on the same callable.

    python -m harness.validate            # on a CUDA machine

Times a bf16 matmul sized to take about 1 ms (and an attention call) with both timers, L2 flushed
between iterations in both, and prints the two medians and their ratio. A benchmark, not a test:
it prints, it does not assert."""

from __future__ import annotations

import torch

from .timer import time_callable


def matmul_of_about(target_ms: float = 1.0):
    n = 4096
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    # grow the batch of products until one call takes about target_ms
    batch = 1
    while True:
        x = a.expand(batch, n, n)
        y = b.expand(batch, n, n)
        fn = lambda x=x, y=y: torch.bmm(x, y)  # noqa: E731
        ms = time_callable(fn, torch.device("cuda"), 10, 3).p50_ms
        if ms >= target_ms * 0.9:
            return fn, f"bmm {batch}×{n}³ bf16"
        batch = max(batch + 1, int(batch * target_ms / max(ms, 1e-3)))


def compare(fn, label: str, iterations: int = 200) -> tuple[float, float]:
    import triton.testing

    ours = time_callable(fn, torch.device("cuda"), iterations, 10, max_seconds=60).p50_ms
    theirs = triton.testing.do_bench(fn, warmup=25, rep=max(100, int(iterations * ours)), return_mode="median")
    print(f"{label:40s} attnbench p50 {ours:8.4f} ms   do_bench median {theirs:8.4f} ms   ratio {ours / theirs:.4f}")
    return ours, theirs


def main() -> None:
    if not torch.cuda.is_available():
        raise SystemExit("harness.validate needs a CUDA GPU")
    print(f"{torch.cuda.get_device_name()} · torch {torch.__version__}")
    fn, label = matmul_of_about(1.0)
    compare(fn, label)
    q = torch.randn(16, 32, 4096, 128, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(16, 8, 4096, 128, device="cuda", dtype=torch.bfloat16)
    v = torch.randn_like(k)
    sdpa = lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)  # noqa: E731
    compare(sdpa, "sdpa causal B16 S4096 H32/8 D128")


if __name__ == "__main__":
    main()
