"""The language-model loss: summed next-base cross-entropy, in float32, skipping ignored labels."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from genossm.data.steps import IGNORE_INDEX


def summed_token_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Sum over positions of -log p(label) for logits (..., vocab) and labels (...); IGNORE_INDEX adds nothing.

    Summed per position (``reduction="none"``), then added: PyTorch's summing and averaging cross-entropy runs
    its reduction in one thread block, which took 1.7 ms of a 2^20-token training step on the H100.
    """
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    per_position = F.cross_entropy(logits.flatten(0, -2), labels.flatten(), ignore_index=IGNORE_INDEX, reduction="none")
    return per_position.sum()
