"""Public embedding lookup used by the models."""

from __future__ import annotations

from torch import Tensor

from ..backend import use_triton
from .reference import embedding_ref


def embedding(ids: Tensor, weight: Tensor) -> Tensor:
    """Rows of ``weight`` (vocabulary, dim) at token ``ids`` of any integer dtype: (*ids.shape, dim), differentiable
    in ``weight``. CUDA tensors run the Triton gather (an id outside the vocabulary gives a row of NaN there; the
    PyTorch path, everywhere else, raises)."""
    if weight.dim() != 2 or ids.dtype.is_floating_point:
        raise ValueError(f"weight must be (vocabulary, dim) and ids integers; got {tuple(weight.shape)}, {ids.dtype}")
    if use_triton(weight):
        from .fused import embedding_fused  # Triton is imported only here

        return embedding_fused(ids, weight)
    return embedding_ref(ids, weight)
