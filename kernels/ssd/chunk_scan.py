"""SSD forward, stage 3: every output, from its chunk's start state and the chunk's own inputs, in one kernel.

One program per (batch, chunk, head, tile of positions i starting at i0) computes, for its rows i:

    y_i   = exp(cs_i) C_i H^T                                    the state entering the chunk  (H: headdim x dstate)
          + sum_{j <= i} (C_i . B_j) exp(cs_i - cs_j) dt_j x_j   the chunk itself, tile by tile up to the diagonal
    out_i = (y_i + D x_i) * silu(z_i)

The decay of a tile below the diagonal is an outer product of one exponential per row and one per column
(``decay.py``); only the diagonal tile, the loop's last, takes exp(cs_i - cs_j) pair by pair, masked.

C B^T, the decay, the state term, D and the gate all stay in registers: nothing of size (chunk x chunk) is ever
written to memory. With z the pre-gate output is also written, for the backward.
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
def _chunk_scan_fwd_kernel(
    x_ptr, z_ptr, B_ptr, C_ptr, D_ptr, dt_ptr, cs_ptr, starts_ptr,
    out_ptr, ypre_ptr,
    seqlen, chunk_size, nchunks, nheads, heads_per_group, headdim, dstate,
    stride_x_b, stride_x_l, stride_x_h, stride_x_p,
    stride_z_b, stride_z_l, stride_z_h, stride_z_p,
    stride_B_b, stride_B_l, stride_B_g, stride_B_n,
    stride_C_b, stride_C_l, stride_C_g, stride_C_n,
    stride_o_b, stride_o_l, stride_o_h, stride_o_p,
    HAS_D: tl.constexpr, D_HAS_HDIM: tl.constexpr, HAS_Z: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr, PAD_P: tl.constexpr, PAD_N: tl.constexpr,
    PRECISION: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0).to(tl.int64)
    ntiles = tl.cdiv(chunk_size, BLOCK_T)
    tile = (pid % ntiles).to(tl.int32)
    h = (pid // ntiles) % nheads
    c = (pid // (ntiles * nheads)) % nchunks
    b = pid // (ntiles * nheads * nchunks)
    g = h // heads_per_group
    start = c * chunk_size
    chunk_len = tl.minimum(chunk_size, seqlen - start).to(tl.int32)

    i0 = tile * BLOCK_T
    offs_i = i0 + tl.arange(0, BLOCK_T)
    offs_p = tl.arange(0, BLOCK_P)
    offs_n = tl.arange(0, BLOCK_N)
    valid_i = offs_i < chunk_len
    p_ok = offs_p < headdim
    n_ok = offs_n < dstate
    x_base = x_ptr + b * stride_x_b + start * stride_x_l + h * stride_x_h
    B_base = B_ptr + b * stride_B_b + start * stride_B_l + g * stride_B_g
    C_base = C_ptr + b * stride_C_b + start * stride_C_l + g * stride_C_g
    vec_base = (b * nheads + h) * nchunks * chunk_size + start  # dt and cs: (batch, heads, chunks, chunk_size)

    cs_i = tl.load(cs_ptr + vec_base + offs_i, mask=offs_i < chunk_size, other=0.0)
    cs_i0 = tl.load(cs_ptr + vec_base + i0)
    C_i = tl.load(
        C_base + offs_i[:, None] * stride_C_l + offs_n[None, :] * stride_C_n,
        mask=valid_i[:, None] & n_ok[None, :],
        other=0.0,
    )
    # The start state, read transposed: (dstate, headdim).
    H_t = tl.load(
        starts_ptr + ((b * nchunks + c) * nheads + h) * headdim * dstate + offs_p[None, :] * dstate + offs_n[:, None],
        mask=n_ok[:, None] & p_ok[None, :],
        other=0.0,
    )
    acc = tl.dot(C_i, H_t.to(C_i.dtype), input_precision=PRECISION) * tl.exp(cs_i)[:, None]
    for j0 in range(0, i0 + BLOCK_T, BLOCK_T):
        offs_j = j0 + tl.arange(0, BLOCK_T)
        valid_j = offs_j < chunk_len
        rows_j = tl.minimum(offs_j, chunk_len - 1)  # past the chunk's end: its last row again, with a decay of 0
        B_t = load_padded(B_base + rows_j[None, :] * stride_B_l + offs_n[:, None] * stride_B_n, n_ok[:, None], PAD_N)
        x_j = load_padded(x_base + rows_j[:, None] * stride_x_l + offs_p[None, :] * stride_x_p, p_ok[None, :], PAD_P)
        cs_j = tl.load(cs_ptr + vec_base + offs_j, mask=valid_j, other=0.0)
        dt_j = tl.load(dt_ptr + vec_base + offs_j, mask=valid_j, other=0.0)
        weight = causal_decay(cs_i, cs_j, cs_i0, offs_i, offs_j, j0 < i0) * dt_j[None, :]
        cb = tl.dot(C_i, B_t, input_precision=PRECISION) * weight  # (i, j)
        acc += tl.dot(cb.to(x_j.dtype), x_j, input_precision=PRECISION)

    io_mask = valid_i[:, None] & p_ok[None, :]
    if HAS_D:
        if D_HAS_HDIM:
            D = tl.load(D_ptr + h * headdim + offs_p, mask=p_ok, other=0.0).to(tl.float32)[None, :]
        else:
            D = tl.load(D_ptr + h).to(tl.float32)
        x_i = tl.load(x_base + offs_i[:, None] * stride_x_l + offs_p[None, :] * stride_x_p, mask=io_mask, other=0.0)
        acc += x_i.to(tl.float32) * D
    out_offs = b * stride_o_b + start * stride_o_l + h * stride_o_h
    out_ptrs = offs_i[:, None] * stride_o_l + offs_p[None, :] * stride_o_p
    if HAS_Z:
        tl.store(ypre_ptr + out_offs + out_ptrs, acc.to(ypre_ptr.dtype.element_ty), mask=io_mask)
        z = tl.load(
            z_ptr
            + b * stride_z_b
            + start * stride_z_l
            + h * stride_z_h
            + offs_i[:, None] * stride_z_l
            + offs_p[None, :] * stride_z_p,
            mask=io_mask,
            other=0.0,
        ).to(tl.float32)
        acc = acc * z * tl.sigmoid(z)
    tl.store(out_ptr + out_offs + out_ptrs, acc.to(out_ptr.dtype.element_ty), mask=io_mask)


def chunk_scan_fwd(
    x: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    z: Tensor | None,
    dt: Tensor,
    cs: Tensor,
    starts: Tensor,
    tiles: SSDTiles,
) -> tuple[Tensor, Tensor | None]:
    """Returns out (like x) and, with z, the pre-gate output y + D x (like x)."""
    batch, seqlen, nheads, headdim = x.shape
    ngroups, dstate = B.shape[2], B.shape[3]
    nchunks, chunk_size = cs.shape[2], cs.shape[3]
    out = new_buffer(x.shape, x.device, x.dtype)
    ypre = new_buffer(x.shape, x.device, x.dtype) if z is not None else None
    zz = z if z is not None else x
    grid = (batch * nchunks * nheads * triton.cdiv(chunk_size, tiles.block_t),)
    _chunk_scan_fwd_kernel[grid](
        x, zz, B, C, D.contiguous() if D is not None else x, dt, cs, starts, out, ypre if ypre is not None else out,
        seqlen, chunk_size, nchunks, nheads, nheads // ngroups, headdim, dstate,
        *x.stride(), *zz.stride(), *B.stride(), *C.stride(), *out.stride(),
        HAS_D=D is not None, D_HAS_HDIM=D is not None and D.dim() == 2, HAS_Z=z is not None,
        BLOCK_T=tiles.block_t, BLOCK_P=tiles.block_p, BLOCK_N=tiles.block_n, PAD_P=tiles.block_p != headdim,
        PAD_N=tiles.block_n != dstate, PRECISION=dot_precision(x.dtype), **tiles.launch(tiles.scan_stages, capped=True),
    )  # fmt: skip
    return out, ypre
