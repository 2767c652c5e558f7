"""The parameters and settings of a Mamba-2 mixer, as the mixer ops take them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from torch import Tensor

ROW_ALIGN = 16
"""in_proj's output rows are padded to a multiple of this many elements in the fused op: Triton vectorises loads
whose strides it knows divisible by 16 (H100, 2^20 tokens, 128 -> 772 columns: the product 1.76 -> 0.87 ms and the
conv forward on its xBC columns 1.96 -> 1.24 ms with rows of 784; 776 was slower than 772)."""


def padded_width(width: int) -> int:
    """``width`` rounded up to a multiple of :data:`ROW_ALIGN`."""
    return width + (-width % ROW_ALIGN)


class Mamba2Weights(NamedTuple):
    """Weights of in_proj (rows [z0, x0, z, xBC, dt]), the depthwise conv (conv_dim, d_conv), the dt bias
    (nheads,), A = -exp(A_log) (nheads,), D ((nheads,) or (nheads, headdim)), the gated norm's weight (d_ssm,; None
    without the norm: z then gates the scan's output) and out_proj, in ``nn.Linear`` layouts; biases may be None."""

    in_proj: Tensor
    in_proj_bias: Tensor | None
    conv: Tensor
    conv_bias: Tensor | None
    dt_bias: Tensor
    A: Tensor
    D: Tensor
    norm: Tensor | None
    out_proj: Tensor
    out_proj_bias: Tensor | None


@dataclass(frozen=True)
class Mamba2Settings:
    """The sizes the weights do not fix, and the scan's and the norm's options."""

    headdim: int
    d_state: int
    ngroups: int = 1
    chunk_size: int = 256
    dt_limit: tuple[float, float] = (0.0, float("inf"))
    norm_eps: float = 1e-5
    norm_before_gate: bool = False

    def __post_init__(self) -> None:  # the scan kernels take the limits as floats
        object.__setattr__(self, "dt_limit", tuple(map(float, self.dt_limit)))


class Mamba2Sizes(NamedTuple):
    """Widths of in_proj's output pieces [z0, x0, z, xBC, dt] and of the scan's heads."""

    d_mlp: int
    d_ssm: int
    conv_dim: int
    nheads: int

    @classmethod
    def of(cls, w: Mamba2Weights, s: Mamba2Settings) -> Mamba2Sizes:
        nheads = w.A.shape[0]
        d_ssm = nheads * s.headdim
        return cls(w.out_proj.shape[1] - d_ssm, d_ssm, d_ssm + 2 * s.ngroups * s.d_state, nheads)

    def split(self, zxbcdt: Tensor) -> tuple[Tensor, ...]:
        """in_proj's output -> (z0, x0, z, xBC, dt)."""
        return zxbcdt.split([self.d_mlp, self.d_mlp, self.d_ssm, self.conv_dim, self.nheads], dim=-1)
