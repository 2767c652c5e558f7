"""Chunked SSD (Mamba-2) in PyTorch: the CPU (and Mac) path.

The state-space dual form of the paper, with chunks of Q positions:

1. inside a chunk the scan is a masked matrix product: ``Y_diag = (C B^T ∘ L) (dt x)``, where
   ``L[i, j] = exp(cumsum(dt A)[i] - cumsum(dt A)[j])`` for ``i >= j`` and 0 above the diagonal;
2. each chunk's end state from a zero start: ``S_k = sum_s exp(cs[-1] - cs[s]) dt_s x_s B_s^T``;
3. states pass between chunks: ``H_{k+1} = exp(cs_k[-1]) H_k + S_k`` (a short loop);
4. the carried state reaches every position: ``Y_off = exp(cs) C H_k``.

Chunks are processed in blocks so that the (Q x Q) decay matrices of one block stay under a fixed size; the
state is carried from block to block, so memory does not grow with the sequence. Cumulative sums restart in
every chunk and every exponent is non-positive: stable in float32 at any length.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..common.tensors import accumulation_dtype
from .reference import finish_output, prepare_dt

# Largest number of decay-matrix entries (batch * heads * chunks * Q * Q) built at once.
_MAX_BLOCK_ENTRIES = 1 << 24


def _ssd_chunks(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
    """One block of whole chunks.

    x: (b, c, Q, g, r, p), dt: (b, c, Q, g, r), A: (g, r), B and C: (b, c, Q, g, n), state: (b, g, r, p, n).
    Returns y (b, c, Q, g, r, p) and the state after the block.
    """
    chunk = x.shape[2]
    dA = (dt * A).permute(0, 3, 4, 1, 2)  # (b, g, r, c, Q)
    cs = torch.cumsum(dA, dim=-1)
    causal = torch.ones(chunk, chunk, dtype=torch.bool, device=x.device).tril()
    decay = torch.exp((cs[..., :, None] - cs[..., None, :]).masked_fill(~causal, -math.inf))  # (b,g,r,c,Q,Q)

    xdt = (x * dt[..., None]).permute(0, 3, 4, 1, 2, 5)  # (b, g, r, c, Q, p)
    Bg = B.permute(0, 3, 1, 2, 4)[:, :, None]  # (b, g, 1, c, Q, n)
    Cg = C.permute(0, 3, 1, 2, 4)[:, :, None]
    scores = Cg @ Bg.transpose(-1, -2)  # (b, g, 1, c, Q, Q)
    y = (scores * decay) @ xdt  # (b, g, r, c, Q, p)

    to_end = torch.exp(cs[..., -1:] - cs)  # (b, g, r, c, Q)
    chunk_states = (xdt * to_end[..., None]).transpose(-1, -2) @ Bg  # (b, g, r, c, p, n)
    chunk_decay = torch.exp(cs[..., -1])  # (b, g, r, c)
    starts = []
    for k in range(x.shape[1]):
        starts.append(state)
        state = chunk_decay[..., k, None, None] * state + chunk_states[:, :, :, k]
    starts_t = torch.stack(starts, dim=3)  # (b, g, r, c, p, n)
    y = y + torch.exp(cs)[..., None] * (Cg @ starts_t.transpose(-1, -2))  # (b, g, r, c, Q, p)
    return y.permute(0, 3, 4, 1, 2, 5), state


def ssd_chunked(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    chunk_size: int = 64,
    D: Tensor | None = None,
    z: Tensor | None = None,
    dt_bias: Tensor | None = None,
    dt_softplus: bool = False,
    dt_limit: tuple[float, float] = (0.0, float("inf")),
    initial_states: Tensor | None = None,
    return_final_states: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Same arguments and results as :func:`ssd_ref`, computed chunk by chunk."""
    dtype = accumulation_dtype(x.dtype)
    batch, seqlen, nheads, headdim = x.shape
    groups, dstate = B.shape[2], B.shape[3]
    if nheads % groups:
        raise ValueError(f"heads ({nheads}) must be a multiple of ngroups ({groups})")
    ratio = nheads // groups
    nchunks = max(1, math.ceil(seqlen / chunk_size))
    pad = nchunks * chunk_size - seqlen

    dtf = prepare_dt(dt, dt_bias, dt_softplus, dt_limit, dtype)
    xf = x.to(dtype)
    # Zero padding: dt = 0 means decay 1 and no input, so the final state stays exact.
    xc = torch.nn.functional.pad(xf, (0, 0, 0, 0, 0, pad)).reshape(batch, nchunks, chunk_size, groups, ratio, headdim)
    dtc = torch.nn.functional.pad(dtf, (0, 0, 0, pad)).reshape(batch, nchunks, chunk_size, groups, ratio)
    Bc = torch.nn.functional.pad(B.to(dtype), (0, 0, 0, 0, 0, pad)).reshape(batch, nchunks, chunk_size, groups, dstate)
    Cc = torch.nn.functional.pad(C.to(dtype), (0, 0, 0, 0, 0, pad)).reshape(batch, nchunks, chunk_size, groups, dstate)
    Ag = A.to(dtype).reshape(groups, ratio)

    state_shape = (batch, groups, ratio, headdim, dstate)
    state = initial_states.to(dtype).reshape(state_shape) if initial_states is not None else xf.new_zeros(state_shape)
    per_block = max(1, _MAX_BLOCK_ENTRIES // (batch * nheads * chunk_size * chunk_size))
    ys = []
    for start in range(0, nchunks, per_block):
        blk = slice(start, start + per_block)
        y_blk, state = _ssd_chunks(xc[:, blk], dtc[:, blk], Ag, Bc[:, blk], Cc[:, blk], state)
        ys.append(y_blk)
    y = torch.cat(ys, dim=1).reshape(batch, nchunks * chunk_size, nheads, headdim)[:, :seqlen]
    out = finish_output(y, xf, D, z).to(x.dtype)
    if not return_final_states:
        return out
    return out, state.reshape(batch, nheads, headdim, dstate)
