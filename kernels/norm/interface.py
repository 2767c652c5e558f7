"""Public normalisation ops used by the models: residual add + norm, and Mamba-2's gated RMSNorm."""

from __future__ import annotations

import torch
from torch import Tensor

from ..backend import use_triton
from .reference import add_norm_ref, gated_rms_norm_ref, layer_norm_ref, rms_norm_ref


def _on_add_norm_kernel(t: Tensor) -> bool:
    """Whether the residual add + norm of ``t`` runs the Triton kernel: :func:`add_norm` and :func:`norm_of_stream`
    must agree, so that a rebuilt norm output has the same bits."""
    return t.dtype != torch.float64 and t.numel() > 0 and use_triton(t)


def add_norm(
    x: Tensor,
    residual: Tensor | None,
    weight: Tensor,
    bias: Tensor | None = None,
    eps: float = 1e-5,
    is_rms_norm: bool = True,
    residual_in_fp32: bool = False,
    out_dtype: torch.dtype | None = None,
) -> tuple[Tensor, Tensor]:
    """residual = x + residual; returns (norm(residual) in ``out_dtype``, by default x's, and residual). See
    ``reference.add_norm_ref``.

    CUDA tensors run the fused Triton kernel (one pass over x and the residual); everything else the reference.
    """
    if _on_add_norm_kernel(x):
        from .fused import add_norm_fused  # Triton is imported only here

        return add_norm_fused(x, residual, weight, bias, eps, is_rms_norm, residual_in_fp32, out_dtype)
    return add_norm_ref(x, residual, weight, bias, eps, is_rms_norm, residual_in_fp32, out_dtype)


def norm_of_stream(
    stream: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    eps: float,
    is_rms_norm: bool,
    dtype: torch.dtype,
) -> Tensor:
    """The output :func:`add_norm` returned (in ``dtype``) with this residual stream, recomputed bit for bit and
    outside autograd: a caller may drop the norm output after the forward and rebuild it for the backward."""
    if _on_add_norm_kernel(stream):
        from .fused import norm_of_stream_fused

        return norm_of_stream_fused(stream, weight, bias, eps, is_rms_norm, dtype)
    norm = rms_norm_ref if is_rms_norm else layer_norm_ref
    return norm(stream, weight, bias, eps).to(dtype)


def gated_rms_norm(
    x: Tensor,
    weight: Tensor,
    z: Tensor | None = None,
    eps: float = 1e-5,
    group_size: int | None = None,
    norm_before_gate: bool = False,
) -> Tensor:
    """Mamba-2's grouped RMSNorm with SiLU gate. See ``reference.gated_rms_norm_ref``; CUDA tensors of float32,
    float16 or bfloat16 run the Triton kernels of ``gated_triton.py``."""
    size = group_size or x.shape[-1]
    if x.shape[-1] % size:
        raise ValueError(f"gated_rms_norm: width {x.shape[-1]} is not a multiple of group_size {size}")
    if use_triton(x) and x.dtype in (torch.float32, torch.float16, torch.bfloat16) and x.numel() > 0:
        from .gated_triton import gated_rms_norm_triton

        return gated_rms_norm_triton(x, weight, z, eps, size, norm_before_gate)
    return gated_rms_norm_ref(x, weight, z, eps, group_size, norm_before_gate)
