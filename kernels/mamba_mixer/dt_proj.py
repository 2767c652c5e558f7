"""dt_proj, the Mamba-1 mixer's low-rank projection delta = dt_low dt_proj^T, forward and backward in Triton.

Its inner size is the rank (d_model / 16: 8 for width 128), so each output costs one short product and the kernel
only has to write delta: one ``tl.dot`` per (positions x channels) tile, the rank padded to 16. On the H100
(2^21 positions, rank 8 -> 256 channels, bfloat16) it takes 0.42 ms where cuBLAS took 0.54, with the same bits
(floor 0.37 ms; rank 16 -> 512 at 2^20 positions: 0.43 against 0.46). The backward reads ddelta once for both
gradients, where cuBLAS's two products read it twice: 0.25 ms against 0.46 at 2^20 x 256, 0.43 against 0.85 at
2^20 x 512 (results/benchmarks.md, twenty-seventh session).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from ..common.hardware import persistent_programs
from ..common.math import FMA_CONTRACTION
from ..common.tensors import dot_precision

BLOCK_M, BLOCK_N, NUM_WARPS = 32, 256, 4  # positions and channels per program (H100: 64 x 256 0.44 ms, 64 x 128 0.48)
# the backward: ddelta elements per tile, warps, persistent programs per SM (H100, 2^20 x 256, rank 8: 16384 on 8
# warps 0.246 ms, 8192 on 4 0.270, 4096 on 4 0.315; cuBLAS's two products 0.464)
BWD_ELEMENTS, BWD_WARPS, BWD_PROGRAMS_PER_SM = 16384, 8, 4


def _dot_size(n: int) -> int:
    """A tile side of ``n`` elements for tl.dot: the next power of two, at least 16 (tl.dot's smallest)."""
    return max(16, triton.next_power_of_2(n))


@triton.jit
def _dt_proj_kernel(
    low_ptr, weight_ptr, out_ptr, n_rows, n_out, rank, s_low, s_w, s_out,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_R: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """out[rows, cols] = low[rows, :rank] w[cols, :rank]^T, accumulated in float32."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    ranks = tl.arange(0, BLOCK_R)
    in_rows, in_cols, in_rank = rows < n_rows, cols < n_out, ranks < rank
    low = tl.load(low_ptr + rows[:, None] * s_low + ranks[None, :], mask=in_rows[:, None] & in_rank[None, :], other=0.0)
    w = tl.load(weight_ptr + cols[None, :] * s_w + ranks[:, None], mask=in_cols[None, :] & in_rank[:, None], other=0.0)
    out = tl.dot(low, w, input_precision=PRECISION)
    tl.store(out_ptr + rows[:, None] * s_out + cols[None, :], out.to(out_ptr.dtype.element_ty),
             mask=in_rows[:, None] & in_cols[None, :])  # fmt: skip


def dt_projection(dt_low: Tensor, weight: Tensor) -> Tensor:
    """``F.linear(dt_low, weight)`` for (..., rank) ``dt_low`` (any row stride, unit stride along the rank: the first
    columns of x_proj's output) and a (d_inner, rank) ``weight`` of the same dtype: a new (..., d_inner) tensor."""
    if dt_low.dtype != weight.dtype or dt_low.stride(-1) != 1:
        raise ValueError(f"dt_low must be in weight's dtype ({weight.dtype}, got {dt_low.dtype}) with unit stride")
    d_inner, rank = weight.shape
    low = dt_low.reshape(-1, rank)  # a view of the model's (b, l, rank) slice of x_proj's output
    weight = weight.contiguous()
    out = torch.empty(*dt_low.shape[:-1], d_inner, device=dt_low.device, dtype=dt_low.dtype)
    n_rows = low.shape[0]
    if n_rows:
        block_n = min(BLOCK_N, _dot_size(d_inner))
        grid = (triton.cdiv(n_rows, BLOCK_M), triton.cdiv(d_inner, block_n))
        _dt_proj_kernel[grid](
            low, weight, out, n_rows, d_inner, rank, low.stride(0), weight.stride(0), d_inner,
            BLOCK_M=BLOCK_M, BLOCK_N=block_n, BLOCK_R=_dot_size(rank),
            PRECISION=dot_precision(weight.dtype), num_warps=NUM_WARPS, **FMA_CONTRACTION,
        )  # fmt: skip
    return out


@triton.jit
def _dt_proj_bwd_kernel(
    dd_ptr, low_ptr, weight_ptr, dlow_ptr, dw_ptr, n_rows, d_inner, rank, s_dd, s_low, s_w, s_dlow, tiles_per_program,
    BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_R: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """Both gradients from one read of ddelta: d dt_low = ddelta dt_proj per tile, and d dt_proj = ddelta^T dt_low
    summed over the program's tiles, then added to the float32 total."""
    cols, ranks = tl.arange(0, BLOCK_D), tl.arange(0, BLOCK_R)
    in_cols, in_rank = cols < d_inner, ranks < rank
    w = tl.load(weight_ptr + cols[:, None] * s_w + ranks[None, :], mask=in_cols[:, None] & in_rank[None, :], other=0.0)
    dw = tl.zeros((BLOCK_D, BLOCK_R), tl.float32)
    for i in range(tiles_per_program):
        rows = (tl.program_id(0) * tiles_per_program + i).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
        in_rows = rows < n_rows
        dd = tl.load(dd_ptr + rows[:, None] * s_dd + cols[None, :], mask=in_rows[:, None] & in_cols[None, :], other=0.0)
        low_mask = in_rows[:, None] & in_rank[None, :]
        low = tl.load(low_ptr + rows[:, None] * s_low + ranks[None, :], mask=low_mask, other=0.0)
        dlow = tl.dot(dd, w, input_precision=PRECISION)
        tl.store(dlow_ptr + rows[:, None] * s_dlow + ranks[None, :], dlow.to(dlow_ptr.dtype.element_ty), mask=low_mask)
        dw = tl.dot(tl.trans(dd), low, dw, input_precision=PRECISION)
    tl.atomic_add(dw_ptr + cols[:, None] * rank + ranks[None, :], dw, mask=in_cols[:, None] & in_rank[None, :],
                  sem="relaxed")  # fmt: skip


def dt_projection_backward(ddelta: Tensor, dt_low: Tensor, weight: Tensor, dt_low_grad: Tensor) -> Tensor:
    """Gradients of :func:`dt_projection`: d dt_low = ddelta weight, written into ``dt_low_grad`` (a view like
    ``dt_low``: x_proj's output gradient's first columns), and the float32 weight gradient ddelta^T dt_low, returned.
    ``ddelta`` (..., d_inner) needs unit stride along channels and rows that flatten to one stride."""
    d_inner, rank = weight.shape
    if not (ddelta.dtype == dt_low.dtype == weight.dtype == dt_low_grad.dtype):
        raise ValueError("ddelta, dt_low, weight and dt_low_grad must share one dtype")
    dd, low, dlow = ddelta.view(-1, d_inner), dt_low.view(-1, rank), dt_low_grad.view(-1, rank)
    weight = weight.contiguous()
    dw = torch.zeros(d_inner, rank, device=weight.device, dtype=torch.float32)
    n_rows = dd.shape[0]
    if n_rows:
        block_d = _dot_size(d_inner)
        block_m = max(16, min(64, BWD_ELEMENTS // block_d))
        n_tiles = triton.cdiv(n_rows, block_m)
        target = persistent_programs(weight.device, BWD_PROGRAMS_PER_SM, interpreted=2)
        tiles = triton.cdiv(n_tiles, min(n_tiles, target))
        _dt_proj_bwd_kernel[(triton.cdiv(n_tiles, tiles),)](
            dd, low, weight, dlow, dw, n_rows, d_inner, rank, dd.stride(0), low.stride(0), weight.stride(0),
            dlow.stride(0), tiles, BLOCK_M=block_m, BLOCK_D=block_d, BLOCK_R=_dot_size(rank),
            PRECISION=dot_precision(weight.dtype), num_warps=BWD_WARPS, **FMA_CONTRACTION,
        )  # fmt: skip
    return dw
