"""Normalisation references: RMSNorm, LayerNorm, residual add + norm, and Mamba-2's gated RMSNorm.

All compute in float32 and return the input's dtype, as mamba_ssm's Triton norms do.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def rms_norm_ref(x: Tensor, weight: Tensor, bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """x * rsqrt(mean(x^2) + eps) * weight (+ bias) over the last dimension."""
    xf = x.float() if x.dtype != torch.float64 else x
    out = xf * torch.rsqrt(xf.square().mean(-1, keepdim=True) + eps) * weight.to(xf.dtype)
    if bias is not None:
        out = out + bias.to(xf.dtype)
    return out.to(x.dtype)


def layer_norm_ref(x: Tensor, weight: Tensor, bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """LayerNorm over the last dimension, in float32."""
    xf = x.float() if x.dtype != torch.float64 else x
    out = F.layer_norm(xf, (x.shape[-1],), weight.to(xf.dtype), None if bias is None else bias.to(xf.dtype), eps)
    return out.to(x.dtype)


def add_norm_ref(
    x: Tensor,
    residual: Tensor | None,
    weight: Tensor,
    bias: Tensor | None = None,
    eps: float = 1e-5,
    is_rms_norm: bool = True,
    residual_in_fp32: bool = False,
    out_dtype: torch.dtype | None = None,
) -> tuple[Tensor, Tensor]:
    """residual = x + residual (the first block has none); returns (norm(residual), residual).

    The normalised output is in ``out_dtype`` (default x's dtype); the residual stream is float32 when
    ``residual_in_fp32``.
    """
    summed = x if residual is None else x + residual
    if residual_in_fp32:
        summed = summed.float() if summed.dtype != torch.float64 else summed
    norm = rms_norm_ref if is_rms_norm else layer_norm_ref
    return norm(summed, weight, bias, eps).to(out_dtype or x.dtype), summed


def gated_rms_norm_ref(
    x: Tensor,
    weight: Tensor,
    z: Tensor | None = None,
    eps: float = 1e-5,
    group_size: int | None = None,
    norm_before_gate: bool = False,
) -> Tensor:
    """Mamba-2's output norm: rmsnorm(x * silu(z)) per group of ``group_size`` channels (or gate after the norm)."""
    dtype = x.dtype
    xf = x.float() if x.dtype != torch.float64 else x
    zf = None if z is None else z.to(xf.dtype)
    if zf is not None and not norm_before_gate:
        xf = xf * F.silu(zf)
    size = group_size or xf.shape[-1]
    grouped = xf.unflatten(-1, (-1, size))
    out = (grouped * torch.rsqrt(grouped.square().mean(-1, keepdim=True) + eps)).flatten(-2)
    out = out * weight.to(xf.dtype)
    if zf is not None and norm_before_gate:
        out = out * F.silu(zf)
    return out.to(dtype)
