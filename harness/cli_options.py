"""The command line's options, each declared once: typer reads them from these annotations. The sweep's are
grouped in frozen dataclasses, a help panel each (what to measure, how, where rows go, scale-out); a command
takes a group as one parameter (`what: Selection`) under `@with_options`, and `check` shares `Selection` with
`sweep`. Values are checked later, in harness/plan.py and harness/sweep.py, never here."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from specs import MIXES, MODELS, PRESETS, DType, Workload

from .options import ASCII_FLOAT, ASCII_INT, PATH

PresetName = Enum("PresetName", {name: name for name in PRESETS}, type=str)
TableFormat = Enum("TableFormat", {"rich": "rich", "markdown": "markdown"}, type=str)

WHAT, HOW, ROWS, SCALE = "What to measure", "How to measure", "Where rows go", "Scale-out"

DEVICE_HELP = "cuda or cpu (default: cuda when there is a GPU)."
Device = Annotated[str | None, typer.Option(help=DEVICE_HELP, metavar="cuda|cpu", rich_help_panel=WHAT)]
AnyDevice = Annotated[str | None, typer.Option(help=DEVICE_HELP)]  # list, calibrate: no sweep, no panel
Timeout = Annotated[
    float,
    typer.Option(
        parser=ASCII_FLOAT,  # '٣' is refused, not read as 3
        help="Seconds one (spec, backend) may take, compile included, before it is killed.",
        metavar="SECONDS",
        rich_help_panel=HOW,
    ),
]

# the filters of the commands that read results files (table, plot): values the files hold
ModelFilter = Annotated[list[str] | None, typer.Option("--model", "-m")]
WorkloadFilter = Annotated[list[str] | None, typer.Option("--workload", "-w")]
BackendFilter = Annotated[list[str] | None, typer.Option("--backend", "-b")]


@dataclasses.dataclass(frozen=True)
class Selection:
    """What to measure: a preset narrowed by the options (harness.plan.plan_sweep turns it into tasks)."""

    preset: Annotated[
        PresetName,
        typer.Option(
            "--preset",  # named: typer 0.27 (the GPU host's) made the name --PRESET from the metavar
            metavar="PRESET",
            help=f"Named sweep to run: {', '.join(PRESETS)}; the options below narrow it.",
            rich_help_panel=WHAT,
        ),
    ] = "smoke"
    backend: Annotated[
        list[str] | None,
        typer.Option(
            "--backend",
            "-b",
            help="Backends (repeat or comma-separate), each NAME or NAME\\[key=value,...] for a variant (run.py list "
            "shows them), NAME\\[*] for its defaults and contender variants; default: every backend and contender.",
            metavar="NAME,...",
            rich_help_panel=WHAT,
        ),
    ] = None
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help=f"Models: {', '.join(MODELS)}.", metavar="MODEL,...", rich_help_panel=WHAT),
    ] = None
    workload: Annotated[
        list[str] | None,
        typer.Option(
            "--workload",
            "-w",
            help=f"Workloads: {', '.join(w.value for w in Workload)}.",
            metavar="WORKLOAD,...",
            rich_help_panel=WHAT,
        ),
    ] = None
    batch: Annotated[list[str] | None, typer.Option(help="Batch sizes.", metavar="N,...", rich_help_panel=WHAT)] = None
    seq: Annotated[
        list[str] | None,
        typer.Option(
            help="KV lengths in tokens (prefill: also the query length).", metavar="TOKENS,...", rich_help_panel=WHAT
        ),
    ] = None
    chunk: Annotated[
        list[str] | None,
        typer.Option(
            help="Append chunk lengths (query tokens per step); spec-decode draft lengths.",
            metavar="TOKENS,...",
            rich_help_panel=WHAT,
        ),
    ] = None
    dtype: Annotated[
        DType | None, typer.Option(help="Input dtype (default: the preset's, bf16).", rich_help_panel=WHAT)
    ] = None
    page_size: Annotated[
        list[str] | None,
        typer.Option(
            help="KV page sizes, e.g. 1,16,64,256 (default the preset's; 'dense' for no pages).",
            metavar="SIZE,...",
            rich_help_panel=WHAT,
        ),
    ] = None
    mix: Annotated[
        list[str] | None,
        typer.Option(
            help=f"Batches of requests: mix strings like 2q2k_32q1s1k, drawn batches draw:SEED or draw:FIRST-LAST, "
            f"or names: {', '.join(MIXES)}.",
            metavar="MIX,...",
            rich_help_panel=WHAT,
        ),
    ] = None
    kv_dtype: Annotated[
        list[str] | None,
        typer.Option(
            help="KV cache dtypes: default (the input dtype) and/or fp8_e4m3 (e4m3 with fp32 scales).",
            metavar="default|fp8_e4m3",
            rich_help_panel=WHAT,
        ),
    ] = None
    kv_scale: Annotated[
        str | None,
        typer.Option(
            help="FP8 scales: tensor (default) or head (one a KV head).", metavar="tensor|head", rich_help_panel=WHAT
        ),
    ] = None
    fp8_attention: Annotated[
        bool,
        typer.Option(
            "--fp8-attention", help="FP8 specs: Q in e4m3 too, with descales (FA3's FP8 form).", rich_help_panel=WHAT
        ),
    ] = False
    lengths: Annotated[
        str | None,
        typer.Option(
            help="KV lengths drawn per request: uniform:LOW:HIGH or lognormal:MEDIAN:SIGMA (with -w, --batch).",
            metavar="DIST:A:B",
            rich_help_panel=WHAT,
        ),
    ] = None
    seed: Annotated[
        int,
        typer.Option(
            parser=ASCII_INT, help="Seed of --lengths (recorded in the row).", metavar="N", rich_help_panel=WHAT
        ),
    ] = 0
    layer: Annotated[
        list[str] | None,
        typer.Option(
            help="Layer kinds of each model: full, window (default: every kind the model declares).",
            metavar="KIND,...",
            rich_help_panel=WHAT,
        ),
    ] = None
    tp: Annotated[
        list[str] | None,
        typer.Option(
            help="Tensor-parallel degrees, e.g. 1,2,4,8: each spec holds one GPU's heads (recorded in the row).",
            metavar="N,...",
            rich_help_panel=WHAT,
        ),
    ] = None
    device: Device = None


@dataclasses.dataclass(frozen=True)
class Measuring:
    """How to measure: the timer's mode and repetition, the time limit, the L2 flush."""

    timing: Annotated[
        str | None,
        typer.Option(
            help="events (default on GPU), graph, profiler; wall on CPU.", metavar="MODE", rich_help_panel=HOW
        ),
    ] = None
    iterations: Annotated[
        int | None,
        typer.Option(
            parser=ASCII_INT,
            help="A fixed number of timed calls (default: adaptive).",
            metavar="N",
            rich_help_panel=HOW,
        ),
    ] = None
    min_iterations: Annotated[
        int,
        typer.Option(
            parser=ASCII_INT, help="Adaptive: at least this many timed calls.", metavar="N", rich_help_panel=HOW
        ),
    ] = 10
    max_iterations: Annotated[
        int,
        typer.Option(
            parser=ASCII_INT, help="Adaptive: at most this many timed calls.", metavar="N", rich_help_panel=HOW
        ),
    ] = 2000
    ci_target: Annotated[
        float,
        typer.Option(
            parser=ASCII_FLOAT,
            help="Adaptive: stop once the p50's 95% interval is within ±this (0.01 = ±1%).",
            metavar="FRACTION",
            rich_help_panel=HOW,
        ),
    ] = 0.01
    warmup: Annotated[
        int | None,
        typer.Option(
            parser=ASCII_INT,
            help="Warm-up calls before timing (default 10 on GPU, 2 on CPU).",
            metavar="N",
            rich_help_panel=HOW,
        ),
    ] = None
    max_seconds: Annotated[
        float | None,
        typer.Option(
            parser=ASCII_FLOAT,
            help="Cap on one task's timed loop (default 10 s on GPU, 1 s on CPU; at least 5 calls).",
            metavar="SECONDS",
            rich_help_panel=HOW,
        ),
    ] = None
    timeout: Timeout = 600.0
    l2_flush: Annotated[
        str,
        typer.Option(
            help="How the L2 is evicted before each timed call: zero (write a 256 MB buffer) or read; in the "
            "row's timing_mode.",
            metavar="zero|read",
            rich_help_panel=HOW,
        ),
    ] = "zero"


@dataclasses.dataclass(frozen=True)
class Destination:
    """Where rows go: the CSV, what --resume skips, the commit the rows name, the plots drawn after."""

    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            parser=PATH,
            help="CSV to append to (default results/<gpu>.csv).",
            metavar="FILE.csv",
            rich_help_panel=ROWS,
        ),
    ] = None
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            metavar="",
            help="Skip (spec, backend) pairs the output file already holds; error and timeout rows run again.",
            rich_help_panel=ROWS,
        ),
    ] = False
    keep_failed: Annotated[
        bool,
        typer.Option(
            "--keep-failed",
            metavar="",
            help="With --resume: also skip pairs whose newest row is error or timeout.",
            rich_help_panel=ROWS,
        ),
    ] = False
    retry_unavailable: Annotated[
        bool,
        typer.Option(
            "--retry-unavailable",
            metavar="",
            help="With --resume: also run again pairs whose newest row is unavailable (a library installed since).",
            rich_help_panel=ROWS,
        ),
    ] = False
    git_commit: Annotated[
        str | None,
        typer.Option(
            help="The commit the rows name (default: asked of git; give it for a copy of the tree without .git).",
            metavar="SHA",
            rich_help_panel=ROWS,
        ),
    ] = None
    plots: Annotated[
        bool,
        typer.Option(
            "--plots/--no-plots",
            metavar="",
            help="Draw the plots of the output file after the sweep.",
            rich_help_panel=ROWS,
        ),
    ] = True
    plot_dir: Annotated[
        Path | None,
        typer.Option(
            parser=PATH,
            help="Where the plots go (default: beside the output CSV, in <name>-plots/; the repository's plots/ for "
            "its results/ files).",
            metavar="FOLDER",
            rich_help_panel=ROWS,
        ),
    ] = None


@dataclasses.dataclass(frozen=True)
class ScaleOut:
    """Where the workers run: local GPUs, CPU worker processes, or a Ray cluster."""

    gpus: Annotated[
        str | None,
        typer.Option(
            help="Run on several local GPUs at once: 'all' or ids like 0,1,3 (one worker process each).",
            metavar="all|ID,...",
            rich_help_panel=SCALE,
        ),
    ] = None
    workers: Annotated[
        int | None,
        typer.Option(
            parser=ASCII_INT,
            help="Worker processes for a CPU sweep (GPU sweeps: --gpus).",
            metavar="N",
            rich_help_panel=SCALE,
        ),
    ] = None
    ray: Annotated[
        str | None,
        typer.Option(
            help="Run the tasks on a Ray cluster: 'auto' (the running one) or ray://host:port; one GPU a task.",
            metavar="ADDRESS",
            rich_help_panel=SCALE,
        ),
    ] = None
    accelerator_type: Annotated[
        str | None,
        typer.Option(help="With --ray: only GPUs of this Ray accelerator type.", metavar="TYPE", rich_help_panel=SCALE),
    ] = None


def with_options(command):
    """A command whose parameters are typed with a group above takes the group's fields as options (typer reads
    the signature this sets) and is called with the group built from their values."""
    signature = inspect.signature(command, eval_str=True)
    groups = {name: p.annotation for name, p in signature.parameters.items() if dataclasses.is_dataclass(p.annotation)}
    flat = []
    for name, parameter in signature.parameters.items():
        if name not in groups:
            flat.append(parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY))
            continue
        hints = typing.get_type_hints(groups[name], include_extras=True)
        flat += [
            inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=hints[f.name])
            for f in dataclasses.fields(groups[name])
        ]

    @functools.wraps(command)
    def wrapper(**values):
        built = {name: group(**{f.name: values.pop(f.name) for f in dataclasses.fields(group)}) for name, group in
                 groups.items()}  # fmt: skip
        return command(**values, **built)

    wrapper.__signature__ = signature.replace(parameters=flat)
    return wrapper
