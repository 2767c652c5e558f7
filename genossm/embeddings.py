"""Sequence embeddings from any model directory: its backbone's final hidden states pooled per window and per record.

Records (or BED regions) are read in windows by :class:`~genossm.classification.infer.WindowReader`, as
``genossm classify`` reads them: windows of ``window`` bases from a zero state (or, stateful, with the whole record
before each as context), short records padded and masked, windows mostly N skipped. A window's embedding is the mean
(or last) of its hidden states; a record's is the mean of its windows', each weighted by its A/C/G/T bases.

The file is a NumPy ``.npz`` archive:

    names       (records,)            record names (chrom:start-end for BED regions)
    lengths     (records,)            bases per record
    embeddings  (records, d_model)    float32; NaN for a record without a usable window
    config      ()                    JSON: model, window, stride, pooling, stateful

and with per-window rows, ``window_record`` (index into ``names``), ``window_start``, ``window_end`` (0-based, end
exclusive) and ``window_embeddings`` (windows, d_model). Read it with ``numpy.load(path)``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from genossm.classification.infer import RecordResult
from genossm.fileio import atomic_open
from genossm.inference import check_vocabulary
from genossm.models import SequenceEncoder, from_pretrained
from genossm.models.pretrained import META_NAME


def load_encoder(path: str | Path, pooling: str | None = None) -> SequenceEncoder:
    """The backbone of a language model or classifier directory, pooled as asked (default: the classifier's own
    pooling, the mean for a language model); a foreign vocabulary is an error naming ``path``."""
    path = Path(path)
    model = from_pretrained(path)
    check_vocabulary(model.tokens, model.config, path / META_NAME)
    encoder = SequenceEncoder(model.backbone, pooling or getattr(model, "pooling", "mean"))
    encoder.seqlen = getattr(model, "seqlen", None)  # a classifier's training window, the default window
    return encoder.eval()


class EmbeddingTable:
    """Collects records' (and optionally windows') embeddings as they stream, then writes the ``.npz`` archive."""

    def __init__(self, width: int, per_window: bool = False) -> None:
        self.width, self.per_window = width, per_window
        self.names: list[str] = []
        self.lengths: list[int] = []
        self.rows: list[np.ndarray] = []
        self.windows: list[tuple[int, int, int]] = []  # (record index, start, end)
        self.window_rows: list[np.ndarray] = []
        self.empty: list[str] = []  # records without a usable window

    def add(self, record: RecordResult) -> None:
        """One record (with its windows when ``per_window``)."""
        index = len(self.names)
        self.names.append(record.name)
        self.lengths.append(record.length)
        self.rows.append(self._row(record.values))
        if record.values is None:
            self.empty.append(record.name)
        for window in record.detail or []:
            self.windows.append((index, window.start, window.end))
            self.window_rows.append(self._row(window.values))

    def extend(self, records: Iterable[RecordResult]) -> EmbeddingTable:
        for record in records:
            self.add(record)
        return self

    def _row(self, values: np.ndarray | None) -> np.ndarray:
        return np.full(self.width, np.nan, np.float32) if values is None else values.astype(np.float32)

    def arrays(self, config: dict[str, Any]) -> dict[str, np.ndarray]:
        """The archive's arrays (see the module's docstring)."""
        arrays = {
            "names": np.array(self.names, dtype=str),
            "lengths": np.array(self.lengths, dtype=np.int64),
            "embeddings": np.stack(self.rows) if self.rows else np.empty((0, self.width), np.float32),
            "config": np.array(json.dumps(config)),
        }
        if self.per_window:
            bounds = np.array(self.windows, dtype=np.int64).reshape(-1, 3)
            arrays |= {
                "window_record": bounds[:, 0],
                "window_start": bounds[:, 1],
                "window_end": bounds[:, 2],
                "window_embeddings": (
                    np.stack(self.window_rows) if self.window_rows else np.empty((0, self.width), np.float32)
                ),
            }
        return arrays

    def save(self, path: str | Path, config: dict[str, Any]) -> None:
        """Write the archive atomically (``path`` as given: NumPy appends nothing to a file object)."""
        with atomic_open(path, "wb") as out:
            np.savez(out, **self.arrays(config))
