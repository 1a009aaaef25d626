"""The `triton` backend: the in-repo Triton kernels of this folder (kernels.py, ops.py), for
prefill, append and decode, dense or paged, with the autotuned configuration recorded in each row.
Every Triton kernel takes the forms (a left window, sinks, a soft-cap) and an FP8 (e4m3) cache with scales a
tensor or a KV head; the Gluon kernels take none, so a spec with any runs the Triton kernels (backend_info
names the kernel that ran and the forms it computed). On a CPU they run under Triton's interpreter when
TRITON_INTERPRET=1 (slow; for tests)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from specs import DType, Workload
from specs.batch import MAX_SPEC_DECODE, causal_pairs, trailing_decodes

from .._paged import to_paged, to_paged_ragged
from ..base import Backend, Caps, KVLayout, VariantKey, register
from .schedule import gluon_pack_fits, gluon_pages_fit, on_work_list, uniform_launch_balance

if TYPE_CHECKING:
    from . import ops


def _ragged(spec) -> bool:
    return bool(spec.mix)


# gluon=long: below a prompt of this length the autotuned Triton kernel ran faster than the Gluon ping-pong one on
# the H100's drawn prompt batches (many short prompts: 0.70-0.93x the time), at or above it slower (up to 1.38x);
# docs/perf/generalization.md, "Gluon or Triton for a batch of prompts". Counted as work, the query-key pairs of the
# heaviest request: a 744-token chunk on 13,919 keys (draw:103) took 1.34x the time in the Triton kernel
GLUON_LONG = 1536
GLUON_ROWS = 128  # the Gluon kernels' row block (query rows a block): a prompt or chunk shorter wastes most of it


GLUON_LONG_PAIRS = causal_pairs(GLUON_LONG, GLUON_LONG)


def _long_runs_triton(spec) -> bool:
    """Where gluon=long runs the autotuned Triton kernel: a dense cache whose heaviest request computes fewer
    query-key pairs than a GLUON_LONG-token prompt. On pages Gluon stays: its page-wise TMA loads beat the Triton
    kernel's gathered ones (H100, page 16: draw:5 took 1.6x the time in Triton, the prompt batches 1.01x)."""
    batch = spec.batch
    return (
        spec.page_size is None
        and max(causal_pairs(q, k) for q, k in zip(batch.q_lens, batch.kv_lens)) < GLUON_LONG_PAIRS
    )


def _gluon_takes(spec) -> bool:
    """The specs the Gluon kernels take: plain attention (no window, sinks or soft-cap) at head dim 64 or 128 on a
    cache in its own dtype (no FP8)."""
    return not (spec.has_form or spec.kv_dtype) and spec.head_dim in (64, 128)


def _gluon_long_changes(spec) -> bool:
    """Where gluon=long runs another kernel than gluon=on: a spec the Gluon kernels take whose longest prompt or
    chunk is a Gluon row block (128 tokens) or more, where gluon=long runs the Triton kernel (_long_runs_triton)."""
    if spec.workload is Workload.DECODE or not _gluon_takes(spec):
        return False
    return spec.batch.max_q >= GLUON_ROWS and _long_runs_triton(spec)


def _gluon_varlen(spec) -> bool:
    """A ragged batch in a form the Gluon kernels take: where gluon_grid's values can differ."""
    return _ragged(spec) and _gluon_takes(spec)


def _prompts_grid(spec) -> bool:
    """Where gluon_grid=prompts takes the persistent grid: a batch whose requests past a speculative step (more than
    MAX_SPEC_DECODE query tokens, those the varlen launch takes) are all whole prompts, two or more of them a Gluon
    row block (128 tokens) or longer. H100, the generalization preset's drawn batches: the persistent grid took
    0.93x the time of tiles on the dense prompt batches (0.87-1.00, 12) and 0.96x on pages of 16 (0.91-1.02),
    0.93-0.97x on mixed batches of several prompts beside decodes, and up to 1.10-1.13x where one chunk on a long
    cache or one short prompt was the launch (docs/perf/generalization.md, "The persistent Gluon varlen grid")."""
    if not spec.mix:
        return False
    longer = [(q, k) for q, k in zip(spec.batch.q_lens, spec.batch.kv_lens) if q > MAX_SPEC_DECODE]
    return all(q == k for q, k in longer) and sum(q >= GLUON_ROWS for q, _ in longer) >= 2


# paged_prompt=long: from a cache of this many keys a request the Gluon varlen kernel takes a uniform paged prefill or
# append of a row block (128 tokens) or more. H100, pages of 16 and 64, Gluon ÷ the Triton prefill kernel: 0.70-0.86x
# the time on prefills of 2,048 and 8,192 tokens, 0.74-0.94x at 1,024 and 1,536, appends of 1,024 and 2,048 tokens on
# 4k and 16k caches 0.65-0.74x, 256-token chunks 0.66-0.72x; prompts of 512 keys 0.81x at batch 1 but 0.98-1.08x in
# batches of 8 and 32 (docs/perf/generalization.md, "Paged prompts through the Gluon varlen kernel")
PAGED_PROMPT_LONG = 1024


def _paged_prompt_long(spec) -> bool:
    """Where paged_prompt=long takes the Gluon varlen kernel: a cache of PAGED_PROMPT_LONG keys or more."""
    return spec.kv_len >= PAGED_PROMPT_LONG


def _paged_prompt(spec) -> bool:
    """A uniform prefill or append of a Gluon row block (128 tokens) or more on a paged cache, in a form the Gluon
    kernels take: where paged_prompt=gluon runs the Gluon varlen kernel instead of the Triton kernel's gathers."""
    uniform = spec.workload in (Workload.PREFILL, Workload.APPEND) and not spec.is_ragged
    return uniform and spec.page_size is not None and spec.q_len >= GLUON_ROWS and _gluon_takes(spec)


# the SMs of the Hopper GPUs the Gluon kernels run on (H100 and H200 SXM alike): where a uniform one-block launch's
# (batch, head) pairs outnumber half of them, gluon_balance=lpt keeps the static order
# (schedule.uniform_launch_balance)
HOPPER_SMS = 132


def _gluon_balance_changes(spec) -> bool:
    """Where gluon_balance's values launch something different: a Gluon launch (a form the Gluon kernels take, a
    dense cache or pages their loads take) of row blocks that walk different key counts. Ragged: the varlen launch
    (the requests before the trailing decodes) averages a row block a request (ops.gluon_varlen_worth_it). Uniform
    (a one-request mix too): a prefill or append of more than one row block (128 tokens); a dense append (the
    persistent grid) at any batch, a dense prefill or a paged one that paged_prompt=long sends to the Gluon varlen
    kernel where its (batch, head) pairs fill at most half a wave (HOPPER_SMS), which is where lpt changes its order."""
    if spec.workload is Workload.DECODE or not _gluon_takes(spec):
        return False
    if spec.page_size is not None and not gluon_pages_fit(spec.page_size):
        return False
    if spec.is_ragged:
        q_lens = list(spec.batch.q_lens)
        q_lens = q_lens[: trailing_decodes(q_lens) or len(q_lens)]
        return sum(q_lens) >= GLUON_ROWS * len(q_lens)
    if spec.workload not in (Workload.PREFILL, Workload.APPEND) or spec.q_len <= GLUON_ROWS:
        return False
    if spec.page_size is None and spec.workload is Workload.APPEND:
        return True  # the persistent grid: its CTAs' lists
    half_wave = uniform_launch_balance("lpt", spec.batch_size * spec.num_q_heads, HOPPER_SMS) == "lpt"
    return half_wave and (spec.page_size is None or _paged_prompt(spec) and _paged_prompt_long(spec))


def _gluon_pack_changes(spec) -> bool:
    """Where gluon_pack=gqa runs another kernel: a uniform dense prefill or append the one-block or persistent Gluon
    kernel takes (a row block or more, a form and dtype it takes) whose query group (2-64, dividing 64) can share a
    block's rows."""
    uniform = spec.workload in (Workload.PREFILL, Workload.APPEND) and not spec.is_ragged
    fits = gluon_pack_fits(spec.gqa_group, GLUON_ROWS)
    return uniform and spec.page_size is None and spec.q_len >= GLUON_ROWS and _gluon_takes(spec) and fits


def _has_decodes(spec) -> bool:
    return spec.workload in (Workload.DECODE, Workload.MIXED)


def _listed(spec) -> list[bool]:
    """Which of a batch's requests the split-KV work list takes (schedule.on_work_list): steps and decodes (at most
    MAX_SPEC_DECODE query tokens) and chunks of at most 64 (schedule.SPLIT_KV_MAX_CHUNK) on caches of 64 keys a token or
    more (draw:79's 51-token chunk on 25,164 keys); prompts and the other chunks go to the varlen kernel."""
    return [on_work_list(q, n) for q, n in zip(spec.batch.q_lens, spec.batch.kv_lens)]


def _short_only(spec) -> bool:
    """Speculative steps, alone (spec-decode) or beside decodes, or a mixed batch whose every request the work list
    takes (steps, decodes, chunks on long caches: 7 of the `generalization` preset's 105 drawn batches): the
    batches the split-KV work list takes whole. A uniform append whose chunk the work list takes (at most 64 tokens
    on 64 keys a token or more: a chunk of 32 on 8,192 keys, where the prefill kernel's program a KV head and row
    block walked the whole cache in 4.8x FA3's time at batch 1, H100) goes whole too. Causal only: the work list
    masks a step's rows bottom-right."""
    if not spec.causal:
        return False
    if spec.workload is Workload.SPEC_DECODE:
        return True
    if spec.workload is Workload.APPEND and not spec.mix:
        return on_work_list(spec.q_len, spec.kv_len)
    return spec.workload is Workload.MIXED and all(_listed(spec))


def _short_beside_long(spec) -> bool:
    """A mixed batch of requests the work list takes (at most MAX_SPEC_DECODE query tokens, or a chunk on a long
    cache: schedule.on_work_list) beside others (prompts, chunks), one of the listed ones outside the trailing
    decodes that Mixed already sends to a split-KV decode (a speculative step, a prompt of a few tokens, a decode
    before a longer request, a chunk of at most 64 tokens on 64 keys a token or more): 9 of the
    `generalization` preset's 105 drawn batches. `spec=split-kv` runs its listed requests, the trailing decodes with
    them, on the work list and the others through the varlen kernel (ops.MixedWork). A batch whose only listed
    requests are trailing decodes is left to Mixed, its decodes split as the `splits` key says (splits=work: the
    same work list). Causal only, as _short_only."""
    if not spec.causal or spec.workload is not Workload.MIXED:
        return False
    listed = _listed(spec)
    first = trailing_decodes(spec.batch.q_lens)
    return not all(listed) and any(listed[:first])


def _split_kv_changes(spec) -> bool:
    """Where `spec=split-kv` runs something else than the default: the batches the work list takes whole, and the
    mixed batches whose short requests it takes beside the varlen launch of the longer ones."""
    return _short_only(spec) or _short_beside_long(spec)


# spec=auto: a batch of steps or short chunks goes on the work list where the row-block kernel would run this many
# programs or fewer (a quarter of an H100's SMs on a dense cache, half on pages, whose gathered loads make the
# row-block walk slower), and a ragged one also where its cache is paged or its longest request has
# SPLIT_KV_AUTO_KEYS keys or more (one long walk among short ones)
SPLIT_KV_AUTO_PROGRAMS = 33
SPLIT_KV_AUTO_PROGRAMS_PAGED = 64
SPLIT_KV_AUTO_KEYS = 1536


def _row_block_programs(spec) -> int:
    """The row-block kernel's programs for a batch: a (request, KV head) and block of 128 rows, the rows a request's
    query tokens × its KV head's query group."""
    group = spec.gqa_group
    return spec.num_kv_heads * sum(-(-q * group // GLUON_ROWS) for q in spec.batch.q_lens)


def _auto_split_kv(spec) -> bool:
    """Where spec=auto (the default) runs the split-KV work list (what spec=split-kv runs) rather than the row-block
    kernels (varlen), among the batches the work list can take (_split_kv_changes). From 172 H100 A/B pairs of
    2026-12-06, the preset's draws, held-out draws and uniform shapes (docs/perf/decode-splits.md, "The default
    takes the work list where it won"), split-kv ÷ varlen where this rule takes the list: 54 mixed batches
    0.23-1.01, 71 batches of steps 0.13-1.07, 25 uniform appends 0.16-0.90 (geomean 0.60, 7 of 150 above 1.0);
    where it leaves them: 5 batches of steps 0.99-1.24 (uniform at 128 programs; ten short dense caches, 80), 17
    uniform appends 1.02-1.33 (64 programs or more on a dense cache, 128 or more on pages: equal walks that fill
    the SMs already)."""
    if not _split_kv_changes(spec):
        return False
    if spec.workload is Workload.MIXED:
        return True
    paged = spec.page_size is not None
    few = _row_block_programs(spec) <= (SPLIT_KV_AUTO_PROGRAMS_PAGED if paged else SPLIT_KV_AUTO_PROGRAMS)
    if not spec.is_ragged:  # a uniform batch, written as a workload or as a mix of equal requests alike
        return few
    return few or paged or spec.batch.max_kv >= SPLIT_KV_AUTO_KEYS


def _mixed(spec) -> bool:
    return spec.workload is Workload.MIXED


def _paged(spec) -> bool:
    return spec.page_size is not None


def _config_names() -> tuple[str, ...]:
    from .kernels import prefill_configs_by_name

    return ("auto", *prefill_configs_by_name())


# each default was chosen by an A/B on a GPU (docs/perf-notes.md); the other values measure the alternative,
# as its own rows (the variant is part of the row's identity). backend_info says what ran.
VARIANTS = (
    VariantKey(
        "gluon",
        ("on", "off", "long"),
        "on",
        contenders=("long",),
        applies=lambda s: s.workload is not Workload.DECODE,
        applies_by_value={"long": _gluon_long_changes},
        help="sm90 dense prefill/append and ragged prompt launches: the Gluon ping-pong kernel (on; H200 "
        "A/B: readme prefill 0.89-0.93x the time, append 0.90-0.96x), the autotuned Triton kernel (off), or "
        f"Gluon on pages and where a request computes the query-key pairs of a {GLUON_LONG}-token prompt or more, "
        "Triton on the lighter dense batches (long; H100, drawn prompt batches: 0.94x the time of on over 30, 0.94x "
        "over 24 held-out ones; docs/perf/generalization.md)",
    ),
    VariantKey(
        "gluon_grid",
        ("prompts", "tiles", "blocks", "persistent"),
        "prompts",
        applies=_gluon_varlen,
        applies_by_value={
            "tiles": lambda s: _gluon_varlen(s) and _prompts_grid(s),
            "persistent": lambda s: _gluon_varlen(s) and not _prompts_grid(s),
        },
        help="the Gluon varlen launch: the persistent grid where the varlen requests are two or more whole prompts, "
        "tiles elsewhere (prompts; H100, drawn batches, persistent ÷ tiles: 0.93x the time on the preset's dense "
        "prompt batches, 0.96x on pages of 16; held out, 0.95x and 0.98x over 20, 0.93x and 0.96x over 8 mixed "
        "ones; docs/perf/generalization.md), only the row blocks that hold rows (tiles; H200 A/B: prompt mixes "
        "0.93-1.00x the time of blocks), every row block of the longest request (blocks), or the row blocks that hold "
        "rows walked by one CTA an SM, heaviest first, the next block's loads under the current one's end "
        "(persistent; up to 1.13x the time of tiles where a small prompt or one chunk on a long cache leads)",
    ),
    VariantKey(
        "splits",
        ("waves", "fill", "work", "work-fused"),
        "waves",
        contenders=("work",),
        applies=_has_decodes,
        help="split-KV decode: whole waves by each request's own length (waves; H200 A/B: long-decode "
        "0.57-0.82x the time), about one program a multiprocessor by the longest cache (fill), or a flat work "
        "list of (request, KV head, key range) items, longest first, the split length chosen by the work "
        "(work: frameworks/triton/schedule.py; H100, 28 drawn decode batches: 0.64x the time of waves "
        "(geomean), 0.13x on one long cache among short ones, never above 1.01x; a contender of the default "
        "sweep; work-fused: the last piece of a split request merges them, one launch)",
    ),
    VariantKey(
        "spec",
        ("auto", "varlen", "split-kv"),
        "auto",
        contenders=("varlen", "split-kv"),
        applies=_split_kv_changes,
        applies_by_value={
            "varlen": lambda s: _split_kv_changes(s) and _auto_split_kv(s),
            "split-kv": lambda s: _split_kv_changes(s) and not _auto_split_kv(s),
        },
        help="speculative steps, short chunks on long caches, and mixed batches holding either: split-kv where it "
        "won on the H100 (auto: every mixed batch; steps or short chunks where the row-block kernel would run at most "
        f"{SPLIT_KV_AUTO_PROGRAMS} programs ({SPLIT_KV_AUTO_PROGRAMS_PAGED} on pages), and ragged ones on pages or "
        f"whose longest cache has {SPLIT_KV_AUTO_KEYS} keys or more; split-kv ÷ varlen 0.13-1.07 on the 150 batches "
        "auto takes of the A/B pairs, 0.99-1.33 on the 22 it leaves; docs/perf/decode-splits.md), "
        "the row-block kernels, "
        "a program a (request, KV head) and row block reading its whole cache (varlen; a uniform batch: the "
        "prefill kernel; steps beside decodes: two launches), or the split-KV "
        "work list of splits=work, its rows (query token, query head) pairs of a request and KV head, causal "
        "bottom-right, the keys split by the work and merged a row (split-kv; H100 A/B on the 24 drawn "
        "spec-decode batches: 0.49x the time, faster on 21; docs/perf/decode-splits.md); beside chunks or prompts, "
        "split-kv runs the requests of at most 16 tokens (steps, decodes, wherever they sit) on the work list and "
        "the rest through varlen, two launches (trailing decodes alone: left to splits); a chunk of at most 64 "
        "tokens on a cache of 64 keys a token or more goes on the work list too, its keys split over the SMs "
        "instead of walked by a program a KV head and row block (draw:79's 51 tokens on 25k keys; not yet measured)",
    ),
    VariantKey(
        "schedule",
        ("longest-first", "simple", "tiles"),
        "longest-first",
        applies=_ragged,
        help="the Triton varlen launch's order of requests (simple or tiles run the Triton varlen kernel, "
        "not the Gluon one)",
    ),
    VariantKey(
        "varlen_config",
        _config_names,
        "auto",
        applies=_ragged,
        help="the varlen launches at one of the autotuner's configurations (e.g. 128x64w8s2r128) instead of "
        "the autotuner's pick; pins the Triton varlen kernel",
    ),
    VariantKey(
        "varlen_tma",
        ("on", "off"),
        "on",
        applies=lambda s: _ragged(s) and not _paged(s),
        help="a dense ragged cache's K/V tiles by tensor descriptors (on: TMA, sm90; H200 A/B: dense "
        "prompt mixes 0.88-0.92x the time) or gathered pointer loads (off)",
    ),
    VariantKey(
        "page_prefetch",
        ("decode", "all", "off"),
        "decode",
        applies=_paged,
        help="gathered paged tiles load the next tile's page ids a step ahead in the decode kernels and a "
        "speculative step (decode; H100 A/B: long-decode at page 16 0.78x the time), in every kernel (all), "
        "or in none (off)",
    ),
    VariantKey(
        "mixed_streams",
        ("2", "1"),
        "2",
        applies=_mixed,
        help="a mixed batch's decodes on a second stream beside the chunks (2; H200 A/B 0.95-0.96x the "
        "time) or one stream (1)",
    ),
    VariantKey(
        "mixed_launches",
        ("2", "1"),
        "2",
        applies=_mixed,
        help="a mixed batch as the varlen launch for the chunks plus the split-KV decode for the decodes "
        "(2; H100: never slower beyond noise, 3-17% faster where decodes dominate) or one varlen launch (1; "
        "over spec=auto's work list too); a batch that spec=split-kv takes runs as that key says",
    ),
    VariantKey(
        "paged_prompt",
        ("long", "triton", "gluon"),
        "long",
        contenders=("gluon",),
        applies=_paged_prompt,
        applies_by_value={
            "gluon": lambda s: _paged_prompt(s) and not _paged_prompt_long(s),
            "triton": lambda s: _paged_prompt(s) and _paged_prompt_long(s),
        },
        help="a uniform prefill or append on pages: on sm90 the Gluon varlen kernel's page-wise TMA loads, the batch "
        f"packed as requests of one length, on caches of {PAGED_PROMPT_LONG} keys or more, the Triton prefill "
        "kernel below (long; H100, pages of 16 and 64, Gluon ÷ Triton: 0.65-0.94x the time on 36 prefills and "
        "appends of 256-8,192 tokens on 1k-16k caches, 0.81-1.08x on 512; docs/perf/generalization.md), the Triton "
        "prefill kernel (triton; gathered loads where a page is smaller than its key tile), or the Gluon kernel at "
        "any length (gluon; "
        "elsewhere the Triton kernel, which backend_info names)",
    ),
    VariantKey(
        "gluon_balance",
        ("lpt", "static"),
        "lpt",
        applies=_gluon_balance_changes,
        help="how the Gluon kernels' row blocks meet the SMs: the heaviest blocks (most key tiles) launched first "
        "and a persistent grid's blocks shared out least-loaded first (lpt; schedule.cta_assignment; a uniform batch "
        "of more (batch, head) pairs than half the SMs keeps the static one-block order: at batch 4 of 32 heads lpt "
        "took 1.01-1.03x), or a (batch, head)'s blocks in turn "
        "and CTA p taking blocks p, p + grid, ... (static, the order before 2026-12-06f). H100, lpt ÷ static: drawn "
        "prompt batches 0.97x the time dense, 0.99x on pages of 16 (0.98x over 7 held out), mixed 1.00x (0.98x over "
        "17 held out), one 1,024-token prompt 0.84x; docs/perf/generalization.md",
    ),
    VariantKey(
        "gluon_pack",
        ("off", "gqa"),
        "off",
        applies=_gluon_pack_changes,
        help="a uniform dense prefill or append through the Gluon kernel: a 128-row block of one query head (off), or "
        "of one KV head's query group, 128 / group positions × the group's heads (gqa: FA3's and FA4's pack_gqa; "
        "the K/V tiles read once for the group and the causal edge every 32 positions at group 4; the one-block grid; "
        "compiled for sm_90a, not yet measured: docs/perf/generalization.md)",
    ),
)


# the keys whose values choose among the Gluon kernels (and their grids, orders and paged loads) or TMA loads, which
# run on sm90 GPUs only: elsewhere every value runs what the default runs, so a row under another value would claim
# what did not run (the backend is `unavailable` for it there, with the reason)
SM90_KEYS = ("gluon", "gluon_grid", "gluon_balance", "paged_prompt", "varlen_tma", "gluon_pack")


def _sm90(device) -> bool:
    import torch

    return device.type == "cuda" and not _interpreting() and torch.cuda.get_device_capability(device) == (9, 0)


@register("triton")
class TritonAttention(Backend):
    library = "triton"
    min_compute_capability = (8, 0)
    upstream = "frameworks/triton/kernels.py (in-repo)"
    variants = VARIANTS
    caps = Caps(
        dtypes={DType.BF16, DType.FP16},
        head_dims={64, 128, 256},  # powers of two (tl.arange); 256 (Gemma-2) with its own tile configurations
        layouts={KVLayout.DENSE, KVLayout.PAGED},
        ragged=True,  # one varlen launch for prefills, chunks and decodes together
        devices={"cuda", "cpu"},  # on a CPU under Triton's interpreter
        windows=True,  # the tiles before the window skipped; a windowed decode splits the window's keys only
        sinks=True,  # in the kernel's epilogue, or once in the combine of a split decode
        softcap=True,
        kv_dtypes={"", "fp8_e4m3"},  # K/V read as e4m3, converted in the kernel, the scales folded in
        kv_scales={"tensor", "head"},
    )

    def variant_applies(self, spec) -> bool:
        """Each key's own test (Backend.variant_applies), and where two keys meet: the splits key changes nothing on
        a batch the spec key sends whole or in part to the work list (its decodes go there too), and spec=varlen
        nothing on a mixed batch that mixed_launches=1 already keeps in one varlen launch."""
        if not super().variant_applies(spec):
            return False
        keys = self.variant_keys()
        if self.choice["splits"] != keys["splits"].default and (self._split_kv_whole(spec) or
                                                                 self._split_kv_short(spec)):  # fmt: skip
            return False
        return not (self.choice["spec"] == "varlen" and self._one_launch(spec))

    def availability(self, device):
        if device.type == "cpu" and not _interpreting():
            return "on a CPU the Triton kernels run only under the interpreter: set TRITON_INTERPRET=1"
        reason = super().availability(device)
        if reason:
            return reason
        keys = self.variant_keys()
        asked = [f"{k}={self.choice[k]}" for k in SM90_KEYS if self.choice[k] != keys[k].default]
        if asked and not _sm90(device):
            return (f"{', '.join(asked)}: chooses among the Gluon kernels and TMA loads, which run on sm90 GPUs only; "
                    f"on this {device.type} device it would run what the default runs")  # fmt: skip
        return None

    def prepare(self, spec, inputs):
        from . import ops

        self._page = spec.page_size
        self._forms = ops.Forms(spec.window, inputs.sinks if spec.sinks else None, spec.softcap, inputs.k_scale,
                                inputs.v_scale)  # fmt: skip
        if inputs.ragged:
            return self._prepare_ragged(spec, inputs, ops)

        k, v, table = inputs.k, inputs.v, None
        if spec.page_size is not None:
            paged = to_paged(k, v, spec.page_size)
            k, v, table = paged.k_pages, paged.v_pages, paged.block_table
        ahead = self._prefetch()
        if spec.workload is Workload.DECODE and self._split_rule() in ops.WORK_RULES:
            self._op = ops.WorkDecode(inputs.q, k, v, [spec.kv_len] * spec.batch_size, block_table=table,
                                      page_size=spec.page_size, prefetch_pages=ahead.decode,
                                      fused=self._split_rule() == "work-fused", forms=self._forms)  # fmt: skip
        elif spec.workload is Workload.DECODE:
            self._op = ops.Decode(inputs.q, k, v, spec.kv_len, table, spec.page_size, prefetch_pages=ahead.decode,
                                  split_rule=self._split_rule(), forms=self._forms)  # fmt: skip
        elif self._split_kv_whole(spec):  # the steps' rows on the work list: [B, q_len, Hq, D] gives each q_len
            self._op = ops.WorkDecode(inputs.q, k, v, [spec.kv_len] * spec.batch_size, block_table=table,
                                      page_size=spec.page_size, prefetch_pages=ahead.decode,
                                      forms=self._forms)  # fmt: skip
        else:
            # a speculative step (2-16 rows on a long cache) is a decode's memory-bound loop: it takes the decode
            # kernels' page ids a step ahead (H200 A/B of 2026-11-29, paged spec-decode: 0.82-0.86x the time)
            ahead_here = ahead.prefill or ahead.decode and spec.workload is Workload.SPEC_DECODE
            gluon = self._gluon_prefill(spec, inputs, ops) or self._gluon_paged(spec, inputs, ops, k, v, table)
            self._op = gluon or ops.Prefill(
                inputs.q, k, v, spec.kv_len, spec.is_masked, table, spec.page_size, prefetch_pages=ahead_here,
                forms=self._forms,
            )  # fmt: skip
        return self._op

    def _gluon_paged(self, spec, inputs, ops, k_pages, v_pages, table):
        """paged_prompt=gluon, or long on caches of PAGED_PROMPT_LONG keys or more: a uniform prefill or append on
        pages through the Gluon varlen kernel (GluonPagedPrompts) where the Gluon kernels may run (_gluon: the pages
        fit its loads, an sm90 GPU); None otherwise."""
        choice = self.choice["paged_prompt"]
        wanted = choice == "gluon" or choice == "long" and _paged_prompt_long(spec)
        if not (wanted and _paged_prompt(spec) and self._gluon(spec, inputs, ops)):
            return None
        from .gluon_prefill import GluonPagedPrompts

        return GluonPagedPrompts(inputs.q, k_pages, v_pages, table, spec.kv_len, spec.is_masked, spec.page_size,
                                 grid=self._gluon_grid(spec), balance=self.choice["gluon_balance"])  # fmt: skip

    def _gluon_prefill(self, spec, inputs, ops):
        """The ping-pong Gluon kernel where it applies (a dense cache of exactly kv_len keys, contiguous
        inputs, an sm90 GPU) and the gluon variant allows it; None otherwise. 128 × 128 tiles, two stages;
        an append in the persistent grid, whose producer loads the next block under the current one's end
        (H200 exploration of 2026-11-29, docs/perf-notes.md: the persistent 128 × 128 append took 0.81–0.85× the
        time of the one-block 128 × 64 CTAs it replaces; a prefill ran 1.03–1.04× slower persistent)."""
        q, k, v = inputs.q, inputs.k, inputs.v
        if not (self._gluon(spec, inputs, ops) and spec.page_size is None and k.shape[1] == spec.kv_len):
            return None  # the switch first: a bad value is an error
        if spec.workload not in (Workload.PREFILL, Workload.APPEND) or spec.q_len < GLUON_ROWS:
            return None  # a 128-row block a head is the kernel's unit: speculative steps and short chunks waste it
        from .gluon_prefill import GluonPrefill

        append = spec.workload is Workload.APPEND
        pack = self.choice["gluon_pack"] == "gqa" and _gluon_pack_changes(spec)  # the one-block grid, packed
        return GluonPrefill(q, k, v, spec.kv_len, spec.is_masked, 128, 128, 4, stages=2, pingpong=True,
                            persistent=append and not pack, balance=self.choice["gluon_balance"],
                            pack=pack)  # fmt: skip

    def _gluon(self, spec, inputs, ops) -> bool:
        """Whether the Gluon kernels may run: the gluon variant allows it (gluon=long: the cache is paged, or the
        heaviest request computes the query-key pairs of a GLUON_LONG-token prompt or more), the spec is plain
        attention at head dim 64 or 128 on a cache in its own dtype (the Gluon kernels take no window, sinks,
        soft-cap or FP8: such a spec runs the Triton kernels, which backend_info names), the cache is dense or its pages
        fit the varlen kernel's TMA loads (ops.gluon_pages_fit: the uniform kernel takes dense caches only), the
        tensors contiguous, and the GPU an sm90 one (gluon_capable)."""
        if self.choice["gluon"] == "off":
            return False
        if self.choice["gluon"] == "long" and _long_runs_triton(spec):
            return False
        if not _gluon_takes(spec):
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
        schedule = self.choice["schedule"]
        ahead = self._prefetch()
        pinned = self._varlen_config()
        # a schedule other than the default or a pinned configuration asks for the Triton varlen kernel: the
        # Gluon one has neither (it launches longest-first, at its one configuration)
        gluon = self._gluon(spec, inputs, ops) and schedule == "longest-first" and pinned is None
        if batch.kind == "decode" and self._split_rule() in ops.WORK_RULES:  # a work list: pieces sized by the work
            self._op = ops.WorkDecode(inputs.q, k, v, batch.kv_lens, prefetch_pages=ahead.decode,
                                      fused=self._split_rule() == "work-fused", forms=self._forms,
                                      **cache)  # fmt: skip
        elif batch.kind == "decode":  # split-KV with a split count a request
            self._op = ops.RaggedDecode(inputs.q, k, v, kv_lens, batch.max_kv, prefetch_pages=ahead.decode,
                                        split_rule=self._split_rule(), forms=self._forms, **cache)  # fmt: skip
        elif self._split_kv_whole(spec):  # speculative steps on the work list, each request's q_len its rows
            self._op = ops.WorkDecode(inputs.q, k, v, batch.kv_lens, q_lens=batch.q_lens, prefetch_pages=ahead.decode,
                                      forms=self._forms, **cache)  # fmt: skip
        elif self._split_kv_short(spec):  # the short requests on the work list, the longer ones through varlen
            self._op = ops.MixedWork(inputs.q, k, v, batch.q_lens, batch.kv_lens, spec.causal, schedule=schedule,
                                     streams=self._streams(), prefetch_pages=ahead,
                                     varlen_tma=self._varlen_tma(inputs.device), varlen_config=pinned, gluon=gluon,
                                     gluon_grid=self._gluon_grid(spec), forms=self._forms,
                                     gluon_balance=self.choice["gluon_balance"], **cache)  # fmt: skip
        elif self._launches() == 2 and batch.decode_split is not None:
            self._op = ops.Mixed(inputs.q, k, v, batch.cu_seqlens_q, batch.kv_lens, spec.causal, schedule=schedule,
                                 streams=self._streams(), prefetch_pages=ahead, split_rule=self._split_rule(),
                                 varlen_tma=self._varlen_tma(inputs.device), varlen_config=pinned, gluon=gluon,
                                 gluon_grid=self._gluon_grid(spec), forms=self._forms,
                                 gluon_balance=self.choice["gluon_balance"], **cache)  # fmt: skip
        elif gluon and ops.gluon_varlen_worth_it(batch.q_lens):
            from .gluon_prefill import GluonVarlen

            self._op = GluonVarlen(inputs.q, k, v, inputs.cu_seqlens_q, cache.get("cu_seqlens_k"), batch.max_q,
                                   spec.causal, block_table=cache.get("block_table"), page_size=spec.page_size,
                                   kv_lens=kv_lens, grid=self._gluon_grid(spec),
                                   balance=self.choice["gluon_balance"])  # fmt: skip
        else:
            self._op = ops.Varlen(inputs.q, k, v, inputs.cu_seqlens_q, kv_lens, batch.max_q, spec.causal,
                                  schedule=schedule, prefetch_pages=ahead.prefill,
                                  use_tma=self._varlen_tma(inputs.device), config=pinned, forms=self._forms,
                                  **cache)  # fmt: skip
        return self._op

    def _varlen_config(self):
        """The variant varlen_config=<name> (kernels.config_name, e.g. 128x64w8s2r128) runs the varlen
        launches with that one of the autotuner's configurations: an A/B of two schedules or load paths at
        one config, apart from what the autotuner picks under each (docs/perf-notes.md, the tiles A/B).
        "auto", the default, lets the autotuner pick; backend_info says `pinned,` before a pinned config."""
        from .kernels import prefill_configs_by_name

        configs = prefill_configs_by_name()
        name = self.choice["varlen_config"]
        return None if name == "auto" else configs[name]

    def _varlen_tma(self, device) -> bool:
        from . import ops

        wanted = self.choice["varlen_tma"] == "on"
        return wanted and ops.tma_capable(device)

    def _gluon_grid(self, spec) -> str:
        """The Gluon varlen launch's grid: the variant's, gluon_grid=prompts resolved for this batch (persistent
        where _prompts_grid says, else tiles); backend_info names the grid that ran."""
        grid = self.choice["gluon_grid"]
        if grid == "prompts":
            return "persistent" if _prompts_grid(spec) else "tiles"
        return grid

    def _split_rule(self) -> str:
        return self.choice["splits"]

    def _split_kv_whole(self, spec) -> bool:
        """The spec variant's split-kv on a batch of speculative steps (every request of at most
        ops.SPLIT_KV_MAX_Q query tokens, specs.batch.MAX_SPEC_DECODE; decodes beside them too) or a mixed batch whose
        every request the work list takes (_short_only: chunks on long caches among them): its requests through the
        split-KV work list (ops.WorkDecode's q_lens) instead of the row-block kernels or Mixed's two launches."""
        return _short_only(spec) and self._split_kv(spec)

    def _split_kv(self, spec) -> bool:
        """Whether the spec key sends what the work list can take to it: split-kv, or auto where _auto_split_kv
        unless mixed_launches=1 asks for a mixed batch in one varlen launch."""
        choice = self.choice["spec"]
        return choice == "split-kv" or choice == "auto" and _auto_split_kv(spec) and not self._one_launch(spec)

    def _one_launch(self, spec) -> bool:
        """A mixed batch that mixed_launches=1 keeps in one varlen launch."""
        return spec.workload is Workload.MIXED and self._launches() == 1

    def _split_kv_short(self, spec) -> bool:
        """The spec variant's split-kv on a mixed batch of short requests beside longer ones (_short_beside_long):
        the short ones (steps, decodes, chunks on long caches: schedule.on_work_list) on the work list, the others
        through the varlen kernel (ops.MixedWork), before the mixed_launches key's choice between Mixed and one
        varlen launch, which it leaves to the other batches."""
        return _short_beside_long(spec) and self._split_kv(spec)

    def _streams(self) -> int:
        return int(self.choice["mixed_streams"])

    def _prefetch(self) -> ops.PagePrefetch:
        from . import ops

        mode = self.choice["page_prefetch"]
        return ops.PagePrefetch(prefill=mode == "all", decode=mode != "off")

    def _launches(self) -> int:
        return int(self.choice["mixed_launches"])

    def run_info(self) -> dict:
        if not hasattr(self, "_op"):
            return {}
        info = self._op.info()  # the kernels' configuration; the page size is the adapter's to say
        return info if self._page is None else {**info, "page_size": self._page}


def _interpreting() -> bool:
    """Whether Triton runs its interpreter (Triton's own TRITON_INTERPRET, read through its knobs)."""
    try:
        from triton import knobs
    except ImportError:
        return False
    return bool(knobs.runtime.interpret)
