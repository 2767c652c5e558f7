"""Selective scan forward in Triton: one program per (channel block, sequence, segment), scanning tile by tile.

A tile holds ``TILE`` positions of ``BLOCK_D`` channels and all ``BLOCK_N`` states as a (TILE, BLOCK_N, BLOCK_D)
tensor in registers. Its shape is chosen so that Triton's default layout puts channels (and a few states) on the
warp's lanes and keeps the tile's positions inside each thread: the recurrence along positions is then a chain of
fused multiply-adds (``kernels/common/recurrence.py``), and the (batch, length, dim, dstate) tensor never leaves
the registers.

With ``STATE_ONLY`` the kernel is the first pass of a segmented scan: it runs each segment from a zero state and
writes only the segment's end state and its summed step size (see ``kernels/common/state_passing.py``).
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from torch import Tensor

from ..common.math import fast_math, silu_sigmoid, softplus_sigmoid
from ..common.recurrence import in_scan_layout, linear_scan_last, linear_scan_output
from ..common.state_passing import pass_states
from ..common.tensors import like_layout
from .tiling import ScanTiling, launch_options, segment_length


@triton.jit
def step_sizes(raw, bias, mask, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, FAST: tl.constexpr):
    """delta tile (float32) -> (dt, d dt / d delta), zero where masked."""
    if HAS_BIAS:
        raw = raw + bias[None]
    if SOFTPLUS:
        dt, slope = softplus_sigmoid(raw, FAST)
    else:
        dt, slope = raw, tl.full(raw.shape, 1.0, tl.float32)
    return tl.where(mask, dt, 0.0), slope


@triton.jit
def load_step_sizes(delta_ptrs, bias, mask, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, FAST: tl.constexpr):
    """Load a delta tile -> (dt, d dt / d delta), zero where masked."""
    raw = tl.load(delta_ptrs, mask=mask, other=0.0).to(tl.float32)
    return step_sizes(raw, bias, mask, HAS_BIAS, SOFTPLUS, FAST)


@triton.jit
def load_fwd_tile(
    dt_tile, u_tile, B_tile, C_tile, z_tile, t0, lo, seg_end, s_dt_l, s_u_l, s_B_l, s_C_l, s_z_l,
    offs_t, offs_n, mask_d, dstate, STATE_ONLY: tl.constexpr, HAS_Z: tl.constexpr, CHECK_LO: tl.constexpr,
):  # fmt: skip
    """The inputs at positions [t0, t0 + TILE) as float32: (delta, u, B, C, z), where an unused C is B's tile and an
    unused z is u's. Positions at or past ``seg_end`` read as zero, and with CHECK_LO those before ``lo`` too (a
    backward prefetch may point before its chunk; the check costs the forward registers, so it is compiled only
    where needed)."""
    t64 = t0.to(tl.int64)
    mask_t = (t0 + offs_t) < seg_end
    if CHECK_LO:
        mask_t &= (t0 + offs_t) >= lo
    mask = mask_t[:, None] & mask_d[None, :]
    mask_bc = mask_t[:, None] & (offs_n[None, :] < dstate)
    raw_dt = tl.load(dt_tile + t64 * s_dt_l, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(u_tile + t64 * s_u_l, mask=mask, other=0.0).to(tl.float32)
    Bt = tl.load(B_tile + t64 * s_B_l, mask=mask_bc, other=0.0).to(tl.float32)
    Ct = Bt
    if not STATE_ONLY:
        Ct = tl.load(C_tile + t64 * s_C_l, mask=mask_bc, other=0.0).to(tl.float32)
    z = u
    if HAS_Z and not STATE_ONLY:
        z = tl.load(z_tile + t64 * s_z_l, mask=mask, other=0.0).to(tl.float32)
    return raw_dt, u, Bt, Ct, z


@triton.jit
def folded_program(dim, BLOCK_D: tl.constexpr):
    """(channel block, sequence as int64) of a program whose first grid axis folds the batch into the channel
    blocks."""
    n_dblocks = tl.cdiv(dim, BLOCK_D)
    pid_d, pid_b = tl.program_id(0) % n_dblocks, tl.program_id(0) // n_dblocks
    return pid_d, pid_b.to(tl.int64)


@triton.jit
def channel_block(A2_ptr, pid_d, offs_n, mask_n, dim, dstate, group_dim, BLOCK_D: tl.constexpr):
    """Channel block ``pid_d``: (offs_d, mask_d, the (N, D) mask, A2 (N, D), the group of B and C it reads;
    BLOCK_D divides group_dim: one group per block)."""
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_d = offs_d < dim
    mask_nd = mask_n[:, None] & mask_d[None, :]
    A2 = tl.load(A2_ptr + offs_d[None, :] * dstate + offs_n[:, None], mask=mask_nd, other=0.0)
    group = (pid_d * BLOCK_D) // group_dim
    return offs_d, mask_d, mask_nd, A2, group


@triton.jit
def channel_tile(ptr, b64, s_b, s_l, s_d, offs_t, offs_d):
    """(TILE, BLOCK_D) pointers to positions [0, TILE) of a (batch, dim, seqlen) tensor: a 64-bit base per
    sequence, 32-bit offsets inside the tile."""
    return ptr + b64 * s_b + (offs_t[:, None] * s_l + offs_d[None, :] * s_d)


@triton.jit
def state_tile(ptr, b64, group, s_b, s_g, s_l, s_n, offs_t, offs_n):
    """(TILE, BLOCK_N) pointers to positions [0, TILE) of one group of a (batch, groups, dstate, seqlen) B or C:
    a 64-bit base, 32-bit offsets inside the tile."""
    return ptr + b64 * s_b + group * s_g + (offs_t[:, None] * s_l + offs_n[None, :] * s_n)


@triton.jit(do_not_specialize=["seqlen", "seg_len", "n_segments", "n_chunks"])
def _scan_fwd_kernel(
    u_ptr,
    delta_ptr,
    A2_ptr,  # (dim, dstate) float32: A * log2(e)
    B_ptr,
    C_ptr,
    D_ptr,
    z_ptr,
    bias_ptr,
    out_ptr,
    start_ptr,  # (batch, S, dstate, dim) strided: state before each segment
    chunk_ptr,  # (batch, n_chunks, dstate, dim) float32: state before each chunk, saved for the backward
    last_ptr,  # (batch, dim, dstate) float32
    local_ptr,  # (batch, S, dstate, dim) float32: STATE_ONLY end states
    dtsum_ptr,  # (batch, S, dim) float32: STATE_ONLY summed step sizes
    seqlen,
    seg_len,
    dim,
    dstate,
    group_dim,
    n_segments,
    n_chunks,
    s_u_b,
    s_u_d,
    s_u_l,
    s_dt_b,
    s_dt_d,
    s_dt_l,
    s_z_b,
    s_z_d,
    s_z_l,
    s_o_b,
    s_o_d,
    s_o_l,
    s_B_b,
    s_B_g,
    s_B_n,
    s_B_l,
    s_C_b,
    s_C_g,
    s_C_n,
    s_C_l,
    s_h_b,
    s_h_s,
    s_h_n,
    s_h_d,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    HAS_START: tl.constexpr,
    STATE_ONLY: tl.constexpr,
    SAVE_CHUNKS: tl.constexpr,
    WRITE_LAST: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr,
    TILE: tl.constexpr,
    CHUNK: tl.constexpr,
    PREFETCH: tl.constexpr,
    FAST: tl.constexpr,
):
    pid_d, b64 = folded_program(dim, BLOCK_D)
    pid_s = tl.program_id(1)
    offs_n = tl.arange(0, BLOCK_N)
    offs_t = tl.arange(0, TILE)
    offs_d, mask_d, mask_nd, A2, group = channel_block(
        A2_ptr, pid_d, offs_n, offs_n < dstate, dim, dstate, group_dim, BLOCK_D
    )
    bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0) if HAS_BIAS else None
    Dskip = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32) if HAS_D else None

    u_tile = channel_tile(u_ptr, b64, s_u_b, s_u_l, s_u_d, offs_t, offs_d)
    dt_tile = channel_tile(delta_ptr, b64, s_dt_b, s_dt_l, s_dt_d, offs_t, offs_d)
    z_tile = channel_tile(z_ptr, b64, s_z_b, s_z_l, s_z_d, offs_t, offs_d)
    o_tile = channel_tile(out_ptr, b64, s_o_b, s_o_l, s_o_d, offs_t, offs_d)
    B_tile = state_tile(B_ptr, b64, group, s_B_b, s_B_g, s_B_l, s_B_n, offs_t, offs_n)
    C_tile = state_tile(C_ptr, b64, group, s_C_b, s_C_g, s_C_l, s_C_n, offs_t, offs_n)
    state_offs = offs_n[:, None] * dim + offs_d[None, :]

    if HAS_START:
        start = start_ptr + b64 * s_h_b + pid_s * s_h_s + offs_n[:, None] * s_h_n + offs_d[None, :] * s_h_d
        h = tl.load(start, mask=mask_nd, other=0.0).to(tl.float32)
    else:
        h = tl.zeros((BLOCK_N, BLOCK_D), tl.float32)
    h = in_scan_layout(h, TILE)
    dtsum = tl.zeros((BLOCK_D,), tl.float32)

    seg_start = pid_s * seg_len
    seg_end = tl.minimum(seg_start + seg_len, seqlen)
    n_tiles = tl.cdiv(seg_end - seg_start, TILE)
    if PREFETCH:  # the first tile's loads; each iteration then issues the next tile's before computing its own
        n_dt, n_u, n_B, n_C, n_z = load_fwd_tile(
            dt_tile, u_tile, B_tile, C_tile, z_tile, seg_start, seg_start, seg_end, s_dt_l, s_u_l, s_B_l, s_C_l, s_z_l,
            offs_t, offs_n, mask_d, dstate, STATE_ONLY, HAS_Z, False,
        )  # fmt: skip
    for k in range(n_tiles):
        t0 = seg_start + k * TILE
        if SAVE_CHUNKS:  # noqa: SIM102 - a compile-time branch around a run-time one
            if t0 % CHUNK == 0:
                row = b64 * n_chunks + t0 // CHUNK
                tl.store(chunk_ptr + row * dstate * dim + state_offs, h, mask=mask_nd)
        t64 = t0.to(tl.int64)
        mask = ((t0 + offs_t) < seg_end)[:, None] & mask_d[None, :]
        if PREFETCH:
            raw_dt, u, Bt, Ct, z = n_dt, n_u, n_B, n_C, n_z
            n_dt, n_u, n_B, n_C, n_z = load_fwd_tile(
                dt_tile, u_tile, B_tile, C_tile, z_tile, t0 + TILE, seg_start, seg_end,
                s_dt_l, s_u_l, s_B_l, s_C_l, s_z_l, offs_t, offs_n, mask_d, dstate, STATE_ONLY, HAS_Z, False,
            )  # fmt: skip
        else:
            raw_dt, u, Bt, Ct, z = load_fwd_tile(
                dt_tile, u_tile, B_tile, C_tile, z_tile, t0, seg_start, seg_end, s_dt_l, s_u_l, s_B_l, s_C_l, s_z_l,
                offs_t, offs_n, mask_d, dstate, STATE_ONLY, HAS_Z, False,
            )  # fmt: skip
        dt, _ = step_sizes(raw_dt, bias, mask, HAS_BIAS, SOFTPLUS, FAST)  # (T, D)
        decay = tl.exp2(dt[:, None, :] * A2[None, :, :])  # (T, N, D)
        inp = (dt * u)[:, None, :] * Bt[:, :, None]
        if STATE_ONLY:
            h = linear_scan_last(decay, inp, h, offs_t, TILE)
            dtsum += tl.sum(dt, axis=0)
        else:
            y, h = linear_scan_output(decay, inp, Ct[:, :, None], h, offs_t, TILE)  # (T, D)
            if HAS_D:
                y += Dskip[None, :] * u
            if HAS_Z:
                gate, _ = silu_sigmoid(z)
                y *= gate
            tl.store(o_tile + t64 * s_o_l, y.to(out_ptr.dtype.element_ty), mask=mask)

    if STATE_ONLY:
        row = b64 * n_segments + pid_s
        tl.store(local_ptr + row * dstate * dim + state_offs, h, mask=mask_nd)
        tl.store(dtsum_ptr + row * dim + offs_d, dtsum, mask=mask_d)
    if WRITE_LAST:  # noqa: SIM102 - a compile-time branch around a run-time one
        if pid_s == n_segments - 1:
            last = last_ptr + b64 * dim * dstate + offs_d[None, :] * dstate + offs_n[:, None]
            tl.store(last, h, mask=mask_nd)


def exp2_rates(A: Tensor) -> Tensor:
    """A * log2(e) as the kernels take it (contiguous float32): the decays are then exp2(dt A2), one ``ex2`` each."""
    return (A.float() * math.log2(math.e)).contiguous()


def as_groups(BC: Tensor) -> Tensor:
    """(b, n, l) -> a (b, 1, n, l) view; (b, g, n, l) unchanged."""
    return BC if BC.dim() == 4 else BC.unsqueeze(1)


def scan_fwd(
    u: Tensor,
    delta: Tensor,
    A2: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    z: Tensor | None,
    delta_bias: Tensor | None,
    delta_softplus: bool,
    initial_state: Tensor | None,
    tiling: ScanTiling,
    save_chunks: bool,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Run the forward. Returns (out, last state (batch, dim, dstate) float32, chunk states or None).

    ``A2`` is A * log2(e), contiguous float32. With more than one segment, a state-only pass and the state passing
    run first, so that every segment starts from its true state.
    """
    batch, dim, seqlen = u.shape
    dstate = A2.shape[1]
    B4, C4 = as_groups(B), as_groups(C)
    group_dim = dim // B4.shape[1]
    out = like_layout(u)
    last = torch.empty(batch, dim, dstate, device=u.device, dtype=torch.float32)
    n_chunks = triton.cdiv(seqlen, tiling.chunk)
    chunks = torch.empty(batch, n_chunks, dstate, dim, device=u.device, dtype=torch.float32) if save_chunks else None
    segments = tiling.fwd_segments
    seg_len = segment_length(seqlen, segments, tiling.chunk)
    seed = initial_state.transpose(1, 2) if initial_state is not None else None  # (b, n, d) view
    z_arg = z if z is not None else u

    def launch(n_progs_s, start, start_strides, state_only, local=None, dtsum=None):
        grid = (triton.cdiv(dim, tiling.fwd_block_d) * batch, n_progs_s)  # batch folded in: no 65535 limit
        _scan_fwd_kernel[grid](
            u,
            delta,
            A2,
            B4,
            C4,
            D if D is not None else A2,
            z_arg,
            delta_bias if delta_bias is not None else A2,
            out,
            start if start is not None else A2,
            chunks if chunks is not None else A2,
            last,
            local if local is not None else A2,
            dtsum if dtsum is not None else A2,
            seqlen,
            seg_len,
            dim,
            dstate,
            group_dim,
            segments,
            n_chunks,
            *u.stride(),
            *delta.stride(),
            *z_arg.stride(),
            *out.stride(),
            *B4.stride(),
            *C4.stride(),
            *start_strides,
            HAS_D=D is not None,
            HAS_Z=z is not None,
            HAS_BIAS=delta_bias is not None,
            SOFTPLUS=delta_softplus,
            HAS_START=start is not None,
            STATE_ONLY=state_only,
            SAVE_CHUNKS=save_chunks and not state_only,
            WRITE_LAST=not state_only,
            BLOCK_D=tiling.fwd_block_d,
            BLOCK_N=tiling.block_n,
            TILE=tiling.fwd_tile,
            CHUNK=tiling.chunk,
            PREFETCH=tiling.prefetch,
            FAST=fast_math(),
            num_warps=1,
            **launch_options(tiling),
        )

    if segments > 1:
        local = torch.empty(batch, segments, dstate, dim, device=u.device, dtype=torch.float32)
        dtsum = torch.empty(batch, segments, dim, device=u.device, dtype=torch.float32)
        launch(segments - 1, None, (0, 0, 0, 0), True, local, dtsum)  # the last segment's end state is not needed
        starts = pass_states(local, dtsum, A2, seed)
        launch(segments, starts, starts.stride(), False)
    elif seed is not None:
        launch(1, seed, (seed.stride(0), 0, seed.stride(1), seed.stride(2)), False)
    else:
        launch(1, None, (0, 0, 0, 0), False)
    return out, last, chunks
