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


def cpu_measurer(iterations: int = 2) -> Measurer:
    device = torch.device("cpu")
    return Measurer(
        MeasureConfig(device="cpu", repetition=Repetition(iterations=iterations, warmup=0), run_id="test"),
        collect(device, "test"),
    )
