"""How long the harness takes to plan and build a 256-request ragged batch on the CPU. A benchmark,
not a test (the target is under 1 s for planning and metadata).

- plan: parse the mix or draw the lengths, build the spec and its batch, FLOPs, bytes, the
  reference sample;
- metadata: cu_seqlens as tensors and the shuffled 16-token paged cache's block table, indptr,
  indices and last-page lengths (built over a one-element-a-token cache, so only the metadata costs);
- data: the seeded K/V/Q at the model's real head shape and their copy into pages. This is memory
  traffic proportional to the cache (gigabytes at these sizes), fast on a GPU, and reported apart.

    python3 -m tools.bench_batch
"""

from __future__ import annotations

import time

import torch

from frameworks._paged import to_paged_ragged
from harness.inputs import make_inputs
from harness.reference import check_indices
from specs import ExperimentSpec

CPU = torch.device("cpu")


def timed(fn, repeat: int = 5) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2], result


def plan(build):
    spec = build()
    _ = spec.flops, spec.ideal_bytes, spec.batch.cu_seqlens_q, spec.batch.cu_seqlens_k
    check_indices(spec, CPU)
    return spec


def metadata(spec):
    batch = spec.batch
    torch.tensor(batch.cu_seqlens_q, dtype=torch.int32), torch.tensor(batch.cu_seqlens_k, dtype=torch.int32)
    one = torch.zeros(batch.total_kv, 1, 1)
    paged = to_paged_ragged(one, one, batch.kv_lens, 16)
    return paged.indptr(), paged.indices(), paged.last_page_lens()


def data(spec):
    inputs = make_inputs(spec, CPU)
    return to_paged_ragged(inputs.k, inputs.v, spec.batch.kv_lens, 16)


def main() -> None:
    cases = {
        "1 chunk + 255 decodes": lambda: ExperimentSpec.from_mix("q512s4k_255q1s2k", 32, 8, 128),
        "256 lognormal decodes": lambda: ExperimentSpec.from_lengths("lognormal:2048:0.8@0", "decode", 256, 32, 8, 128),
    }
    for name, build in cases.items():
        plan_s, spec = timed(lambda build=build: plan(build))
        meta_s, _ = timed(lambda spec=spec: metadata(spec))
        data_s, _ = timed(lambda spec=spec: data(spec), repeat=1)
        print(f"{name:24s} {spec.batch_size} requests, {spec.batch.total_kv} KV tokens: plan {plan_s * 1e3:.1f} ms, "
              f"metadata {meta_s * 1e3:.1f} ms (target: under 1000 together); data at H=32/8 D=128 "
              f"{data_s:.1f} s ({spec.ideal_bytes / 2**30:.2f} GiB)")  # fmt: skip


if __name__ == "__main__":
    main()
