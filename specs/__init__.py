"""What to measure: `ExperimentSpec`, the workloads, real model shapes and named sweep presets."""

from .models import MODELS, ModelShape
from .presets import PRESETS, SweepGrid, get_preset
from .spec import DType, ExperimentSpec, SpecError, Workload, parse_enum

__all__ = [
    "MODELS",
    "PRESETS",
    "DType",
    "ExperimentSpec",
    "ModelShape",
    "SpecError",
    "SweepGrid",
    "Workload",
    "get_preset",
    "parse_enum",
]
