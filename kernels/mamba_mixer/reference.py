"""The Mamba-1 mixer as a composition of the public ops: the reference of the fused op, and the stateful path."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ..conv1d import causal_conv1d_fn
from ..selective_scan import selective_scan_fn
from .weights import MixerWeights


def mamba_mixer_ref(
    hidden: Tensor,
    w: MixerWeights,
    conv_initial: Tensor | None = None,
    initial_state: Tensor | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """out_proj(scan(conv(x), dt_proj(dt), B, C, gate z)) with x, z = in_proj(hidden) and dt, B, C = x_proj(x).

    hidden: (batch, seqlen, d_model). ``conv_initial`` (batch, d_inner, d_conv - 1) are the conv's inputs before
    the sequence; with ``initial_state`` (batch, d_inner, d_state) the scan continues from it and the state after
    the last position is returned too.
    """
    return mixer_after_in_proj(F.linear(hidden, w.in_proj, w.in_proj_bias), w, conv_initial, initial_state)


def mixer_after_in_proj(
    xz: Tensor,
    w: MixerWeights,
    conv_initial: Tensor | None = None,
    initial_state: Tensor | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """:func:`mamba_mixer_ref` from in_proj's output xz (batch, seqlen, 2 d_inner) on, for a caller that needs x
    itself (the stateful path, whose conv state is x's last positions)."""
    d_inner = w.A.shape[0]
    # split before transposing: the backward then concatenates dx and dz along their contiguous axis
    x, z = (half.transpose(1, 2) for half in xz.split(d_inner, dim=-1))
    x = causal_conv1d_fn(x, w.conv, w.conv_bias, initial_states=conv_initial, activation="silu")
    dt, B, C = F.linear(x.transpose(1, 2), w.x_proj).split([w.dt_rank, w.d_state, w.d_state], dim=-1)
    y = selective_scan_fn(
        x,
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
    return F.linear(y.transpose(1, 2), w.out_proj, w.out_proj_bias), last
