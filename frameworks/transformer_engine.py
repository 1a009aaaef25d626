"""Transformer Engine `DotProductAttention` with qkv_format="bshd": causal (Sq = Sk), bottom-right
causal for append, no mask for decode; GQA through num_gqa_groups. TE picks its own backend
(FusedAttention = cuDNN, FlashAttention, or unfused): the one that ran, read from the kernel names,
goes in backend_info. If TE cannot be imported (for instance because a broken FlashAttention-4 it
probes at import raises), the backend is unavailable with TE's own error.
Upstream: https://github.com/NVIDIA/TransformerEngine"""

from __future__ import annotations

import contextlib
import os

from specs import DType

from ._profile import kernel_names
from .base import Backend, Caps, Unsupported, register


def torch_no_grad():
    import torch

    return torch.no_grad()


def te_backend_from_kernels(names: list[str]) -> str:
    """Which of TE's attention backends launched these kernels."""
    text = " ".join(names).lower()
    if "cudnn" in text or "fmha" in text or "fprop" in text:
        return "FusedAttention (cuDNN)"
    if "flash" in text:
        return "FlashAttention"
    return "UnfusedDotProductAttention" if names else "unknown"


def loaded_library_dir(soname_prefix: str, maps: str | None = None) -> str | None:
    """The folder of the shared library this process has loaded whose file name starts with `soname_prefix`
    (`libcudnn.so`: the cuDNN PyTorch links, not its libcudnn_graph/_cnn parts), from /proc/self/maps."""
    if maps is None:
        try:
            maps = open("/proc/self/maps").read()  # noqa: SIM115 - one read
        except OSError:
            return None
    for line in maps.splitlines():
        fields = line.split(maxsplit=5)
        path = fields[5] if len(fields) == 6 else ""
        if os.path.basename(path).startswith(soname_prefix):
            return os.path.dirname(path)
    return None


@contextlib.contextmanager
def torch_cudnn_for_te(maps: str | None = None):
    """TE's import loads `libcudnn.so` from CUDNN_HOME/CUDNN_PATH/CUDA_HOME or the system's library path
    before any Python package, so next to a PyTorch with its own cuDNN it loads a second, different one;
    that one then binds to the libcudnn_graph PyTorch loaded (cuDNN loads its parts by soname) once an SDPA
    cuDNN call has run, and the import fails ("libcudnn_cnn.so.9: undefined symbol ... libcudnn_graph.so.9",
    the H200 scaling sweep of 2026-11-23). So every part of the cuDNN PyTorch has loaded is loaded first (a
    later lookup by soname finds them), and for the import only CUDNN_PATH names their folder: TE and PyTorch
    share one cuDNN. Unchanged where the user set CUDNN_HOME or CUDNN_PATH."""
    import torch

    if torch.cuda.is_available():
        torch.backends.cudnn.version()  # loads PyTorch's cuDNN if its import did not
    folder = None if {"CUDNN_HOME", "CUDNN_PATH"} & os.environ.keys() else loaded_library_dir("libcudnn.so", maps)
    if folder is None:
        yield None
        return
    import ctypes
    import glob

    for part in sorted(glob.glob(os.path.join(folder, "libcudnn*.so.*[0-9]"))):  # its graph/cnn/ops/engine parts too
        try:
            ctypes.CDLL(part, mode=ctypes.RTLD_GLOBAL)
        except OSError:  # a part that does not load: TE's import then says what it misses, as an unavailable row
            pass
    os.environ["CUDNN_PATH"] = folder
    try:
        yield folder
    finally:
        os.environ.pop("CUDNN_PATH", None)


@register("transformer-engine")
class TransformerEngine(Backend):
    library = "transformer_engine.pytorch"
    min_compute_capability = (8, 0)
    upstream = "transformer_engine.pytorch.DotProductAttention"
    distribution = "transformer_engine"
    # dense only: TE's paged path needs its InferenceParams cache; ragged batches in the THD format. Forms:
    # window_size=(w, 0) with a bottom-right causal mask, sinks as its learnable softmax offset
    # (softmax_type="learnable", where this TE has it); no logit soft-cap. Expanded MLA (q/k 192, v 128)
    # through kv_channels=(192, 128)
    caps = Caps(dtypes={DType.BF16, DType.FP16}, ragged=True, windows=True, sinks=True, mla={"mla-expanded"})

    def supports(self, spec):
        if spec.kv_dtype:
            return (
                "kv_dtype fp8_e4m3: TE's FP8 attention (fp8_dpa under fp8_autocast) quantizes bf16 inputs with its "
                "recipe's own scales; it is not handed e4m3 tensors with given descales, so it is not run here"
            )
        if spec.sinks and spec.is_ragged:
            return (
                "sinks on a ragged batch: TE 2.20 runs learnable sinks in its unfused path, whose bottom-right padding "
                "mask of a THD batch fails on requests of different lengths (H100, 2026-12-06: 'The size of tensor a "
                "(8192) must match the size of tensor b (512)'); uniform batches take sinks"
            )
        return super().supports(spec)

    def availability(self, device):
        with torch_cudnn_for_te():  # the first import of TE in this process happens here
            return super().availability(device)

    def prepare(self, spec, inputs):
        import inspect

        import transformer_engine.pytorch as te

        kw = {}
        if inputs.ragged:  # packed tokens with cu_seqlens and TE's bottom-right causal padding mask
            layout, mask = "thd", "padding_causal_bottom_right" if spec.causal else "padding"
            kw = dict(cu_seqlens_q=inputs.cu_seqlens_q, cu_seqlens_kv=inputs.cu_seqlens_k,
                      max_seqlen_q=spec.batch.max_q, max_seqlen_kv=spec.batch.max_kv)  # fmt: skip
        elif not spec.is_masked and spec.window is None:
            layout, mask = "bshd", "no_mask"
        else:
            layout, mask = "bshd", "causal" if spec.q_len == spec.kv_len else "causal_bottom_right"
        form: dict = {}
        if spec.window is not None:
            form["window_size"] = (spec.window, 0)
        if spec.sinks:
            if "softmax_type" not in inspect.signature(te.DotProductAttention).parameters:
                raise Unsupported("sinks: this Transformer Engine has no softmax_type (learnable sinks came in TE 2.8)")
            form["softmax_type"] = "learnable"
        attention = te.DotProductAttention(
            num_attention_heads=spec.num_q_heads,
            kv_channels=spec.head_dim if spec.value_dim == spec.head_dim else (spec.head_dim, spec.value_dim),
            num_gqa_groups=spec.num_kv_heads,
            attention_dropout=0.0,
            qkv_format=layout,
            attn_mask_type=mask,
            **form,
        )
        if spec.sinks:  # the learnable offset is TE's sink: one logit a head, [1, Hq, 1, 1]
            offset = getattr(attention, "softmax_offset", None)
            if offset is None or offset.numel() != spec.num_q_heads:
                raise Unsupported("sinks: this Transformer Engine's DotProductAttention has no [Hq] softmax_offset")
            with torch_no_grad():
                offset.copy_(inputs.sinks.view(offset.shape).to(offset.dtype))
        q, k, v = inputs.q, inputs.k, inputs.v
        shape = (*q.shape[:-1], spec.value_dim)

        def call():
            return attention(q, k, v, **kw).view(shape)  # TE returns [..., Hq · D]

        prefix = "thd;" if inputs.ragged else ""  # uniform rows keep the backend_info of earlier runs
        window = f";window_size=({spec.window}, 0)" if spec.window is not None else ""
        window += ";softmax_type=learnable" if spec.sinks else ""
        self._info = f"{prefix}mask={mask}{window};backend=" + te_backend_from_kernels(kernel_names(call))
        return call

    def run_info(self) -> str:
        return getattr(self, "_info", "")
