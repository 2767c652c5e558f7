"""Public Mamba-1 mixer op: the whole mixer in one call, so that its backward can recompute instead of keeping."""

from __future__ import annotations

import torch
from torch import Tensor

from ..backend import use_triton
from .reference import mamba_mixer_ref, mamba_mixer_step_ref
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


def mamba_mixer_step(
    hidden: Tensor, weights: MixerWeights, conv_state: Tensor, ssm_state: Tensor, ssm_out: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """The mixer on one token (see ``reference.py``): (out, new conv state, new scan state) of (batch, d_model) inputs;
    the new scan state goes into ``ssm_out`` when given (``ssm_state`` itself: updated in place).

    CUDA tensors run one kernel between in_proj and out_proj (``step.py``); everything else (and float64) the
    reference's composition of small ops.
    """
    if hidden.dtype != torch.float64 and use_triton(hidden):
        from .step import mamba_mixer_step_fused  # Triton is imported only here

        return mamba_mixer_step_fused(hidden, weights, conv_state, ssm_state, ssm_out)
    return mamba_mixer_step_ref(hidden, weights, conv_state, ssm_state, ssm_out)
