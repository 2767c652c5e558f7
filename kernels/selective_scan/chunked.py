"""Chunked selective scan in PyTorch: the CPU (and Mac) path, fast enough for long sequences.

The sequence is walked in blocks of ``c`` chunks of ``T`` positions, carrying the state from block to block:

1. decays ``a_t = exp2(dt_t A log2 e)`` and inputs ``x_t = dt_t u_t B_t`` of every position of the block at once
   (vectorised); the carried state ``h`` enters chunk 0 as ``x_0 += a_0 h``;
2. chaining (``c > 1``): a copy of every chunk is scanned from zero for its end state, the ends are chained,
   ``start[k] = exp2(A log2 e sum dt over chunk k-1) start[k-1] + end[k-1]`` (c small steps), and each start
   enters its chunk the same way;
3. the scan ``h_t = a_t h_{t-1} + x_t`` along the ``T`` positions, every chunk at once: ``T`` vectorised steps;
4. ``y_t = C_t . h_t`` as one batched contraction, then D and the gate, and the block is written out.

A batch of many sequences needs no chunks (its steps are already wide) and skips step 2. The block tensors are
``(batch, c, T, groups, dstate, dim / groups)``, channels innermost so the products run along contiguous memory,
and a block's inputs and output are views of the model's ``(batch, length, channels)`` memory. At about 2^20
numbers per block, memory stays bounded and cache resident at any length; without gradients the block tensors are
reused from block to block and the scan runs in place, with gradients autograd differentiates the same steps. Every
decay is ``exp2`` of a non-positive number, so nothing overflows at any length.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..common.tensors import accumulation_dtype
from .reference import finish_output, prepare_delta

STEP_NUMBERS = 1 << 16  # numbers per vectorised step: wide enough to hide PyTorch's per-op cost
BLOCK_NUMBERS = 1 << 20  # numbers per block tensor: 4 MB in float32, cache resident


def block_shape(seqlen: int, state_size: int, chunk_size: int | None = None) -> tuple[int, int]:
    """(T, c): positions per chunk and chunks per block, for a state of ``state_size`` = batch * dim * dstate.

    Chunks are added until one step is ``STEP_NUMBERS`` wide (none when the batch alone is), but no more than a
    block has steps (c <= T; each chunk costs a step in the chaining), and T fills the block to ``BLOCK_NUMBERS``;
    both powers of two, never longer than the sequence needs.
    """
    per_block = max(1, BLOCK_NUMBERS // state_size)  # T * c
    chunks = min(max(1, STEP_NUMBERS // state_size), 1 << (per_block.bit_length() - 1) // 2)
    chunks = 1 << (chunks.bit_length() - 1)
    steps = chunk_size or 1 << max(0, (per_block // chunks).bit_length() - 1)
    steps = max(1, min(steps, 1 << math.ceil(math.log2(max(seqlen, 1)))))
    return steps, max(1, min(chunks, math.ceil(seqlen / steps)))


def _recurrence(decay: Tensor, x: Tensor) -> Tensor:
    """Every ``h_i = decay_i h_{i-1} + x_i`` along the first axis, from ``h_{-1} = 0``.

    Without gradients ``x`` is overwritten with the states; with them the steps are stacked for autograd.
    """
    if torch.is_grad_enabled() and (decay.requires_grad or x.requires_grad):
        # unbind, not x[i]: the backward of each index would fill a zero tensor of x's full size
        decays, inputs = decay.unbind(0), x.unbind(0)
        states = [inputs[0]]
        for a, b in zip(decays[1:], inputs[1:], strict=True):
            states.append(torch.addcmul(b, a, states[-1]))
        return torch.stack(states)
    for i in range(1, len(x)):
        x[i].addcmul_(decay[i], x[i - 1])
    return x


def _product(x: Tensor, y: Tensor, buffer: Tensor | None) -> Tensor:
    """x * y (broadcast), written into the front of the flat ``buffer`` when one is given.

    Reusing one buffer per block matters on the CPU: a fresh allocation of a few MB costs page faults every time.
    """
    if buffer is None:
        return x * y
    y_shape = (1,) * (x.dim() - y.dim()) + tuple(y.shape)  # torch.broadcast_shapes costs ~50 us a call
    shape = [max(p, q) for p, q in zip(x.shape, y_shape, strict=True)]
    return torch.mul(x, y, out=buffer[: math.prod(shape)].view(shape))


def _copy(x: Tensor, buffer: Tensor | None) -> Tensor:
    """A copy of ``x``, in the front of ``buffer`` when one is given."""
    return x.clone() if buffer is None else buffer[: x.numel()].view(x.shape).copy_(x)


def _chunks(rows: Tensor, start: int, end: int, steps: int, groups: int, dtype: torch.dtype) -> Tensor:
    """Positions [start, end) of (b, l, m) rows as a (b, c, T, g, m/g) view, zero-padded to whole chunks of T
    (a copy only then, or to change the dtype): step t of chunk k is position start + k * T + t."""
    b, _, m = rows.shape
    chunks = math.ceil((end - start) / steps)
    rows = rows[:, start:end]
    if chunks * steps > end - start:
        rows = torch.nn.functional.pad(rows, (0, 0, 0, chunks * steps - (end - start)))
    return rows.view(b, chunks, steps, groups, m // groups).to(dtype)


def selective_scan_chunked(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    initial_state: Tensor | None = None,
    chunk_size: int | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """Same arguments and results as :func:`selective_scan_ref`; ``chunk_size`` (T) is chosen when not given."""
    dtype = accumulation_dtype(u.dtype)
    batch, dim, seqlen = u.shape
    dstate = A.shape[1]
    groups = 1 if B.dim() == 3 else B.shape[1]
    if dim % groups:
        raise ValueError(f"channels ({dim}) must be a multiple of the groups of B/C ({groups})")
    steps, chunks = block_shape(seqlen, batch * dim * dstate, chunk_size)
    grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (u, delta, A, B, C, D, z, delta_bias, initial_state)
    )
    # exp(x A) = exp2(x A log2 e); A as (g, n, d/g), so that products run along the contiguous channel axis.
    A2 = (A.to(dtype) * math.log2(math.e)).reshape(groups, dim // groups, dstate).transpose(1, 2).contiguous()
    numbers = steps * batch * chunks * dim * dstate
    decay_buf, x_buf, h_buf = (None,) * 3 if grad else (u.new_empty(numbers, dtype=dtype) for _ in range(3))
    state = u.new_zeros(batch, groups, dstate, dim // groups, dtype=dtype)  # before the block: (b, g, n, d/g)
    if initial_state is not None:
        state = initial_state.to(dtype).reshape(batch, groups, dim // groups, dstate).transpose(2, 3)

    # Inputs are read as (b, l, m) rows, the model's memory layout, so a block's (b, c, T, g, m/g) inputs and its
    # (b, c T, d) output are views; every element-wise op runs per block.
    u_rows, delta_rows = u.transpose(1, 2), delta.transpose(1, 2)
    B_rows, C_rows = B.flatten(1, -2).transpose(1, 2), C.flatten(1, -2).transpose(1, 2)  # (b, l, g * n)
    z_rows = None if z is None else z.transpose(1, 2)
    out = u.new_empty(batch, seqlen, dim)
    for start in range(0, seqlen, steps * chunks):
        end = min(seqlen, start + steps * chunks)
        c = math.ceil((end - start) / steps)
        # Padding with dt = 0 leaves the state unchanged (decay 1, no input), so the last state stays exact.
        dt = prepare_delta(delta_rows[:, start:end].transpose(1, 2), delta_bias, delta_softplus, dtype)
        dt = _chunks(dt.transpose(1, 2), 0, end - start, steps, groups, dtype)[..., None, :]  # (b, c, T, g, 1, d/g)
        uf = _chunks(u_rows, start, end, steps, groups, dtype)[..., None, :]
        Bt = _chunks(B_rows, start, end, steps, groups, dtype)[..., None]  # (b, c, T, g, n, 1)
        decay = _product(dt, A2, decay_buf).exp2_()  # (b, c, T, g, n, d/g)
        x = _product(dt * uf, Bt, x_buf)
        x[:, 0, 0].addcmul_(decay[:, 0, 0], state)
        if c > 1:  # chunk k starts where chunk k-1 ends: chain the ends of every chunk scanned from zero
            local = _recurrence(decay.movedim(2, 0), _copy(x, h_buf).movedim(2, 0))  # (T, b, c, g, n, d/g)
            chunk_decay = torch.exp2(dt.sum(2)[:, :-1] * A2)  # exp2(A2 sum dt) over chunks 0 .. c-2
            starts = _recurrence(chunk_decay.movedim(1, 0), local[-1, :, :-1].movedim(1, 0))  # their true ends
            x[:, 1:, 0].addcmul_(decay[:, 1:, 0], starts.movedim(0, 1))
        h = _recurrence(decay.movedim(2, 0), x.movedim(2, 0)).movedim(0, 2)
        state = h[:, -1, -1].clone()
        Ct = _chunks(C_rows, start, end, steps, groups, dtype)[..., None, :]  # (b, c, T, g, 1, n)
        y = (Ct @ h).view(batch, c * steps, dim)[:, : end - start]
        zt = None if z_rows is None else z_rows[:, start:end].transpose(1, 2)
        y = finish_output(y.transpose(1, 2), u_rows[:, start:end].transpose(1, 2).to(dtype), D, zt)
        out[:, start:end] = y.transpose(1, 2)

    out = out.transpose(1, 2)
    if not return_last_state:
        return out
    return out, state.transpose(2, 3).reshape(batch, dim, dstate)
