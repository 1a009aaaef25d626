"""What to measure: `ExperimentSpec`, the workloads, real model shapes and named sweep presets."""

from .batch import Batch, Lengths, parse_mix
from .models import LAYER_NAMES, MODELS, LayerKind, ModelShape, layer_kinds
from .presets import MIX_NAMES, MIXES, PRESETS, Mix, SweepGrid, get_preset, resolve_mix, specs_for
from .spec import DType, ExperimentSpec, SpecError, Workload, parse_enum

__all__ = [
    "LAYER_NAMES",
    "LayerKind",
    "layer_kinds",
    "specs_for",
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
