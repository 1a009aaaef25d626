"""What to measure: `ExperimentSpec`, the workloads, real model shapes and named sweep presets."""

from .batch import Batch, Lengths, parse_mix
from .models import MODELS, ModelShape
from .presets import MIX_NAMES, MIXES, PRESETS, Mix, SweepGrid, get_preset, resolve_mix
from .spec import DType, ExperimentSpec, SpecError, Workload, parse_enum

__all__ = [
    "MIXES",
    "MIX_NAMES",
    "MODELS",
    "Batch",
    "Lengths",
    "Mix",
    "parse_mix",
    "resolve_mix",
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
