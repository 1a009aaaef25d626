"""Gluon (Triton's explicit-layout dialect) prefill/append kernels for Hopper, written where plain Triton 3.6
cannot say what FA3 does. Dense caches, bf16/fp16, head dim 64 or 128, bottom-right causal or none, K/V
through TMA. Gluon has no interpreter: `tools/aot_check.py` compiles them for sm_90a on the CPU (a test), and
tests/test_gpu.py checks them against the reference on the GPU.

- The explicit-wait kernel without warp roles (FA3's intra-warpgroup overlap alone), which only
  tools/triton_explore.py runs, lives in tools/gluon_overlap.py beside its launcher.
- `gluon_pp_prefill_kernel` and `gluon_pp_varlen_kernel` (the backend's dense prefill/append, uniform and
  ragged, on sm90: `GluonPrefill(pingpong=True)`, `GluonVarlen`) add FA3's warp roles (`gl.warp_specialize`).
  One producer warp with 24 registers issues every K/V load into a STAGES-deep ring and waits on each
  stage's `empty` barrier. The 128-row block is two consumer warpgroups of 64 rows (240 registers), which
  pass a token (an mbarrier each) so that one issues its MMAs while the other runs its softmax (ping-pong),
  and hand each stage back after the MMAs that read it. A producer warp alone, with 8 warps computing as
  one consumer, gained nothing (docs/perf-notes.md; that kernel, `gluon_ws_prefill_kernel`, is in the
  history at commit f9b359c)."""

from __future__ import annotations

import torch
import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import mbarrier, tma, warpgroup_mma, warpgroup_mma_wait
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

from .kernels import LOG2E
from .schedule import (
    GLUON_GRIDS,
    check_balance,
    cta_assignment,
    gluon_item_tiles,
    gluon_pack_fits,
    gluon_pages_fit,
    gluon_varlen_items,
    gluon_varlen_tiles,
    heaviest_first,
    sm_count,
    subset,
    uniform_launch_balance,
)


@gluon.jit
def _issue_load(desc, row, col, bar, smem, pred):
    mbarrier.expect(bar, desc.block_type.nbytes, pred=pred)
    tma.async_copy_global_to_shared(desc, [row, col], bar, smem, pred=pred)


@gluon.jit
def _softmax_tile(s, m_i, l_i, start, full, rows, offset, SK, qk_scale, CAUSAL: gl.constexpr,
                  BLOCK_N: gl.constexpr, s_layout: gl.constexpr):  # fmt: skip
    """Online softmax of one score tile (log2 units): (p, m_new, l_new, alpha). Tiles at or past `full`
    are masked (keys ≥ SK, and bottom-right causal)."""
    if start >= full:
        cols = start + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, s_layout))
        keep = gl.expand_dims(cols < SK, 0)
        if CAUSAL:
            keep = keep & (gl.expand_dims(cols, 0) <= gl.expand_dims(rows + offset, 1))
        s = gl.where(keep, s, float("-inf"))
    m_new = gl.maximum(m_i, gl.max(s, 1) * qk_scale)
    alpha = gl.exp2(m_i - m_new)
    p = gl.exp2(s * qk_scale - gl.expand_dims(m_new, 1))
    return p, m_new, l_i * alpha + gl.sum(p, 1), alpha


@gluon.jit
def _kv_tile_load(desc, smem, ready, kv_row, kv_col, j, BT, bt_off, last_page, BLOCK_N: gl.constexpr,
                  PAGE: gl.constexpr):  # fmt: skip
    """Key tile j (BLOCK_N rows) into `smem`, arriving on `ready`. Dense (PAGE 0): rows kv_row + j·BLOCK_N of
    the descriptor. Paged: the descriptor spans every page ([pages·PAGE, Hkv·D]) and the block table row at
    BT + bt_off maps the request's pages; a page that holds whole tiles gives one load, smaller pages one load
    a page into the tile's rows (page ids past the request's last page read its last page: masked keys)."""
    if PAGE == 0:
        mbarrier.expect(ready, desc.block_type.nbytes)
        tma.async_copy_global_to_shared(desc, [kv_row + j * BLOCK_N, kv_col], ready, smem)
    elif PAGE >= BLOCK_N:
        page = gl.load(BT + bt_off + (j * BLOCK_N) // PAGE)
        mbarrier.expect(ready, desc.block_type.nbytes)
        tma.async_copy_global_to_shared(desc, [page * PAGE + (j * BLOCK_N) % PAGE, kv_col], ready, smem)
    else:
        PER: gl.constexpr = BLOCK_N // PAGE
        mbarrier.expect(ready, desc.block_type.nbytes * PER)
        for i in gl.static_range(PER):
            page = gl.load(BT + bt_off + gl.minimum(j * PER + i, last_page))
            tma.async_copy_global_to_shared(desc, [page * PAGE, kv_col], ready, smem.slice(i * PAGE, PAGE))


@gluon.jit
def _ws_loader(k_desc, v_desc, k_smem, v_smem, k_ready, v_ready, k_empty, v_empty, kv_row, kv_col, n_tiles, BT,
               bt_off, last_page, BLOCK_N: gl.constexpr, STAGES: gl.constexpr, PAGE: gl.constexpr, it0=0):  # fmt: skip
    """The producer warp: K_j and V_j into stage (it0 + j) % STAGES once the consumers have released it (a
    stage's `empty` barrier starts one phase ahead, so the first round does not wait). it0: the ring's tiles
    a persistent CTA loaded for its earlier blocks."""
    for j in range(n_tiles):
        st = (it0 + j) % STAGES
        phase = (((it0 + j) // STAGES) & 1) ^ 1
        mbarrier.wait(k_empty.index(st), phase=phase)
        _kv_tile_load(k_desc, k_smem.index(st), k_ready.index(st), kv_row, kv_col, j, BT, bt_off, last_page,
                      BLOCK_N, PAGE)  # fmt: skip
        mbarrier.wait(v_empty.index(st), phase=phase)
        _kv_tile_load(v_desc, v_smem.index(st), v_ready.index(st), kv_row, kv_col, j, BT, bt_off, last_page,
                      BLOCK_N, PAGE)  # fmt: skip


@gluon.jit
def _ws_release(bar):
    """Hand a stage back to the producer: every consumer warp past its MMA wait (a barrier of the consumer
    warps only, `bar.sync 0, 32 × num_warps` in the PTX), then one thread arrives (Gluon's arrive is one
    thread's; the barrier counts one arrival)."""
    gl.thread_barrier()
    mbarrier.arrive(bar, count=1)


@gluon.jit
def _pp_consumer(q_smem, k_smem, v_smem, q_bar, k_ready, v_ready, k_empty, v_empty, tok, O, s_ob, s_os, s_oh, b, h,
                 o_row0, n_tiles, m0, offset, SQ, SK, qk_scale, HALF: gl.constexpr, CAUSAL: gl.constexpr,
                 BLOCK_N: gl.constexpr, HEAD_DIM: gl.constexpr, STAGES: gl.constexpr, it0=0, t0=0, q_phase=0,
                 q_empty=None, RELEASE_Q: gl.constexpr = False, PACK: gl.constexpr = 1):  # fmt: skip
    """One consumer warpgroup of the ping-pong kernel: rows m0 + 64·HALF … + 63 against every K/V tile of
    the 128-row block (the extra keys of the upper half are masked), its own output stored here. Before it
    issues a tile's MMAs it waits for the token `tok[HALF]`; after issuing them it passes the token on, so
    the two warpgroups' MMAs alternate and each one's softmax runs under the other's MMAs (FA3's ping-pong).
    Output row r (of SQ) goes to O + b·s_ob + (o_row0 + r)·s_os: a uniform batch's element b, or a packed
    ragged batch's request starting at row o_row0. A persistent CTA's later blocks continue the ring and
    the token where the last block left them: its tile 0 is the CTA's tile it0, its first token wait the
    t0-th, its Q the q_phase-th in its buffer, which RELEASE_Q hands back (`q_empty`) once the last Q·Kᵀ is
    done. PACK > 1 (GQA packed): h is a KV head and a row is (position, query head of its group), the group's
    PACK heads of one position in consecutive rows, so row r is position r // PACK of query head h·PACK + r % PACK
    (m0 counts packed rows; the causal bound and the store follow each row's position)."""
    HM: gl.constexpr = 64
    dtype: gl.constexpr = q_smem.dtype
    s_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                       instr_shape=[16, BLOCK_N, 16])  # fmt: skip
    o_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                       instr_shape=[16, HEAD_DIM, 16])  # fmt: skip
    p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
    r0 = m0 + HALF * HM
    rows = r0 + gl.arange(0, HM, layout=gl.SliceLayout(1, s_layout))
    if PACK > 1:  # the rows' positions: what the causal mask compares
        rows = rows // PACK
    if CAUSAL:
        full = (gl.minimum(offset + r0 // PACK + 1, SK) // BLOCK_N) * BLOCK_N
    else:
        full = (SK // BLOCK_N) * BLOCK_N
    qh = q_smem.index(HALF)
    zeros_s = gl.zeros([HM, BLOCK_N], gl.float32, layout=s_layout)
    mbarrier.wait(q_bar.index(HALF), phase=q_phase)
    mbarrier.wait(k_ready.index(it0 % STAGES), phase=(it0 // STAGES) & 1)
    s = warpgroup_mma(qh, k_smem.index(it0 % STAGES).permute((1, 0)), zeros_s, use_acc=False, is_async=True)
    s = warpgroup_mma_wait(num_outstanding=0, deps=(s,))
    _ws_release(k_empty.index(it0 % STAGES))
    m_i = gl.full([HM], float("-inf"), gl.float32, layout=gl.SliceLayout(1, s_layout))
    l_i = gl.zeros([HM], gl.float32, layout=gl.SliceLayout(1, s_layout))
    p, m_i, l_i, alpha = _softmax_tile(s, m_i, l_i, 0, full, rows, offset, SK, qk_scale, CAUSAL, BLOCK_N, s_layout)
    p = gl.convert_layout(p.to(dtype), p_layout)
    acc = gl.zeros([HM, HEAD_DIM], gl.float32, layout=o_layout)
    for j in range(1, n_tiles):
        it = it0 + j
        st = it % STAGES
        prev = (it - 1) % STAGES
        # the token: half 0 holds it first (a fresh barrier passes a wait on parity 1)
        mbarrier.wait(tok.index(HALF), phase=((t0 + j - 1) & 1) ^ (1 - HALF))
        mbarrier.wait(k_ready.index(st), phase=(it // STAGES) & 1)
        s = warpgroup_mma(qh, k_smem.index(st).permute((1, 0)), zeros_s, use_acc=False, is_async=True)
        mbarrier.wait(v_ready.index(prev), phase=((it - 1) // STAGES) & 1)
        acc = warpgroup_mma(p, v_smem.index(prev), acc, is_async=True)
        mbarrier.arrive(tok.index(1 - HALF), count=1)  # the other warpgroup may issue its MMAs now
        s = warpgroup_mma_wait(num_outstanding=1, deps=(s,))
        _ws_release(k_empty.index(st))
        p_new, m_i, l_i, alpha = _softmax_tile(s, m_i, l_i, j * BLOCK_N, full, rows, offset, SK, qk_scale, CAUSAL,
                                               BLOCK_N, s_layout)  # fmt: skip
        acc = warpgroup_mma_wait(num_outstanding=0, deps=(acc,))
        _ws_release(v_empty.index(prev))
        acc = acc * gl.expand_dims(gl.convert_layout(alpha, gl.SliceLayout(1, o_layout)), 1)
        p = gl.convert_layout(p_new.to(dtype), p_layout)
    if RELEASE_Q:  # every Q·Kᵀ of the block has completed: the producer may load the next block's Q
        _ws_release(q_empty.index(HALF))
    last_it = it0 + n_tiles - 1
    last = last_it % STAGES
    mbarrier.wait(v_ready.index(last), phase=(last_it // STAGES) & 1)
    acc = warpgroup_mma(p, v_smem.index(last), acc, is_async=True)
    acc = warpgroup_mma_wait(num_outstanding=0, deps=(acc,))
    if RELEASE_Q:  # the persistent kernel's last V stage goes back here (a one-block CTA's ring just ends)
        _ws_release(v_empty.index(last))
    out = acc / gl.expand_dims(gl.convert_layout(l_i, gl.SliceLayout(1, o_layout)), 1)
    o_rows = r0 + gl.arange(0, HM, layout=gl.SliceLayout(1, o_layout))
    d = gl.arange(0, HEAD_DIM, layout=gl.SliceLayout(0, o_layout))
    if PACK > 1:  # row r: position r // PACK, query head h·PACK + r % PACK
        heads = gl.expand_dims((h * PACK + o_rows % PACK) * s_oh, 1)
        o_rows = o_rows // PACK
        ptrs = (O + b.to(gl.int64) * s_ob + gl.expand_dims((o_row0 + o_rows).to(gl.int64) * s_os, 1) + heads
                + gl.expand_dims(d, 0))  # fmt: skip
    else:
        ptrs = (O + b.to(gl.int64) * s_ob + gl.expand_dims((o_row0 + o_rows).to(gl.int64) * s_os, 1) + h * s_oh
                + gl.expand_dims(d, 0))  # fmt: skip
    gl.store(ptrs, out.to(dtype), mask=gl.expand_dims(o_rows < SQ, 1))


@gluon.jit
def _pp_tiles(m0, SQ, SK, CAUSAL: gl.constexpr, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr):
    """Key tiles a block of rows m0 … m0 + BLOCK_M − 1 (of SQ) visits: every tile that holds a key one of its
    rows sees (bottom-right causal: row r sees keys ≤ SK − SQ + r)."""
    if CAUSAL:
        hi = gl.minimum(SK, SK - SQ + gl.minimum(m0 + BLOCK_M, SQ))
    else:
        hi = SK
    return gl.cdiv(hi, BLOCK_N)


@gluon.jit
def _pp_smem(q_desc, k_desc, v_desc, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, HEAD_DIM: gl.constexpr,
             STAGES: gl.constexpr, Q_EMPTY: gl.constexpr, PACK: gl.constexpr = 1):  # fmt: skip
    """The ping-pong kernels' shared memory and barriers, in one order for both (the PTX of each kernel is what
    it was when each allocated its own): Q's two halves with their `ready` barriers (and, for a persistent CTA
    that reloads Q, Q_EMPTY: their `empty` ones; the `ready` ones again otherwise, unused), the token, and the
    K/V ring of STAGES with its `ready` barriers and its `empty` ones (count 2: both consumers release a stage)."""
    dtype: gl.constexpr = q_desc.dtype
    if PACK > 1:  # q_desc is 3-D ([positions, heads, HEAD_DIM] a load): the halves are K's 2-D layout, reshaped to load
        q_smem = gl.allocate_shared_memory(dtype, [2, BLOCK_M // 2, HEAD_DIM], k_desc.layout)
    else:
        q_smem = gl.allocate_shared_memory(dtype, [2, BLOCK_M // 2, HEAD_DIM], q_desc.layout)
    k_smem = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_N, HEAD_DIM], k_desc.layout)
    v_smem = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_N, HEAD_DIM], v_desc.layout)
    q_ready = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
    q_empty = q_ready  # stands in where Q_EMPTY is off: a one-block CTA loads Q once and never waits on it
    if Q_EMPTY:
        q_empty = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
    tok = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
    k_ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    v_ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    k_empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    v_empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    for i in gl.static_range(2):
        mbarrier.init(q_ready.index(i), count=1)
        if Q_EMPTY:
            mbarrier.init(q_empty.index(i), count=1)
        mbarrier.init(tok.index(i), count=1)
    for i in gl.static_range(STAGES):
        mbarrier.init(k_ready.index(i), count=1)
        mbarrier.init(v_ready.index(i), count=1)
        mbarrier.init(k_empty.index(i), count=2)
        mbarrier.init(v_empty.index(i), count=2)
    return q_smem, k_smem, v_smem, q_ready, q_empty, tok, k_ready, v_ready, k_empty, v_empty


@gluon.jit
def _last_page(SK, PAGE: gl.constexpr):
    """A paged request's last page (of SK keys): the producer reads no block table entry past it (0 when dense)."""
    if PAGE > 0:
        return (SK - 1) // PAGE
    else:
        return 0


@gluon.jit
def _pp_block(q_desc, k_desc, v_desc, O, s_ob, s_os, s_oh, b, h, q_row, o_row0, kv_row, kv_col, BT, bt_off, m0, SQ,
              SK, qk_scale, HEAD_DIM: gl.constexpr, CAUSAL: gl.constexpr, BLOCK_M: gl.constexpr,
              BLOCK_N: gl.constexpr, STAGES: gl.constexpr, PAGE: gl.constexpr, PACK: gl.constexpr = 1):  # fmt: skip
    """One 128-row block (rows m0 … of SQ, Q from row q_row of q_desc) against SK keys: from row kv_row of the
    K/V descriptors (PAGE 0), or through the block table row at BT + bt_off (`_kv_tile_load`). Shared memory,
    barriers, the Q loads, then the three partitions. PACK > 1 (GQA packed): h is a KV head, m0 counts packed
    rows (BLOCK_M // PACK positions a block, from position q_row), and each half of Q comes as one 3-D load of
    [positions, PACK heads, HEAD_DIM] from q_desc over [rows, Hq, HEAD_DIM], the same bytes as the half's
    [64, HEAD_DIM] tile in shared memory (`_consumer` reads row r as position r // PACK)."""
    offset = SK - SQ
    n_tiles = _pp_tiles(m0 // PACK, SQ, SK, CAUSAL, BLOCK_M // PACK, BLOCK_N)
    q_smem, k_smem, v_smem, q_bar, _, tok, k_ready, v_ready, k_empty, v_empty = _pp_smem(
        q_desc, k_desc, v_desc, BLOCK_M, BLOCK_N, HEAD_DIM, STAGES, False, PACK
    )
    HP: gl.constexpr = BLOCK_M // 2 // PACK  # a half's positions (its 64 rows when not packed)
    for i in gl.static_range(2):
        if PACK > 1:
            half = q_smem.index(i).reshape([HP, PACK, HEAD_DIM])
            mbarrier.expect(q_bar.index(i), q_desc.block_type.nbytes)
            tma.async_copy_global_to_shared(q_desc, [q_row + i * HP, h * PACK, 0], q_bar.index(i), half)
        else:
            _issue_load(q_desc, q_row + i * (BLOCK_M // 2), h * HEAD_DIM, q_bar.index(i), q_smem.index(i), True)
    last_page = _last_page(SK, PAGE)
    gl.warp_specialize(
        [
            (_pp_consumer, (q_smem, k_smem, v_smem, q_bar, k_ready, v_ready, k_empty, v_empty, tok, O, s_ob, s_os,
                            s_oh, b, h, o_row0, n_tiles, m0, offset, SQ, SK, qk_scale, 0, CAUSAL, BLOCK_N, HEAD_DIM,
                            STAGES, 0, 0, 0, None, False, PACK)),
            (_pp_consumer, (q_smem, k_smem, v_smem, q_bar, k_ready, v_ready, k_empty, v_empty, tok, O, s_ob, s_os,
                            s_oh, b, h, o_row0, n_tiles, m0, offset, SQ, SK, qk_scale, 1, CAUSAL, BLOCK_N, HEAD_DIM,
                            STAGES, 0, 0, 0, None, False, PACK)),
            (_ws_loader, (k_desc, v_desc, k_smem, v_smem, k_ready, v_ready, k_empty, v_empty, kv_row, kv_col, n_tiles,
                          BT, bt_off, last_page, BLOCK_N, STAGES, PAGE)),
        ],
        [4, 1],
        [240, 24],
    )  # fmt: skip


@gluon.jit
def _request(b, CU_Q, CU_K, KV_LENS, PAGE: gl.constexpr):
    """Request b of a packed ragged batch: its first query row and query rows, its first key row (dense, PAGE 0:
    CU_K; paged: 0, its keys through its block-table row) and its keys (KV_LENS[b] when paged)."""
    q_start = gl.load(CU_Q + b)
    SQ = gl.load(CU_Q + b + 1) - q_start
    if PAGE == 0:
        k_start = gl.load(CU_K + b)
        SK = gl.load(CU_K + b + 1) - k_start
    else:
        k_start = 0
        SK = gl.load(KV_LENS + b)
    return q_start, SQ, k_start, SK


@gluon.jit
def gluon_pp_varlen_kernel(
    q_desc, k_desc, v_desc, O, CU_Q, CU_K, KV_LENS, BT, ORDER, TILES, s_os, s_oh, s_btb, HQ, HKV, qk_scale,
    HEAD_DIM: gl.constexpr, CAUSAL: gl.constexpr, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr,
    STAGES: gl.constexpr, PAGE: gl.constexpr, TILED: gl.constexpr, num_warps: gl.constexpr,
):  # fmt: skip
    """The ping-pong block over a ragged batch: program (row block, request in ORDER × query head), or with
    TILED program t the row block TILES[2t + 1] of request × head TILES[2t] (only the blocks that hold rows,
    listed on the host: GluonVarlen); q and O packed [Σ q_len, Hq·D] (rows CU_Q[b] …), bottom-right causal per
    request. The cache is dense and packed (PAGE 0: K/V [Σ kv_len, Hkv·D], rows CU_K[b] …) or paged (K/V
    [pages·PAGE, Hkv·D], request b's pages in row b of the block table BT, KV_LENS[b] keys). A program past its
    request's rows returns at once; Q rows and key tiles past a request's end read the next request's (or
    zeros), which the row and key masks drop."""
    if TILED:
        bh = gl.load(TILES + 2 * gl.program_id(0))
        pid_m = gl.load(TILES + 2 * gl.program_id(0) + 1)
        b = bh // HQ
        h = bh % HQ
    else:
        pid_m = gl.num_programs(0) - 1 - gl.program_id(0) if CAUSAL else gl.program_id(0)
        pid_bh = gl.program_id(1)
        b = gl.load(ORDER + pid_bh // HQ)
        h = pid_bh % HQ
    q_start, SQ, k_start, SK = _request(b, CU_Q, CU_K, KV_LENS, PAGE)
    m0 = pid_m * BLOCK_M
    if m0 < SQ:
        # rows are packed: the request's first row is o_row0, and its index adds nothing (stride 0)
        _pp_block(q_desc, k_desc, v_desc, O, 0, s_os, s_oh, b, h, q_start + m0, q_start, k_start,
                  (h // (HQ // HKV)) * HEAD_DIM, BT, b.to(gl.int64) * s_btb, m0, SQ, SK, qk_scale, HEAD_DIM, CAUSAL,
                  BLOCK_M, BLOCK_N, STAGES, PAGE)  # fmt: skip


@gluon.jit
def gluon_pp_prefill_kernel(
    q_desc, k_desc, v_desc, O, s_ob, s_os, s_oh,
    SQ, SK, HQ, HKV, qk_scale,
    HEAD_DIM: gl.constexpr, CAUSAL: gl.constexpr, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr,
    STAGES: gl.constexpr, LPT: gl.constexpr, num_warps: gl.constexpr, PACK: gl.constexpr = 1,
):  # fmt: skip
    """FA3's warp roles: a 128-row block as two consumer warpgroups of 64 rows (the default partition and a
    worker, 4 warps each) that take turns on the tensor cores (`_pp_consumer`), fed by one producer warp
    (`_ws_loader`) through a STAGES-deep ring whose stages both consumers hand back (`empty` counts 2).
    BLOCK_M is 128 and num_warps 4 (a consumer's); q_desc's block is [64, HEAD_DIM]. The grid: (row block,
    batch × head), a (batch, head)'s blocks in turn, last (heaviest, causal) first; with LPT (batch × head, row
    block), every (batch, head) of the last block before the next block, so the GPU, handing out programs in
    launch order, starts the heaviest blocks first and ends on the light ones (list scheduling). PACK > 1 (GQA
    packed, FA3's and FA4's pack_gqa): a program's block is 128 rows of one KV head's PACK query heads,
    128 // PACK positions × PACK heads, so its K/V tiles serve every head of the group, the grid's second axis is
    batch × KV head, and the causal edge falls every 128 // PACK positions (`_pp_block`)."""
    if LPT:
        pid_m = gl.num_programs(1) - 1 - gl.program_id(1) if CAUSAL else gl.program_id(1)
        pid_bh = gl.program_id(0)
    else:
        pid_m = gl.num_programs(0) - 1 - gl.program_id(0) if CAUSAL else gl.program_id(0)
        pid_bh = gl.program_id(1)
    if PACK > 1:  # h: a KV head, its PACK query heads in the block's rows
        b = pid_bh // HKV
        h = pid_bh % HKV
        m0 = pid_m * BLOCK_M
        _pp_block(q_desc, k_desc, v_desc, O, s_ob, s_os, s_oh, b, h, b * SQ + m0 // PACK, 0, b * SK, h * HEAD_DIM,
                  O, 0, m0, SQ, SK, qk_scale, HEAD_DIM, CAUSAL, BLOCK_M, BLOCK_N, STAGES, 0, PACK)  # fmt: skip
    else:
        b = pid_bh // HQ
        h = pid_bh % HQ
        m0 = pid_m * BLOCK_M
        _pp_block(q_desc, k_desc, v_desc, O, s_ob, s_os, s_oh, b, h, b * SQ + m0, 0, b * SK,
                  (h // (HQ // HKV)) * HEAD_DIM, O, 0, m0, SQ, SK, qk_scale, HEAD_DIM, CAUSAL, BLOCK_M, BLOCK_N,
                  STAGES, 0)  # fmt: skip


@gluon.jit
def _pp_item(w, n_bh, n_m, HQ, SQ, SK, CAUSAL: gl.constexpr, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr):
    """Work item w of the persistent kernel: (b, h, m0, n_tiles). The row blocks nearest the diagonal's end
    (the most keys, causal) come first; every (batch, head) of a row block before the next block."""
    pid_m = n_m - 1 - w // n_bh if CAUSAL else w // n_bh
    bh = w % n_bh
    m0 = pid_m * BLOCK_M
    return bh // HQ, bh % HQ, m0, _pp_tiles(m0, SQ, SK, CAUSAL, BLOCK_M, BLOCK_N)


@gluon.jit
def _pp_persistent_consumer(q_smem, k_smem, v_smem, q_ready, q_empty, k_ready, v_ready, k_empty, v_empty, tok, O, s_ob,
                            s_os, s_oh, ITEMS, START, n_bh, n_m, SQ, SK, HQ, qk_scale, HALF: gl.constexpr,
                            CAUSAL: gl.constexpr, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr,
                            HEAD_DIM: gl.constexpr, STAGES: gl.constexpr):  # fmt: skip
    """A consumer warpgroup of the persistent kernel: `_pp_consumer` over the CTA's work items, the ring's
    tile count, the token's wait count and the Q buffer's phase carried from one to the next."""
    it = 0
    t = 0
    k = 0
    for idx in range(gl.load(START + gl.program_id(0)), gl.load(START + gl.program_id(0) + 1)):
        w = gl.load(ITEMS + idx)
        b, h, m0, n_tiles = _pp_item(w, n_bh, n_m, HQ, SQ, SK, CAUSAL, BLOCK_M, BLOCK_N)
        _pp_consumer(q_smem, k_smem, v_smem, q_ready, k_ready, v_ready, k_empty, v_empty, tok, O, s_ob, s_os, s_oh, b,
                     h, 0, n_tiles, m0, SK - SQ, SQ, SK, qk_scale, HALF, CAUSAL, BLOCK_N, HEAD_DIM, STAGES, it, t,
                     k & 1, q_empty, True)  # fmt: skip
        it += n_tiles
        t += n_tiles - 1
        k += 1


@gluon.jit
def _pp_persistent_loader(q_desc, k_desc, v_desc, q_smem, k_smem, v_smem, q_ready, q_empty, k_ready, v_ready, k_empty,
                          v_empty, ITEMS, START, n_bh, n_m, SQ, SK, HQ, HKV, HEAD_DIM: gl.constexpr,
                          CAUSAL: gl.constexpr, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr,
                          STAGES: gl.constexpr):  # fmt: skip
    """The persistent kernel's producer warp: for each work item, its two Q halves once the consumers have
    released the last item's, then its K/V tiles into the ring (`_ws_loader`'s waits, on the CTA's tile
    count), so the next item's loads run under the current item's last tiles and output stores."""
    it = 0
    k = 0
    for idx in range(gl.load(START + gl.program_id(0)), gl.load(START + gl.program_id(0) + 1)):
        w = gl.load(ITEMS + idx)
        b, h, m0, n_tiles = _pp_item(w, n_bh, n_m, HQ, SQ, SK, CAUSAL, BLOCK_M, BLOCK_N)
        for i in gl.static_range(2):
            mbarrier.wait(q_empty.index(i), phase=(k & 1) ^ 1)
            _issue_load(q_desc, b * SQ + m0 + i * (BLOCK_M // 2), h * HEAD_DIM, q_ready.index(i), q_smem.index(i),
                        True)  # fmt: skip
        _ws_loader(k_desc, v_desc, k_smem, v_smem, k_ready, v_ready, k_empty, v_empty, b * SK,
                   (h // (HQ // HKV)) * HEAD_DIM, n_tiles, k_desc, 0, 0, BLOCK_N, STAGES, 0, it)  # fmt: skip
        it += n_tiles
        k += 1


@gluon.jit
def gluon_pp_persistent_kernel(
    q_desc, k_desc, v_desc, O, s_ob, s_os, s_oh,
    SQ, SK, HQ, HKV, qk_scale, ITEMS, START, n_bh, n_m,
    HEAD_DIM: gl.constexpr, CAUSAL: gl.constexpr, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr,
    STAGES: gl.constexpr, num_warps: gl.constexpr,
):  # fmt: skip
    """`gluon_pp_prefill_kernel`'s warp roles in a persistent grid (FA3's): CTA p walks the work items
    ITEMS[START[p]:START[p + 1]] (each w a `_pp_item`: a 128-row block of one batch element and query head, w = 0
    the heaviest; the host shares them out, schedule.cta_assignment), and its producer loads the next item's Q
    and K/V while the consumers finish the current one and store its output. Q has its own `empty` barriers
    (each consumer releases its half after its last Q·Kᵀ)."""
    q_smem, k_smem, v_smem, q_ready, q_empty, tok, k_ready, v_ready, k_empty, v_empty = _pp_smem(
        q_desc, k_desc, v_desc, BLOCK_M, BLOCK_N, HEAD_DIM, STAGES, True
    )
    gl.warp_specialize(
        [
            (_pp_persistent_consumer, (q_smem, k_smem, v_smem, q_ready, q_empty, k_ready, v_ready, k_empty, v_empty,
                                       tok, O, s_ob, s_os, s_oh, ITEMS, START, n_bh, n_m, SQ, SK, HQ, qk_scale, 0,
                                       CAUSAL,
                                       BLOCK_M, BLOCK_N, HEAD_DIM, STAGES)),
            (_pp_persistent_consumer, (q_smem, k_smem, v_smem, q_ready, q_empty, k_ready, v_ready, k_empty, v_empty,
                                       tok, O, s_ob, s_os, s_oh, ITEMS, START, n_bh, n_m, SQ, SK, HQ, qk_scale, 1,
                                       CAUSAL,
                                       BLOCK_M, BLOCK_N, HEAD_DIM, STAGES)),
            (_pp_persistent_loader, (q_desc, k_desc, v_desc, q_smem, k_smem, v_smem, q_ready, q_empty, k_ready, v_ready,
                                     k_empty, v_empty, ITEMS, START, n_bh, n_m, SQ, SK, HQ, HKV, HEAD_DIM, CAUSAL,
                                     BLOCK_M,
                                     BLOCK_N, STAGES)),
        ],
        [4, 1],
        [240, 24],
    )  # fmt: skip


@gluon.jit
def _pv_item(w, TILES, CU_Q, CU_K, KV_LENS, HQ, CAUSAL: gl.constexpr, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr,
             PAGE: gl.constexpr):  # fmt: skip
    """Work item w of the persistent varlen kernel: the tile list's entry w (request × query head, row block; only
    blocks that hold rows, heaviest first: GluonVarlen) with its request's rows and keys, as
    (b, h, m0, q_start, SQ, k_start, SK, n_tiles)."""
    bh = gl.load(TILES + 2 * w)
    m0 = gl.load(TILES + 2 * w + 1) * BLOCK_M
    b = bh // HQ
    q_start, SQ, k_start, SK = _request(b, CU_Q, CU_K, KV_LENS, PAGE)
    return b, bh % HQ, m0, q_start, SQ, k_start, SK, _pp_tiles(m0, SQ, SK, CAUSAL, BLOCK_M, BLOCK_N)


@gluon.jit
def _pv_consumer(q_smem, k_smem, v_smem, q_ready, q_empty, k_ready, v_ready, k_empty, v_empty, tok, O, s_os, s_oh,
                 TILES, CU_Q, CU_K, KV_LENS, START, HQ, qk_scale, HALF: gl.constexpr, CAUSAL: gl.constexpr,
                 BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, HEAD_DIM: gl.constexpr, STAGES: gl.constexpr,
                 PAGE: gl.constexpr):  # fmt: skip
    """A consumer warpgroup of the persistent varlen kernel: `_pp_consumer` over the CTA's tile-list items (output
    rows from the request's first packed row), the ring, the token and Q's phase carried from one to the next,
    as `_pp_persistent_consumer` does for a uniform batch."""
    it = 0
    t = 0
    k = 0
    for w in range(gl.load(START + gl.program_id(0)), gl.load(START + gl.program_id(0) + 1)):
        b, h, m0, q_start, SQ, _, SK, n_tiles = _pv_item(w, TILES, CU_Q, CU_K, KV_LENS, HQ, CAUSAL, BLOCK_M, BLOCK_N,
                                                         PAGE)  # fmt: skip
        _pp_consumer(q_smem, k_smem, v_smem, q_ready, k_ready, v_ready, k_empty, v_empty, tok, O, 0, s_os, s_oh, b,
                     h, q_start, n_tiles, m0, SK - SQ, SQ, SK, qk_scale, HALF, CAUSAL, BLOCK_N, HEAD_DIM, STAGES, it, t,
                     k & 1, q_empty, True)  # fmt: skip
        it += n_tiles
        t += n_tiles - 1
        k += 1


@gluon.jit
def _pv_loader(q_desc, k_desc, v_desc, q_smem, k_smem, v_smem, q_ready, q_empty, k_ready, v_ready, k_empty, v_empty,
               TILES, CU_Q, CU_K, KV_LENS, BT, s_btb, START, HQ, HKV, HEAD_DIM: gl.constexpr, CAUSAL: gl.constexpr,
               BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, STAGES: gl.constexpr, PAGE: gl.constexpr):  # fmt: skip
    """The persistent varlen kernel's producer warp: each item's two Q halves (from its request's packed rows) once
    the consumers have released the last item's, then its K/V tiles, dense from the request's first key row or
    through its block-table row, so the next item's loads run under the current item's last tiles and stores."""
    it = 0
    k = 0
    for w in range(gl.load(START + gl.program_id(0)), gl.load(START + gl.program_id(0) + 1)):
        b, h, m0, q_start, SQ, k_start, SK, n_tiles = _pv_item(w, TILES, CU_Q, CU_K, KV_LENS, HQ, CAUSAL, BLOCK_M,
                                                               BLOCK_N, PAGE)  # fmt: skip
        for i in gl.static_range(2):
            mbarrier.wait(q_empty.index(i), phase=(k & 1) ^ 1)
            _issue_load(q_desc, q_start + m0 + i * (BLOCK_M // 2), h * HEAD_DIM, q_ready.index(i), q_smem.index(i),
                        True)  # fmt: skip
        last_page = _last_page(SK, PAGE)
        _ws_loader(k_desc, v_desc, k_smem, v_smem, k_ready, v_ready, k_empty, v_empty, k_start,
                   (h // (HQ // HKV)) * HEAD_DIM, n_tiles, BT, b.to(gl.int64) * s_btb, last_page, BLOCK_N, STAGES,
                   PAGE, it)  # fmt: skip
        it += n_tiles
        k += 1


@gluon.jit
def gluon_pp_varlen_persistent_kernel(
    q_desc, k_desc, v_desc, O, CU_Q, CU_K, KV_LENS, BT, TILES, s_os, s_oh, s_btb, HQ, HKV, qk_scale, START,
    HEAD_DIM: gl.constexpr, CAUSAL: gl.constexpr, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr,
    STAGES: gl.constexpr, PAGE: gl.constexpr, num_warps: gl.constexpr,
):  # fmt: skip
    """`gluon_pp_varlen_kernel`'s blocks in a persistent grid (FA3's for varlen batches): CTA p walks the tile
    list's items START[p] … START[p + 1] − 1 (the host groups them by CTA, schedule.cta_assignment), its producer
    loading the next item's Q and K/V while the consumers finish the current one and store its output; a ragged
    batch's short blocks (a few key tiles each) no longer pay a CTA's start and end each. The cache dense and
    packed (PAGE 0) or paged, as there."""
    q_smem, k_smem, v_smem, q_ready, q_empty, tok, k_ready, v_ready, k_empty, v_empty = _pp_smem(
        q_desc, k_desc, v_desc, BLOCK_M, BLOCK_N, HEAD_DIM, STAGES, True
    )
    gl.warp_specialize(
        [
            (_pv_consumer, (q_smem, k_smem, v_smem, q_ready, q_empty, k_ready, v_ready, k_empty, v_empty, tok, O, s_os,
                            s_oh, TILES, CU_Q, CU_K, KV_LENS, START, HQ, qk_scale, 0, CAUSAL, BLOCK_M, BLOCK_N,
                            HEAD_DIM, STAGES, PAGE)),
            (_pv_consumer, (q_smem, k_smem, v_smem, q_ready, q_empty, k_ready, v_ready, k_empty, v_empty, tok, O, s_os,
                            s_oh, TILES, CU_Q, CU_K, KV_LENS, START, HQ, qk_scale, 1, CAUSAL, BLOCK_M, BLOCK_N,
                            HEAD_DIM, STAGES, PAGE)),
            (_pv_loader, (q_desc, k_desc, v_desc, q_smem, k_smem, v_smem, q_ready, q_empty, k_ready, v_ready, k_empty,
                          v_empty, TILES, CU_Q, CU_K, KV_LENS, BT, s_btb, START, HQ, HKV, HEAD_DIM, CAUSAL, BLOCK_M,
                          BLOCK_N, STAGES, PAGE)),
        ],
        [4, 1],
        [240, 24],
    )  # fmt: skip


def shared_layout(block: list[int], dtype: torch.dtype):
    return gl.NVMMASharedLayout.get_default_for(block, gl.bfloat16 if dtype == torch.bfloat16 else gl.float16)


def dense_loads(q, k, v, kv_len: int, q_rows: int, block_n: int) -> tuple:
    """The TMA descriptors of a dense prefill, q [B, Sq, Hq, D] (q_rows a load) and k, v [B, Sk, Hkv, D] (block_n
    a load), after the checks every Gluon prefill makes, and the score scale in log2 units."""
    b, sq, hq, d = q.shape
    hkv = k.shape[2]
    if d not in (64, 128) or q.dtype not in (torch.bfloat16, torch.float16):
        raise ValueError(f"gluon prefill: head dim 64 or 128, bf16 or fp16; got {d}, {q.dtype}")
    if k.shape[1] != kv_len or v.shape[1] != kv_len:
        raise ValueError(f"gluon prefill: the cache must hold exactly kv_len={kv_len} keys, got {k.shape[1]}")
    q2, k2, v2 = q.view(b * sq, hq * d), k.reshape(b * kv_len, hkv * d), v.reshape(b * kv_len, hkv * d)
    q_desc = TensorDescriptor.from_tensor(q2, [q_rows, d], shared_layout([q_rows, d], q.dtype))
    kv_layout = shared_layout([block_n, d], q.dtype)
    k_desc = TensorDescriptor.from_tensor(k2, [block_n, d], kv_layout)
    v_desc = TensorDescriptor.from_tensor(v2, [block_n, d], kv_layout)
    return q_desc, k_desc, v_desc, d**-0.5 * LOG2E


class GluonPrefill:
    """Prefill / append on a dense cache: q [B, Sq, Hq, D], k, v [B, Sk, Hkv, D] (contiguous). pingpong (with
    block_m 128, warps 4: a consumer's, and `stages` > 0, the ring's depth): two consumer warpgroups of 64 rows
    that take turns on the tensor cores, fed by a producer warp (`gluon_pp_prefill_kernel`), in a persistent
    grid with `persistent`. balance (schedule.GLUON_BALANCES): lpt launches the heaviest row blocks of every
    (batch, head) first, and shares a persistent grid's blocks out least-loaded first; static: a (batch, head)'s
    blocks in turn, and CTA p takes blocks p, p + grid, …. The kernel without warp roles (block_m = 16 × warps):
    tools/gluon_overlap.py."""

    def __init__(
        self, q, k, v, kv_len: int, causal: bool, block_m: int = 128, block_n: int = 128, warps: int = 8,
        stages: int = 0, pingpong: bool = False, persistent: bool = False, balance: str = "lpt", pack: bool = False,
    ):  # fmt: skip
        b, sq, hq, d = q.shape
        if not pingpong:
            raise ValueError("gluon prefill: the kernel without warp roles is tools/gluon_overlap.GluonOverlap")
        if not stages or (block_m, warps) != (128, 4):
            raise ValueError("gluon prefill: pingpong takes block_m 128, warps 4 (a consumer's) and stages > 0")
        # a consumer warpgroup's rows a Q load
        self.q_desc, self.k_desc, self.v_desc, self.qk_scale = dense_loads(q, k, v, kv_len, block_m // 2, block_n)
        group = hq // k.shape[2]
        # pack: a block's rows are one KV head's query heads (GQA packed), 64 // group positions a consumer's Q load
        self.pack = group if pack else 1
        if pack and (persistent or not gluon_pack_fits(group, block_m)):
            raise ValueError(f"gluon prefill: GQA packing takes the one-block grid and a query group of 2 to "
                             f"{block_m // 2} that divides {block_m // 2}; got group {group}")  # fmt: skip
        if pack:
            rows = [block_m // 2 // group, group, d]
            self.q_desc = TensorDescriptor.from_tensor(q.view(b * sq, hq, d), rows, shared_layout(rows, q.dtype))
        self.persistent, self.balance = persistent, balance
        if persistent:  # the grid: one CTA an SM, or one a work item where there are fewer, and each CTA's items
            n_m, n_bh = triton.cdiv(sq, block_m), b * hq
            pairs = []  # item w as (batch × heads + head, row block), as _pp_item reads it: the last block first
            for w in range(n_m * n_bh):
                pairs += (w % n_bh, n_m - 1 - w // n_bh if causal else w // n_bh)
            tiles = gluon_item_tiles(pairs, [sq] * b, [kv_len] * b, hq, causal, block_m, block_n)
            order, starts = cta_assignment(tiles, sm_count(q.device), balance)
            self.ctas = len(starts) - 1
            self.items = torch.tensor(order, dtype=torch.int32, device=q.device)
            self.starts = torch.tensor(starts, dtype=torch.int32, device=q.device)
        else:  # the one-block grid: lpt where the (batch, head) pairs fill at most half a wave
            check_balance(balance)
            self.balance = uniform_launch_balance(balance, b * hq // self.pack, sm_count(q.device))
        self.q, self.k, self.v = q, k, v  # the descriptors hold their addresses: keep them alive
        self.shape, self.hkv, self.sk = q.shape, k.shape[2], kv_len
        self.block_m, self.block_n, self.warps, self.causal, self.stages = block_m, block_n, warps, causal, stages

    def info(self) -> dict:
        """What ran, for a row's backend_info (the Triton ops' `info()` convention)."""
        kind = "gluon-pp-persistent" if self.persistent else "gluon-pp"
        packed = {"pack_gqa": self.pack} if self.pack > 1 else {}
        return {"kernel": kind, "BLOCK_M": self.block_m, "BLOCK_N": self.block_n,
                "warps": f"{self.warps}+{self.warps}+producer", "stages": self.stages, "kv_loads": "tma",
                "balance": self.balance, **packed}  # fmt: skip

    def __call__(self) -> torch.Tensor:
        o = torch.empty(self.shape, dtype=self.q.dtype, device=self.q.device)
        b, sq, hq, d = self.shape
        n_m = triton.cdiv(sq, self.block_m)
        args = (self.q_desc, self.k_desc, self.v_desc, o, o.stride(0), o.stride(1), o.stride(2),
                sq, self.sk, hq, self.hkv, self.qk_scale)  # fmt: skip
        blocks = {"HEAD_DIM": d, "CAUSAL": self.causal, "BLOCK_M": self.block_m, "BLOCK_N": self.block_n}
        if self.persistent:  # one CTA an SM (at most), walking its (row block, batch, head) items
            gluon_pp_persistent_kernel[(self.ctas,)](*args, self.items, self.starts, b * hq, n_m, **blocks,
                                                     STAGES=self.stages, num_warps=self.warps)  # fmt: skip
        else:  # packed: blocks of 128 rows over sq × group rows a (batch, KV head)
            lpt, n_bh = self.balance == "lpt", b * hq // self.pack
            n_m = triton.cdiv(sq * self.pack, self.block_m)
            grid = (n_bh, n_m) if lpt else (n_m, n_bh)
            gluon_pp_prefill_kernel[grid](*args, **blocks, STAGES=self.stages, LPT=lpt, num_warps=self.warps,
                                          PACK=self.pack)  # fmt: skip
        return o


class GluonVarlen:
    """A ragged batch through the ping-pong kernel: q packed [Σ q_len, Hq, D] with cu_seqlens_q (int32 on the
        GPU); the cache dense and packed, k, v [Σ kv_len, Hkv, D] with cu_seqlens_k, or paged, k, v [pages,
        page_size, Hkv, D] with block_table [B, pages a request] (int32) and kv_lens (B int32 on the GPU). Pages of
        16 rows or more that split the 128-key tile evenly, or hold whole tiles, come through TMA: a load a page
        (`_kv_tile_load`). The heaviest requests (query × key pairs) launch first, as `ops.Varlen` orders them. out:
        write into this [Σ q_len, Hq, D] tensor instead of a new one. One program a (128-row block, request, query
        head): no GQA packing, so a batch of short requests (decodes, speculative steps) wastes most of each block;
        `ops.gluon_varlen_worth_it` says when not. grid "blocks": row blocks of the longest request for every
        request, those past a request's rows returning at once; "tiles": only the blocks that hold rows, in the same
        order, from a list built here (`ops.gluon_varlen_tiles`); "persistent": those blocks as the work items of one
    CTA an SM (`gluon_pp_varlen_persistent_kernel`), heaviest first (`schedule.gluon_varlen_items`). requests:
    the indices of the requests this launch takes (a mixed batch's longer ones beside the work list of its short
    ones: ops.MixedWork; max_q theirs), None: all; the kernel reaches a request only through ORDER or TILES, so a
    launch of some lists only them and reads the batch's offsets, lengths and cache as they are."""

    def __init__(self, q, k, v, cu_seqlens_q, cu_seqlens_k, max_q: int, causal: bool, out=None, block_n: int = 128,
                 stages: int = 2, block_table=None, page_size: int | None = None, kv_lens=None,
                 grid: str = "blocks", requests=None, balance: str = "lpt"):  # fmt: skip
        total, hq, d = q.shape
        hkv = k.shape[-2]
        if d not in (64, 128) or q.dtype not in (torch.bfloat16, torch.float16):
            raise ValueError(f"gluon varlen: head dim 64 or 128, bf16 or fp16; got {d}, {q.dtype}")
        if not (q.is_contiguous() and k.is_contiguous() and v.is_contiguous()):
            raise ValueError("gluon varlen: q, k and v must be contiguous tensors")
        paged = block_table is not None
        if paged and not gluon_pages_fit(page_size, block_n):
            raise ValueError(f"gluon varlen: page_size must be a multiple of 16 that divides {block_n} or is a "
                             f"multiple of it; got {page_size}")  # fmt: skip
        if paged and kv_lens is None or not paged and cu_seqlens_k is None:
            raise ValueError("gluon varlen: a paged cache takes kv_lens, a dense one cu_seqlens_k")
        if grid not in GLUON_GRIDS:
            raise ValueError(f"gluon varlen: grid {grid!r} is not valid; expected {', '.join(GLUON_GRIDS)}")
        q_lens = (cu_seqlens_q[1:] - cu_seqlens_q[:-1]).tolist()
        kv_list = kv_lens.tolist() if paged else (cu_seqlens_k[1:] - cu_seqlens_k[:-1]).tolist()
        order = heaviest_first(q_lens, kv_list, None if requests is None else subset(requests, len(q_lens)))
        self.order = torch.tensor(order, dtype=torch.int32, device=q.device)
        self.grid, self.balance = grid, balance
        self.q, self.k, self.v, self.out = q, k, v, out  # the descriptors hold their addresses: keep them alive
        self.cu_q, self.cu_k, self.kv_lens, self.bt = cu_seqlens_q, cu_seqlens_k, kv_lens, block_table
        self.starts = cu_seqlens_q  # an unused pointer stands in but on the persistent grid
        check_balance(balance)
        if grid == "tiles":  # lpt: every block heaviest first by its key tiles; static: a request's blocks in turn
            if balance == "lpt":
                tiles = gluon_varlen_items(order, q_lens, kv_list, hq, causal)
            else:
                tiles = gluon_varlen_tiles(order, q_lens, hq, causal)
            self.tiles = torch.tensor(tiles, dtype=torch.int32, device=q.device)
            self.launch_grid = (len(tiles) // 2,)
        elif grid == "persistent":  # one CTA an SM (at most one an item), each walking its share of the items
            items = gluon_varlen_items(order, q_lens, kv_list, hq, causal)
            per, starts = cta_assignment(gluon_item_tiles(items, q_lens, kv_list, hq, causal), sm_count(q.device),
                                         balance)  # fmt: skip
            tiles = [x for i in per for x in items[2 * i : 2 * i + 2]]
            self.tiles = torch.tensor(tiles, dtype=torch.int32, device=q.device)
            self.starts = torch.tensor(starts, dtype=torch.int32, device=q.device)
            self.launch_grid = (len(starts) - 1,)
        else:
            self.tiles = cu_seqlens_q  # an unused pointer stands in
            self.launch_grid = (triton.cdiv(max_q, 128), len(order) * hq)
        self.page = page_size if paged else 0
        self.hq, self.hkv = hq, hkv
        self.causal, self.block_n, self.stages = causal, block_n, stages
        self.q_desc = TensorDescriptor.from_tensor(q.view(total, hq * d), [64, d], shared_layout([64, d], q.dtype))
        rows = min(self.page, block_n) if paged else block_n  # a load's rows: a tile, or a page of it
        kv_layout = shared_layout([block_n, d], q.dtype)  # the ring's layout; a page's load writes a slice of it
        self.k_desc = TensorDescriptor.from_tensor(k.view(-1, hkv * d), [rows, d], kv_layout)
        self.v_desc = TensorDescriptor.from_tensor(v.view(-1, hkv * d), [rows, d], kv_layout)
        self.qk_scale = d**-0.5 * LOG2E

    def info(self) -> dict:
        loads = "tma_per_page" if self.page and self.page < self.block_n else "tma"  # the backend adds page_size
        balance = {"balance": self.balance} if self.grid != "blocks" else {}
        return {"kernel": "gluon-pp-varlen", "schedule": "longest-first", "grid": self.grid, **balance, "BLOCK_M": 128,
                "BLOCK_N": self.block_n, "warps": "4+4+producer", "stages": self.stages, "kv_loads": loads}  # fmt: skip

    def __call__(self) -> torch.Tensor:
        o = self.out if self.out is not None else torch.empty_like(self.q)
        cu_k = self.cu_k if self.cu_k is not None else self.cu_q  # an unused pointer stands in where absent
        kv_lens = self.kv_lens if self.kv_lens is not None else self.cu_q
        bt, s_btb = (self.bt, self.bt.stride(0)) if self.bt is not None else (self.cu_q, 0)
        if self.grid == "persistent":
            gluon_pp_varlen_persistent_kernel[self.launch_grid](
                self.q_desc, self.k_desc, self.v_desc, o, self.cu_q, cu_k, kv_lens, bt, self.tiles, o.stride(0),
                o.stride(1), s_btb, self.hq, self.hkv, self.qk_scale, self.starts,
                HEAD_DIM=self.q.shape[2], CAUSAL=self.causal, BLOCK_M=128, BLOCK_N=self.block_n, STAGES=self.stages,
                PAGE=self.page, num_warps=4,
            )  # fmt: skip
            return o
        gluon_pp_varlen_kernel[self.launch_grid](
            self.q_desc, self.k_desc, self.v_desc, o, self.cu_q, cu_k, kv_lens, bt, self.order, self.tiles,
            o.stride(0), o.stride(1), s_btb, self.hq, self.hkv, self.qk_scale,
            HEAD_DIM=self.q.shape[2], CAUSAL=self.causal, BLOCK_M=128, BLOCK_N=self.block_n, STAGES=self.stages,
            PAGE=self.page, TILED=self.grid == "tiles", num_warps=4,
        )  # fmt: skip
        return o


class GluonPagedPrompts:
    """A uniform prefill or append on a paged cache through GluonVarlen: q [B, S, Hq, D] as B requests of S tokens
    packed, each against its kv_len keys in its block-table row, through the varlen kernel's page-wise TMA loads (the
    uniform Gluon kernel takes dense caches only; the Triton kernel gathers a page's rows); the output back in
    [B, S, Hq, D]."""

    def __init__(self, q, k_pages, v_pages, block_table, kv_len: int, causal: bool, page_size: int,
                 grid: str = "tiles", balance: str = "lpt"):  # fmt: skip
        b, s, hq, d = q.shape
        self.shape = q.shape
        cu_q = torch.arange(0, (b + 1) * s, s, dtype=torch.int32, device=q.device)
        kv_lens = torch.full((b,), kv_len, dtype=torch.int32, device=q.device)
        balance = uniform_launch_balance(balance, b * hq, sm_count(q.device)) if grid == "tiles" else balance
        self.op = GluonVarlen(q.reshape(b * s, hq, d), k_pages, v_pages, cu_q, None, s, causal,
                              block_table=block_table, page_size=page_size, kv_lens=kv_lens, grid=grid,
                              balance=balance)  # fmt: skip

    def info(self) -> dict:
        return {**self.op.info(), "requests": "uniform"}

    def __call__(self) -> torch.Tensor:
        return self.op().view(self.shape)
