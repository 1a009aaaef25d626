from __future__ import annotations

import torch

from harness.env import collect
from harness.measure import MeasureConfig, Measurer
from harness.timer import Repetition
from specs import ExperimentSpec


def tiny_spec(workload: str, group: int = 4, batch: int = 2, kv_len: int = 48, chunk: int = 16, **kw) -> ExperimentSpec:
    q_len = {"prefill": kv_len, "append": chunk, "decode": 1, "spec-decode": chunk}[workload]
    return ExperimentSpec(
        workload=workload,
        batch_size=batch,
        q_len=q_len,
        kv_len=kv_len,
        num_q_heads=2 * group,
        num_kv_heads=2,
        head_dim=kw.pop("head_dim", 64),
        model="tiny",
        **kw,
    )


def measurer_on(device: str, iterations: int, warmup: int) -> Measurer:
    """A measurer of a fixed number of timed calls on `device` ('cpu' or 'cuda'), rows named run 'test'."""
    return Measurer(
        MeasureConfig(device=device, repetition=Repetition(iterations=iterations, warmup=warmup), run_id="test"),
        collect(torch.device(device), "test"),
    )


def cpu_measurer(iterations: int = 2) -> Measurer:
    return measurer_on("cpu", iterations, 0)


def run_info_after_checking(backend_arg: str, spec: ExperimentSpec):
    """Prepare and call a backend (or a variant: 'flashinfer[mixed=one-call]') on the CPU, check its output
    against the fp32 reference on every request, and return what it says ran (run_info)."""
    from frameworks import get_backend
    from harness.inputs import make_inputs
    from harness.reference import check_output, reference_attention

    device = torch.device("cpu")
    backend = get_backend(backend_arg)
    inputs = make_inputs(spec, device)
    out = backend.prepare(spec, inputs)()
    everyone = list(range(spec.batch_size))
    check = check_output(spec, out, reference_attention(spec, inputs, everyone), everyone)
    assert check.ok, check.problem
    return backend.run_info()
