"""The output of ``genossm classify``: a TSV written record by record, or one JSON object at the end.

TSV columns: ``name  length  windows  label  p_<class>...`` — one row per record (``windows`` = windows classified),
with ``--per-window`` one row per window after its record (name ``record:start-end``, 1-based inclusive as samtools
writes regions, ``windows`` 1, or 0 for a window skipped as mostly N), and a last row for the whole file (its path
as the name). A record without a classified window has label ``-`` and probabilities ``nan``.

JSON: ``{"classes": [...], "records": [{"name", "length", "windows", "label", "probs": {class: p}}],
"file": {"label", "probs"}}`` (label and probs ``null`` where nothing was classified); with ``--per-window`` each
record also has ``"per_window": [{"start", "end", "label", "probs"}]`` (0-based, end exclusive).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TextIO

import numpy as np

from .infer import RecordResult, WindowResult


@dataclass
class FileTotals:
    """The whole file: bases, windows classified, and the bases-weighted mean of all window probabilities."""

    length: int = 0
    windows: int = 0
    records: int = 0
    unlabelled: list[str] = field(default_factory=list)  # records without a classified window
    weighted: np.ndarray | None = None
    weight: int = 0

    def add(self, record: RecordResult) -> None:
        self.length += record.length
        self.windows += record.used
        self.records += 1
        if record.values is None:
            self.unlabelled.append(record.name)
        if record.weighted is not None:
            self.weighted = record.weighted if self.weighted is None else self.weighted + record.weighted
            self.weight += record.weight

    @property
    def probs(self) -> np.ndarray | None:
        return None if self.weighted is None or self.weight == 0 else self.weighted / self.weight


def label_of(probs: np.ndarray | None, classes: list[str]) -> str | None:
    """The class of highest probability (None without probabilities)."""
    return None if probs is None else classes[int(np.argmax(probs))]


def _tsv_row(name: str, length: int, windows: int, probs: np.ndarray | None, classes: list[str]) -> str:
    cells = [name, str(length), str(windows), label_of(probs, classes) or "-"]
    cells += ["nan"] * len(classes) if probs is None else [f"{p:.6f}" for p in probs]
    return "\t".join(cells) + "\n"


def _window_name(record: str, window: WindowResult) -> str:
    return f"{record}:{window.start + 1}-{window.end}"


def write_tsv(out: TextIO, predictions: Iterable[RecordResult], classes: list[str], file_name: str) -> FileTotals:
    """Write the header, a row per record (and its windows, when kept) as they come, then the file's row."""
    out.write("\t".join(["name", "length", "windows", "label", *(f"p_{c}" for c in classes)]) + "\n")
    totals = FileTotals()
    for record in predictions:
        totals.add(record)
        out.write(_tsv_row(record.name, record.length, record.used, record.values, classes))
        for window in record.detail or []:
            used = int(window.values is not None)
            out.write(
                _tsv_row(_window_name(record.name, window), window.end - window.start, used, window.values, classes)
            )
        out.flush()
    out.write(_tsv_row(file_name, totals.length, totals.windows, totals.probs, classes))
    return totals


def _probs_json(probs: np.ndarray | None, classes: list[str]) -> dict[str, float] | None:
    return None if probs is None else {c: float(p) for c, p in zip(classes, probs, strict=True)}


def write_json(out: TextIO, predictions: Iterable[RecordResult], classes: list[str]) -> FileTotals:
    """Write the whole result as one JSON object."""
    totals = FileTotals()
    records = []
    for record in predictions:
        totals.add(record)
        entry = {
            "name": record.name,
            "length": record.length,
            "windows": record.used,
            "label": label_of(record.values, classes),
            "probs": _probs_json(record.values, classes),
        }
        if record.detail is not None:
            entry["per_window"] = [
                {
                    "start": w.start,
                    "end": w.end,
                    "label": label_of(w.values, classes),
                    "probs": _probs_json(w.values, classes),
                }
                for w in record.detail
            ]
        records.append(entry)
    document = {
        "classes": classes,
        "records": records,
        "file": {"label": label_of(totals.probs, classes), "probs": _probs_json(totals.probs, classes)},
    }
    out.write(json.dumps(document, indent=2) + "\n")
    return totals
