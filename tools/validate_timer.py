"""Cross-check the harness timer against `triton.testing.do_bench`, and events against graphs.

    python -m tools.validate_timer           # on a CUDA machine

Times a bf16 matmul sized to take about 1 ms, and an attention call of a few ms, with our timer
(events and graph modes) and with do_bench (L2 flushed in all), and prints the medians and ratios.
A benchmark, not a test: it prints, it does not assert."""

from __future__ import annotations

import torch

from harness.timer import Repetition, TimingMode, time_callable

CUDA = torch.device("cuda")


def p50(fn, mode: TimingMode = TimingMode.EVENTS, iterations: int = 200) -> float:
    return time_callable(fn, CUDA, Repetition(iterations=iterations, warmup=10, max_seconds=60), mode).p50_ms


def matmul_of_about(target_ms: float = 1.0):
    n = 4096
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    batch = 1  # grow the batch of products until one call takes about target_ms
    while True:
        x, y = a.expand(batch, n, n), b.expand(batch, n, n)
        fn = lambda x=x, y=y: torch.bmm(x, y)
        ms = p50(fn, iterations=10)
        if ms >= target_ms * 0.9:
            return fn, f"bmm {batch}×{n}³ bf16"
        batch = max(batch + 1, int(batch * target_ms / max(ms, 1e-3)))


def compare(fn, label: str) -> None:
    import triton.testing

    events = p50(fn)
    graph = p50(fn, TimingMode.GRAPH)
    kernels = p50(fn, TimingMode.PROFILER, iterations=50)
    theirs = triton.testing.do_bench(fn, warmup=25, rep=max(100, int(200 * events)), return_mode="median")
    print(
        f"{label:36s} events {events:8.4f} ms | graph {graph:8.4f} ms ({graph / events - 1:+.2%}) | "
        f"profiler {kernels:8.4f} ms ({kernels / events - 1:+.2%}) | "
        f"do_bench {theirs:8.4f} ms ({events / theirs - 1:+.2%})"
    )


def main() -> None:
    if not torch.cuda.is_available():
        raise SystemExit("tools.validate_timer needs a CUDA GPU")
    print(f"{torch.cuda.get_device_name()} · torch {torch.__version__}; ratios are against events")
    fn, label = matmul_of_about(1.0)
    compare(fn, label)
    q = torch.randn(16, 32, 4096, 128, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(16, 8, 4096, 128, device="cuda", dtype=torch.bfloat16)
    v = torch.randn_like(k)
    sdpa = lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    compare(sdpa, "sdpa causal B16 S4096 H32/8 D128")
    qd = torch.randn(64, 32, 1, 128, device="cuda", dtype=torch.bfloat16)
    kd = torch.randn(64, 8, 8192, 128, device="cuda", dtype=torch.bfloat16)
    decode = lambda: torch.nn.functional.scaled_dot_product_attention(qd, kd, kd, enable_gqa=True)
    compare(decode, "sdpa decode B64 S8192 H32/8 D128")


if __name__ == "__main__":
    main()
