"""Sequential selective scan (Mamba-1, S6): the ground truth of every selective-scan test.

Recurrence, per batch b, channel d and state n (A is real and negative):

    delta_t = softplus(delta_t + delta_bias)            (each optional)
    h_t     = exp(delta_t * A[d, n]) * h_{t-1} + delta_t * B_t[n] * u_t
    y_t     = sum_n C_t[n] * h_t[n] + D[d] * u_t
    out_t   = y_t * silu(z_t)                           (optional gate)

One Python step per position: slow, obvious, and correct at any length.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..common.tensors import accumulation_dtype


def prepare_delta(delta: Tensor, delta_bias: Tensor | None, delta_softplus: bool, dtype: torch.dtype) -> Tensor:
    """Apply the optional bias and softplus to delta (b, d, l), in the scan's compute dtype."""
    delta = delta.to(dtype)
    if delta_bias is not None:
        delta = delta + delta_bias.to(dtype)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    return delta


def expand_groups(BC: Tensor, dim: int) -> Tensor:
    """(b, n, l) or (b, g, n, l) -> (b, 1 or dim, n, l): channel d reads group d // (dim // g)."""
    if BC.dim() == 3:
        return BC[:, None]
    groups = BC.shape[1]
    if dim % groups:
        raise ValueError(f"channels ({dim}) must be a multiple of the groups of B/C ({groups})")
    return BC.repeat_interleave(dim // groups, dim=1)


def finish_output(y: Tensor, u: Tensor, D: Tensor | None, z: Tensor | None) -> Tensor:
    """out = (y + D * u) * silu(z), both terms optional; everything (b, d, l)."""
    if D is not None:
        y = y + u * D.to(y.dtype)[:, None]
    if z is not None:
        y = y * F.silu(z.to(y.dtype))
    return y


def selective_scan_ref(
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
) -> Tensor | tuple[Tensor, Tensor]:
    """Selective scan, one position at a time.

    Args:
        u, delta: (batch, dim, seqlen). A: (dim, dstate), real.
        B, C: (batch, dstate, seqlen) or (batch, groups, dstate, seqlen).
        D, delta_bias: (dim,). z: (batch, dim, seqlen).
        initial_state: (batch, dim, dstate), the state before the first position (genossm extension).
    Returns:
        out (batch, dim, seqlen) in u's dtype, and the last state (batch, dim, dstate) in the compute dtype
        when ``return_last_state``.
    """
    dtype = accumulation_dtype(u.dtype)
    batch, dim, seqlen = u.shape
    delta = prepare_delta(delta, delta_bias, delta_softplus, dtype)
    uf = u.to(dtype)
    A = A.to(dtype)
    Bx = expand_groups(B.to(dtype), dim)
    Cx = expand_groups(C.to(dtype), dim)
    if initial_state is None:
        h = u.new_zeros(batch, dim, A.shape[1], dtype=dtype)
    else:
        h = initial_state.to(dtype)
    ys = []
    for t in range(seqlen):
        decay = torch.exp(delta[:, :, t, None] * A)
        h = decay * h + (delta[:, :, t] * uf[:, :, t])[:, :, None] * Bx[:, :, :, t]
        ys.append((h * Cx[:, :, :, t]).sum(-1))
    y = torch.stack(ys, dim=-1) if ys else uf.new_zeros(batch, dim, 0)
    out = finish_output(y, uf, D, z).to(u.dtype)
    return (out, h) if return_last_state else out
