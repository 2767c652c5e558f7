"""Causal depthwise conv1d as ``width`` shifted multiply-adds over (b, l, d) rows: the CPU (and Mac) path.

The model's conv input is a (b, d, l) view of (b, l, d) memory. ``F.conv1d`` (the reference) first copies it into
(b, d, l) order and returns (b, d, l) memory, which the next projection copies back; here every step runs along the
contiguous channel axis and the output keeps the input's (b, l, d) memory, returned as a (b, d, l) view.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .reference import check_activation


def causal_conv1d_shifted(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    activation: str | None = None,
    initial_states: Tensor | None = None,
    return_final_states: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Same arguments and results as :func:`causal_conv1d_ref`; the output is (b, l, d) memory."""
    check_activation(activation)
    batch, dim, seqlen = x.shape
    width = weight.shape[-1]
    weight = weight.to(x.dtype)
    history = x.new_zeros(batch, width - 1, dim) if initial_states is None else initial_states.transpose(1, 2)
    padded = torch.cat([history.to(x.dtype), x.transpose(1, 2)], dim=1)  # (b, width - 1 + l, d)
    out = padded[:, width - 1 :] * weight[:, -1]
    if bias is not None:
        out += bias.to(x.dtype)
    for k in range(width - 1):
        out.addcmul_(padded[:, k : k + seqlen], weight[:, k])
    if activation is not None:
        out = F.silu(out, inplace=not out.requires_grad)
    out = out.transpose(1, 2)
    if not return_final_states:
        return out
    return out, padded[:, padded.shape[1] - (width - 1) :].transpose(1, 2)
