"""Sequential Mamba-2 (SSD) scan: the ground truth of every SSD test.

Per batch b and head h (A[h] is a negative scalar, heads share B and C within a group):

    dt_t  = clamp(softplus(dt_t + dt_bias), *dt_limit)          (bias and softplus optional)
    H_t   = exp(dt_t * A[h]) * H_{t-1} + dt_t * x_t B_t^T        H: (headdim, dstate)
    y_t   = H_t C_t + D[h] * x_t
    out_t = y_t * silu(z_t)                                      (optional gate)

Head h reads group h // (nheads // ngroups) of B and C.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..common.tensors import accumulation_dtype


def prepare_dt(
    dt: Tensor,
    dt_bias: Tensor | None,
    dt_softplus: bool,
    dt_limit: tuple[float, float],
    dtype: torch.dtype,
) -> Tensor:
    """Bias, softplus and clamp of dt (b, l, h), in the compute dtype."""
    dt = dt.to(dtype)
    if dt_bias is not None:
        dt = dt + dt_bias.to(dtype)
    if dt_softplus:
        dt = F.softplus(dt)
    if dt_limit != (0.0, float("inf")):
        dt = dt.clamp(min=dt_limit[0], max=dt_limit[1])
    return dt


def heads_of_groups(BC: Tensor, nheads: int) -> Tensor:
    """(b, l, g, n) -> (b, l, nheads, n): each head gets its group's B or C."""
    groups = BC.shape[2]
    if nheads % groups:
        raise ValueError(f"heads ({nheads}) must be a multiple of ngroups ({groups})")
    return BC.repeat_interleave(nheads // groups, dim=2)


def finish_output(y: Tensor, x: Tensor, D: Tensor | None, z: Tensor | None) -> Tensor:
    """out = (y + D x) * silu(z); y, x, z: (b, l, h, p); D: (h,) or (h, p)."""
    if D is not None:
        Df = D.to(y.dtype)
        y = y + x * (Df[:, None] if Df.dim() == 1 else Df)
    if z is not None:
        y = y * F.silu(z.to(y.dtype))
    return y


def ssd_ref(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    dt_bias: Tensor | None = None,
    dt_softplus: bool = False,
    dt_limit: tuple[float, float] = (0.0, float("inf")),
    initial_states: Tensor | None = None,
    return_final_states: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """SSD scan, one position at a time.

    Args:
        x: (batch, seqlen, nheads, headdim). dt: (batch, seqlen, nheads). A: (nheads,).
        B, C: (batch, seqlen, ngroups, dstate). D: (nheads,) or (nheads, headdim). z: like x.
        initial_states: (batch, nheads, headdim, dstate).
    Returns:
        out like x (x's dtype) and, with ``return_final_states``, the final states (batch, nheads, headdim, dstate)
        in the compute dtype.
    """
    dtype = accumulation_dtype(x.dtype)
    batch, seqlen, nheads, headdim = x.shape
    dt = prepare_dt(dt, dt_bias, dt_softplus, dt_limit, dtype)
    xf = x.to(dtype)
    Bh = heads_of_groups(B.to(dtype), nheads)
    Ch = heads_of_groups(C.to(dtype), nheads)
    A = A.to(dtype)
    if initial_states is None:
        state = xf.new_zeros(batch, nheads, headdim, B.shape[-1])
    else:
        state = initial_states.to(dtype)
    ys = []
    for t in range(seqlen):
        decay = torch.exp(dt[:, t] * A)[:, :, None, None]  # (b, h, 1, 1)
        inject = (dt[:, t, :, None] * xf[:, t])[..., None] * Bh[:, t, :, None, :]  # (b, h, p, n)
        state = decay * state + inject
        ys.append((state * Ch[:, t, :, None, :]).sum(-1))  # (b, h, p)
    y = torch.stack(ys, dim=1) if ys else xf.new_zeros(batch, 0, nheads, headdim)
    out = finish_output(y, xf, D, z).to(x.dtype)
    return (out, state) if return_final_states else out
