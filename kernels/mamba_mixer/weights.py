"""The parameters of a Mamba-1 mixer, as the mixer ops take them."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class MixerWeights(NamedTuple):
    """Weights of in_proj, the depthwise conv (d_inner, d_conv), x_proj, dt_proj and out_proj (``nn.Linear``
    layouts), dt_proj's bias, A = -exp(A_log) (d_inner, d_state) and D (d_inner,); biases may be None."""

    in_proj: Tensor
    in_proj_bias: Tensor | None
    conv: Tensor
    conv_bias: Tensor | None
    x_proj: Tensor
    dt_proj: Tensor
    dt_bias: Tensor
    A: Tensor
    D: Tensor
    out_proj: Tensor
    out_proj_bias: Tensor | None

    @property
    def dt_rank(self) -> int:
        return self.dt_proj.shape[1]

    @property
    def d_state(self) -> int:
        return self.A.shape[1]
