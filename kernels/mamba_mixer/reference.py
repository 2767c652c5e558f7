"""The Mamba-1 mixer as a composition of the public ops: the reference of the fused op and the CPU path."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..conv1d import causal_conv1d_fn
from ..conv1d.reference import causal_conv1d_step_ref
from ..selective_scan import selective_scan_fn
from .weights import MixerWeights


def conv_tail(x: Tensor, width: int) -> Tensor:
    """x's last min(seqlen, width) positions (batch, d_inner, k): what the conv state needs of a sequence."""
    return x[:, :, max(0, x.shape[-1] - width) :]


def mamba_mixer_ref(
    hidden: Tensor,
    w: MixerWeights,
    conv_initial: Tensor | None = None,
    initial_state: Tensor | None = None,
) -> Tensor | tuple[Tensor, Tensor, Tensor]:
    """out_proj(scan(conv(x), dt_proj(dt), B, C, gate z)) with x, z = in_proj(hidden) and dt, B, C = x_proj(x).

    hidden: (batch, seqlen, d_model). ``conv_initial`` (batch, d_inner, d_conv - 1) are the conv's inputs before
    the sequence. With ``initial_state`` (batch, d_inner, d_state) the scan continues from it and the op returns
    (out, x's last min(seqlen, d_conv) positions (batch, d_inner, k), the state after the last position): the
    conv's and the scan's states for what follows.
    """
    d_inner = w.A.shape[0]
    xz = F.linear(hidden, w.in_proj, w.in_proj_bias)
    # split before transposing: the backward then concatenates dx and dz along their contiguous axis
    x, z = (half.transpose(1, 2) for half in xz.split(d_inner, dim=-1))
    conv_in = conv_initial.to(x.dtype) if conv_initial is not None else None
    u = causal_conv1d_fn(x, w.conv, w.conv_bias, initial_states=conv_in, activation="silu")
    dt, B, C = F.linear(u.transpose(1, 2), w.x_proj).split([w.dt_rank, w.d_state, w.d_state], dim=-1)
    y = selective_scan_fn(
        u,
        F.linear(dt, w.dt_proj).transpose(1, 2),  # (b, d_inner, l); the bias is added in the scan
        w.A,
        B.transpose(1, 2),
        C.transpose(1, 2),
        w.D,
        z=z,
        delta_bias=w.dt_bias,
        delta_softplus=True,
        return_last_state=initial_state is not None,
        initial_state=initial_state,
    )
    if initial_state is None:
        return F.linear(y.transpose(1, 2), w.out_proj, w.out_proj_bias)
    y, last = y
    return F.linear(y.transpose(1, 2), w.out_proj, w.out_proj_bias), conv_tail(x, w.conv.shape[1]), last


def mamba_mixer_step_ref(
    hidden: Tensor, w: MixerWeights, conv_state: Tensor, ssm_state: Tensor, ssm_out: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """The mixer on one token: hidden (batch, d_model) -> (out (batch, d_model), the new conv state (batch,
    d_inner, d_conv), the new float32 scan state (batch, d_inner, d_state)). The states given are not changed, but
    for the new scan state going into ``ssm_out`` when given (which may be ``ssm_state``)."""
    dtype, f = hidden.dtype, ssm_state.dtype
    x, z = F.linear(hidden, w.in_proj, w.in_proj_bias).chunk(2, dim=-1)  # (b, d_inner) each
    x, conv_state = causal_conv1d_step_ref(x, conv_state, w.conv, w.conv_bias)
    x = x.to(dtype)
    dt, B, C = F.linear(x, w.x_proj).split([w.dt_rank, w.d_state, w.d_state], dim=-1)
    dt = F.softplus(F.linear(dt, w.dt_proj).to(f) + w.dt_bias)  # (b, d_inner)
    decay = torch.exp(dt[:, :, None] * w.A)  # (b, d_inner, d_state)
    ssm_state = decay * ssm_state + (dt * x.to(f))[:, :, None] * B.to(f)[:, None, :]
    if ssm_out is not None:
        ssm_state = ssm_out.copy_(ssm_state)
    y = (ssm_state * C.to(f)[:, None, :]).sum(-1) + w.D * x.to(f)
    y = (y * F.silu(z.to(f))).to(dtype)
    return F.linear(y, w.out_proj, w.out_proj_bias), conv_state, ssm_state
