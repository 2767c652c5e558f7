"""Log-likelihood of DNA under a language model: every base of every record, scored from the bases before it.

A record of n bases has n - 1 predicted positions: base i + 1 is scored from the model's output at base i, as in
pretraining (``genossm/data/lm.py``: windows of L + 1 bases; a target that is not A, C, G or T is not scored).
Two readings, which score the same positions and differ only in the context each one sees:

- **whole records** (default): a record is one sequence. One longer than ``batch_tokens`` is read in pieces with the
  recurrent state carried from piece to piece, which equals one forward over the whole record (exactly, up to
  rounding) at the memory of one piece: a chromosome is scored with all of itself as context.
- **windows** (``window=W``): a record is cut into windows of W + 1 bases that overlap by one base, each read from a
  zero state, so a base sees at most W bases before it: what held-out perplexity at length W measures in
  pretraining.

Rows shorter than their batch's width (short records, a record's last window) are padded to the next power of two
and batched with rows of the same padded length; the padding is never a target.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from genossm.data.genome import RecordChunk
from genossm.data.intervals import IS_BASE
from genossm.data.steps import IGNORE_INDEX
from genossm.data.tokenizer import PAD_ID
from genossm.inference import (
    ResultsBehind,
    autocast,
    check_vocabulary,
    default_batch_tokens,
    padded_length,
    resolve_device,
    use_bfloat16,
)
from genossm.models import MambaLMHeadModel, from_pretrained
from genossm.models.pretrained import META_NAME
from genossm.models.state import MixerState
from genossm.training.loss import token_losses


@dataclass
class SequenceScore:
    """A record's (or region's) length, its scored bases and their summed negative log-likelihood in nats."""

    name: str
    length: int = 0
    scored: int = 0  # predicted positions whose base is A, C, G or T
    nll: float = 0.0
    pending: int = 0  # rows still waiting in a batch
    closed: bool = False  # every base has been read

    def add(self, nll: float, scored: int) -> None:
        """A row's summed negative log-likelihood and scored positions."""
        self.nll += nll
        self.scored += scored

    def include(self, other: SequenceScore) -> None:
        """Add another record's bases (a file's totals)."""
        self.length += other.length
        self.add(other.nll, other.scored)

    @property
    def nats_per_base(self) -> float:
        return self.nll / self.scored if self.scored else math.nan

    @property
    def bits_per_base(self) -> float:
        return self.nats_per_base / math.log(2)

    @property
    def perplexity(self) -> float:
        return math.exp(self.nats_per_base)


def load_language_model(path: str | Path, device: str | torch.device | None = None) -> MambaLMHeadModel:
    """A language-model directory (genossm pretrain's OUTPUT/model, or one written by mamba_ssm); a classifier or a
    foreign vocabulary is an error naming ``path``."""
    path = Path(path)
    model = from_pretrained(path, device=device)
    if not isinstance(model, MambaLMHeadModel):
        raise ValueError(f"{path} holds a classifier, not a language model: use a model written by "
                         "`genossm pretrain` (OUTPUT/model)")  # fmt: skip
    check_vocabulary(model.tokens, model.config, path / META_NAME)
    return model


class LikelihoodScorer:
    """Streams (record, offset, tokens) chunks through a language model; yields each record's score in file order."""

    def __init__(
        self,
        model: MambaLMHeadModel,
        window: int | None = None,
        batch_tokens: int | None = None,
        device: str | torch.device | None = None,
        bfloat16: bool | None = None,
    ) -> None:
        if window is not None and window < 1:
            raise ValueError(f"the window must be at least one base, not {window}")
        self.window = window
        self.device = resolve_device(device)
        self.batch_tokens = batch_tokens or default_batch_tokens(self.device)
        self.model = model.to(self.device).eval()
        self.bfloat16 = use_bfloat16(self.device, bfloat16)
        # the widest row (inputs + the last target): a window, or a piece of a whole record
        self.width = (window if window is not None else self.batch_tokens) + 1
        self._queue: deque[SequenceScore] = deque()  # records not yet given out, in file order
        self._buckets: dict[int, list[tuple[SequenceScore, np.ndarray]]] = {}
        self._results = ResultsBehind()  # forwards not yet read back
        self._is_base = torch.from_numpy(IS_BASE).to(self.device)

    @torch.inference_mode()
    def nll_rows(self, rows: np.ndarray, states: list[MixerState] | None = None) -> tuple[Tensor, Tensor]:
        """Summed negative log-likelihood (nats) and scored positions of each row of (b, width) tokens, on the device
        and not waited for: targets are a row's tokens from the second on, those that are A, C, G or T; with
        ``states``, the rows continue from them (and update them)."""
        tokens = torch.from_numpy(np.ascontiguousarray(rows)).to(self.device).long()
        targets = tokens[:, 1:]
        labels = targets.masked_fill(~self._is_base[targets], IGNORE_INDEX)
        with autocast(self.device, self.bfloat16):
            logits = self.model(tokens[:, :-1], states).logits
        return token_losses(logits, labels).sum(1, dtype=torch.float64), (labels != IGNORE_INDEX).sum(1)

    def score(self, chunks: Iterable[RecordChunk]) -> Iterator[SequenceScore]:
        """Scores of the records streamed as ``chunks`` (a record starts at offset 0), in file order."""
        record: SequenceScore | None = None
        pending = np.empty(0, dtype=np.uint8)  # bases not yet read as inputs (the last one is the next row's first)
        states: list[MixerState] | None = None
        for chunk in chunks:
            if record is None or chunk.offset == 0:
                if record is not None:
                    self._close(record, pending, states)
                    yield from self._ready()
                record, pending, states = SequenceScore(chunk.name), np.empty(0, dtype=np.uint8), None
                self._queue.append(record)
            record.length += len(chunk.tokens)
            pending = np.concatenate([pending, chunk.tokens])
            while len(pending) >= self.width:
                if self.window is None and states is None:  # a whole record of a piece or more: carry the state
                    states = self.model.allocate_states(1)
                self._run(record, pending[: self.width], states)
                pending = pending[self.width - 1 :]
            yield from self._ready()
        if record is not None:
            self._close(record, pending, states)
        for width in sorted(self._buckets):
            self._run_bucket(width)
        self._results.drain()
        yield from self._ready()

    def _run(self, record: SequenceScore, row: np.ndarray, states: list[MixerState] | None) -> None:
        """One row of ``record``: at once from a carried state, else into the batch of its (padded) width."""
        record.pending += 1
        if states is not None:
            self._defer([record], *self.nll_rows(row[None], states))
            return
        width = padded_length(len(row), self.width)
        bucket = self._buckets.setdefault(width, [])
        bucket.append((record, row))
        if len(bucket) >= max(1, self.batch_tokens // (width - 1)):
            self._run_bucket(width)

    def _run_bucket(self, width: int) -> None:
        bucket = self._buckets.pop(width, [])
        if not bucket:
            return
        rows = np.full((len(bucket), width), PAD_ID, dtype=np.uint8)
        for i, (_, row) in enumerate(bucket):
            rows[i, : len(row)] = row
        self._defer([record for record, _ in bucket], *self.nll_rows(rows))

    def _defer(self, records: list[SequenceScore], nll: Tensor, scored: Tensor) -> None:
        """Add a forward's rows to their records once the next forward is queued."""

        def apply(values: tuple[list[float], list[int]]) -> None:
            for record, row_nll, row_scored in zip(records, *values, strict=True):
                record.add(row_nll, row_scored)
                record.pending -= 1

        self._results.defer(lambda: (nll.tolist(), scored.tolist()), apply)

    def _close(self, record: SequenceScore, pending: np.ndarray, states: list[MixerState] | None) -> None:
        """The record has ended: its last row, if a base is left to predict."""
        if len(pending) > 1:
            self._run(record, pending, states)
        record.closed = True

    def _ready(self) -> Iterator[SequenceScore]:
        while self._queue and self._queue[0].closed and self._queue[0].pending == 0:
            yield self._queue.popleft()
