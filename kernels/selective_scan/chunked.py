"""Chunked selective scan in PyTorch: the CPU (and Mac) path, fast enough for long sequences.

The sequence is cut into ``c`` chunks of ``T`` positions. Position ``t`` of every chunk is processed in one
vectorised step, so a scan costs ``2 T`` Python steps instead of ``L``:

1. local pass: scan every chunk from a zero state, keeping only its end state;
2. state passing: ``h_start[k+1] = exp(A * sum(delta in chunk k)) * h_start[k] + end_state[k]``, ``c`` small steps;
3. output pass: rescan every chunk from its true start state, contracting with C as it goes.

Each step holds one (batch, c, dim, dstate) slice, never the (batch, dim, L, dstate) tensor. Every decay is
``exp`` of a non-positive number, so nothing overflows at any length. Gradients come from autograd.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .reference import compute_dtype, finish_output, prepare_delta


def default_chunk_size(seqlen: int, state_size: int) -> int:
    """Steps per chunk: a power of two that keeps one step's slice (c chunks x state_size) near 2^18 numbers.

    Measured on a 2-core CPU: slices of ~1 MB run at full speed, larger ones fall out of cache, and fewer, longer
    chunks cost Python steps. ``state_size`` is batch * dim * dstate.
    """
    target = max(1, seqlen * state_size >> 18)
    chunk = 1 << max(3, min(12, math.ceil(math.log2(target))))
    return min(chunk, 1 << math.ceil(math.log2(max(seqlen, 1))))


def _to_steps(x: Tensor, chunk: int, nchunks: int, groups: int) -> Tensor:
    """(b, m, l) -> a (T, b, g, c, m/g) view; step t of chunk k is position k * T + t.

    The model's tensors are transposed views of (b, l, m) memory, so this costs no copy unless padding is needed.
    """
    b, m, length = x.shape
    rows = x.transpose(1, 2)  # (b, l, m)
    rows = torch.nn.functional.pad(rows, (0, 0, 0, nchunks * chunk - length)) if nchunks * chunk > length else rows
    rows = rows.contiguous()
    return rows.view(b, nchunks, chunk, groups, m // groups).permute(2, 0, 3, 1, 4)


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
    """Same arguments and results as :func:`selective_scan_ref`; ``chunk_size`` is chosen when not given."""
    dtype = compute_dtype(u.dtype)
    batch, dim, seqlen = u.shape
    dstate = A.shape[1]
    groups = 1 if B.dim() == 3 else B.shape[1]
    if dim % groups:
        raise ValueError(f"channels ({dim}) must be a multiple of the groups of B/C ({groups})")
    chunk = chunk_size or default_chunk_size(seqlen, batch * dim * dstate)
    nchunks = max(1, math.ceil(seqlen / chunk))

    delta = prepare_delta(delta, delta_bias, delta_softplus, dtype)
    uf = u.to(dtype)
    # Padding with delta = 0 leaves the state unchanged (decay 1, no input), so the last state stays exact.
    delta_steps = _to_steps(delta, chunk, nchunks, groups)  # (T, b, g, c, d/g)
    du_steps = _to_steps(delta * uf, chunk, nchunks, groups)  # (T, b, g, c, d/g)
    B_steps = _to_steps(B.to(dtype).flatten(1, -2), chunk, nchunks, groups)[..., None, :]  # (T, b, g, c, 1, n)
    C_steps = _to_steps(C.to(dtype).flatten(1, -2), chunk, nchunks, groups)[..., None]  # (T, b, g, c, n, 1)
    A_grouped = A.to(dtype).reshape(groups, 1, dim // groups, dstate)  # (g, 1, d/g, n)

    # States are (b, g, c, d/g, n): chunks before channels, so the C contraction is one batched mat-vec.
    def scan_chunks(h: Tensor, with_output: bool) -> tuple[Tensor, list[Tensor]]:
        ys = []
        for t in range(chunk):
            decay = torch.exp(delta_steps[t][..., None] * A_grouped)
            h = torch.addcmul(du_steps[t][..., None] * B_steps[t], decay, h)
            if with_output:
                ys.append((h @ C_steps[t])[..., 0])  # (b, g, c, d/g)
        return h, ys

    state_shape = (batch, groups, 1, dim // groups, dstate)
    h0 = initial_state.to(dtype).reshape(state_shape) if initial_state is not None else uf.new_zeros(state_shape)
    if nchunks == 1:
        starts = h0
    else:
        zeros = uf.new_zeros(batch, groups, nchunks, dim // groups, dstate)
        local_end, _ = scan_chunks(zeros, with_output=False)
        chunk_decay = torch.exp(delta_steps.sum(0)[..., None] * A_grouped)  # (b, g, c, d/g, n)
        starts_list = [h0[:, :, 0]]
        for k in range(nchunks - 1):
            starts_list.append(chunk_decay[:, :, k] * starts_list[-1] + local_end[:, :, k])
        starts = torch.stack(starts_list, dim=2)
    h_end, ys = scan_chunks(starts, with_output=True)

    # ys[t]: (b, g, c, d/g) -> (b, c, T, g, d/g) = (b, l, d) memory, returned as a (b, d, l) view.
    y = torch.stack(ys, dim=3).permute(0, 2, 3, 1, 4).reshape(batch, nchunks * chunk, dim)[:, :seqlen].transpose(1, 2)
    out = finish_output(y, uf, D, z).to(u.dtype)
    if not return_last_state:
        return out
    return out, h_end[:, :, -1].reshape(batch, dim, dstate)
