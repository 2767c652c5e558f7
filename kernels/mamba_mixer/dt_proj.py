"""dt_proj, the Mamba-1 mixer's low-rank projection delta = dt_low dt_proj^T, as a Triton kernel.

Its inner size is the rank (d_model / 16: 8 for width 128), so each output costs one short product and the kernel
only has to write delta: one ``tl.dot`` per (positions x channels) tile, the rank padded to 16. On the H100
(2^21 positions, rank 8 -> 256 channels, bfloat16) it takes 0.42 ms where cuBLAS took 0.54, with the same bits
(floor 0.37 ms; rank 16 -> 512 at 2^20 positions: 0.43 against 0.46; results/benchmarks.md, twenty-seventh
session).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from ..common.math import FMA_CONTRACTION
from ..ssd.tiling import dot_precision

BLOCK_M, BLOCK_N, NUM_WARPS = 32, 256, 4  # positions and channels per program (H100: 64 x 256 0.44 ms, 64 x 128 0.48)


@triton.jit
def _dt_proj_kernel(
    low_ptr, w_ptr, out_ptr, n_rows, n_out, rank, s_low, s_w, s_out,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_R: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """out[rows, cols] = low[rows, :rank] w[cols, :rank]^T, accumulated in float32."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    ranks = tl.arange(0, BLOCK_R)
    in_rows, in_cols, in_rank = rows < n_rows, cols < n_out, ranks < rank
    low = tl.load(low_ptr + rows[:, None] * s_low + ranks[None, :], mask=in_rows[:, None] & in_rank[None, :], other=0.0)
    w = tl.load(w_ptr + cols[None, :] * s_w + ranks[:, None], mask=in_cols[None, :] & in_rank[:, None], other=0.0)
    out = tl.dot(low, w, input_precision=PRECISION)
    tl.store(out_ptr + rows[:, None] * s_out + cols[None, :], out.to(out_ptr.dtype.element_ty),
             mask=in_rows[:, None] & in_cols[None, :])  # fmt: skip


def dt_projection(dt_low: Tensor, weight: Tensor) -> Tensor:
    """``F.linear(dt_low, weight)`` for (..., rank) ``dt_low`` (any row stride, unit stride along the rank: the first
    columns of x_proj's output) and a (d_inner, rank) ``weight`` of the same dtype: a new (..., d_inner) tensor."""
    if dt_low.dtype != weight.dtype or dt_low.stride(-1) != 1:
        raise ValueError(f"dt_low must be in weight's dtype ({weight.dtype}, got {dt_low.dtype}) with unit stride")
    d_inner, rank = weight.shape
    low = dt_low.reshape(-1, rank) if dt_low.dim() != 2 else dt_low  # a view for the model's (b, l, rank) slice
    weight = weight.contiguous()
    out = torch.empty(*dt_low.shape[:-1], d_inner, device=dt_low.device, dtype=dt_low.dtype)
    n_rows = low.shape[0]
    if n_rows:
        block_n = min(BLOCK_N, max(16, triton.next_power_of_2(d_inner)))
        grid = (triton.cdiv(n_rows, BLOCK_M), triton.cdiv(d_inner, block_n))
        _dt_proj_kernel[grid](
            low, weight, out, n_rows, d_inner, rank, low.stride(0), weight.stride(0), d_inner,
            BLOCK_M=BLOCK_M, BLOCK_N=block_n, BLOCK_R=max(16, triton.next_power_of_2(rank)),
            PRECISION=dot_precision(weight.dtype), num_warps=NUM_WARPS, **FMA_CONTRACTION,
        )  # fmt: skip
    return out
