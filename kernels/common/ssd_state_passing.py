"""States passed between chunks: the short linear recurrence of the chunked (SSD) scan, forward and backward.

Forward, per (batch, head), with chunk decays a_c = exp(cs_c[end]) and chunk states S_c (from a zero start):

    H_0 = initial state,   H_{c+1} = a_c H_c + S_c,   final = H_nchunks

Backward, with dH_c the gradient reaching H_c from chunk c's outputs and G the gradient of the final state:

    G_nchunks = d_final,   G_c = dH_c + a_c G_{c+1},   dS_c = G_{c+1},   da_c = <G_{c+1}, H_c>,   d_initial = G_0

Each program owns one block of state elements of one (batch, head) and walks the chunks in blocks: a block of
chunks is combined by an associative scan of the affine maps h -> a h + s, then applied to the carried state.
The serial loop thus has nchunks / block_chunks steps, and the grid spans (batch, heads, state blocks), so one
long sequence (batch 1) still keeps the GPU busy. Layouts: states (batch, chunks, heads, state), decays taken
from the cumsum buffer (batch, heads, chunks, chunk_size) at its last position.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from .math import FMA_CONTRACTION


@triton.jit
def _affine_combine(a_first, s_first, a_then, s_then):
    """Compose h -> a_first h + s_first, then h -> a_then h + s_then."""
    return a_first * a_then, a_then * s_first + s_then


@triton.jit
def _last_row(tile, rows, last):
    return tl.sum(tl.where(rows[:, None] == last, tile, 0.0), axis=0)


@triton.jit
def _state_passing_fwd_kernel(
    chunk_states_ptr, cs_ptr, initial_ptr, starts_ptr, final_ptr,
    nchunks, nheads, state_size, chunk_size,
    HAS_INITIAL: tl.constexpr, BLOCK_PN: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0).to(tl.int64)
    n_pn = tl.cdiv(state_size, BLOCK_PN)
    blk = pid % n_pn
    h = (pid // n_pn) % nheads
    b = pid // (n_pn * nheads)
    offs = blk * BLOCK_PN + tl.arange(0, BLOCK_PN)
    in_state = offs < state_size
    rows = tl.arange(0, BLOCK_C)
    chunk_stride = nheads * state_size
    base = (b * nchunks * nheads + h) * state_size  # (b, chunk 0, h) in (batch, chunks, heads, state)
    cs_base = cs_ptr + (b * nheads + h) * nchunks * chunk_size + chunk_size - 1

    if HAS_INITIAL:
        carry = tl.load(initial_ptr + (b * nheads + h) * state_size + offs, mask=in_state, other=0.0).to(tl.float32)
    else:
        carry = tl.zeros((BLOCK_PN,), dtype=tl.float32)
    tl.store(starts_ptr + base + offs, carry.to(starts_ptr.dtype.element_ty), mask=in_state)
    for c0 in range(0, nchunks, BLOCK_C):
        chunk = (c0 + rows).to(tl.int64)
        live = chunk < nchunks
        decay = tl.exp(tl.load(cs_base + chunk * chunk_size, mask=live, other=0.0))  # 1 on dead rows
        mask = live[:, None] & in_state[None, :]
        s = tl.load(chunk_states_ptr + base + chunk[:, None] * chunk_stride + offs[None, :], mask=mask, other=0.0)
        a = tl.broadcast_to(decay[:, None], (BLOCK_C, BLOCK_PN))
        a_scan, s_scan = tl.associative_scan((a, s), 0, _affine_combine)
        ends = a_scan * carry[None, :] + s_scan  # state after each chunk = start of the next
        next_ptrs = starts_ptr + base + (chunk[:, None] + 1) * chunk_stride + offs[None, :]
        tl.store(next_ptrs, ends.to(starts_ptr.dtype.element_ty), mask=mask & (chunk[:, None] + 1 < nchunks))
        carry = _last_row(ends, rows, BLOCK_C - 1)
    tl.store(final_ptr + (b * nheads + h) * state_size + offs, carry, mask=in_state)


@triton.jit
def _state_passing_bwd_kernel(
    dstarts_ptr, cs_ptr, starts_ptr, dfinal_ptr,
    dchunk_states_ptr, dinitial_ptr, ddecay_ptr,
    nchunks, nheads, state_size, chunk_size,
    HAS_DFINAL: tl.constexpr, BLOCK_PN: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0).to(tl.int64)
    n_pn = tl.cdiv(state_size, BLOCK_PN)
    blk = pid % n_pn
    h = (pid // n_pn) % nheads
    b = pid // (n_pn * nheads)
    offs = blk * BLOCK_PN + tl.arange(0, BLOCK_PN)
    in_state = offs < state_size
    rows = tl.arange(0, BLOCK_C)
    chunk_stride = nheads * state_size
    base = (b * nchunks * nheads + h) * state_size
    cs_base = cs_ptr + (b * nheads + h) * nchunks * chunk_size + chunk_size - 1
    # (batch, heads, chunks, state blocks) partial sums of da
    ddecay_base = ddecay_ptr + (b * nheads + h) * nchunks * n_pn + blk

    last = nchunks - 1
    if HAS_DFINAL:
        carry = tl.load(dfinal_ptr + (b * nheads + h) * state_size + offs, mask=in_state, other=0.0).to(tl.float32)
    else:
        carry = tl.zeros((BLOCK_PN,), dtype=tl.float32)
    dtype = dchunk_states_ptr.dtype.element_ty
    tl.store(dchunk_states_ptr + base + last * chunk_stride + offs, carry.to(dtype), mask=in_state)
    start_last = tl.load(starts_ptr + base + last * chunk_stride + offs, mask=in_state, other=0.0).to(tl.float32)
    tl.store(ddecay_base + last * n_pn, tl.sum(carry * start_last, axis=0))
    # Row r of a block is chunk top - r: a forward scan over the reversed order.
    for c0 in range(0, nchunks, BLOCK_C):
        chunk = (last - c0 - rows).to(tl.int64)
        live = chunk >= 0
        mask = live[:, None] & in_state[None, :]
        decay = tl.exp(tl.load(cs_base + chunk * chunk_size, mask=live, other=0.0))
        g = tl.load(dstarts_ptr + base + chunk[:, None] * chunk_stride + offs[None, :], mask=mask, other=0.0)
        a = tl.broadcast_to(decay[:, None], (BLOCK_C, BLOCK_PN))
        a_scan, g_scan = tl.associative_scan((a, g), 0, _affine_combine)
        grads = a_scan * carry[None, :] + g_scan  # G_chunk: gradient of the state entering the chunk
        # G_chunk is dS of chunk - 1 and pairs with that chunk's start state for its decay gradient.
        has_prev = mask & (chunk[:, None] >= 1)
        prev = chunk[:, None] - 1
        tl.store(dchunk_states_ptr + base + prev * chunk_stride + offs[None, :], grads.to(dtype), mask=has_prev)
        start_prev = tl.load(starts_ptr + base + prev * chunk_stride + offs[None, :], mask=has_prev, other=0.0)
        tl.store(ddecay_base + (chunk - 1) * n_pn, tl.sum(grads * start_prev.to(tl.float32), axis=1), mask=chunk >= 1)
        carry = _last_row(grads, rows, BLOCK_C - 1)
    tl.store(dinitial_ptr + (b * nheads + h) * state_size + offs, carry, mask=in_state)


def _num_warps(block_pn: int) -> int:
    """Warps of a program: 8 state elements per thread (fewer made each kernel 2-4x slower on the H100)."""
    return max(1, min(4, block_pn // 256))


def state_passing_fwd(
    chunk_states: Tensor,
    cs: Tensor,
    initial_states: Tensor | None,
    starts_dtype: torch.dtype,
    block_pn: int,
    block_chunks: int,
) -> tuple[Tensor, Tensor]:
    """chunk_states (batch, chunks, heads, P, N) float32, cs (batch, heads, chunks, chunk_size) float32.

    Returns the state entering every chunk (batch, chunks, heads, P, N) in ``starts_dtype`` and the final state
    (batch, heads, P, N) in float32.
    """
    batch, nchunks, nheads = chunk_states.shape[:3]
    state_size = chunk_states[0, 0, 0].numel()
    starts = torch.empty_like(chunk_states, dtype=starts_dtype)
    final = torch.empty((batch, nheads, *chunk_states.shape[3:]), device=cs.device, dtype=torch.float32)
    initial = initial_states.contiguous() if initial_states is not None else final
    grid = (batch * nheads * triton.cdiv(state_size, block_pn),)
    _state_passing_fwd_kernel[grid](
        chunk_states, cs, initial, starts, final,
        nchunks, nheads, state_size, cs.shape[-1],
        HAS_INITIAL=initial_states is not None, BLOCK_PN=block_pn, BLOCK_C=block_chunks,
        num_warps=_num_warps(block_pn), **FMA_CONTRACTION,
    )  # fmt: skip
    return starts, final


def state_passing_bwd(
    dstarts: Tensor,
    cs: Tensor,
    starts: Tensor,
    dfinal: Tensor | None,
    dchunk_states_dtype: torch.dtype,
    block_pn: int,
    block_chunks: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """dstarts: gradient reaching each chunk's start state from its own outputs (batch, chunks, heads, P, N).

    Returns the gradient of every chunk state (same layout, ``dchunk_states_dtype``), of the initial state
    (batch, heads, P, N) float32, and of every chunk decay a_c (batch, heads, chunks) float32.
    """
    batch, nchunks, nheads = dstarts.shape[:3]
    state_size = dstarts[0, 0, 0].numel()
    n_pn = triton.cdiv(state_size, block_pn)
    dchunk_states = torch.empty_like(dstarts, dtype=dchunk_states_dtype)
    dinitial = torch.empty((batch, nheads, *dstarts.shape[3:]), device=cs.device, dtype=torch.float32)
    ddecay = torch.empty((batch, nheads, nchunks, n_pn), device=cs.device, dtype=torch.float32)
    dfinal_arg = dfinal.contiguous() if dfinal is not None else dinitial
    _state_passing_bwd_kernel[(batch * nheads * n_pn,)](
        dstarts, cs, starts, dfinal_arg, dchunk_states, dinitial, ddecay,
        nchunks, nheads, state_size, cs.shape[-1],
        HAS_DFINAL=dfinal is not None, BLOCK_PN=block_pn, BLOCK_C=block_chunks, num_warps=_num_warps(block_pn),
        **FMA_CONTRACTION,
    )  # fmt: skip
    return dchunk_states, dinitial, ddecay.sum(-1)
