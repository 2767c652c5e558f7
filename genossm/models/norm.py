"""Norm layers with mamba_ssm's parameter names (``weight``, no bias)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from genossm.kernels import gated_rms_norm, rms_norm_ref


class RMSNorm(nn.Module):
    """x / rms(x) * weight, computed in float32."""

    def __init__(self, hidden_size: int, eps: float = 1e-5, device=None, dtype=None) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(hidden_size, device=device, dtype=dtype))
        self.register_parameter("bias", None)

    def forward(self, x: Tensor) -> Tensor:
        return rms_norm_ref(x, self.weight, None, self.eps)


class RMSNormGated(nn.Module):
    """Mamba-2's output norm: grouped RMSNorm of ``x * silu(z)`` (or of x, gated after, if norm_before_gate)."""

    def __init__(
        self,
        hidden_size: int,
        eps: float = 1e-5,
        group_size: int | None = None,
        norm_before_gate: bool = False,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        self.eps = eps
        self.group_size = group_size
        self.norm_before_gate = norm_before_gate
        self.weight = nn.Parameter(torch.ones(hidden_size, device=device, dtype=dtype))
        self.register_parameter("bias", None)

    def forward(self, x: Tensor, z: Tensor | None = None) -> Tensor:
        return gated_rms_norm(x, self.weight, z, self.eps, self.group_size, self.norm_before_gate)
