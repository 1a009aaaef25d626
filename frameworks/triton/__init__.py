"""The `triton` backend: the in-repo Triton kernels of this folder (kernels.py, ops.py), for
prefill, append and decode, dense or paged, with the autotuned configuration recorded in each row.
On a CPU they run under Triton's interpreter when TRITON_INTERPRET=1 (slow; for tests)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, ClassVar

from specs import DType, Workload

from .._paged import to_paged, to_paged_ragged
from ..base import Backend, Caps, KVLayout, env_choice, register

if TYPE_CHECKING:
    from . import ops


@register("triton")
class TritonAttention(Backend):
    library = "triton"
    min_compute_capability = (8, 0)
    upstream = "frameworks/triton/kernels.py (in-repo)"
    # a mixed batch (chunks, then decodes): the varlen kernel for the chunks and the split-KV decode for
    # the decodes, two launches on one stream (2), or everything in one varlen launch (1). Two since the
    # H100 serving run of 2026-11-23 (docs/perf-notes.md): never slower beyond noise, 3-17% faster where
    # decodes dominate. ATTNBENCH_TRITON_MIXED_LAUNCHES=1 measures the other (backend_info says which ran)
    mixed_launches: ClassVar[int] = 2
    # the varlen launch's order of requests (ops.SCHEDULES): heaviest first, or batch order ("simple");
    # ATTNBENCH_TRITON_SCHEDULE picks the other for a measurement (backend_info says which ran)
    schedule: ClassVar[str] = "longest-first"
    # the two launches of a mixed batch on one stream (1) or the decodes on a second one (2), to overlap the
    # memory-bound decodes with the chunks. Two since the H200 A/B of 2026-11-29 (docs/perf-notes.md): 0.95-0.96
    # of the time on chunked-prefill and decode-heavy, dense and paged, every round. backend_info says
    # streams=N (1 on a CPU, which has no streams); ATTNBENCH_TRITON_MIXED_STREAMS=1 measures the other
    mixed_streams: ClassVar[int] = 2
    # gathered paged tiles load the next tile's page ids a step ahead ("1": in every kernel; "decode": in the
    # split-KV decode kernels and a uniform speculative step's prefill kernel, since the H200 A/B of 2026-11-29:
    # paged spec-decode 0.82-0.86x the time) or their own in their step ("0"). "decode" since the H100 A/B of
    # 2026-11-23 (docs/perf-notes.md): long-decode at page 16 0.78× the time, decode-heavy and prefill-heavy
    # unchanged within 1% but one prefill-heavy case 1.07×. ATTNBENCH_TRITON_PAGE_PREFETCH=0|1|decode picks
    # another (backend_info says kv_loads=gather,page_ids_ahead for each launch that ran so)
    page_prefetch: ClassVar[str] = "decode"
    # how the split-KV decodes size their splits (ops.SPLIT_RULES): "fill" (about one program a multiprocessor,
    # by the longest cache) or "waves" (whole waves, each request's own length: ops.choose_splits_waves).
    # "waves" since the H200 A/B of 2026-11-29 (docs/perf-notes.md): long-decode 0.57-0.82x the time, batch
    # 1 x 128k 0.88x. ATTNBENCH_TRITON_SPLITS=fill measures the other (backend_info says split_rule=waves where it ran)
    split_rule: ClassVar[str] = "waves"
    # a dense ragged cache's K/V tiles in the varlen launches: gathered pointer loads ("0") or tensor
    # descriptors over the packed cache ("1": TMA, sm90+). "1" since the H200 A/B of 2026-11-29: dense prompt
    # mixes 0.88-0.92x the time, chunked-prefill 0.99-1.035x. ATTNBENCH_TRITON_VARLEN_TMA=0 measures the other
    # (backend_info says kv_loads=tma or gather for each launch)
    varlen_tma: ClassVar[str] = "1"
    # a dense uniform prefill or append on sm90: the Gluon kernel with FA3's warp roles ("1":
    # gluon_prefill.gluon_pp_prefill_kernel, two consumer warpgroups in ping-pong fed by a producer warp; an
    # append in its persistent grid) or the autotuned Triton kernel ("0"), for 128 query rows or more. "1" since
    # the H200 A/Bs of 2026-11-29 (docs/perf-notes.md): readme prefill 0.89-0.93x the time, append 0.90-0.96x
    # (then at 128 x 64; at 128 x 128 in the persistent grid the append reads 0.93-0.99 of FA3's TFLOP/s). The
    # same kernel over a ragged batch (gluon_prefill.GluonVarlen) runs the prompts and chunks of a dense or paged
    # cache where they average a 128-row block a request (not a batch of decodes or speculative steps): dense
    # prompt mixes 0.88-0.95x the time, chunked-prefill 0.78-0.81x, decode-heavy 0.91-0.97x; at page 16 (a TMA
    # load a page) the prompt and chunk mixes 0.74-0.85x, decode-heavy 0.90-0.94x.
    # ATTNBENCH_TRITON_GLUON=0 measures the other (backend_info says gluon-pp where it ran)
    gluon: ClassVar[str] = "1"
    # the Gluon varlen launch's grid (ops.GLUON_GRIDS): every row block of the longest request for each request
    # ("blocks": a program past its request's rows returns at once) or only the blocks that hold rows, listed
    # on the host when the op is prepared ("tiles"). "tiles" since the H200 A/B of 2026-11-30 (docs/perf-notes.md):
    # prefill-lognormal 0.93-1.00x the time, prefill-heavy 0.97x, dense and at page 16; chunked-prefill and
    # decode-heavy, which have no empty programs, 1.00x. ATTNBENCH_TRITON_GLUON_GRID=blocks measures the other
    # (backend_info says grid=blocks or grid=tiles)
    gluon_grid: ClassVar[str] = "tiles"
    caps = Caps(
        dtypes={DType.BF16, DType.FP16},
        head_dims={64, 128},
        layouts={KVLayout.DENSE, KVLayout.PAGED},
        ragged=True,  # one varlen launch for prefills, chunks and decodes together
        devices={"cuda", "cpu"},  # on a CPU under Triton's interpreter
    )

    def availability(self, device):
        if device.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
            return "on a CPU the Triton kernels run only under the interpreter: set TRITON_INTERPRET=1"
        return super().availability(device)

    def prepare(self, spec, inputs):
        from . import ops

        self._page = spec.page_size
        if inputs.ragged:
            return self._prepare_ragged(spec, inputs, ops)

        k, v, table = inputs.k, inputs.v, None
        if spec.page_size is not None:
            paged = to_paged(k, v, spec.page_size)
            k, v, table = paged.k_pages, paged.v_pages, paged.block_table
        ahead = self._prefetch()
        if spec.workload is Workload.DECODE:
            self._op = ops.Decode(inputs.q, k, v, spec.kv_len, table, spec.page_size, prefetch_pages=ahead.decode,
                                  split_rule=self._split_rule())  # fmt: skip
        else:
            # a speculative step (2-16 rows on a long cache) is a decode's memory-bound loop: it takes the decode
            # kernels' page ids a step ahead (H200 A/B of 2026-11-29, paged spec-decode: 0.82-0.86x the time)
            ahead_here = ahead.prefill or ahead.decode and spec.workload is Workload.SPEC_DECODE
            self._op = self._gluon_prefill(spec, inputs, ops) or ops.Prefill(
                inputs.q, k, v, spec.kv_len, spec.is_masked, table, spec.page_size, prefetch_pages=ahead_here
            )
        return self._op

    def _gluon_prefill(self, spec, inputs, ops):
        """The ping-pong Gluon kernel where it applies (a dense cache of exactly kv_len keys, contiguous
        inputs, an sm90 GPU) and ATTNBENCH_TRITON_GLUON allows it; None otherwise. 128 × 128 tiles, two stages;
        an append in the persistent grid, whose producer loads the next block under the current one's end
        (H200 exploration of 2026-11-29, docs/perf-notes.md: the persistent 128 × 128 append took 0.81–0.85× the
        time of the one-block 128 × 64 CTAs it replaces; a prefill ran 1.03–1.04× slower persistent)."""
        q, k, v = inputs.q, inputs.k, inputs.v
        if not (self._gluon(spec, inputs, ops) and spec.page_size is None and k.shape[1] == spec.kv_len):
            return None  # the switch first: a bad value is an error
        if spec.workload not in (Workload.PREFILL, Workload.APPEND) or spec.q_len < 128:
            return None  # a 128-row block a head is the kernel's unit: speculative steps and short chunks waste it
        from .gluon_prefill import GluonPrefill

        append = spec.workload is Workload.APPEND
        return GluonPrefill(q, k, v, spec.kv_len, spec.is_masked, 128, 128, 4, stages=2, pingpong=True,
                            persistent=append)  # fmt: skip

    def _gluon(self, spec, inputs, ops) -> bool:
        """Whether the Gluon kernels may run: ATTNBENCH_TRITON_GLUON allows it, the cache is dense or its pages
        fit the varlen kernel's TMA loads (ops.gluon_pages_fit: the uniform kernel takes dense caches only), the
        tensors contiguous, and the GPU an sm90 one (gluon_capable)."""
        if env_choice("ATTNBENCH_TRITON_GLUON", self.gluon, ("0", "1")) == "0":
            return False
        if spec.page_size is not None and not ops.gluon_pages_fit(spec.page_size):
            return False
        if not all(t.is_contiguous() for t in (inputs.q, inputs.k, inputs.v)):
            return False
        return ops.gluon_capable(inputs.q.device)

    def _prepare_ragged(self, spec, inputs, ops):
        import torch

        batch = spec.batch
        kv_lens = torch.tensor(batch.kv_lens, dtype=torch.int32, device=inputs.device)
        k, v, cache = inputs.k, inputs.v, {"cu_seqlens_k": inputs.cu_seqlens_k}
        if spec.page_size is not None:
            paged = to_paged_ragged(k, v, batch.kv_lens, spec.page_size)
            k, v = paged.k_pages, paged.v_pages
            cache = {"block_table": paged.block_table, "page_size": spec.page_size}
        schedule = env_choice("ATTNBENCH_TRITON_SCHEDULE", self.schedule, ops.SCHEDULES)
        ahead = self._prefetch()
        pinned = self._varlen_config()
        # a schedule other than the default or a pinned configuration asks for the Triton varlen kernel: the
        # Gluon one has neither (it launches longest-first, at its one configuration)
        gluon = self._gluon(spec, inputs, ops) and schedule == "longest-first" and pinned is None
        if batch.kind == "decode":  # split-KV with a split count a request
            self._op = ops.RaggedDecode(inputs.q, k, v, kv_lens, batch.max_kv, prefetch_pages=ahead.decode,
                                        split_rule=self._split_rule(), **cache)  # fmt: skip
        elif self._launches() == 2 and batch.decode_split is not None:
            self._op = ops.Mixed(inputs.q, k, v, batch.cu_seqlens_q, batch.kv_lens, spec.causal, schedule=schedule,
                                 streams=self._streams(), prefetch_pages=ahead, split_rule=self._split_rule(),
                                 varlen_tma=self._varlen_tma(inputs.device), varlen_config=pinned, gluon=gluon,
                                 gluon_grid=self._gluon_grid(), **cache)  # fmt: skip
        elif gluon and ops.gluon_varlen_worth_it(batch.q_lens):
            from .gluon_prefill import GluonVarlen

            self._op = GluonVarlen(inputs.q, k, v, inputs.cu_seqlens_q, cache.get("cu_seqlens_k"), batch.max_q,
                                   spec.causal, block_table=cache.get("block_table"), page_size=spec.page_size,
                                   kv_lens=kv_lens, grid=self._gluon_grid())  # fmt: skip
        else:
            self._op = ops.Varlen(inputs.q, k, v, inputs.cu_seqlens_q, kv_lens, batch.max_q, spec.causal,
                                  schedule=schedule, prefetch_pages=ahead.prefill,
                                  use_tma=self._varlen_tma(inputs.device), config=pinned, **cache)  # fmt: skip
        return self._op

    def _varlen_config(self):
        """ATTNBENCH_TRITON_VARLEN_CONFIG=<name> (kernels.config_name, e.g. 128x64w8s2r128) runs the varlen
        launches with that one of the autotuner's configurations: an A/B of two schedules or load paths at
        one config, apart from what the autotuner picks under each (docs/perf-notes.md, the tiles A/B).
        "auto", the default, lets the autotuner pick; backend_info says `pinned,` before a pinned config."""
        from .kernels import prefill_configs_by_name

        configs = prefill_configs_by_name()
        name = env_choice("ATTNBENCH_TRITON_VARLEN_CONFIG", "auto", ("auto", *configs))
        return None if name == "auto" else configs[name]

    def _varlen_tma(self, device) -> bool:
        from . import ops

        wanted = env_choice("ATTNBENCH_TRITON_VARLEN_TMA", self.varlen_tma, ("0", "1")) == "1"
        return wanted and ops.tma_capable(device)

    def _gluon_grid(self) -> str:
        from . import ops

        return env_choice("ATTNBENCH_TRITON_GLUON_GRID", self.gluon_grid, ops.GLUON_GRIDS)

    def _split_rule(self) -> str:
        from . import ops

        return env_choice("ATTNBENCH_TRITON_SPLITS", self.split_rule, ops.SPLIT_RULES)

    def _streams(self) -> int:
        return int(env_choice("ATTNBENCH_TRITON_MIXED_STREAMS", str(self.mixed_streams), ("1", "2")))

    def _prefetch(self) -> ops.PagePrefetch:
        from . import ops

        mode = env_choice("ATTNBENCH_TRITON_PAGE_PREFETCH", self.page_prefetch, ("0", "1", "decode"))
        return ops.PagePrefetch(prefill=mode == "1", decode=mode != "0")

    def _launches(self) -> int:
        return int(env_choice("ATTNBENCH_TRITON_MIXED_LAUNCHES", str(self.mixed_launches), ("1", "2")))

    def run_info(self) -> str:
        if not hasattr(self, "_op"):
            return ""
        info = self._op.config()  # the kernels' configuration; the page size is the adapter's to say
        return info if self._page is None else f"{info};page_size={self._page}"
