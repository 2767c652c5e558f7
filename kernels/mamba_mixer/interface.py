"""Public Mamba-1 mixer op: the whole mixer in one call, so that its backward can recompute instead of keeping."""

from __future__ import annotations

import torch
from torch import Tensor

from ..backend import use_triton
from .reference import mamba_mixer_ref
from .weights import MixerWeights


def mamba_mixer_fn(
    hidden: Tensor,
    weights: MixerWeights,
    conv_initial: Tensor | None = None,
    initial_state: Tensor | None = None,
) -> Tensor | tuple[Tensor, Tensor, Tensor]:
    """The Mamba-1 mixer (see ``reference.py``) on (batch, seqlen, d_model) inputs, from a zero state or, given
    ``initial_state`` (and ``conv_initial``), from a carried one; it then returns the states to carry on as well.

    CUDA tensors run the fused op of ``fused.py``, which keeps only the mixer's input, x_proj's output and the scan's
    sparse states for the backward (about a seventh of what autograd keeps for the same ops); everything else (and
    float64) runs the reference composition.
    """
    if hidden.dtype != torch.float64 and hidden.shape[1] > 0 and use_triton(hidden):
        from .fused import mamba_mixer_fused  # Triton is imported only here

        return mamba_mixer_fused(hidden, weights, conv_initial, initial_state)
    return mamba_mixer_ref(hidden, weights, conv_initial, initial_state)
