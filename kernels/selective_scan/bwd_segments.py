"""The first pass of a segmented selective-scan backward: each segment's adjoint from a zero end, then chained.

When ``tiling.bwd_segments`` cuts a sequence, the backward of a segment needs the adjoint entering it from the
right, which depends on every later segment. :func:`segment_carries` runs each segment but the first backwards from
a zero adjoint (only the adjoint recurrence g_t = C_t dy_t + a_{t+1} g_{t+1}, no gradients) and keeps its value at
the segment's start and the segment's summed step size; ``kernels/common/state_passing.py`` (``reverse=True``) then
chains them into the true adjoint entering every segment, seeded with the gradient of the last state.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from ..common.math import fast_math, output_grad
from ..common.recurrence import adjoint_scan, row
from ..common.state_passing import pass_states
from .fused_fwd import channel_block, channel_tile, folded_program, load_step_sizes, state_tile
from .tiling import ScanTiling, launch_options


@triton.jit(do_not_specialize=["seqlen", "seg_len", "n_segments"])
def _scan_bwd_local_kernel(
    delta_ptr,
    A2_ptr,
    C_ptr,
    z_ptr,
    bias_ptr,
    dout_ptr,
    local_ptr,  # (batch, S, dstate, dim) float32: adjoint a_0 g_0 of each segment from a zero end
    dtsum_ptr,  # (batch, S, dim) float32
    seqlen,
    seg_len,
    dim,
    dstate,
    group_dim,
    n_segments,
    s_dt_b,
    s_dt_d,
    s_dt_l,
    s_z_b,
    s_z_d,
    s_z_l,
    s_g_b,
    s_g_d,
    s_g_l,
    s_C_b,
    s_C_g,
    s_C_n,
    s_C_l,
    HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr,
    TILE: tl.constexpr,
    FAST: tl.constexpr,
):
    """First pass of a segmented backward: run segment pid_s + 1 backwards from a zero adjoint."""
    pid_d, b64 = folded_program(dim, BLOCK_D)
    pid_s = tl.program_id(1) + 1
    offs_n = tl.arange(0, BLOCK_N)
    offs_t = tl.arange(0, TILE)
    mask_n = offs_n < dstate
    offs_d, mask_d, mask_nd, A2, group = channel_block(A2_ptr, pid_d, offs_n, mask_n, dim, dstate, group_dim, BLOCK_D)
    bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0) if HAS_BIAS else None
    dt_tile = channel_tile(delta_ptr, b64, s_dt_b, s_dt_l, s_dt_d, offs_t, offs_d)
    z_tile = channel_tile(z_ptr, b64, s_z_b, s_z_l, s_z_d, offs_t, offs_d)
    g_tile = channel_tile(dout_ptr, b64, s_g_b, s_g_l, s_g_d, offs_t, offs_d)
    C_tile = state_tile(C_ptr, b64, group, s_C_b, s_C_g, s_C_l, s_C_n, offs_t, offs_n)

    w = tl.sum(tl.zeros((TILE, BLOCK_N, BLOCK_D), tl.float32), axis=0)
    dtsum = tl.zeros((TILE, BLOCK_D), tl.float32)
    seg_start = pid_s * seg_len
    seg_end = tl.minimum(seg_start + seg_len, seqlen)
    n_tiles = tl.cdiv(seg_end - seg_start, TILE)
    for k in range(n_tiles):
        t0 = seg_start + (n_tiles - 1 - k) * TILE
        t64 = t0.to(tl.int64)
        mask_t = (t0 + offs_t) < seg_end
        mask = mask_t[:, None] & mask_d[None, :]
        dt, _ = load_step_sizes(dt_tile + t64 * s_dt_l, bias, mask, HAS_BIAS, SOFTPLUS, FAST)
        dout = tl.load(g_tile + t64 * s_g_l, mask=mask, other=0.0).to(tl.float32)
        z = tl.load(z_tile + t64 * s_z_l, mask=mask, other=0.0).to(tl.float32) if HAS_Z else dout
        dy, _ = output_grad(dout, z, HAS_Z)
        Ct = tl.load(C_tile + t64 * s_C_l, mask=mask_t[:, None] & mask_n[None, :], other=0.0).to(tl.float32)
        decay = tl.exp2(dt[:, None, :] * A2[None])
        _, decayed = adjoint_scan(decay, Ct[:, :, None] * dy[:, None, :], w, offs_t, TILE)
        w = row(decayed, 0, offs_t)
        dtsum += dt
    seg_row = b64 * n_segments + pid_s
    tl.store(local_ptr + seg_row * dstate * dim + offs_n[:, None] * dim + offs_d[None, :], w, mask=mask_nd)
    tl.store(dtsum_ptr + seg_row * dim + offs_d, tl.sum(dtsum, axis=0), mask=mask_d)


def segment_carries(
    dout: Tensor,
    d_last: Tensor | None,
    delta: Tensor,
    A2: Tensor,
    C4: Tensor,
    z: Tensor | None,
    delta_bias: Tensor | None,
    delta_softplus: bool,
    tiling: ScanTiling,
    seg_len: int,
) -> Tensor:
    """(batch, segments, dstate, dim) float32: the adjoint entering each segment from its right (C4 is
    (batch, groups, dstate, seqlen))."""
    batch, dim, seqlen = delta.shape
    dstate = A2.shape[1]
    segments, block_d = tiling.bwd_segments, tiling.bwd_block_d
    n_dblocks = triton.cdiv(dim, block_d)
    f32 = {"device": delta.device, "dtype": torch.float32}
    local = torch.empty(batch, segments, dstate, dim, **f32)
    dtsum = torch.empty(batch, segments, dim, **f32)
    z_arg = z if z is not None else delta
    _scan_bwd_local_kernel[(n_dblocks * batch, segments - 1)](
        delta, A2, C4, z_arg, delta_bias if delta_bias is not None else A2, dout, local, dtsum,
        seqlen, seg_len, dim, dstate, dim // C4.shape[1], segments,
        *delta.stride(), *z_arg.stride(), *dout.stride(), *C4.stride(),
        HAS_Z=z is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=delta_softplus,
        BLOCK_D=block_d, BLOCK_N=tiling.block_n, TILE=tiling.bwd_tile, FAST=fast_math(), num_warps=1,
        **launch_options(tiling),
    )  # fmt: skip
    seed = d_last.transpose(1, 2) if d_last is not None else None
    return pass_states(local, dtsum, A2, seed, reverse=True)
