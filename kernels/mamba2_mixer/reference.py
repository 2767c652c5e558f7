"""The Mamba-2 mixer as a composition of the public ops: the reference of the fused op and the CPU path."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..conv1d import causal_conv1d_fn
from ..conv1d.reference import causal_conv1d_step_ref
from ..mamba_mixer.reference import conv_tail
from ..norm import gated_rms_norm
from ..ssd import ssd_chunk_scan
from .weights import Mamba2Settings, Mamba2Sizes, Mamba2Weights


def scan_inputs(xBC: Tensor, s: Mamba2Settings, sizes: Mamba2Sizes) -> tuple[Tensor, Tensor, Tensor]:
    """The conv's output (batch, seqlen, conv_dim) -> views x (b, l, nheads, headdim), B and C (b, l, ngroups,
    d_state)."""
    x, B, C = xBC.split([sizes.d_ssm, s.ngroups * s.d_state, s.ngroups * s.d_state], dim=-1)
    groups = (s.ngroups, s.d_state)
    return x.unflatten(-1, (sizes.nheads, s.headdim)), B.unflatten(-1, groups), C.unflatten(-1, groups)


def gate_and_project(
    y: Tensor, z: Tensor, z0: Tensor, x0: Tensor, w: Mamba2Weights, s: Mamba2Settings
) -> Tensor:  # fmt: skip
    """out_proj of the output norm (or of y alone: it was gated in the scan) and the gated-MLP part, if any; y and z
    are (..., d_ssm)."""
    if w.norm is not None:
        y = gated_rms_norm(y, w.norm, z, s.norm_eps, y.shape[-1] // s.ngroups, s.norm_before_gate)
    if z0.shape[-1] > 0:
        y = torch.cat([F.silu(z0) * x0, y], dim=-1)
    return F.linear(y, w.out_proj, w.out_proj_bias)


def mamba2_mixer_ref(
    hidden: Tensor,
    w: Mamba2Weights,
    s: Mamba2Settings,
    conv_initial: Tensor | None = None,
    initial_state: Tensor | None = None,
) -> Tensor | tuple[Tensor, Tensor, Tensor]:
    """out_proj(norm(ssd(conv(xBC), dt), z)) with z, xBC, dt = in_proj(hidden).

    hidden: (batch, seqlen, d_model). ``conv_initial`` (batch, conv_dim, d_conv - 1) are the conv's inputs before
    the sequence. With ``initial_state`` (batch, nheads, headdim, d_state) the scan continues from it and the op
    returns (out, xBC's last min(seqlen, d_conv) positions (batch, conv_dim, k), the state after the last position).
    """
    sizes = Mamba2Sizes.of(w, s)
    z0, x0, z, xBC, dt = sizes.split(F.linear(hidden, w.in_proj, w.in_proj_bias))
    xBC_t = xBC.transpose(1, 2)
    conv_in = conv_initial.to(xBC.dtype) if conv_initial is not None else None
    conv_out = causal_conv1d_fn(xBC_t, w.conv, w.conv_bias, initial_states=conv_in, activation="silu")
    x, B, C = scan_inputs(conv_out.transpose(1, 2), s, sizes)
    y = ssd_chunk_scan(
        x,
        dt,
        w.A,
        B,
        C,
        chunk_size=s.chunk_size,
        D=w.D,
        z=None if w.norm is not None else z.unflatten(-1, (sizes.nheads, s.headdim)),
        dt_bias=w.dt_bias,
        initial_states=initial_state,
        dt_softplus=True,
        dt_limit=s.dt_limit,
        return_final_states=initial_state is not None,
    )
    if initial_state is None:
        return gate_and_project(y.flatten(-2), z, z0, x0, w, s)
    y, last = y
    return gate_and_project(y.flatten(-2), z, z0, x0, w, s), conv_tail(xBC_t, w.conv.shape[1]), last


def mamba2_mixer_step_ref(
    hidden: Tensor,
    w: Mamba2Weights,
    s: Mamba2Settings,
    conv_state: Tensor,
    ssm_state: Tensor,
    ssm_out: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """The mixer on one token: hidden (batch, d_model) -> (out (batch, d_model), the new conv state (batch,
    conv_dim, d_conv), the new float32 scan state (batch, nheads, headdim, d_state)). The states given are not
    changed, but for the new scan state going into ``ssm_out`` when given (which may be ``ssm_state``)."""
    dtype, f = hidden.dtype, ssm_state.dtype
    sizes = Mamba2Sizes.of(w, s)
    z0, x0, z, xBC, dt = sizes.split(F.linear(hidden, w.in_proj, w.in_proj_bias))
    xBC, conv_state = causal_conv1d_step_ref(xBC, conv_state, w.conv, w.conv_bias)
    x, B, C = scan_inputs(xBC.to(dtype), s, sizes)  # (b, h, p), (b, g, n), (b, g, n)
    per_group = sizes.nheads // s.ngroups
    B = B.to(f).repeat_interleave(per_group, dim=1)  # (b, h, n)
    C = C.to(f).repeat_interleave(per_group, dim=1)
    dt = F.softplus(dt.to(f) + w.dt_bias.to(f))  # (b, h)
    if s.dt_limit != (0.0, float("inf")):
        dt = dt.clamp(*s.dt_limit)
    x = x.to(f)
    decay = torch.exp(dt * w.A.to(f))[:, :, None, None]
    ssm_state = decay * ssm_state + (dt[:, :, None] * x)[..., None] * B[:, :, None, :]
    if ssm_out is not None:
        ssm_state = ssm_out.copy_(ssm_state)
    D = w.D.to(f) if w.D.dim() == 2 else w.D.to(f)[:, None]
    y = (ssm_state * C[:, :, None, :]).sum(-1) + D * x  # (b, h, p)
    if w.norm is None:
        y = y * F.silu(z.to(f).view_as(y))
    out = gate_and_project(y.flatten(1).to(dtype), z, z0, x0, w, s)
    return out, conv_state, ssm_state
