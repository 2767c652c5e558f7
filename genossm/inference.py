"""What the inference engines (``genossm classify``, ``embed``, ``score``) share: the device, bfloat16 autocast, the
tokens per forward, the padded length of short rows, the vocabulary check of a model directory, and reading each
forward's results back one forward behind."""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from genossm.data.tokenizer import TOKENS, VOCAB_SIZE
from genossm.models import MambaConfig

MIN_PADDED = 64


def resolve_device(device: str | torch.device | None) -> torch.device:
    """None or 'auto' -> the GPU when there is one, else the CPU."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def dtype_choice(dtype: str) -> bool | None:
    """A command's ``--dtype`` as the ``bfloat16`` argument of the engines: None for 'auto' (the device decides)."""
    return None if dtype == "auto" else dtype == "bfloat16"


def use_bfloat16(device: torch.device, bfloat16: bool | None) -> bool:
    """Whether to run under bfloat16 autocast: as asked, else on a GPU only."""
    return device.type == "cuda" if bfloat16 is None else bfloat16


def autocast(device: torch.device, bfloat16: bool) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on ``device``, or nothing."""
    return torch.autocast(device.type, torch.bfloat16) if bfloat16 else contextlib.nullcontext()


def default_batch_tokens(device: torch.device) -> int:
    """Tokens per forward when not given: 2^21 on a GPU of 40 GiB or more, 2^20 on a smaller one; 2^15 on the CPU,
    where a batch's activations then stay in cache (2^20-token batches ran slower there and held gigabytes).

    H100, 1.4M model, forwards of 2048-position pieces: 20.3 Mb/s and 4.4 GiB at 2^20 tokens, 20.7 and 8.7 GiB at
    2^21, 21.1 and 17.5 GiB at 2^22 (twenty-sixth session); a 7M model holds about twice as much per token.
    """
    if device.type != "cuda":
        return 1 << 15
    return 1 << 21 if torch.cuda.get_device_properties(device).total_memory >= 40 * 2**30 else 1 << 20


def padded_length(length: int, cap: int) -> int:
    """Length a short row is padded to: the next power of two (at least 64), never more than ``cap``.

    Rows of similar lengths then share a batch, and padding stays cheap at long window lengths; a causal model gives
    the same result on the valid positions at any padded length.
    """
    return min(cap, max(MIN_PADDED, 1 << max(0, length - 1).bit_length()))


def check_vocabulary(tokens: list[str] | None, config: MambaConfig, source: Path) -> None:
    """The model must read genossm's token ids: same vocabulary when recorded, room for all tokens otherwise."""
    if tokens is not None and list(tokens) != list(TOKENS):
        raise ValueError(
            f"{source}: vocabulary mismatch: the model was trained with tokens {list(tokens)}, "
            f"genossm's tokenizer has {list(TOKENS)}"
        )
    if config.vocab_size < VOCAB_SIZE:
        raise ValueError(
            f"{source}: vocabulary mismatch: vocab_size {config.vocab_size} is smaller than genossm's "
            f"{VOCAB_SIZE} tokens"
        )


class ResultsBehind:
    """Results of queued device work, each applied once the next forward is queued: on a GPU the host meanwhile
    prepares the next batch instead of waiting for the device."""

    def __init__(self) -> None:
        self._pending: deque[tuple[Callable[[], Any], Callable[[Any], None]]] = deque()

    def defer(self, wait: Callable[[], Any], apply: Callable[[Any], None]) -> None:
        """Queue ``apply(wait())``; run the ones queued before it."""
        self._pending.append((wait, apply))
        self.drain(keep=1)

    def drain(self, keep: int = 0) -> None:
        """Apply every result but the last ``keep``, in order."""
        while len(self._pending) > keep:
            wait, apply = self._pending.popleft()
            apply(wait())
