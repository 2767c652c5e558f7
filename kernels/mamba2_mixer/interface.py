"""Public Mamba-2 mixer op: the whole mixer in one call, so that its backward can recompute instead of keeping."""

from __future__ import annotations

import torch
from torch import Tensor

from ..backend import use_triton
from .reference import mamba2_mixer_ref, mamba2_mixer_step_ref
from .weights import Mamba2Settings, Mamba2Sizes, Mamba2Weights


def mamba2_mixer_fn(
    hidden: Tensor,
    weights: Mamba2Weights,
    settings: Mamba2Settings,
    conv_initial: Tensor | None = None,
    initial_state: Tensor | None = None,
) -> Tensor | tuple[Tensor, Tensor, Tensor]:
    """The Mamba-2 mixer (see ``reference.py``) on (batch, seqlen, d_model) inputs, from a zero state or, given
    ``initial_state`` (and ``conv_initial``), from a carried one; it then returns the states to carry on as well.

    CUDA tensors run the fused op of ``fused.py``, which keeps only the mixer's input for the backward; a mixer with
    a gated-MLP part, float64, or sizes the SSD kernels do not take run the reference composition.
    """
    if hidden.dtype != torch.float64 and hidden.shape[1] > 0 and use_triton(hidden):
        from ..ssd.triton_scan import size_reason
        from .fused import mamba2_mixer_fused  # Triton is imported only here

        fits = size_reason(settings.headdim, settings.d_state) is None
        if fits and Mamba2Sizes.of(weights, settings).d_mlp == 0:
            return mamba2_mixer_fused(hidden, weights, settings, conv_initial, initial_state)
    return mamba2_mixer_ref(hidden, weights, settings, conv_initial, initial_state)


def mamba2_mixer_step(
    hidden: Tensor,
    weights: Mamba2Weights,
    settings: Mamba2Settings,
    conv_state: Tensor,
    ssm_state: Tensor,
    ssm_out: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """The mixer on one token (see ``reference.py``): (out, new conv state, new scan state) of (batch, d_model)
    inputs; the new scan state goes into ``ssm_out`` when given (``ssm_state`` itself: updated in place).

    CUDA tensors run the conv and the scan in one kernel (``step.py``); everything else (and float64) the reference's
    composition of small ops.
    """
    if hidden.dtype != torch.float64 and use_triton(hidden):
        from .step import mamba2_mixer_step_fused  # Triton is imported only here

        return mamba2_mixer_step_fused(hidden, weights, settings, conv_state, ssm_state, ssm_out)
    return mamba2_mixer_step_ref(hidden, weights, settings, conv_state, ssm_state, ssm_out)
