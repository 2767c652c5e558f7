"""Chain the segments of a diagonal linear recurrence: the only sequential step of a sequence-parallel scan.

A scan cut into S segments computes, in parallel, each segment's ``local`` result (its end state from a zero
start) and the sum of its log-decays ``dtsum``; this pass then walks the segments in order,

    start[0] = seed,    start[s + 1] = exp2(A2 * dtsum[s]) * start[s] + local[s]

(or from the last segment backwards with ``reverse``, for the adjoint of the backward pass). It is sequential over
S only; every (batch, state, channel) is independent, so S stays small next to the sequence length.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from .math import FMA_CONTRACTION


@triton.jit(do_not_specialize=["n_segments"])
def _state_passing_kernel(
    local_ptr,  # (batch, S, dstate, dim) float32
    dtsum_ptr,  # (batch, S, dim) float32
    A2_ptr,  # (dim, dstate) float32, A * log2(e)
    seed_ptr,  # (batch, dstate, dim) with strides below, or unused
    start_ptr,  # (batch, S, dstate, dim) float32, written
    n_segments,
    dim,
    dstate,
    stride_seed_b,
    stride_seed_n,
    stride_seed_d,
    HAS_SEED: tl.constexpr,
    REVERSE: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    pid_b = tl.program_id(0)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    mask = (offs_n[:, None] < dstate) & (offs_d[None, :] < dim)
    A2 = tl.load(A2_ptr + offs_d[None, :] * dstate + offs_n[:, None], mask=mask, other=0.0)
    if HAS_SEED:
        seed_offs = (
            pid_b.to(tl.int64) * stride_seed_b + offs_n[:, None] * stride_seed_n + offs_d[None, :] * stride_seed_d
        )
        h = tl.load(seed_ptr + seed_offs, mask=mask, other=0.0).to(tl.float32)
    else:
        h = tl.zeros((BLOCK_N, BLOCK_D), tl.float32)
    state_offs = offs_n[:, None] * dim + offs_d[None, :]
    first = n_segments - 1 if REVERSE else 0
    row = pid_b.to(tl.int64) * n_segments + first
    tl.store(start_ptr + row * dstate * dim + state_offs, h, mask=mask)
    for i in range(1, n_segments):
        s = n_segments - 1 - i if REVERSE else i
        prev = s + 1 if REVERSE else s - 1  # the segment whose local result carries into s
        prev_row = pid_b.to(tl.int64) * n_segments + prev
        local = tl.load(local_ptr + prev_row * dstate * dim + state_offs, mask=mask, other=0.0)
        dtsum = tl.load(dtsum_ptr + prev_row * dim + offs_d, mask=offs_d < dim, other=0.0)
        h = tl.exp2(A2 * dtsum[None, :]) * h + local
        row = pid_b.to(tl.int64) * n_segments + s
        tl.store(start_ptr + row * dstate * dim + state_offs, h, mask=mask)


def pass_states(local: Tensor, dtsum: Tensor, A2: Tensor, seed: Tensor | None, reverse: bool = False) -> Tensor:
    """Start state of every segment, (batch, S, dstate, dim) float32.

    Args:
        local: (batch, S, dstate, dim) each segment's end state from zero (forward) or its adjoint at its first
            position from zero (``reverse``). The entry of the last segment (first with ``reverse``) is not read.
        dtsum: (batch, S, dim) the sum of the step sizes over each segment.
        A2: (dim, dstate) contiguous, A * log2(e).
        seed: (batch, dstate, dim) view (any strides): the state before segment 0 (or after the last, ``reverse``).
    """
    batch, n_segments, dstate, dim = local.shape
    start = torch.empty(local.shape, device=local.device, dtype=local.dtype)
    block_n = triton.next_power_of_2(dstate)
    block_d = max(1, min(triton.next_power_of_2(dim), 2048 // block_n))
    seed_arg = seed if seed is not None else local
    strides = seed.stride() if seed is not None else (0, 0, 0)
    grid = (batch, triton.cdiv(dim, block_d))
    _state_passing_kernel[grid](
        local,
        dtsum,
        A2,
        seed_arg,
        start,
        n_segments,
        dim,
        dstate,
        *strides,
        HAS_SEED=seed is not None,
        REVERSE=reverse,
        BLOCK_N=block_n,
        BLOCK_D=block_d,
        num_warps=4,
        **FMA_CONTRACTION,
    )
    return start
