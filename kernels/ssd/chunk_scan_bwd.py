"""SSD backward of the output stage, part 1: the gate, the chunk start states, and C.

With dy = dout * silu(z) (dout without z):

* ``chunk_scan_bwd_dstarts`` — per (batch, chunk, head): the gradient reaching the chunk's start state from its
  own outputs, dH = sum_i exp(cs_i) dy_i C_i^T, and dz = dout * (y + D x) * silu'(z). It feeds the backward state
  passing.
* ``chunk_scan_bwd_dc`` — per (batch, chunk, group, tile of positions i), summed over the group's heads:
  dC_i = exp(cs_i) dy_i H + sum_{j <= i} (dy_i . x_j) exp(cs_i - cs_j) dt_j B_j, and, per head, the start-state
  term of the decay gradient u_i = exp(cs_i) dy_i . (H C_i).
"""

from __future__ import annotations

import triton
import triton.language as tl
from torch import Tensor

from ..common.tensors import dot_precision
from .decay import causal_decay
from .loads import load_padded
from .tiling import SSDTiles, new_buffer


@triton.jit
def load_dy(
    dout_base, z_base, offs_t, offs_p, stride_d_l, stride_d_p, stride_z_l, stride_z_p, mask, HAS_Z: tl.constexpr
):
    """The gradient of the pre-gate output: dout * silu(z), float32, one (positions, headdim) tile."""
    dy = tl.load(dout_base + offs_t[:, None] * stride_d_l + offs_p[None, :] * stride_d_p, mask=mask, other=0.0)
    dy = dy.to(tl.float32)
    if HAS_Z:
        z = tl.load(z_base + offs_t[:, None] * stride_z_l + offs_p[None, :] * stride_z_p, mask=mask, other=0.0)
        z = z.to(tl.float32)
        dy = dy * z * tl.sigmoid(z)
    return dy


@triton.jit
def _dstarts_kernel(
    dout_ptr, z_ptr, ypre_ptr, C_ptr, cs_ptr, dstarts_ptr, dz_ptr,
    seqlen, chunk_size, nchunks, nheads, heads_per_group, headdim, dstate,
    stride_d_b, stride_d_l, stride_d_h, stride_d_p,
    stride_z_b, stride_z_l, stride_z_h, stride_z_p,
    stride_y_b, stride_y_l, stride_y_h, stride_y_p,
    stride_dz_b, stride_dz_l, stride_dz_h, stride_dz_p,
    stride_C_b, stride_C_l, stride_C_g, stride_C_n,
    HAS_Z: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
    PRECISION: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0).to(tl.int64)
    pid_n = tl.program_id(1)
    h = pid % nheads
    c = (pid // nheads) % nchunks
    b = pid // (nheads * nchunks)
    g = h // heads_per_group
    start = c * chunk_size
    chunk_len = tl.minimum(chunk_size, seqlen - start).to(tl.int32)
    offs_p = tl.arange(0, BLOCK_P)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    dout_base = dout_ptr + b * stride_d_b + start * stride_d_l + h * stride_d_h
    z_base = z_ptr + b * stride_z_b + start * stride_z_l + h * stride_z_h
    C_base = C_ptr + b * stride_C_b + start * stride_C_l + g * stride_C_g
    cs_base = cs_ptr + (b * nheads + h) * nchunks * chunk_size + start

    acc = tl.zeros((BLOCK_P, BLOCK_N), dtype=tl.float32)
    for t0 in range(0, chunk_size, BLOCK_T):
        offs_t = t0 + tl.arange(0, BLOCK_T)
        valid = offs_t < chunk_len
        mask = valid[:, None] & (offs_p[None, :] < headdim)
        tile_offs = offs_t[:, None] * stride_d_l + offs_p[None, :] * stride_d_p
        dy = tl.load(dout_base + tile_offs, mask=mask, other=0.0).to(tl.float32)
        if HAS_Z:
            z = tl.load(z_base + offs_t[:, None] * stride_z_l + offs_p[None, :] * stride_z_p, mask=mask, other=0.0)
            z = z.to(tl.float32)
            sig = tl.sigmoid(z)
            if pid_n == 0:
                ypre = tl.load(
                    ypre_ptr
                    + b * stride_y_b
                    + start * stride_y_l
                    + h * stride_y_h
                    + offs_t[:, None] * stride_y_l
                    + offs_p[None, :] * stride_y_p,
                    mask=mask,
                    other=0.0,
                ).to(tl.float32)
                dz = dy * ypre * sig * (1.0 + z * (1.0 - sig))
                tl.store(
                    dz_ptr + b * stride_dz_b + start * stride_dz_l + h * stride_dz_h
                    + offs_t[:, None] * stride_dz_l + offs_p[None, :] * stride_dz_p,
                    dz.to(dz_ptr.dtype.element_ty),
                    mask=mask,
                )  # fmt: skip
            dy = dy * z * sig
        cs = tl.load(cs_base + offs_t, mask=offs_t < chunk_size, other=0.0)
        C_t = tl.load(
            C_base + offs_t[:, None] * stride_C_l + offs_n[None, :] * stride_C_n,
            mask=valid[:, None] & (offs_n[None, :] < dstate),
            other=0.0,
        )
        w = (dy * tl.exp(cs)[:, None]).to(C_t.dtype)
        acc += tl.dot(tl.trans(w), C_t, input_precision=PRECISION)

    out_ptrs = (
        dstarts_ptr + ((b * nchunks + c) * nheads + h) * headdim * dstate + offs_p[:, None] * dstate + offs_n[None, :]
    )
    tl.store(out_ptrs, acc, mask=(offs_p[:, None] < headdim) & (offs_n[None, :] < dstate))


@triton.jit
def _dc_kernel(
    dout_ptr, z_ptr, x_ptr, B_ptr, C_ptr, dt_ptr, cs_ptr, starts_ptr, dC_ptr, u_ptr,
    seqlen, chunk_size, nchunks, nheads, heads_per_group, headdim, dstate,
    stride_d_b, stride_d_l, stride_d_h, stride_d_p,
    stride_z_b, stride_z_l, stride_z_h, stride_z_p,
    stride_x_b, stride_x_l, stride_x_h, stride_x_p,
    stride_B_b, stride_B_l, stride_B_g, stride_B_n,
    stride_C_b, stride_C_l, stride_C_g, stride_C_n,
    stride_dC_b, stride_dC_l, stride_dC_g, stride_dC_n,
    HAS_Z: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr, PAD_P: tl.constexpr,
    PAD_N: tl.constexpr, PRECISION: tl.constexpr,
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
    i0 = tile * BLOCK_T
    offs_i = i0 + tl.arange(0, BLOCK_T)
    offs_p = tl.arange(0, BLOCK_P)
    offs_n = tl.arange(0, BLOCK_N)
    valid_i = offs_i < chunk_len
    p_ok = offs_p < headdim
    n_ok = offs_n < dstate
    B_base = B_ptr + b * stride_B_b + start * stride_B_l + g * stride_B_g
    C_i_ptrs = (
        C_ptr + b * stride_C_b + start * stride_C_l + g * stride_C_g
        + offs_i[:, None] * stride_C_l + offs_n[None, :] * stride_C_n
    )  # fmt: skip
    C_i_mask = valid_i[:, None] & n_ok[None, :]
    dC = tl.zeros((BLOCK_T, BLOCK_N), dtype=tl.float32)
    for r in range(0, heads_per_group):
        h = g * heads_per_group + r
        vec_base = (b * nheads + h) * nchunks * chunk_size + start
        dy = load_dy(
            dout_ptr + b * stride_d_b + start * stride_d_l + h * stride_d_h,
            z_ptr + b * stride_z_b + start * stride_z_l + h * stride_z_h,
            offs_i, offs_p, stride_d_l, stride_d_p, stride_z_l, stride_z_p,
            valid_i[:, None] & p_ok[None, :], HAS_Z,
        ).to(C_ptr.dtype.element_ty)  # fmt: skip
        cs_i = tl.load(cs_ptr + vec_base + offs_i, mask=offs_i < chunk_size, other=0.0)
        H = tl.load(
            starts_ptr + ((b * nchunks + c) * nheads + h) * headdim * dstate
            + offs_p[:, None] * dstate + offs_n[None, :],
            mask=p_ok[:, None] & n_ok[None, :],
            other=0.0,
        )  # fmt: skip
        dC_state = tl.dot(dy, H.to(dy.dtype), input_precision=PRECISION) * tl.exp(cs_i)[:, None]
        C_i = tl.load(C_i_ptrs, mask=C_i_mask, other=0.0).to(tl.float32)
        tl.store(u_ptr + vec_base + offs_i, tl.sum(dC_state * C_i, axis=1), mask=offs_i < chunk_size)
        dC += dC_state

        x_base = x_ptr + b * stride_x_b + start * stride_x_l + h * stride_x_h
        cs_i0 = tl.load(cs_ptr + vec_base + i0)
        for j0 in range(0, i0 + BLOCK_T, BLOCK_T):
            offs_j = j0 + tl.arange(0, BLOCK_T)
            valid_j = offs_j < chunk_len
            rows_j = tl.minimum(offs_j, chunk_len - 1)  # past the chunk's end: its last row again, with a decay of 0
            x_ptrs = x_base + rows_j[None, :] * stride_x_l + offs_p[:, None] * stride_x_p
            x_t = load_padded(x_ptrs, p_ok[:, None], PAD_P)  # (headdim, j)
            cs_j = tl.load(cs_ptr + vec_base + offs_j, mask=valid_j, other=0.0)
            dt_j = tl.load(dt_ptr + vec_base + offs_j, mask=valid_j, other=0.0)
            weight = causal_decay(cs_i, cs_j, cs_i0, offs_i, offs_j, j0 < i0) * dt_j[None, :]
            dM = tl.dot(dy, x_t, input_precision=PRECISION) * weight  # (i, j)
            B_ptrs = B_base + rows_j[:, None] * stride_B_l + offs_n[None, :] * stride_B_n
            B_j = load_padded(B_ptrs, n_ok[None, :], PAD_N)
            dC += tl.dot(dM.to(B_j.dtype), B_j, input_precision=PRECISION)

    tl.store(
        dC_ptr + b * stride_dC_b + start * stride_dC_l + g * stride_dC_g
        + offs_i[:, None] * stride_dC_l + offs_n[None, :] * stride_dC_n,
        dC.to(dC_ptr.dtype.element_ty),
        mask=valid_i[:, None] & n_ok[None, :],
    )  # fmt: skip


def chunk_scan_bwd_dstarts(
    dout: Tensor, z: Tensor | None, ypre: Tensor | None, C: Tensor, cs: Tensor, nheads: int, tiles: SSDTiles
) -> tuple[Tensor, Tensor | None]:
    """Returns dH (batch, chunks, heads, headdim, dstate) float32 and dz (like z) or None."""
    batch, seqlen, _, headdim = dout.shape
    ngroups, dstate = C.shape[2], C.shape[3]
    nchunks, chunk_size = cs.shape[2], cs.shape[3]
    dstarts = new_buffer((batch, nchunks, nheads, headdim, dstate), dout.device)
    dz = new_buffer(z.shape, z.device, z.dtype) if z is not None else None
    zz, yy, dzz = (z, ypre, dz) if z is not None else (dout, dout, dout)
    grid = (batch * nchunks * nheads, triton.cdiv(dstate, tiles.block_n_state))
    _dstarts_kernel[grid](
        dout, zz, yy, C, cs, dstarts, dzz,
        seqlen, chunk_size, nchunks, nheads, nheads // ngroups, headdim, dstate,
        *dout.stride(), *zz.stride(), *yy.stride(), *dzz.stride(), *C.stride(),
        HAS_Z=z is not None, BLOCK_T=tiles.block_t, BLOCK_P=tiles.block_p, BLOCK_N=tiles.block_n_state,
        PRECISION=dot_precision(C.dtype), **tiles.launch(tiles.num_stages),
    )  # fmt: skip
    return dstarts, dz


def chunk_scan_bwd_dc(
    dout: Tensor,
    z: Tensor | None,
    x: Tensor,
    B: Tensor,
    C: Tensor,
    dt: Tensor,
    cs: Tensor,
    starts: Tensor,
    tiles: SSDTiles,
    dC: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Returns dC (like C, or into ``dC``: any strides) and u (batch, heads, chunks, chunk_size) float32."""
    batch, seqlen, nheads, headdim = x.shape
    ngroups, dstate = C.shape[2], C.shape[3]
    nchunks, chunk_size = cs.shape[2], cs.shape[3]
    dC = new_buffer(C.shape, C.device, C.dtype) if dC is None else dC
    u = new_buffer(cs.shape, cs.device)
    zz = z if z is not None else dout
    grid = (batch * nchunks * ngroups * triton.cdiv(chunk_size, tiles.block_t_bwd),)
    _dc_kernel[grid](
        dout, zz, x, B, C, dt, cs, starts, dC, u,
        seqlen, chunk_size, nchunks, nheads, nheads // ngroups, headdim, dstate,
        *dout.stride(), *zz.stride(), *x.stride(), *B.stride(), *C.stride(), *dC.stride(),
        HAS_Z=z is not None, BLOCK_T=tiles.block_t_bwd, BLOCK_P=tiles.block_p, BLOCK_N=tiles.block_n,
        PAD_P=tiles.block_p != headdim, PAD_N=tiles.block_n != dstate, PRECISION=dot_precision(C.dtype),
        **tiles.launch(tiles.bwd_stages),
    )  # fmt: skip
    return dC, u
