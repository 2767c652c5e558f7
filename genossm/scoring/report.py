"""The output of ``genossm score``: a TSV written record by record, or one JSON object at the end.

TSV columns: ``name  length  scored  nll  bits_per_base  perplexity`` — one row per record (or BED region), then a
last row for the whole file (its path as the name). ``scored`` counts the predicted positions whose base is A, C,
G or T (a record's first base is never predicted); ``nll`` is their summed negative log-likelihood in nats; a
record without a scored base has ``nan`` bits and perplexity.

JSON: ``{"model", "window", "records": [{"name", "length", "scored", "nll", "bits_per_base", "perplexity"}],
"file": {...}}`` (``window`` null for whole records; ``bits_per_base`` and ``perplexity`` null without a scored
base).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any, TextIO

from .likelihood import SequenceScore

COLUMNS = ("name", "length", "scored", "nll", "bits_per_base", "perplexity")


def _tsv_row(score: SequenceScore) -> str:
    cells = [score.name, str(score.length), str(score.scored), f"{score.nll:.4f}"]
    cells += [f"{score.bits_per_base:.6f}", f"{score.perplexity:.6f}"]
    return "\t".join(cells) + "\n"


def write_tsv(out: TextIO, scores: Iterable[SequenceScore], file_name: str) -> SequenceScore:
    """Write the header, a row per record as it comes, then the file's row; returns the file's totals."""
    out.write("\t".join(COLUMNS) + "\n")
    totals = SequenceScore(file_name)
    for score in scores:
        totals.include(score)
        out.write(_tsv_row(score))
        out.flush()
    out.write(_tsv_row(totals))
    return totals


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else value


def _entry(score: SequenceScore) -> dict[str, Any]:
    return {
        "name": score.name,
        "length": score.length,
        "scored": score.scored,
        "nll": score.nll,
        "bits_per_base": _finite(score.bits_per_base),
        "perplexity": _finite(score.perplexity),
    }


def write_json(
    out: TextIO, scores: Iterable[SequenceScore], file_name: str, model: str, window: int | None
) -> SequenceScore:
    """Write the whole result as one JSON object; returns the file's totals."""
    totals = SequenceScore(file_name)
    records = []
    for score in scores:
        totals.include(score)
        records.append(_entry(score))
    document = {"model": model, "window": window, "records": records, "file": _entry(totals)}
    out.write(json.dumps(document, indent=2) + "\n")
    return totals
