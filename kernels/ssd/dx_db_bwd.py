"""SSD backward, part 2: x, B, D and the direct dt gradient, plus the intra-chunk part of the decay gradient.

One program per (batch, chunk, group, tile of positions j) loops over the group's heads (so dB sums over them in
registers, without atomics) and, per head, over the query tiles i >= j. With M_ij = (C_i . B_j) exp(cs_i - cs_j) dt_j
(i >= j), e_j = exp(cs_end - cs_j) and dS the gradient of the chunk's own end state (from the backward state
passing):

    dx_j  = dt_j (sum_i (C_i . B_j) exp(cs_i - cs_j) dy_i + e_j dS B_j) + D dy_j
    dB_j  = sum_heads (sum_i (dy_i . x_j) exp(cs_i - cs_j) dt_j C_i + e_j dt_j dS^T x_j)
    ddt_j = sum_i (dy_i . x_j) (C_i . B_j) exp(cs_i - cs_j) + e_j x_j . (dS B_j)       (the dA path comes later)

For the decay (cs) gradient it writes W_ij = (dy_i . x_j) M_ij as per-position sums, +W at i and -W at j, over
i > j only: the diagonal terms do not depend on cs, and leaving them out (rather than adding and subtracting them)
keeps the later reverse cumulative sum free of cancellation between large equal terms. The chunk-state term
V_j = dt_j e_j x_j . (dS B_j) is written per position; its share of the gradient is a prefix sum (dt_bwd).
"""

from __future__ import annotations

from typing import NamedTuple

import triton
import triton.language as tl
from torch import Tensor

from ..common.math import LOG2E
from ..common.tensors import dot_precision
from .chunk_scan_bwd import load_dy
from .tiling import SSDTiles, new_buffer


@triton.jit
def _dx_db_kernel(
    dout_ptr, z_ptr, x_ptr, B_ptr, C_ptr, D_ptr, dt_ptr, cs_ptr, dchunk_ptr,
    dx_ptr, dB_ptr, ddt_ptr, v_ptr, dcs_row_ptr, dcs_col_ptr, dD_ptr,
    seqlen, chunk_size, nchunks, nheads, heads_per_group, headdim, dstate,
    stride_d_b, stride_d_l, stride_d_h, stride_d_p,
    stride_z_b, stride_z_l, stride_z_h, stride_z_p,
    stride_x_b, stride_x_l, stride_x_h, stride_x_p,
    stride_B_b, stride_B_l, stride_B_g, stride_B_n,
    stride_C_b, stride_C_l, stride_C_g, stride_C_n,
    stride_dx_b, stride_dx_l, stride_dx_h, stride_dx_p,
    stride_dB_b, stride_dB_l, stride_dB_g, stride_dB_n,
    HAS_Z: tl.constexpr, HAS_D: tl.constexpr, D_HAS_HDIM: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_I: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
    PRECISION: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0).to(tl.int64)
    ntiles = tl.cdiv(chunk_size, BLOCK_T)
    ngroups = nheads // heads_per_group
    tile = (pid % ntiles).to(tl.int32)
    g = (pid // ntiles) % ngroups
    c = (pid // (ntiles * ngroups)) % nchunks
    b = pid // (ntiles * ngroups * nchunks)
    start = c * chunk_size
    chunk_len = tl.minimum(chunk_size, seqlen - start).to(tl.int32)
    offs_j = tile * BLOCK_T + tl.arange(0, BLOCK_T)
    offs_p = tl.arange(0, BLOCK_P)
    offs_n = tl.arange(0, BLOCK_N)
    valid_j = offs_j < chunk_len
    p_ok = offs_p < headdim
    n_ok = offs_n < dstate
    xj_mask = valid_j[:, None] & p_ok[None, :]
    B_j = tl.load(
        B_ptr + b * stride_B_b + start * stride_B_l + g * stride_B_g
        + offs_j[:, None] * stride_B_l + offs_n[None, :] * stride_B_n,
        mask=valid_j[:, None] & n_ok[None, :],
        other=0.0,
    )  # fmt: skip
    C_base = C_ptr + b * stride_C_b + start * stride_C_l + g * stride_C_g
    dB = tl.zeros((BLOCK_T, BLOCK_N), dtype=tl.float32)

    for r in range(0, heads_per_group):
        h = g * heads_per_group + r
        vec_base = (b * nheads + h) * nchunks * chunk_size + start  # (batch, heads, chunks, chunk_size)
        dout_base = dout_ptr + b * stride_d_b + start * stride_d_l + h * stride_d_h
        z_base = z_ptr + b * stride_z_b + start * stride_z_l + h * stride_z_h
        x_base = x_ptr + b * stride_x_b + start * stride_x_l + h * stride_x_h
        x_j_ptrs = x_base + offs_j[:, None] * stride_x_l + offs_p[None, :] * stride_x_p
        x_j = tl.load(x_j_ptrs, mask=xj_mask, other=0.0)
        dt_j = tl.load(dt_ptr + vec_base + offs_j, mask=valid_j, other=0.0)
        cs_j = tl.load(cs_ptr + vec_base + offs_j, mask=valid_j, other=0.0)
        cs_end = tl.load(cs_ptr + vec_base + chunk_size - 1)
        dS = tl.load(
            dchunk_ptr + ((b * nchunks + c) * nheads + h) * headdim * dstate
            + offs_p[:, None] * dstate + offs_n[None, :],
            mask=p_ok[:, None] & n_ok[None, :],
            other=0.0,
        ).to(x_j.dtype)  # fmt: skip

        # The chunk-state path.
        to_end = tl.exp(cs_end - cs_j)
        BdS = tl.dot(B_j, tl.trans(dS), input_precision=PRECISION)  # (j, headdim)
        dx = BdS * to_end[:, None]  # times dt_j at the end
        ddt = to_end * tl.sum(BdS * x_j.to(tl.float32), axis=1)
        dB += tl.dot(x_j, dS, input_precision=PRECISION) * (to_end * dt_j)[:, None]
        # Its share of the decay gradient, summed as a prefix in dt_bwd.
        tl.store(v_ptr + vec_base + offs_j, ddt * dt_j, mask=offs_j < chunk_size)

        # The intra-chunk path, query tiles from the diagonal to the chunk's end.
        row = tl.zeros((BLOCK_T,), dtype=tl.float32)
        for i0 in range(tile * BLOCK_T, chunk_size, BLOCK_I):
            offs_i = i0 + tl.arange(0, BLOCK_I)
            valid_i = offs_i < chunk_len
            C_i = tl.load(
                C_base + offs_i[:, None] * stride_C_l + offs_n[None, :] * stride_C_n,
                mask=valid_i[:, None] & n_ok[None, :],
                other=0.0,
            )
            dy_i = load_dy(
                dout_base, z_base, offs_i, offs_p, stride_d_l, stride_d_p, stride_z_l, stride_z_p,
                valid_i[:, None] & p_ok[None, :], HAS_Z,
            ).to(x_j.dtype)  # fmt: skip
            cs_i = tl.load(cs_ptr + vec_base + offs_i, mask=valid_i, other=0.0)
            causal = (offs_i[None, :] >= offs_j[:, None]) & valid_i[None, :]
            # (j, i); exp2: Triton's exp also handles subnormal results, three more instructions per pair
            decay = tl.exp2(tl.where(causal, cs_i[None, :] - cs_j[:, None], float("-inf")) * LOG2E)
            dM_decay = tl.dot(x_j, tl.trans(dy_i), input_precision=PRECISION) * decay  # (j, i)
            dB += tl.dot((dM_decay * dt_j[:, None]).to(C_i.dtype), C_i, input_precision=PRECISION)
            cb = tl.dot(B_j, tl.trans(C_i), input_precision=PRECISION)  # (j, i)
            dx += tl.dot((cb * decay).to(x_j.dtype), dy_i, input_precision=PRECISION)
            dMcb = dM_decay * cb
            ddt += tl.sum(dMcb, axis=1)
            # W_ij = d(loss)/d(cs_i - cs_j) for i > j (the diagonal does not depend on cs): +W at i, -W at j.
            W = tl.where(offs_i[None, :] > offs_j[:, None], dMcb * dt_j[:, None], 0.0)
            col_ptrs = dcs_col_ptr + (vec_base * ntiles + tile * chunk_size) + offs_i
            tl.store(col_ptrs, tl.sum(W, axis=0), mask=offs_i < chunk_size)
            row += tl.sum(W, axis=1)
        tl.store(dcs_row_ptr + vec_base + offs_j, row, mask=offs_j < chunk_size)

        dy_j = load_dy(
            dout_base, z_base, offs_j, offs_p, stride_d_l, stride_d_p, stride_z_l, stride_z_p, xj_mask, HAS_Z
        )
        dx = dx * dt_j[:, None]
        if HAS_D:
            if D_HAS_HDIM:
                D = tl.load(D_ptr + h * headdim + offs_p, mask=p_ok, other=0.0).to(tl.float32)[None, :]
            else:
                D = tl.load(D_ptr + h).to(tl.float32)
            dx += D * dy_j
            # (batch, chunks, tiles, heads, headdim) partial sums of dD
            dD_offs = (((b * nchunks + c) * ntiles + tile) * nheads + h) * headdim + offs_p
            x_j = tl.load(x_j_ptrs, mask=xj_mask, other=0.0).to(tl.float32)  # reloaded: shorter register life
            tl.store(dD_ptr + dD_offs, tl.sum(dy_j * x_j, axis=0), mask=p_ok)
        tl.store(
            dx_ptr + b * stride_dx_b + start * stride_dx_l + h * stride_dx_h
            + offs_j[:, None] * stride_dx_l + offs_p[None, :] * stride_dx_p,
            dx.to(dx_ptr.dtype.element_ty),
            mask=xj_mask,
        )  # fmt: skip
        tl.store(ddt_ptr + vec_base + offs_j, ddt, mask=offs_j < chunk_size)

    tl.store(
        dB_ptr + b * stride_dB_b + start * stride_dB_l + g * stride_dB_g
        + offs_j[:, None] * stride_dB_l + offs_n[None, :] * stride_dB_n,
        dB.to(dB_ptr.dtype.element_ty),
        mask=valid_j[:, None] & n_ok[None, :],
    )  # fmt: skip


class DecayGradParts(NamedTuple):
    """The pieces of the decay gradient written by :func:`dx_db_bwd`, float32."""

    ddt_direct: Tensor  # (batch, heads, chunks, chunk_size): dt's gradient except through dt * A
    v: Tensor  # (batch, heads, chunks, chunk_size): chunk-state terms V_j
    dcs_row: Tensor  # (batch, heads, chunks, chunk_size): sum_{i > j} W_ij at j
    dcs_col: Tensor  # (batch, heads, chunks, tiles, chunk_size): sum_{j in tile, j < i} W_ij at i >= tile start


def dx_db_bwd(
    dout: Tensor,
    z: Tensor | None,
    x: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    dt: Tensor,
    cs: Tensor,
    dchunk_states: Tensor,
    tiles: SSDTiles,
    dx: Tensor | None = None,
    dB: Tensor | None = None,
) -> tuple[Tensor, Tensor, DecayGradParts, Tensor | None]:
    """Returns dx (like x), dB (like B), the decay-gradient parts and the dD partial sums (batch, chunks, tiles,
    heads, headdim) float32, or None without D. ``dx`` and ``dB``, if given, are where those go (any strides)."""
    batch, seqlen, nheads, headdim = x.shape
    ngroups, dstate = B.shape[2], B.shape[3]
    nchunks, chunk_size = cs.shape[2], cs.shape[3]
    ntiles = triton.cdiv(chunk_size, tiles.block_t_bwd)
    dx = new_buffer(x.shape, x.device, x.dtype) if dx is None else dx
    dB = new_buffer(B.shape, B.device, B.dtype) if dB is None else dB
    parts = DecayGradParts(
        *(new_buffer(cs.shape, cs.device) for _ in range(3)),
        new_buffer((batch, nheads, nchunks, ntiles, chunk_size), cs.device),
    )
    dD = new_buffer((batch, nchunks, ntiles, nheads, headdim), x.device) if D is not None else None
    zz = z if z is not None else dout
    _dx_db_kernel[(batch * nchunks * ngroups * ntiles,)](
        dout, zz, x, B, C, D.contiguous() if D is not None else x, dt, cs, dchunk_states,
        dx, dB, *parts, dD if dD is not None else dx,
        seqlen, chunk_size, nchunks, nheads, nheads // ngroups, headdim, dstate,
        *dout.stride(), *zz.stride(), *x.stride(), *B.stride(), *C.stride(), *dx.stride(), *dB.stride(),
        HAS_Z=z is not None, HAS_D=D is not None, D_HAS_HDIM=D is not None and D.dim() == 2,
        BLOCK_T=tiles.block_t_bwd, BLOCK_I=tiles.block_t_inner, BLOCK_P=tiles.block_p, BLOCK_N=tiles.block_n,
        PRECISION=dot_precision(x.dtype), **tiles.launch(tiles.bwd_stages),
    )  # fmt: skip
    return dx, dB, parts, dD
