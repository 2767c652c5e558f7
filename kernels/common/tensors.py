"""Host-side helpers shared by the Triton launchers and the PyTorch references."""

from __future__ import annotations

from typing import TypeVar

import torch
from torch import Tensor

T = TypeVar("T")


def like_layout(x: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """An empty (batch, dim, seqlen) tensor laid out like ``x``: (b, l, d) memory when channels are x's unit stride
    (the model's transposed views), else (b, d, l) (mamba_ssm's layout). Kernels write it with its strides."""
    batch, dim, seqlen = x.shape
    dtype = dtype or x.dtype
    if x.stride(1) == 1 and seqlen > 1:
        return torch.empty(batch, seqlen, dim, device=x.device, dtype=dtype).transpose(1, 2)
    return torch.empty(batch, dim, seqlen, device=x.device, dtype=dtype)


def dot_precision(dtype: torch.dtype) -> str:
    """tl.dot input precision: float32 inputs follow torch's TF32 matmul switch (off by default: exact IEEE)."""
    if dtype == torch.float32 and not torch.backends.cuda.matmul.allow_tf32:
        return "ieee"
    return "tf32"


def kernel_output(out: Tensor | None, like: Tensor) -> Tensor:
    """Where a kernel writes a result asked for in ``out``: ``out`` itself when it is contiguous (it may be one of the
    kernel's inputs, when every program reads its part before writing it), else a new tensor like ``like``; then
    :func:`delivered` puts it where it was asked for."""
    return out if out is not None and out.is_contiguous() else torch.empty_like(like)


def delivered(written: Tensor, out: Tensor | None) -> Tensor:
    """``written``, copied into ``out`` when one was asked for and the kernel wrote elsewhere."""
    return written if out is None or out is written else out.copy_(written)


def backward_will_run(*tensors: Tensor | None) -> bool:
    """Whether autograd records an op on these inputs (for an autograd.Function, asked before ``apply``: inside
    ``forward`` grad mode is off, and ``ctx.needs_input_grad`` is true for parameters even under ``no_grad``)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """What the PyTorch scans accumulate in: float32, or float64 when the inputs are float64 (gradcheck)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def compute_dtype(hidden: Tensor) -> torch.dtype:
    """The dtype of a fused op's matrix products: autocast's when it is on (as nn.Linear would run), else hidden's."""
    if torch.is_autocast_enabled(hidden.device.type):
        return torch.get_autocast_dtype(hidden.device.type)
    return hidden.dtype


def weight_grad(grad: Tensor, inputs: Tensor) -> Tensor:
    """nn.Linear's weight gradient: grad^T inputs over every position."""
    return grad.reshape(-1, grad.shape[-1]).t() @ inputs.reshape(-1, inputs.shape[-1])


def cast_fields(weights: T, dtype: torch.dtype, fields: tuple[str, ...]) -> T:
    """A NamedTuple of weights with the named fields in ``dtype`` (None stays None)."""
    cast = {f: getattr(weights, f) for f in fields}
    return weights._replace(**{f: t.to(dtype) if t is not None else None for f, t in cast.items()})


def in_compute_dtype(
    hidden: Tensor, conv_initial: Tensor | None, weights: T, fields: tuple[str, ...]
) -> tuple[torch.dtype, Tensor, T, Tensor | None]:
    """A fused mixer's inputs for its products: (compute dtype, hidden, the weights with ``fields`` cast, the conv's
    initial inputs), all in :func:`compute_dtype` of ``hidden``."""
    dtype = compute_dtype(hidden)
    conv_in = conv_initial.to(dtype) if conv_initial is not None else None
    return dtype, hidden.to(dtype), cast_fields(weights, dtype, fields), conv_in


def in_dtypes_of(grads: tuple[Tensor | None, ...], tensors: list[Tensor | None]) -> tuple[Tensor | None, ...]:
    """Each gradient in its tensor's dtype (None where either is None), as autograd expects them back."""
    pairs = zip(grads, tensors, strict=True)
    return tuple(g.to(t.dtype) if g is not None and t is not None else None for g, t in pairs)
