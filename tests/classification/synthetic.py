"""Synthetic labelled windows for the classification tests: each class draws its bases from its own pair."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from genossm.data.tokenizer import TOKENS
from genossm.models import MambaConfig

TINY = MambaConfig(d_model=16, n_layer=2, vocab_size=12, ssm_cfg={"d_state": 4})
PAIRS = ["AC", "GT", "AG"]  # class c draws A/C, G/T or A/G: separable by composition, not by any single base


def windows_of(label: int, n: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """(n, length) token ids of class ``label``."""
    ids = np.array([TOKENS.index(b) for b in PAIRS[label]], dtype=np.uint8)
    return ids[rng.integers(0, 2, (n, length))]


class SyntheticSteps(Dataset):
    """Item i = one step: input_ids (n_micro, micro_batch, L) and labels (n_micro, micro_batch)."""

    def __init__(self, steps: int, classes: int = 2, n_micro: int = 2, micro_batch: int = 4, seqlen: int = 32):
        self.steps, self.classes, self.shape, self.seqlen = steps, classes, (n_micro, micro_batch), seqlen

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng(i)
        labels = rng.integers(0, self.classes, self.shape)
        ids = np.stack([windows_of(int(c), 1, self.seqlen, rng)[0] for c in labels.ravel()])
        return {
            "input_ids": torch.from_numpy(ids.reshape(*self.shape, self.seqlen)).long(),
            "labels": torch.from_numpy(labels).long(),
        }
