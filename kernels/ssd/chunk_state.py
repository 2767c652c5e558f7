"""SSD forward, stage 1: per chunk, the processed dt, the decay cumsum and the chunk's own end state.

One program per (batch, chunk, head, dstate tile) walks the chunk tile by tile:

    dt_t = clamp(softplus(dt_t + dt_bias))          zero beyond the sequence end (decay 1, no input)
    cs_t = sum_{s <= t} dt_s A                      restarts in every chunk, non-increasing for A < 0
    S    = sum_t exp(cs_end - cs_t) dt_t x_t B_t^T  (headdim, dstate), from a zero start

The end state is accumulated tile by tile, rescaling the running sum by the tile's total decay, so every exponent
is non-positive. dt and cs are written once here (float32, (batch, heads, chunks, chunk_size)) and read by every
later stage; the cumulative sum never gets its own kernel.
"""

from __future__ import annotations

import triton
import triton.language as tl
from torch import Tensor

from ..common.tensors import dot_precision
from .tiling import SSDTiles, new_buffer


@triton.jit
def dt_transform(dt, bias, DT_SOFTPLUS: tl.constexpr, HAS_DT_LIMIT: tl.constexpr, dt_min, dt_max):
    """dt + bias, then softplus (linear above 20, as torch) and the clamp, in float32."""
    dt = dt + bias
    if DT_SOFTPLUS:
        dt = tl.where(dt <= 20.0, tl.log(1.0 + tl.exp(tl.minimum(dt, 20.0))), dt)
    if HAS_DT_LIMIT:
        dt = tl.minimum(tl.maximum(dt, dt_min), dt_max)
    return dt


@triton.jit
def _chunk_state_fwd_kernel(
    x_ptr, dt_ptr, A_ptr, B_ptr, dt_bias_ptr,
    dt_out_ptr, cs_out_ptr, states_ptr,
    seqlen, chunk_size, nchunks, nheads, heads_per_group, headdim, dstate, dt_min, dt_max,
    stride_x_b, stride_x_l, stride_x_h, stride_x_p,
    stride_dt_b, stride_dt_l, stride_dt_h,
    stride_B_b, stride_B_l, stride_B_g, stride_B_n,
    HAS_DT_BIAS: tl.constexpr, DT_SOFTPLUS: tl.constexpr, HAS_DT_LIMIT: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0).to(tl.int64)  # 64-bit offsets: long sequences times many heads pass 2^31
    pid_n = tl.program_id(1)
    h = pid % nheads
    c = (pid // nheads) % nchunks
    b = pid // (nheads * nchunks)
    g = h // heads_per_group

    offs_p = tl.arange(0, BLOCK_P)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    A = tl.load(A_ptr + h).to(tl.float32)
    bias = tl.load(dt_bias_ptr + h).to(tl.float32) if HAS_DT_BIAS else 0.0
    start = c * chunk_size
    chunk_len = tl.minimum(chunk_size, seqlen - start).to(tl.int32)
    x_base = x_ptr + b * stride_x_b + start * stride_x_l + h * stride_x_h
    B_base = B_ptr + b * stride_B_b + start * stride_B_l + g * stride_B_g
    dt_base = dt_ptr + b * stride_dt_b + start * stride_dt_l + h * stride_dt_h
    # (batch, heads, chunks, chunk_size) buffers
    out_base = (b * nheads + h) * nchunks * chunk_size + c * chunk_size

    acc = tl.zeros((BLOCK_P, BLOCK_N), dtype=tl.float32)
    cs_run = 0.0
    for t0 in range(0, chunk_size, BLOCK_T):
        offs_t = t0 + tl.arange(0, BLOCK_T)
        in_chunk = offs_t < chunk_size
        valid = offs_t < chunk_len
        dt = tl.load(dt_base + offs_t * stride_dt_l, mask=valid, other=0.0).to(tl.float32)
        dt = tl.where(valid, dt_transform(dt, bias, DT_SOFTPLUS, HAS_DT_LIMIT, dt_min, dt_max), 0.0)
        dA = dt * A
        cs = cs_run + tl.cumsum(dA, axis=0)
        cs_tile_end = cs_run + tl.sum(dA, axis=0)
        if pid_n == 0:
            tl.store(dt_out_ptr + out_base + offs_t, dt, mask=in_chunk)
            tl.store(cs_out_ptr + out_base + offs_t, cs, mask=in_chunk)

        x = tl.load(
            x_base + offs_t[:, None] * stride_x_l + offs_p[None, :] * stride_x_p,
            mask=valid[:, None] & (offs_p[None, :] < headdim),
            other=0.0,
        )
        Bt = tl.load(
            B_base + offs_t[:, None] * stride_B_l + offs_n[None, :] * stride_B_n,
            mask=valid[:, None] & (offs_n[None, :] < dstate),
            other=0.0,
        )
        weight = tl.exp(cs_tile_end - cs) * dt  # decay to the tile's end, times dt
        xw = (x.to(tl.float32) * weight[:, None]).to(x.dtype)
        acc = acc * tl.exp(cs_tile_end - cs_run) + tl.dot(tl.trans(xw), Bt, input_precision=PRECISION)
        cs_run = cs_tile_end

    state_ptrs = (
        states_ptr + ((b * nchunks + c) * nheads + h) * headdim * dstate + offs_p[:, None] * dstate + offs_n[None, :]
    )
    tl.store(state_ptrs, acc, mask=(offs_p[:, None] < headdim) & (offs_n[None, :] < dstate))


def chunk_state_fwd(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    dt_bias: Tensor | None,
    dt_softplus: bool,
    dt_limit: tuple[float, float],
    chunk_size: int,
    tiles: SSDTiles,
) -> tuple[Tensor, Tensor, Tensor]:
    """Returns dt and cs, float32 (batch, heads, chunks, chunk_size), and the chunk states, float32
    (batch, chunks, heads, headdim, dstate)."""
    batch, seqlen, nheads, headdim = x.shape
    ngroups, dstate = B.shape[2], B.shape[3]
    nchunks = triton.cdiv(seqlen, chunk_size)
    dt_out = new_buffer((batch, nheads, nchunks, chunk_size), x.device)
    cs_out = new_buffer((batch, nheads, nchunks, chunk_size), x.device)
    states = new_buffer((batch, nchunks, nheads, headdim, dstate), x.device)
    has_limit = tuple(dt_limit) != (0.0, float("inf"))
    grid = (batch * nchunks * nheads, triton.cdiv(dstate, tiles.block_n_state))
    _chunk_state_fwd_kernel[grid](
        x, dt, A, B, dt_bias if dt_bias is not None else A,
        dt_out, cs_out, states,
        seqlen, chunk_size, nchunks, nheads, nheads // ngroups, headdim, dstate, dt_limit[0], dt_limit[1],
        *x.stride(), *dt.stride(), *B.stride(),
        HAS_DT_BIAS=dt_bias is not None, DT_SOFTPLUS=dt_softplus, HAS_DT_LIMIT=has_limit,
        BLOCK_T=tiles.block_t, BLOCK_P=tiles.block_p, BLOCK_N=tiles.block_n_state,
        PRECISION=dot_precision(x.dtype), **tiles.launch(tiles.num_stages, capped=True),
    )  # fmt: skip
    return dt_out, cs_out, states
