"""Public causal depthwise conv1d (causal_conv1d's ``causal_conv1d_fn`` argument names)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..backend import use_triton
from .reference import check_activation
from .shifted import causal_conv1d_shifted


def causal_conv1d_fn(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    initial_states: Tensor | None = None,
    return_final_states: bool = False,
    activation: str | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """Causal depthwise conv over the last axis, optional SiLU.

    Args:
        x: (batch, dim, seqlen). weight: (dim, width), width 2 to 4. bias: (dim,).
        initial_states: (batch, dim, width - 1), the inputs before the first position.
    Returns:
        out like x and, with ``return_final_states``, the last width - 1 inputs; differentiable in every input.

    CUDA tensors run the fused Triton kernel (widths 2 to 4); everything else runs ``causal_conv1d_shifted``.
    """
    if x.dim() != 3 or weight.dim() != 2 or weight.shape[0] != x.shape[1]:
        raise ValueError(
            f"x must be (batch, dim, seqlen) and weight (dim, width); got {tuple(x.shape)} and {tuple(weight.shape)}"
        )
    width = weight.shape[1]
    expected = (x.shape[0], x.shape[1], width - 1)
    if initial_states is not None and initial_states.shape != expected:
        raise ValueError(f"initial_states must be {expected}, got {tuple(initial_states.shape)}")
    check_activation(activation)
    if 2 <= width <= 4 and x.dtype != torch.float64 and x.shape[-1] > 0 and use_triton(x):
        from .fused import causal_conv1d_fused  # Triton is imported only here

        return causal_conv1d_fused(x, weight, bias, initial_states, return_final_states, activation)
    return causal_conv1d_shifted(x, weight, bias, activation, initial_states, return_final_states)
