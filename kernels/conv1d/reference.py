"""Causal depthwise conv1d in PyTorch: the reference of the fused conv kernel and of the CPU path (``shifted.py``).

    out[b, d, t] = act(bias[d] + sum_k weight[d, k] * x[b, d, t - (w - 1) + k])

Positions before the start read ``initial_states`` (the previous w - 1 inputs) or zeros.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

ACTIVATIONS = (None, "silu", "swish")


def check_activation(activation: str | None) -> None:
    """The conv's activation must be None or SiLU ('swish' is its other name)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be None or 'silu', not {activation!r}")


def causal_conv1d_ref(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    activation: str | None = None,
    initial_states: Tensor | None = None,
    return_final_states: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """x: (batch, dim, seqlen), weight: (dim, width), bias: (dim,), initial_states: (batch, dim, width - 1).

    Returns out like x and, with ``return_final_states``, the last width - 1 inputs (batch, dim, width - 1).
    """
    check_activation(activation)
    width = weight.shape[-1]
    if initial_states is None:
        padded = F.pad(x, (width - 1, 0))
    else:
        padded = torch.cat([initial_states.to(x.dtype), x], dim=-1)
    out = F.conv1d(
        padded, weight[:, None, :].to(x.dtype), None if bias is None else bias.to(x.dtype), groups=x.shape[1]
    )
    if activation is not None:
        out = F.silu(out)
    if not return_final_states:
        return out
    return out, padded[..., padded.shape[-1] - (width - 1) :]


def causal_conv1d_step_ref(x: Tensor, state: Tensor, weight: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor]:
    """The conv with SiLU on one new input per sequence (recurrent steps; the reference of ``step.conv_step_silu``).

    x: (batch, dim), state: (batch, dim, width), the window of the previous inputs. Returns silu(conv) (batch, dim)
    and the new window: the state's last width - 1 inputs and x, in the state's dtype.
    """
    state = torch.cat([state[:, :, 1:], x[:, :, None].to(state.dtype)], dim=-1)
    out = (state * weight).sum(-1)
    if bias is not None:
        out = out + bias
    return F.silu(out), state
