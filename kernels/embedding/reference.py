"""The embedding lookup in PyTorch: the CPU path and the tests' reference."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def embedding_ref(ids: Tensor, weight: Tensor) -> Tensor:
    """Rows of ``weight`` (vocabulary, dim) at token ``ids`` of any integer dtype: (*ids.shape, dim)."""
    return F.embedding(ids.long(), weight)
