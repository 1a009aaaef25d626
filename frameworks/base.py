"""The adapter contract: a backend declares what it can run as data (`Caps`) and returns a timed
closure.

    @register("my-backend")
    class MyBackend(Backend):
        library = "my_lib"                        # import name; its version goes in every row
        caps = Caps(dtypes={BF16, FP16}, head_dims={64, 128}, layouts={DENSE, PAGED})

        def prepare(self, spec, inputs):          # everything but the kernel happens here
            ...
            return lambda: my_lib.attention(q, k, v)   # O as [B, Sq, Hq, D]

The generic `supports(spec)` reads `caps`; an adapter adds a rule `caps` cannot say in `check(spec)`.
The harness owns inputs, the reference check, timing and storage; an adapter owns only its setup and
the kernel call. Adapters import their library lazily (inside methods), so a missing library makes
the backend *unavailable* instead of breaking the import of `frameworks`. This module (and
`_profile`) is all an adapter needs besides `specs`: `frameworks/` never imports `harness/`.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, ClassVar

from specs import DType, ExperimentSpec, Workload

if TYPE_CHECKING:
    import torch


class Unsupported(Exception):
    """Raised by `prepare()` when the library itself declines the spec (its own capability check);
    the harness records the row as `unsupported` with this message as the reason."""


@dataclass(frozen=True)
class AttentionInputs:
    """Uniform batch: q [B, Sq, Hq, D]; k, v [B, Sk, Hkv, D]. Ragged batch (`ragged`): packed,
    q [Σ q_len, Hq, D] and k, v [Σ kv_len, Hkv, D], request i's rows at cu_seqlens_q[i] …
    cu_seqlens_q[i + 1] (int32 offsets on the device; `spec.batch` has them as Python ints too).
    Contiguous, in the spec's dtype, on one device. Adapters convert layouts in `prepare()` and never
    write into these tensors; a ragged call returns O packed like q, of width spec.value_dim. `sinks`
    (spec.sinks): one fp32 logit a query head, [Hq], that joins each row's softmax denominator with no value.
    MLA absorbed: q [..., Hq, kv_lora_rank + rope_dim], k the latent cache [..., 1, kv_lora_rank + rope_dim]
    and v its first kv_lora_rank columns (a view of k, not contiguous). MLA expanded: v's width is v_head_dim."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    cu_seqlens_q: torch.Tensor | None = None
    cu_seqlens_k: torch.Tensor | None = None
    sinks: torch.Tensor | None = None
    # FP8 (spec.kv_dtype): k and v in e4m3 with fp32 scales (0-d: per tensor; [Hkv]: per KV head), value ≈
    # e4m3 · scale; q too with fp8_attention (q_scale, 0-d); `unquantized` holds the inputs before quantization
    q_scale: torch.Tensor | None = None
    k_scale: torch.Tensor | None = None
    v_scale: torch.Tensor | None = None
    unquantized: AttentionInputs | None = None

    @property
    def ragged(self) -> bool:
        return self.cu_seqlens_q is not None

    @property
    def device(self) -> torch.device:
        return self.q.device

    @property
    def scale(self) -> float:
        return self.q.shape[-1] ** -0.5

    @property
    def quantized(self) -> bool:
        """K and V in FP8 (with their scales)."""
        return self.k_scale is not None


class KVLayout(str, Enum):
    DENSE = "dense"  # K/V as [B, Sk, Hkv, D]
    PAGED = "paged"  # K/V in pages of page_size tokens, placed through a block table

    def __str__(self) -> str:
        return self.value


def _frozen(values: Iterable | None) -> frozenset | None:
    return None if values is None else frozenset(values)


@dataclass(frozen=True)
class Caps:
    """What a backend can run, as data. `None` for head_dims means any."""

    dtypes: frozenset = frozenset(DType)
    head_dims: frozenset | None = None
    workloads: frozenset = frozenset(Workload)
    layouts: frozenset = frozenset({KVLayout.DENSE})
    page_size_multiple: int = 1  # paged: the page size must be a multiple of this
    ragged: bool = False  # takes requests of different lengths in one call
    gqa: bool = True  # native grouped-query attention (K/V never repeated)
    devices: frozenset = frozenset({"cuda"})
    # attention forms (spec.window, spec.sinks, spec.softcap): a backend opts in to each; one that does
    # not is `unsupported` with the reason, never run with the form dropped
    windows: bool = False  # a left sliding window
    sinks: bool = False  # learned per-head sink logits
    softcap: bool = False  # logit soft-capping
    kv_dtypes: frozenset = frozenset({""})  # KV cache dtypes: "" (the spec's dtype) and "fp8_e4m3"
    kv_scales: frozenset = frozenset({"tensor", "head"})  # FP8 scale granularities it takes
    fp8_attention: bool = False  # Q in e4m3 too, with descales
    mla: frozenset = frozenset()  # latent-attention forms: "mla-absorbed", "mla-expanded"

    def __post_init__(self) -> None:
        for name in ("dtypes", "head_dims", "workloads", "layouts", "devices", "kv_dtypes", "kv_scales", "mla"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        object.__setattr__(self, "dtypes", frozenset(DType(d) for d in self.dtypes))
        object.__setattr__(self, "workloads", frozenset(Workload(w) for w in self.workloads))
        object.__setattr__(self, "layouts", frozenset(KVLayout(x) for x in self.layouts))

    def reason(self, spec: ExperimentSpec) -> str | None:
        """Why this declaration rules the spec out, or None."""
        if spec.dtype not in self.dtypes:
            return f"dtype {spec.dtype}: takes {_listed(self.dtypes)}"
        reason = self._form_reason(spec)
        if reason:
            return reason
        if self.head_dims is not None and spec.head_dim not in self.head_dims:
            return f"head_dim {spec.head_dim}: takes {_listed(self.head_dims)}"
        if spec.workload not in self.workloads:
            return f"workload {spec.workload}: takes {_listed(self.workloads)}"
        layout = KVLayout.DENSE if spec.page_size is None else KVLayout.PAGED
        if layout not in self.layouts:
            if layout is KVLayout.PAGED:
                return f"paged KV (page_size {spec.page_size}): this backend reads dense K/V only"
            return "dense KV: this backend reads a paged KV cache only (give a page size)"
        if spec.page_size is not None and spec.page_size % self.page_size_multiple:
            return f"page_size {spec.page_size}: needs a multiple of {self.page_size_multiple} tokens"
        if getattr(spec, "is_ragged", False) and not self.ragged:
            return "ragged batch: this backend takes requests of one length only"
        if spec.gqa_group > 1 and not self.gqa:
            return f"GQA group {spec.gqa_group}: this backend needs as many K/V heads as query heads"
        if getattr(spec, "window", None) is not None and not self.windows:
            return f"window {spec.window}: this backend does not take a sliding window"
        if getattr(spec, "sinks", False) and not self.sinks:
            return "sinks: this backend does not take attention sinks"
        if getattr(spec, "softcap", None) is not None and not self.softcap:
            return f"softcap {spec.softcap:g}: this backend does not take a logit soft-cap"
        return None

    def _form_reason(self, spec: ExperimentSpec) -> str | None:
        """The attention forms of the spec (FP8, MLA) this declaration rules out, or None."""
        form = getattr(spec, "form", "mha")
        if form != "mha" and form not in self.mla:
            forms = sorted(f.removeprefix("mla-") for f in self.mla)
            takes = f"takes {', '.join(forms)} only" if self.mla else "this backend has no latent attention"
            return f"MLA {form.removeprefix('mla-')} form: {takes}"
        kv_dtype = getattr(spec, "kv_dtype", "")
        if kv_dtype not in self.kv_dtypes:
            return f"kv_dtype {kv_dtype}: this backend takes a KV cache in the spec's dtype only"
        if kv_dtype and spec.kv_scale not in self.kv_scales:
            return f"kv_scale {spec.kv_scale}: FP8 scales {' or '.join(sorted(self.kv_scales))} only"
        if getattr(spec, "fp8_attention", False) and not self.fp8_attention:
            return "fp8_attention: this backend takes FP8 K/V with queries in the spec's dtype, not Q in e4m3"
        return None

    def summary(self) -> dict[str, str]:
        """One cell per capability, for `run.py list`."""
        kv = "+".join(str(x) for x in sorted(self.layouts, key=str))
        if KVLayout.PAGED in self.layouts and self.page_size_multiple > 1:
            kv += f" (page ×{self.page_size_multiple})"
        return {
            "dtypes": _listed(self.dtypes),
            "head dims": "any" if self.head_dims is None else _compact(sorted(self.head_dims)),
            "workloads": _listed(self.workloads) if self.workloads != frozenset(Workload) else "all",
            "KV": kv,
            "ragged": "yes" if self.ragged else "no",
            "GQA": "yes" if self.gqa else "no",
            "forms": "+".join(
                n for n, on in (("window", self.windows), ("sinks", self.sinks), ("softcap", self.softcap)) if on
            )
            or "none",  # fmt: skip
            "devices": _listed(self.devices),
            "FP8": _fp8_summary(self),
            "MLA": ", ".join(sorted(f.removeprefix("mla-") for f in self.mla)) or "no",
        }


def _fp8_summary(caps: Caps) -> str:
    """'no', 'KV (tensor)', 'KV (tensor, head) + QKV'."""
    if "fp8_e4m3" not in caps.kv_dtypes:
        return "no"
    return f"KV ({', '.join(sorted(caps.kv_scales, reverse=True))})" + (" + QKV" if caps.fp8_attention else "")


def _compact(values: list[int]) -> str:
    """'64, 128', or '8–256 step 8' for a long even progression."""
    steps = {b - a for a, b in zip(values, values[1:])}
    if len(values) > 4 and len(steps) == 1:
        return f"{values[0]}–{values[-1]} step {steps.pop()}"
    return ", ".join(map(str, values))


def _listed(values: Iterable) -> str:
    order = {str(m): i for i, m in enumerate([*DType, *Workload])}
    return ", ".join(sorted((str(v) for v in values), key=lambda s: (order.get(s, 99), len(s), s)))


class VariantError(ValueError):
    """A variant key or value a backend does not declare; the message names the allowed ones."""


@dataclass(frozen=True)
class VariantKey:
    """One way a backend can be run differently (a variant key), declared as data beside its caps:
    the values it takes, the default, and the non-default values a default sweep also measures
    because they can win (`contenders`), on the specs where the key changes anything (`applies`)."""

    name: str
    values: tuple[str, ...] | Callable[[], tuple[str, ...]]  # a callable: values known once the library imports
    default: str
    help: str = ""
    contenders: tuple[str, ...] = ()
    applies: Callable[[ExperimentSpec], bool] | None = None  # None: on every spec
    # a value that changes something on fewer specs than the key's other values: its own test (value -> applies)
    applies_by_value: Mapping[str, Callable[[ExperimentSpec], bool]] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not callable(self.values):
            object.__setattr__(self, "values", tuple(self.values))
            if self.default not in self.values or not set(self.contenders) <= set(self.values):
                raise ValueError(f"variant key {self.name}: default and contenders must be among {self.values}")
        object.__setattr__(self, "contenders", tuple(self.contenders))

    def allowed(self) -> tuple[str, ...]:
        """The values this key takes (where they come from the library and it does not import: the default)."""
        if not callable(self.values):
            return self.values
        try:
            return tuple(self.values())
        except Exception:  # noqa: BLE001 - a missing library: the backend is unavailable anyway
            return (self.default,)

    def applies_to(self, spec: ExperimentSpec, value: str | None = None) -> bool:
        """Whether this key (at `value`, where that value has a test of its own) changes anything for the spec."""
        test = self.applies_by_value.get(value, self.applies) if value is not None else self.applies
        return test is None or bool(test(spec))


_BACKEND_ARG = re.compile(r"^\s*([^\[\]\s]+)\s*(?:\[([^\[\]]*)\])?\s*$")


def parse_backend_arg(text: str) -> tuple[str, dict[str, str]]:
    """'triton[splits=fill,gluon=off]' -> ('triton', {'splits': 'fill', 'gluon': 'off'}); a VariantError
    for text of another shape (the values are checked against the backend by `variant_string`)."""
    match = _BACKEND_ARG.match(text)
    if not match:
        raise VariantError(f"backend {text!r}: expected NAME or NAME[key=value,...]")
    try:
        return match.group(1), parse_variant(match.group(2) or "", where=f"backend {text!r}")
    except VariantError as exc:  # a key without its value ('triton[splits]'): say what the key takes
        if "*" in {item.strip() for item in (match.group(2) or "").split(",")}:  # 'triton[*,spec=varlen]'
            raise VariantError(f"backend {text!r}: * stands alone, NAME[*] (the defaults and every contender); "
                               "name the keys of one variant as NAME[key=value,...]") from None  # fmt: skip
        raise VariantError(f"{exc}{_what_it_takes(match.group(1), match.group(2) or '')}") from None


def _what_it_takes(name: str, body: str) -> str:
    """'; splits takes waves, fill, …' for a registered backend's key written without a value, else its keys."""
    backend = BACKENDS.get(name)
    if backend is None:
        return ""
    if not backend.variants:
        return f"; {name} has no variant keys"
    keys = backend.variant_keys()
    for item in body.split(","):
        key = item.partition("=")[0].strip()
        if key in keys:
            return f"; {key} takes {', '.join(keys[key].allowed())}"
    return f"; its keys: {', '.join(keys)}"


def parse_variant(body: str, where: str = "variant") -> dict[str, str]:
    """'splits=fill,gluon=off' -> {'splits': 'fill', 'gluon': 'off'} ('' -> {})."""
    choice: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in body.split(","))):
        key, eq, value = (part.strip() for part in item.partition("="))
        if not eq or not key or not value:
            raise VariantError(f"{where}: variant {item!r} is not key=value")
        if key in choice:
            raise VariantError(f"{where}: variant key {key!r} given twice")
        choice[key] = value
    return choice


def label(backend: str, variant: str) -> str:
    """How a (backend, variant) is named in tables, plots and commands: 'triton[splits=fill]'."""
    return f"{backend}[{variant}]" if variant else backend


class Backend:
    name: ClassVar[str] = ""  # set by @register
    library: ClassVar[str] = "torch"  # module whose import decides availability and gives the version
    caps: ClassVar[Caps] = Caps()
    min_compute_capability: ClassVar[tuple[int, int] | None] = None  # CUDA only
    upstream: ClassVar[str] = ""  # where the kernel comes from, for `run.py list`
    distribution: ClassVar[str | None] = None  # pip distribution whose version the rows carry, when the module has none
    variants: ClassVar[tuple[VariantKey, ...]] = ()  # the backend's variant keys, as data
    # variants of several keys that a default sweep also measures, where the keys win together and not alone
    # (triton-mla: block_h with splits=work and grid=heads); each a variant string, canonicalised when planned
    contender_combinations: ClassVar[tuple[str, ...]] = ()

    def __init__(self, variant: str | Mapping[str, str] = "") -> None:
        """An instance runs one variant: `variant` is a canonical string ('splits=fill') or a mapping of
        the non-default keys; `self.choice` holds every key's value (defaults filled in)."""
        given = parse_variant(variant, f"backend {self.name}") if isinstance(variant, str) else dict(variant)
        self.variant = self.variant_string(given)
        self.choice = {key.name: key.default for key in self.variants} | given

    @classmethod
    def variant_keys(cls) -> dict[str, VariantKey]:
        return {key.name: key for key in cls.variants}

    @classmethod
    def variant_string(cls, choice: Mapping[str, str]) -> str:
        """The canonical variant: the non-default keys as key=value, in declaration order, joined by
        commas ('' = every default); a VariantError naming the allowed keys or values."""
        keys = cls.variant_keys()
        for name, value in choice.items():
            if name not in keys:
                allowed = ", ".join(keys) if keys else "none (this backend has no variants)"
                raise VariantError(f"backend {cls.name}: no variant key {name!r}; its keys: {allowed}")
            if value not in keys[name].allowed():
                raise VariantError(
                    f"backend {cls.name}: variant {name}={value!r} is not valid; expected one of "
                    f"{', '.join(keys[name].allowed())} (default {keys[name].default})"
                )
        return ",".join(f"{k}={choice[k]}" for k in keys if k in choice and choice[k] != keys[k].default)

    @classmethod
    def contender_variants(cls) -> list[str]:
        """The canonical variants a default sweep measures: the defaults, then each contender value, then the
        contender combinations."""
        single = [cls.variant_string({key.name: value}) for key in cls.variants for value in key.contenders]
        combined = [cls.variant_string(parse_variant(c, f"backend {cls.name}")) for c in cls.contender_combinations]
        return ["", *single, *(c for c in combined if c not in single)]

    def variant_applies(self, spec: ExperimentSpec) -> bool:
        """False when a non-default key of this variant changes nothing for the spec (the row would
        repeat the default's): such a task is not planned."""
        keys = self.variant_keys()
        return all(keys[k].applies_to(spec, v) for k, v in self.choice.items() if v != keys[k].default)

    @classmethod
    def capability_cells(cls) -> dict[str, str]:
        """The declared capabilities, one cell each, for `run.py list`."""
        return cls.caps.summary()

    def availability(self, device: torch.device) -> str | None:
        """None if this backend can run on `device`, else why not (missing library or device)."""
        if device.type not in self.caps.devices:
            return f"needs a {' or '.join(sorted(self.caps.devices))} device, this run is on {device.type}"
        try:
            importlib.import_module(self.library)
        except Exception as exc:  # ImportError, but also broken builds raising OSError/RuntimeError
            return f"cannot import {self.library}: {type(exc).__name__}: {exc}".splitlines()[0][:300]
        if device.type == "cuda" and self.min_compute_capability is not None:
            import torch

            cc = torch.cuda.get_device_capability(device)
            if cc < self.min_compute_capability:
                need = ".".join(map(str, self.min_compute_capability))
                return f"needs compute capability >= {need}, this GPU is {cc[0]}.{cc[1]}"
        return None

    def version(self) -> str:
        if self.distribution:
            from importlib import metadata

            try:
                return metadata.version(self.distribution)
            except metadata.PackageNotFoundError:
                pass
        try:
            module = importlib.import_module(self.library)
        except Exception:
            return ""
        return str(getattr(module, "__version__", "")) or _dist_version(self.library)

    def supports(self, spec: ExperimentSpec) -> str | None:
        """None if the spec can run, else the reason: the declaration first, then the adapter's own rule."""
        return self.caps.reason(spec) or self.check(spec)

    def check(self, spec: ExperimentSpec) -> str | None:
        """A rule of the library that `caps` cannot say (override where needed); None = no objection."""
        return None

    def prepare(self, spec: ExperimentSpec, inputs: AttentionInputs) -> Callable[[], torch.Tensor]:
        raise NotImplementedError

    def run_info(self) -> dict | str:
        """After the first call: what actually ran (path, kernel, autotuned config, splits) as a dict,
        or a legacy 'path;key=value;…' string (`info_dict` reads both); {} or '' when it does not say."""
        return ""


def info_dict(info: Mapping | str | None) -> dict:
    """A row's backend_info as a dict: a JSON object as written since backend_info is structured, or
    an older 'path;key=value;flag' string (bare tokens joined by '+' under "path")."""
    if not info:
        return {}
    if isinstance(info, Mapping):
        return dict(info)
    text = str(info).strip()
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, dict):
            return value
    out: dict = {}
    bare = []
    for token in filter(None, (t.strip() for t in text.split(";"))):
        key, eq, value = token.partition("=")
        if eq and re.fullmatch(r"[A-Za-z_][\w.-]*", key.strip()):
            out[key.strip()] = value.strip()
        else:
            bare.append(token)
    if bare:
        out = {"path": "+".join(bare), **out}
    return out


def info_text(info: Mapping | str | None) -> str:
    """backend_info as stored: a compact JSON object ('' when empty)."""
    value = info_dict(info)
    return json.dumps(value, separators=(",", ":"), default=str) if value else ""


def probe_build(attention: Callable, inputs: AttentionInputs) -> None:
    """Call a library's [B, S, H, D] attention on one token: wheels built for some head dims or
    dtypes only refuse here (Unsupported), not inside the timed loop."""
    first = (lambda t: t[None, :1]) if inputs.ragged else (lambda t: t[:1, :1])
    try:
        attention(first(inputs.q), first(inputs.k), first(inputs.v))
    except RuntimeError as exc:
        text = str(exc).lower()
        if "build" in text or any(limit in text for limit in ("not supported", "only supports", "does not support")):
            raise Unsupported(f"this build: {exc}") from None
        raise


def fa_form(spec: ExperimentSpec) -> dict:
    """FlashAttention's keyword arguments for the spec's window and soft-cap ({} for plain attention, so
    calls without a form stay as they were): window_size=(window, 0), softcap."""
    form: dict = {}
    if spec.window is not None:
        form["window_size"] = (spec.window, 0)
    if spec.softcap is not None:
        form["softcap"] = spec.softcap
    return form


def first_output(result):
    """The output tensor of a library call that returns it alone or as (out, lse, ...)."""
    return result[0] if isinstance(result, (tuple, list)) else result


def _dist_version(module_name: str) -> str:
    from importlib import metadata

    for dist in metadata.packages_distributions().get(module_name.split(".")[0], []):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return ""


BACKENDS: dict[str, type[Backend]] = {}


def register(name: str) -> Callable[[type[Backend]], type[Backend]]:
    def wrap(cls: type[Backend]) -> type[Backend]:
        if name in BACKENDS and BACKENDS[name] is not cls:
            raise ValueError(f"backend {name!r} is registered twice ({BACKENDS[name].__module__}, {cls.__module__})")
        cls.name = name
        BACKENDS[name] = cls
        return cls

    return wrap


class BrokenAdapter(Backend):
    """Stands in for an adapter module that failed to import: listed, never run, with the error."""

    import_error: ClassVar[str] = ""
    # it declares nothing: what the adapter would run is unknown, so it never appears to run anything
    caps = Caps(dtypes=(), workloads=(), layouts=(), head_dims=(), ragged=False, gqa=False, devices={"cuda", "cpu"})
    upstream = "(adapter did not import)"

    @classmethod
    def capability_cells(cls) -> dict[str, str]:
        return dict.fromkeys(Caps().summary(), "? (did not import)")

    def supports(self, spec) -> str | None:
        return self.import_error or "the adapter did not import"

    def availability(self, device) -> str | None:
        return self.import_error


def register_broken(module: str, exc: BaseException) -> str:
    """Register `module`'s import failure as an unavailable backend named after its file."""
    name = module.rsplit(".", 1)[-1].replace("_", "-")
    if name in BACKENDS:
        name += "-broken"
    error = f"adapter {module} failed to import: {type(exc).__name__}: {exc}".splitlines()[0][:300]
    cls = type(f"Broken_{module.replace('.', '_')}", (BrokenAdapter,), {"__module__": module, "import_error": error})
    register(name)(cls)
    return name
