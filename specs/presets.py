"""Named sweeps as data: a grid of models × workloads × batch sizes × sequence lengths × chunks.

A preset is a `SweepGrid`; the CLI narrows it by replacing any axis (`--models`, `--batch`, …)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from .models import MODELS
from .spec import DType, ExperimentSpec, SpecError, Workload, parse_enum


@dataclass(frozen=True)
class SweepGrid:
    models: tuple[str, ...]
    workloads: tuple[Workload, ...]
    batch_sizes: tuple[int, ...]
    seq_lens: tuple[int, ...]  # kv_len of every workload (prefill: q_len = kv_len too)
    chunks: tuple[int, ...]  # append q_len; chunks longer than the sequence are skipped
    dtype: DType = DType.BF16
    page_size: int | None = None

    def __post_init__(self) -> None:
        for name in self.models:
            if name not in MODELS:
                raise SpecError(f"models: {name!r} is not known; expected one of {', '.join(MODELS)}")
        object.__setattr__(self, "workloads", tuple(parse_enum(Workload, w, "workloads") for w in self.workloads))
        object.__setattr__(self, "dtype", parse_enum(DType, self.dtype, "dtype"))
        for axis in ("models", "workloads", "batch_sizes", "seq_lens", "chunks"):
            if not getattr(self, axis):
                raise SpecError(f"{axis}: the sweep needs at least one value")

    def narrowed(self, **axes) -> SweepGrid:
        """This grid with the given axes replaced; None leaves an axis as it is."""
        return replace(
            self, **{k: (tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in axes.items() if v is not None}
        )

    def specs(self) -> list[ExperimentSpec]:
        out: list[ExperimentSpec] = []
        for model_name in self.models:
            model = MODELS[model_name]
            for workload in self.workloads:
                for batch in self.batch_sizes:
                    for seq in self.seq_lens:
                        if workload is Workload.PREFILL:
                            q_lens = [seq]
                        elif workload is Workload.DECODE:
                            q_lens = [1]
                        elif workload is Workload.SPEC_DECODE:  # chunks are the draft lengths here
                            q_lens = [c for c in self.chunks if 2 <= c <= min(16, seq)]
                        else:
                            q_lens = [c for c in self.chunks if c <= seq]
                        for q_len in q_lens:
                            out.append(
                                ExperimentSpec(
                                    workload=workload,
                                    batch_size=batch,
                                    q_len=q_len,
                                    kv_len=seq,
                                    num_q_heads=model.num_q_heads,
                                    num_kv_heads=model.num_kv_heads,
                                    head_dim=model.head_dim,
                                    dtype=self.dtype,
                                    page_size=self.page_size,
                                    model=model.name,
                                )
                            )
        return out


ALL_WORKLOADS = (Workload.PREFILL, Workload.APPEND, Workload.DECODE)

PRESETS: dict[str, SweepGrid] = {
    # seconds on a 2-core CPU: tiny sequences, real head shapes (GQA groups 4 and 8)
    "smoke": SweepGrid(
        models=("Llama-3.1-8B", "Qwen3-30B-A3B"),
        workloads=ALL_WORKLOADS,
        batch_sizes=(2,),
        seq_lens=(128,),
        chunks=(32,),
    ),
    # the README comparison: batch 256 × 4096 tokens, append chunk 128, GQA groups 4, 8 and 16
    "readme": SweepGrid(
        models=("Llama-3.1-8B", "Qwen3-30B-A3B", "Qwen3-235B-A22B"),
        workloads=ALL_WORKLOADS,
        batch_sizes=(256,),
        seq_lens=(4096,),
        chunks=(128,),
    ),
    # everything; specs that cannot fit in the GPU's memory are recorded as skipped
    "full": SweepGrid(
        models=tuple(MODELS),
        workloads=ALL_WORKLOADS,
        batch_sizes=(1, 16, 64, 256),
        seq_lens=(512, 1024, 2048, 4096, 8192, 16384, 32768),
        chunks=(128, 512),
    ),
}


def get_preset(name: str) -> SweepGrid:
    try:
        return PRESETS[name]
    except KeyError:
        raise SpecError(f"preset: {name!r} is not known; expected one of {', '.join(PRESETS)}") from None
