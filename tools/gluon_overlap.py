"""The Gluon prefill kernel without warp roles: FA3's intra-warpgroup overlap alone, which only
tools/triton_explore.py runs (the backend runs the ping-pong kernels of frameworks/triton/gluon_prefill.py).
S_j = Q·K_jᵀ and the P·V of tile j − 1 are asynchronous warpgroup MMAs, and the wait leaves P·V in flight
(`warpgroup_mma_wait(num_outstanding=1)`), so the softmax of tile j runs under it. Plain Triton 3.6 waits for
every MMA at once (docs/perf/triton-prefill.md, read from its TTGIR). One program a (row block, batch, query
head); its own warps load K/V into a two-stage ring. Dense caches, bf16/fp16, head dim 64 or 128, K/V through
TMA; `tools/aot_check.py` compiles it for sm_90a on a CPU."""

from __future__ import annotations

import torch
import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import mbarrier, warpgroup_mma, warpgroup_mma_wait

from frameworks.triton.gluon_prefill import GluonPrefill, _issue_load, _softmax_tile, dense_loads


@gluon.jit
def gluon_prefill_kernel(
    q_desc, k_desc, v_desc, O, s_ob, s_os, s_oh,
    SQ, SK, HQ, HKV, qk_scale,
    HEAD_DIM: gl.constexpr, CAUSAL: gl.constexpr, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr,
    num_warps: gl.constexpr,
):  # fmt: skip
    dtype: gl.constexpr = q_desc.dtype
    # causal row blocks near the end see the most keys: launch those first
    pid_m = gl.num_programs(0) - 1 - gl.program_id(0) if CAUSAL else gl.program_id(0)
    pid_bh = gl.program_id(1)
    b = pid_bh // HQ
    h = pid_bh % HQ
    hkv = h // (HQ // HKV)
    m0 = pid_m * BLOCK_M
    offset = SK - SQ

    s_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[num_warps, 1], instr_shape=[16, BLOCK_N, 16]
    )
    o_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[num_warps, 1], instr_shape=[16, HEAD_DIM, 16]
    )
    p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
    rows = m0 + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, s_layout))

    # key bounds: keys < full are seen by every row of the block (no mask), none sees a key ≥ hi
    if CAUSAL:
        hi = gl.minimum(SK, offset + gl.minimum(m0 + BLOCK_M, SQ))
        full = (gl.minimum(offset + m0 + 1, SK) // BLOCK_N) * BLOCK_N
    else:
        hi = SK
        full = (SK // BLOCK_N) * BLOCK_N
    n_tiles = gl.cdiv(hi, BLOCK_N)

    q_smem = gl.allocate_shared_memory(dtype, [BLOCK_M, HEAD_DIM], q_desc.layout)
    k_smem = gl.allocate_shared_memory(dtype, [2, BLOCK_N, HEAD_DIM], k_desc.layout)
    v_smem = gl.allocate_shared_memory(dtype, [2, BLOCK_N, HEAD_DIM], v_desc.layout)
    q_bar = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
    k_bar = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
    v_bar = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
    mbarrier.init(q_bar, count=1)
    for i in gl.static_range(2):
        mbarrier.init(k_bar.index(i), count=1)
        mbarrier.init(v_bar.index(i), count=1)

    kv_row = b * SK
    kv_col = hkv * HEAD_DIM
    _issue_load(q_desc, b * SQ + m0, h * HEAD_DIM, q_bar, q_smem, True)
    for i in gl.static_range(2):
        _issue_load(k_desc, kv_row + i * BLOCK_N, kv_col, k_bar.index(i), k_smem.index(i), i < n_tiles)
        _issue_load(v_desc, kv_row + i * BLOCK_N, kv_col, v_bar.index(i), v_smem.index(i), i < n_tiles)
    mbarrier.wait(q_bar, phase=0)

    # tile 0: scores, softmax
    zeros_s = gl.zeros([BLOCK_M, BLOCK_N], gl.float32, layout=s_layout)
    mbarrier.wait(k_bar.index(0), phase=0)
    s = warpgroup_mma(q_smem, k_smem.index(0).permute((1, 0)), zeros_s, use_acc=False, is_async=True)
    s = warpgroup_mma_wait(num_outstanding=0, deps=(s,))
    _issue_load(k_desc, kv_row + 2 * BLOCK_N, kv_col, k_bar.index(0), k_smem.index(0), 2 < n_tiles)
    m_i = gl.full([BLOCK_M], float("-inf"), gl.float32, layout=gl.SliceLayout(1, s_layout))
    l_i = gl.zeros([BLOCK_M], gl.float32, layout=gl.SliceLayout(1, s_layout))
    p, m_i, l_i, alpha = _softmax_tile(s, m_i, l_i, 0, full, rows, offset, SK, qk_scale, CAUSAL, BLOCK_N, s_layout)
    p = gl.convert_layout(p.to(dtype), p_layout)
    acc = gl.zeros([BLOCK_M, HEAD_DIM], gl.float32, layout=o_layout)

    for j in range(1, n_tiles):
        stage = j % 2
        prev = 1 - stage
        mbarrier.wait(k_bar.index(stage), phase=(j // 2) & 1)
        s = warpgroup_mma(q_smem, k_smem.index(stage).permute((1, 0)), zeros_s, use_acc=False, is_async=True)
        mbarrier.wait(v_bar.index(prev), phase=((j - 1) // 2) & 1)
        acc = warpgroup_mma(p, v_smem.index(prev), acc, is_async=True)
        s = warpgroup_mma_wait(num_outstanding=1, deps=(s,))  # S_j ready; P·V of tile j − 1 may still run
        _issue_load(k_desc, kv_row + (j + 2) * BLOCK_N, kv_col, k_bar.index(stage), k_smem.index(stage),
                    j + 2 < n_tiles)  # fmt: skip
        p_new, m_i, l_i, alpha = _softmax_tile(s, m_i, l_i, j * BLOCK_N, full, rows, offset, SK, qk_scale, CAUSAL,
                                               BLOCK_N, s_layout)  # fmt: skip
        acc = warpgroup_mma_wait(num_outstanding=0, deps=(acc,))
        _issue_load(v_desc, kv_row + (j + 1) * BLOCK_N, kv_col, v_bar.index(prev), v_smem.index(prev),
                    j + 1 < n_tiles)  # fmt: skip
        acc = acc * gl.expand_dims(gl.convert_layout(alpha, gl.SliceLayout(1, o_layout)), 1)
        p = gl.convert_layout(p_new.to(dtype), p_layout)

    last = (n_tiles - 1) % 2
    mbarrier.wait(v_bar.index(last), phase=((n_tiles - 1) // 2) & 1)
    acc = warpgroup_mma(p, v_smem.index(last), acc, is_async=True)
    acc = warpgroup_mma_wait(num_outstanding=0, deps=(acc,))
    mbarrier.invalidate(q_bar)
    for i in gl.static_range(2):
        mbarrier.invalidate(k_bar.index(i))
        mbarrier.invalidate(v_bar.index(i))

    out = acc / gl.expand_dims(gl.convert_layout(l_i, gl.SliceLayout(1, o_layout)), 1)
    o_rows = m0 + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, o_layout))
    d = gl.arange(0, HEAD_DIM, layout=gl.SliceLayout(0, o_layout))
    ptrs = (O + b.to(gl.int64) * s_ob + gl.expand_dims(o_rows.to(gl.int64) * s_os, 1) + h * s_oh
            + gl.expand_dims(d, 0))  # fmt: skip
    gl.store(ptrs, out.to(dtype), mask=gl.expand_dims(o_rows < SQ, 1))


class GluonOverlap:
    """Prefill / append on a dense cache through `gluon_prefill_kernel`: q [B, Sq, Hq, D], k, v [B, Sk, Hkv, D]
    (contiguous), block_m = 16 × warps."""

    def __init__(self, q, k, v, kv_len: int, causal: bool, block_m: int = 128, block_n: int = 128, warps: int = 8):
        if block_m != 16 * warps:
            raise ValueError(f"gluon prefill: block_m must be 16 × warps ({16 * warps}), got {block_m}")
        self.q_desc, self.k_desc, self.v_desc, self.qk_scale = dense_loads(q, k, v, kv_len, block_m, block_n)
        self.q, self.k, self.v = q, k, v  # the descriptors hold their addresses: keep them alive
        self.shape, self.hkv, self.sk = q.shape, k.shape[2], kv_len
        self.block_m, self.block_n, self.warps, self.causal = block_m, block_n, warps, causal

    def info(self) -> dict:
        return {"kernel": "gluon", "BLOCK_M": self.block_m, "BLOCK_N": self.block_n, "warps": f"{self.warps}",
                "stages": 2, "kv_loads": "tma"}  # fmt: skip

    def __call__(self) -> torch.Tensor:
        o = torch.empty(self.shape, dtype=self.q.dtype, device=self.q.device)
        b, sq, hq, d = self.shape
        grid = (triton.cdiv(sq, self.block_m), b * hq)
        gluon_prefill_kernel[grid](self.q_desc, self.k_desc, self.v_desc, o, o.stride(0), o.stride(1), o.stride(2),
                                   sq, self.sk, hq, self.hkv, self.qk_scale, HEAD_DIM=d, CAUSAL=self.causal,
                                   BLOCK_M=self.block_m, BLOCK_N=self.block_n, num_warps=self.warps)  # fmt: skip
        return o


def gluon_op(q, k, v, kv_len: int, causal: bool, block_m: int, block_n: int, warps: int, stages: int = 0,
             pingpong: bool = False, persistent: bool = False):  # fmt: skip
    """The Gluon prefill of tools/triton_explore.py's variant tuple: the backend's ping-pong kernel, or this one."""
    if pingpong:
        return GluonPrefill(q, k, v, kv_len, causal, block_m, block_n, warps, stages, pingpong, persistent)
    return GluonOverlap(q, k, v, kv_len, causal, block_m, block_n, warps)
