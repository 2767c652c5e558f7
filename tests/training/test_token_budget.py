"""Tokens per step and per forward pass: a GPU's budget would not fit a CPU's memory, so each device has its own."""

import pytest
import torch

from genossm.classification.finetune import FinetuneOptions
from genossm.training.trainer import token_budget


@pytest.mark.parametrize(
    ("gpu", "tokens", "micro", "seqlen", "expected"),
    [
        (False, None, None, 256, (2**13, 2**12)),
        (True, None, None, 256, (2**18, 2**18)),  # the whole step in one pass
        (False, 1000, None, 256, (1000, 2**12)),
        (True, 2**20, 2**16, 1024, (2**20, 2**16)),
        (False, None, None, 2**14, (2**14, 2**12)),  # a step of one window, alone in its pass
    ],
)
def test_budgets_follow_the_device(monkeypatch, gpu, tokens, micro, seqlen, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    assert token_budget(tokens, micro, seqlen, gpu_tokens_per_step=2**18) == expected


def test_finetune_on_the_cpu_defaults_to_the_cpu_budget(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert FinetuneOptions(seqlen=256).step_tokens(256) == (2**13, 2**12)
