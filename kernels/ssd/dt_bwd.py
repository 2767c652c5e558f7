"""SSD backward, last step: gather the decay gradient per chunk, then dt (through softplus and clamp), A, dt_bias.

Per (batch, head, chunk), from the pieces written by the earlier kernels, the gradient of every cs_i (the decay
cumsum) is

    dcs_i = sum_{j < i} W_ij - sum_{j > i} W_ji + u_i        intra-chunk pairs (dx_db_bwd), start state (dc kernel)

and since cs_i = sum_{k <= i} dt_k A, the gradient of dt_k A is the reverse cumulative sum of dcs, plus the
chunk-state terms (a prefix sum of V, see dx_db_bwd) and the chunk's total decay a = exp(cs_end) (state passing):

    d(dt A)_k = sum_{i >= k} dcs_i + sum_{j < k} V_j + da a
    ddt_k     = ddt_direct_k + A d(dt A)_k,        dA = sum_k dt_k d(dt A)_k

then the chain rule through the clamp and softplus gives d(dt input); dA and d(dt_bias) are written as per-chunk
partial sums.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from ..common.math import FMA_CONTRACTION
from .chunk_state import dt_transform
from .dx_db_bwd import DecayGradParts


@triton.jit
def _dt_bwd_kernel(
    dt_in_ptr, dt_bias_ptr, A_ptr, dt_ptr, cs_ptr, ddt_direct_ptr, v_ptr, dcs_row_ptr, dcs_col_ptr, u_ptr,
    ddecay_ptr,
    ddt_in_ptr, dA_part_ptr, dbias_part_ptr,
    seqlen, chunk_size, nchunks, nheads, dt_min, dt_max,
    stride_dt_b, stride_dt_l, stride_dt_h,
    stride_ddt_b, stride_ddt_l, stride_ddt_h,
    HAS_DT_BIAS: tl.constexpr, DT_SOFTPLUS: tl.constexpr, HAS_DT_LIMIT: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_Q: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0).to(tl.int64)  # (batch, heads, chunks) order
    c = pid % nchunks
    h = (pid // nchunks) % nheads
    b = pid // (nchunks * nheads)
    start = c * chunk_size
    ntiles = tl.cdiv(chunk_size, BLOCK_T)
    offs = tl.arange(0, BLOCK_Q)
    in_chunk = offs < chunk_size
    valid = in_chunk & (offs < seqlen - start)
    vec_base = pid * chunk_size

    dcs = tl.load(u_ptr + vec_base + offs, mask=in_chunk, other=0.0)
    dcs -= tl.load(dcs_row_ptr + vec_base + offs, mask=in_chunk, other=0.0)
    for t in range(0, ntiles):
        col_ptrs = dcs_col_ptr + (vec_base * ntiles + t * chunk_size) + offs
        dcs += tl.load(col_ptrs, mask=in_chunk & (offs >= t * BLOCK_T), other=0.0)
    v = tl.load(v_ptr + vec_base + offs, mask=in_chunk, other=0.0)
    cs_end = tl.load(cs_ptr + vec_base + chunk_size - 1)
    ddA = tl.cumsum(dcs, axis=0, reverse=True) + (tl.cumsum(v, axis=0) - v) + tl.load(ddecay_ptr + pid) * tl.exp(cs_end)

    A = tl.load(A_ptr + h).to(tl.float32)
    dt = tl.load(dt_ptr + vec_base + offs, mask=in_chunk, other=0.0)
    ddt = tl.load(ddt_direct_ptr + vec_base + offs, mask=in_chunk, other=0.0) + A * ddA
    tl.store(dA_part_ptr + pid, tl.sum(tl.where(valid, dt * ddA, 0.0), axis=0))

    raw = tl.load(dt_in_ptr + b * stride_dt_b + (start + offs) * stride_dt_l + h * stride_dt_h, mask=valid, other=0.0)
    bias = tl.load(dt_bias_ptr + h).to(tl.float32) if HAS_DT_BIAS else 0.0
    pre = raw.to(tl.float32) + bias
    if HAS_DT_LIMIT:
        unclamped = dt_transform(pre, 0.0, DT_SOFTPLUS, False, dt_min, dt_max)
        ddt = tl.where((unclamped >= dt_min) & (unclamped <= dt_max), ddt, 0.0)
    if DT_SOFTPLUS:
        ddt = tl.where(pre <= 20.0, ddt * tl.sigmoid(pre), ddt)
    ddt = tl.where(valid, ddt, 0.0)
    tl.store(
        ddt_in_ptr + b * stride_ddt_b + (start + offs) * stride_ddt_l + h * stride_ddt_h,
        ddt.to(ddt_in_ptr.dtype.element_ty),
        mask=valid,
    )
    tl.store(dbias_part_ptr + pid, tl.sum(ddt, axis=0))


def dt_bwd(
    dt_in: Tensor,
    dt_bias: Tensor | None,
    A: Tensor,
    dt_softplus: bool,
    dt_limit: tuple[float, float],
    dt: Tensor,
    cs: Tensor,
    parts: DecayGradParts,
    u: Tensor,
    ddecay: Tensor,
    block_t_bwd: int,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Returns d(dt input) (like dt_in), dA (nheads,) float32 and d(dt_bias) (nheads,) float32 or None."""
    batch, seqlen, nheads = dt_in.shape
    nchunks, chunk_size = cs.shape[2], cs.shape[3]
    ddt_in = torch.empty_like(dt_in, memory_format=torch.contiguous_format)
    dA_part = torch.empty((batch, nheads, nchunks), device=cs.device, dtype=torch.float32)
    dbias_part = torch.empty_like(dA_part)
    _dt_bwd_kernel[(batch * nheads * nchunks,)](
        dt_in, dt_bias if dt_bias is not None else A, A, dt, cs, parts.ddt_direct, parts.v, parts.dcs_row,
        parts.dcs_col, u, ddecay,
        ddt_in, dA_part, dbias_part,
        seqlen, chunk_size, nchunks, nheads, dt_limit[0], dt_limit[1],
        *dt_in.stride(), *ddt_in.stride(),
        HAS_DT_BIAS=dt_bias is not None, DT_SOFTPLUS=dt_softplus, HAS_DT_LIMIT=tuple(dt_limit) != (0.0, float("inf")),
        BLOCK_T=block_t_bwd, BLOCK_Q=triton.next_power_of_2(chunk_size), num_warps=4, **FMA_CONTRACTION,
    )  # fmt: skip
    dA = dA_part.sum((0, 2))
    dbias = dbias_part.sum((0, 2)) if dt_bias is not None else None
    return ddt_in, dA, dbias
