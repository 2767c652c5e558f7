"""Selective scan backward in Triton: recompute the states, run the adjoint scan backwards, accumulate gradients.

For out = (C h + D u) * silu(z) with h_t = a_t h_{t-1} + dt_t u_t B_t and a_t = exp(dt_t A), the adjoint
g_t = dL/dh_t runs backwards in time:

    g_t = C_t dy_t + a_{t+1} g_{t+1}            (dy = dout * silu(z); g after the last position = d last_state)

and every gradient is a product of g with forward quantities at the same position:
    dC_t = sum_d dy_t h_t            dB_t = sum_d g_t dt_t u_t           du_t = D dy_t + dt_t sum_n g_t B_t
    ddt_t = sum_n g_t (A a_t h_{t-1} + u_t B_t)      dA = sum_t g_t a_t h_{t-1} dt_t
with h_{t-1} the recomputed state one row up (not h_t - dt_t u_t B_t, whose rounding swamps a small a_t h_{t-1}),
and d initial_state = a_0 g_0.

Work is split like the forward, in reverse: each program walks its segment's chunks from the last to the first.
Per chunk it first re-runs the forward from the chunk's saved state to get each tile's start state (kept in a
small per-program scratch buffer that stays in L2), then walks the tiles backwards. The carried adjoint is
w = a_t g_t at a tile's first position. With several segments, the adjoint entering each comes first from
``bwd_segments.py``.

Tiles are (TILE, BLOCK_N, BLOCK_D) with 16 channels on 16 lanes; the sums over channels (dB, dC) are a
reduce-scatter over those lanes (``kernels/common/lanes.py``) followed by float32 atomics. Programs are persistent
and take work items from an atomic counter, so the scratch buffer is sized by the number of programs in flight
rather than by the problem.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from ..common.hardware import persistent_programs
from ..common.lanes import scattered_rows, sum_channels_scattered
from ..common.math import fast_math, output_grad
from ..common.recurrence import (
    accumulate_rows,
    adjoint_scan,
    in_scan_layout,
    linear_scan,
    linear_scan_last,
    previous_states,
    row,
)
from ..common.tensors import like_layout
from .bwd_segments import segment_carries
from .fused_fwd import as_groups, channel_block, channel_tile, load_fwd_tile, state_tile, step_sizes
from .tiling import ScanTiling, launch_options, segment_length

PROGRAMS_PER_SM = 16


@triton.jit
def load_bwd_tile(
    dt_tile, u_tile, B_tile, C_tile, g_tile, z_tile, t0, lo, seg_end, s_dt_l, s_u_l, s_B_l, s_C_l, s_g_l, s_z_l,
    offs_t, offs_n, mask_d, dstate, HAS_Z: tl.constexpr,
):  # fmt: skip
    """The backward's inputs at positions [t0, t0 + TILE) as float32: the forward's (delta, u, B, C, z) and dout,
    read as zero outside [lo, seg_end)."""
    raw_dt, u, Bt, Ct, z = load_fwd_tile(
        dt_tile, u_tile, B_tile, C_tile, z_tile, t0, lo, seg_end, s_dt_l, s_u_l, s_B_l, s_C_l, s_z_l,
        offs_t, offs_n, mask_d, dstate, False, HAS_Z, True,
    )  # fmt: skip
    mask_t = ((t0 + offs_t) < seg_end) & ((t0 + offs_t) >= lo)
    dout = tl.load(g_tile + t0.to(tl.int64) * s_g_l, mask=mask_t[:, None] & mask_d[None, :], other=0.0)
    return raw_dt, u, Bt, Ct, dout.to(tl.float32), z


@triton.jit(do_not_specialize=["seqlen", "seg_len", "n_segments", "n_chunks", "n_dblocks", "batch"])
def _scan_bwd_kernel(
    u_ptr,
    delta_ptr,
    A2_ptr,
    B_ptr,
    C_ptr,
    D_ptr,
    z_ptr,
    bias_ptr,
    dout_ptr,
    chunk_ptr,  # (batch, n_chunks, dstate, dim) float32: states saved by the forward
    carry_ptr,  # (batch, S, dstate, dim) float32: adjoint entering each segment from its right
    dlast_ptr,  # (batch, dim, dstate) strided: gradient of the last state
    scratch_ptr,  # (programs, CHUNK // TILE, BLOCK_N, BLOCK_D) float32: tile start states of one chunk
    counter_ptr,  # int32 work-item counter, zero at launch
    du_ptr,
    ddelta_ptr,
    dz_ptr,
    y_ptr,  # the recomputed gated output (the forward's out), written when WRITE_OUT
    dB_ptr,  # (batch, groups, seqlen, dstate) float32, accumulated
    dC_ptr,
    dA_ptr,  # (dim, dstate) float32, accumulated
    dD_ptr,  # (dim,) float32, accumulated
    dbias_ptr,  # (dim,) float32, accumulated
    dh0_ptr,  # (batch, dim, dstate) float32
    seqlen,
    seg_len,
    dim,
    dstate,
    group_dim,
    n_groups,
    n_segments,
    n_chunks,
    n_dblocks,
    batch,
    s_u_b,
    s_u_d,
    s_u_l,
    s_dt_b,
    s_dt_d,
    s_dt_l,
    s_z_b,
    s_z_d,
    s_z_l,
    s_g_b,
    s_g_d,
    s_g_l,
    s_du_b,
    s_du_d,
    s_du_l,
    s_ddt_b,
    s_ddt_d,
    s_ddt_l,
    s_dz_b,
    s_dz_d,
    s_dz_l,
    s_y_b,
    s_y_d,
    s_y_l,
    s_B_b,
    s_B_g,
    s_B_n,
    s_B_l,
    s_C_b,
    s_C_g,
    s_C_n,
    s_C_l,
    s_dl_b,
    s_dl_d,
    s_dl_n,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    HAS_CARRY: tl.constexpr,
    HAS_DLAST: tl.constexpr,
    WANT_DH0: tl.constexpr,
    WRITE_OUT: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr,
    TILE: tl.constexpr,
    CHUNK: tl.constexpr,
    LOG_D: tl.constexpr,
    LEVELS: tl.constexpr,
    STATE_LEVELS: tl.constexpr,
    PREFETCH: tl.constexpr,
    FAST: tl.constexpr,
):
    offs_n = tl.arange(0, BLOCK_N)
    offs_t = tl.arange(0, TILE)
    offs_c = tl.arange(0, BLOCK_D)
    mask_n = offs_n < dstate
    block_offs = offs_n[:, None] * BLOCK_D + offs_c[None, :]
    scratch = scratch_ptr + tl.program_id(0).to(tl.int64) * (CHUNK // TILE) * BLOCK_N * BLOCK_D + block_offs
    zeros3 = tl.zeros((TILE, BLOCK_N, BLOCK_D), tl.float32)  # accumulators start as slices of a tile
    first_row, first_state, owner = scattered_rows(offs_c, TILE, BLOCK_N, LOG_D, LEVELS, STATE_LEVELS)
    sums_rows = tl.arange(0, TILE >> LEVELS)[:, None, None] + first_row[None, None, :]  # (T >> LEVELS, 1, D)
    sums_states = tl.arange(0, BLOCK_N >> STATE_LEVELS)[None, :, None] + first_state[None, None, :]
    sums_owner = owner[None, None, :] & (sums_states < dstate)
    n_items = n_dblocks * batch * n_segments

    item = tl.atomic_add(counter_ptr, 1)
    while item < n_items:
        pid_d = item % n_dblocks
        pid_b = (item // n_dblocks) % batch
        pid_s = item // (n_dblocks * batch)
        b64 = pid_b.to(tl.int64)
        offs_d, mask_d, mask_nd, A2, group = channel_block(
            A2_ptr, pid_d, offs_n, mask_n, dim, dstate, group_dim, BLOCK_D
        )
        state_offs = offs_n[:, None] * dim + offs_d[None, :]
        bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0) if HAS_BIAS else None
        Dskip = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32) if HAS_D else None
        u_tile = channel_tile(u_ptr, b64, s_u_b, s_u_l, s_u_d, offs_t, offs_d)
        dt_tile = channel_tile(delta_ptr, b64, s_dt_b, s_dt_l, s_dt_d, offs_t, offs_d)
        z_tile = channel_tile(z_ptr, b64, s_z_b, s_z_l, s_z_d, offs_t, offs_d)
        g_tile = channel_tile(dout_ptr, b64, s_g_b, s_g_l, s_g_d, offs_t, offs_d)
        du_tile = channel_tile(du_ptr, b64, s_du_b, s_du_l, s_du_d, offs_t, offs_d)
        ddt_tile = channel_tile(ddelta_ptr, b64, s_ddt_b, s_ddt_l, s_ddt_d, offs_t, offs_d)
        dz_tile = channel_tile(dz_ptr, b64, s_dz_b, s_dz_l, s_dz_d, offs_t, offs_d)
        y_tile = channel_tile(y_ptr, b64, s_y_b, s_y_l, s_y_d, offs_t, offs_d)
        B_tile = state_tile(B_ptr, b64, group, s_B_b, s_B_g, s_B_l, s_B_n, offs_t, offs_n)
        C_tile = state_tile(C_ptr, b64, group, s_C_b, s_C_g, s_C_l, s_C_n, offs_t, offs_n)
        dBC_rows = (b64 * n_groups + group) * seqlen * dstate + (sums_rows * dstate + sums_states)

        # The adjoint entering this segment from the right: d last_state, or the passed carry.
        w = tl.sum(zeros3, axis=0)
        if HAS_DLAST:  # noqa: SIM102 - a compile-time branch around a run-time one
            if pid_s == n_segments - 1:
                dl_offs = offs_n[:, None] * s_dl_n + offs_d[None, :] * s_dl_d
                w += tl.load(dlast_ptr + b64 * s_dl_b + dl_offs, mask=mask_nd, other=0.0)
        if HAS_CARRY:
            seg_row = b64 * n_segments + pid_s
            w += tl.load(carry_ptr + seg_row * dstate * dim + state_offs, mask=mask_nd, other=0.0)
        w = in_scan_layout(w, TILE)  # else it keeps the load's layout, and every tile's first step moves it
        dA_acc = tl.sum(zeros3, axis=0)
        dD_acc = tl.sum(zeros3, axis=1)  # (T, D): summed over positions once per item
        dbias_acc = tl.sum(zeros3, axis=1)

        seg_start = pid_s * seg_len
        seg_end = tl.minimum(seg_start + seg_len, seqlen)
        n_seg_chunks = tl.cdiv(seg_end - seg_start, CHUNK)
        for ci in range(n_seg_chunks):
            c0 = seg_start + (n_seg_chunks - 1 - ci) * CHUNK
            n_tiles = tl.cdiv(tl.minimum(c0 + CHUNK, seg_end) - c0, TILE)
            chunk_row = b64 * n_chunks + c0 // CHUNK
            h = tl.load(chunk_ptr + chunk_row * dstate * dim + state_offs, mask=mask_nd, other=0.0)
            h = in_scan_layout(h, TILE)
            # Forward sweep: the start state of every tile of the chunk, into the scratch buffer.
            if PREFETCH:
                n_dt, n_u, n_B, _unused_c, _unused_z = load_fwd_tile(
                    dt_tile, u_tile, B_tile, C_tile, z_tile, c0, c0, seg_end, s_dt_l, s_u_l, s_B_l, s_C_l, s_z_l,
                    offs_t, offs_n, mask_d, dstate, True, False, False,
                )  # fmt: skip
            for k in range(n_tiles):
                tl.store(scratch + k * BLOCK_N * BLOCK_D, h)
                t0 = c0 + k * TILE
                if PREFETCH:
                    raw_dt, u, Bt = n_dt, n_u, n_B
                    n_dt, n_u, n_B, _unused_c, _unused_z = load_fwd_tile(
                        dt_tile, u_tile, B_tile, C_tile, z_tile, t0 + TILE, c0, seg_end, s_dt_l, s_u_l, s_B_l, s_C_l,
                        s_z_l, offs_t, offs_n, mask_d, dstate, True, False, False,
                    )  # fmt: skip
                else:
                    raw_dt, u, Bt, _unused_c, _unused_z = load_fwd_tile(
                        dt_tile, u_tile, B_tile, C_tile, z_tile, t0, c0, seg_end, s_dt_l, s_u_l, s_B_l, s_C_l, s_z_l,
                        offs_t, offs_n, mask_d, dstate, True, False, False,
                    )  # fmt: skip
                mask = ((t0 + offs_t) < seg_end)[:, None] & mask_d[None, :]
                dt, _slope = step_sizes(raw_dt, bias, mask, HAS_BIAS, SOFTPLUS, FAST)
                decay = tl.exp2(dt[:, None, :] * A2[None])
                h = linear_scan_last(decay, (dt * u)[:, None, :] * Bt[:, :, None], h, offs_t, TILE)
            tl.debug_barrier()
            # Backward sweep over the same tiles, last first.
            if PREFETCH:
                n_dt, n_u, n_B, n_C, n_g, n_z = load_bwd_tile(
                    dt_tile, u_tile, B_tile, C_tile, g_tile, z_tile, c0 + (n_tiles - 1) * TILE, c0, seg_end,
                    s_dt_l, s_u_l, s_B_l, s_C_l, s_g_l, s_z_l, offs_t, offs_n, mask_d, dstate, HAS_Z,
                )  # fmt: skip
                n_h0 = tl.load(scratch + (n_tiles - 1) * BLOCK_N * BLOCK_D)
            for k in range(n_tiles):
                t0 = c0 + (n_tiles - 1 - k) * TILE
                t64 = t0.to(tl.int64)
                mask_t = (t0 + offs_t) < seg_end
                mask = mask_t[:, None] & mask_d[None, :]
                if PREFETCH:  # the start state too (H100, 1024 x 1K x 256: backward 12.25 -> 11.97 ms)
                    h0 = n_h0
                    n_h0 = tl.load(scratch + tl.maximum(n_tiles - 2 - k, 0) * BLOCK_N * BLOCK_D)
                    raw_dt, u, B2, C2, dout, z = n_dt, n_u, n_B, n_C, n_g, n_z
                    n_dt, n_u, n_B, n_C, n_g, n_z = load_bwd_tile(
                        dt_tile, u_tile, B_tile, C_tile, g_tile, z_tile, t0 - TILE, c0, seg_end,
                        s_dt_l, s_u_l, s_B_l, s_C_l, s_g_l, s_z_l, offs_t, offs_n, mask_d, dstate, HAS_Z,
                    )  # fmt: skip
                else:
                    h0 = tl.load(scratch + (n_tiles - 1 - k) * BLOCK_N * BLOCK_D)
                    raw_dt, u, B2, C2, dout, z = load_bwd_tile(
                        dt_tile, u_tile, B_tile, C_tile, g_tile, z_tile, t0, c0, seg_end,
                        s_dt_l, s_u_l, s_B_l, s_C_l, s_g_l, s_z_l, offs_t, offs_n, mask_d, dstate, HAS_Z,
                    )  # fmt: skip
                h0 = in_scan_layout(h0, TILE)  # as w (both: sm_90 backward sweep 1193 -> 1135 SASS instructions)
                dt, slope = step_sizes(raw_dt, bias, mask, HAS_BIAS, SOFTPLUS, FAST)
                dy, zsig = output_grad(dout, z, HAS_Z)
                B3 = B2[:, :, None]
                C3 = C2[:, :, None]
                x = dt * u
                decay = tl.exp2(dt[:, None, :] * A2[None])
                inp = x[:, None, :] * B3
                hs, _ = linear_scan(decay, inp, h0, offs_t, TILE)
                if HAS_Z or WRITE_OUT:
                    y = tl.sum(hs * C3, axis=1)
                    if HAS_D:
                        y += Dskip[None, :] * u
                    if HAS_Z:
                        dz = dout * y * zsig * (1.0 + z * (1.0 - zsig))
                        tl.store(dz_tile + t64 * s_dz_l, dz.to(dz_ptr.dtype.element_ty), mask=mask)
                    if WRITE_OUT:  # the forward's output again, for a caller that did not keep it
                        out = y * z * zsig if HAS_Z else y
                        tl.store(y_tile + t64 * s_y_l, out.to(y_ptr.dtype.element_ty), mask=mask)
                g, decayed = adjoint_scan(decay, C3 * dy[:, None, :], w, offs_t, TILE)
                w = row(decayed, 0, offs_t)
                # (T >> LEVELS, N >> STATE_LEVELS, D) channel sums, lanes holding other (position, state) pairs
                dC = sum_channels_scattered(hs * dy[:, None, :], offs_c, TILE, LOG_D, LEVELS, STATE_LEVELS)
                dB = sum_channels_scattered(g * x[:, None, :], offs_c, TILE, LOG_D, LEVELS, STATE_LEVELS)
                ge = decayed * previous_states(hs, h0, offs_t, TILE)  # g_t a_t h_{t-1}, not hs - inp: exact
                dA_acc = accumulate_rows(dA_acc, ge, dt[:, None, :], offs_t, TILE)
                gB = tl.sum(g * B3, axis=1)  # (T, D)
                ddelta = (tl.sum(ge * A2[None], axis=1) * 0.6931471805599453 + gB * u) * slope
                ddelta = tl.where(mask, ddelta, 0.0)
                du = gB * dt
                if HAS_D:
                    du += Dskip[None, :] * dy
                    dD_acc += dy * u
                dbias_acc += ddelta
                tl.store(du_tile + t64 * s_du_l, du.to(du_ptr.dtype.element_ty), mask=mask)
                tl.store(ddt_tile + t64 * s_ddt_l, ddelta.to(ddelta_ptr.dtype.element_ty), mask=mask)
                mask_sums = sums_owner & ((t0 + sums_rows) < seg_end)
                tl.atomic_add(dB_ptr + dBC_rows + t64 * dstate, dB, mask=mask_sums, sem="relaxed")
                tl.atomic_add(dC_ptr + dBC_rows + t64 * dstate, dC, mask=mask_sums, sem="relaxed")
            tl.debug_barrier()

        if WANT_DH0:  # noqa: SIM102 - a compile-time branch around a run-time one
            if pid_s == 0:
                dh0 = dh0_ptr + b64 * dim * dstate + offs_d[None, :] * dstate + offs_n[:, None]
                tl.store(dh0, w, mask=mask_nd)
        tl.atomic_add(dA_ptr + offs_d[None, :] * dstate + offs_n[:, None], dA_acc, mask=mask_nd, sem="relaxed")
        if HAS_D:
            tl.atomic_add(dD_ptr + offs_d, tl.sum(dD_acc, axis=0), mask=mask_d, sem="relaxed")
        if HAS_BIAS:
            tl.atomic_add(dbias_ptr + offs_d, tl.sum(dbias_acc, axis=0), mask=mask_d, sem="relaxed")
        item = tl.atomic_add(counter_ptr, 1)


def _programs(device: torch.device, n_items: int) -> int:
    return min(n_items, persistent_programs(device, PROGRAMS_PER_SM, interpreted=2))


def scan_bwd(
    dout: Tensor,
    d_last: Tensor | None,
    u: Tensor,
    delta: Tensor,
    A2: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    z: Tensor | None,
    delta_bias: Tensor | None,
    delta_softplus: bool,
    chunks: Tensor,
    tiling: ScanTiling,
    want_dh0: bool,
    ddelta: Tensor | None = None,
    dz: Tensor | None = None,
    out: Tensor | None = None,
    dB_into: Tensor | None = None,
    dC_into: Tensor | None = None,
) -> tuple[Tensor, ...]:
    """Gradients (du, ddelta, dA, dB, dC, dD, dz, ddelta_bias, d initial_state); None where an input is None.

    ``chunks`` are the forward's saved states; ``d_last`` is the gradient of the returned last state. ``ddelta`` and
    ``dz``, if given, are where those gradients go (any strides); ``out``, if given, receives the forward's output
    recomputed, so that a caller need not keep it. Each may be the matching input itself (delta, z, dout): a
    position's input is read before its output is written, by the same program, and never read again (loads past
    a chunk's end prefetch values that are dropped). A caller that no longer needs an input saves its memory so.
    """
    batch, dim, seqlen = u.shape
    dstate = A2.shape[1]
    B4, C4 = as_groups(B), as_groups(C)
    n_groups = B4.shape[1]
    device = u.device
    f32 = {"device": device, "dtype": torch.float32}
    block_d, tile, chunk = tiling.bwd_block_d, tiling.bwd_tile, tiling.chunk
    n_dblocks = triton.cdiv(dim, block_d)
    segments = tiling.bwd_segments
    seg_len = segment_length(seqlen, segments, chunk)
    fast = fast_math()
    z_arg = z if z is not None else u
    dout = dout if dout.stride(1) == 1 or dout.stride(2) == 1 else dout.contiguous()

    carry = None
    if segments > 1:
        carry = segment_carries(dout, d_last, delta, A2, C4, z, delta_bias, delta_softplus, tiling, seg_len)

    du = like_layout(u)
    if ddelta is None:
        ddelta = like_layout(delta)
    if z is not None and dz is None:
        dz = like_layout(z)
    dB = torch.zeros(batch, n_groups, seqlen, dstate, **f32)
    dC = torch.zeros(batch, n_groups, seqlen, dstate, **f32)
    dA = torch.zeros(dim, dstate, **f32)
    dD = torch.zeros(dim, **f32) if D is not None else None
    dbias = torch.zeros(dim, **f32) if delta_bias is not None else None
    dh0 = torch.empty(batch, dim, dstate, **f32) if want_dh0 else None
    n_items = n_dblocks * batch * segments
    log_d = block_d.bit_length() - 1
    # halvings of the tiles' positions, then of their states (common/lanes.py): at most log2(block_n) - 1 of the
    # states, as a thread holds half of them (Triton puts the other half on a second lane) and they split in registers
    levels = min(log_d, tile.bit_length() - 1)
    state_levels = min(log_d - levels, max(tiling.block_n.bit_length() - 2, 0))
    programs = _programs(device, n_items)
    scratch = torch.empty(programs, chunk // tile, tiling.block_n, block_d, **f32)
    counter = torch.zeros(1, device=device, dtype=torch.int32)
    dlast_arg = d_last if d_last is not None and carry is None else A2.new_empty(1, 1, 1)
    _scan_bwd_kernel[(programs,)](
        u, delta, A2, B4, C4, D if D is not None else A2, z_arg, delta_bias if delta_bias is not None else A2, dout,
        chunks, carry if carry is not None else A2, dlast_arg, scratch, counter,
        du, ddelta, dz if dz is not None else du, out if out is not None else du, dB, dC, dA,
        dD if dD is not None else dA,
        dbias if dbias is not None else dA, dh0 if dh0 is not None else dA,
        seqlen, seg_len, dim, dstate, dim // n_groups, n_groups, segments, chunks.shape[1], n_dblocks, batch,
        *u.stride(), *delta.stride(), *z_arg.stride(), *dout.stride(), *du.stride(), *ddelta.stride(),
        *(dz if dz is not None else du).stride(), *(out if out is not None else du).stride(), *B4.stride(),
        *C4.stride(), *dlast_arg.stride(),
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=delta_softplus,
        HAS_CARRY=carry is not None, HAS_DLAST=d_last is not None and carry is None, WANT_DH0=want_dh0,
        WRITE_OUT=out is not None, BLOCK_D=block_d, BLOCK_N=tiling.block_n, TILE=tile, CHUNK=chunk, LOG_D=log_d,
        LEVELS=levels, STATE_LEVELS=state_levels, PREFETCH=tiling.prefetch, FAST=fast, num_warps=1,
        **launch_options(tiling),
    )  # fmt: skip
    dB = dB.permute(0, 1, 3, 2)  # (batch, groups, dstate, seqlen)
    dC = dC.permute(0, 1, 3, 2)
    if B.dim() == 3:
        dB, dC = dB[:, 0], dC[:, 0]
    dB = dB_into.copy_(dB) if dB_into is not None else dB.to(B.dtype)
    dC = dC_into.copy_(dC) if dC_into is not None else dC.to(C.dtype)
    return du, ddelta, dA, dB, dC, dD, dz, dbias, dh0
