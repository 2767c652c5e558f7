"""Labelled sequences from a table to the class files of ``genossm finetune --examples records``.

Sequence benchmarks (Genomic Benchmarks, the Nucleotide Transformer tasks) ship a table: one sequence a row, with its
label and often its split. :func:`table_to_classes` writes ``OUT/<label>.fa`` (one record a row), with a split column
``OUT/<label>.bed`` (each record whole, its split in the fourth column), and the manifest ``OUT/classes.tsv`` that
``--classes`` takes. CSV or TSV (by extension; ``.gz`` too), with a header row naming the columns.
"""

from __future__ import annotations

import csv
import gzip
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from genossm.fileio import atomic_open

from .faidx import FastaWriter
from .tokenizer import encode

SAFE_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")  # a label is a file name
MANIFEST = "classes.tsv"


@dataclass
class ClassFiles:
    """What was written for one label: its records per split (``None``: the table has no split column)."""

    fasta: Path
    bed: Path | None
    records: dict[str | None, int] = field(default_factory=dict)


def _rows(path: Path, columns: dict[str, str | None]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) of a CSV or TSV table whose header names every column of ``columns`` (option -> name)."""
    lower = path.name.lower()
    delimiter = "," if lower.removesuffix(".gz").endswith(".csv") else "\t"
    opener = gzip.open if lower.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", newline="") as text:
        reader = csv.DictReader(text, delimiter=delimiter)
        header = reader.fieldnames or []
        for option, column in columns.items():
            if column is not None and column not in header:
                raise ValueError(f"{path}: no column {column!r} ({option}); the header has {', '.join(header)}")
        for row in reader:
            yield reader.line_num, row


def table_to_classes(
    table: str | Path,
    out_dir: str | Path,
    sequence: str = "sequence",
    label: str = "label",
    split: str | None = None,
    name: str | None = None,
    force: bool = False,
) -> dict[str, ClassFiles]:
    """Write one FASTA per label (and BED, with a ``split`` column) and the manifest; returns what was written.

    Errors name the table and line: a missing column, an empty sequence, a character that is no nucleotide code, a
    label that cannot be a file name, a repeated record name, fewer than two labels. Existing outputs are kept
    unless ``force``.
    """
    table, out_dir = Path(table), Path(out_dir)
    if not table.is_file():
        raise FileNotFoundError(f"table {table} does not exist")
    sequences: dict[str, list[tuple[str, str, str | None]]] = {}  # label -> (record, bases, split)
    seen: dict[str, int] = {}
    try:
        columns = {"--sequence": sequence, "--label": label, "--split": split, "--name": name}
        for line, row in _rows(table, columns):
            where = f"{table}: line {line}"
            bases = (row[sequence] or "").strip()
            if not bases:
                raise ValueError(f"{where}: empty sequence")
            try:
                encode(bases, strict=True)  # the tokenizer's own codes decide
            except ValueError as err:
                raise ValueError(f"{where}: {err}") from None
            tag = (row[label] or "").strip()
            if not SAFE_LABEL.fullmatch(tag):
                raise ValueError(f"{where}: label {tag!r} cannot name a file (letters, digits, _ . + - only)")
            record = (row[name] or "").strip() if name else f"{tag}_{line}"
            if not record or any(c.isspace() for c in record):
                raise ValueError(f"{where}: record name {record!r} is empty or has spaces")
            if record in seen:
                raise ValueError(f"{where}: record name {record!r} repeats line {seen[record]}")
            seen[record] = line
            sequences.setdefault(tag, []).append((record, bases, (row[split] or "").strip() if split else None))
    except (UnicodeDecodeError, csv.Error, gzip.BadGzipFile) as err:
        raise ValueError(f"{table}: not a CSV or TSV text table ({err})") from None
    if len(sequences) < 2:
        raise ValueError(f"{table}: classification needs at least two labels, found {sorted(sequences)}")
    outputs = {tag: ClassFiles(out_dir / f"{tag}.fa", out_dir / f"{tag}.bed" if split else None) for tag in sequences}
    paths = [out_dir / MANIFEST] + [p for o in outputs.values() for p in (o.fasta, o.bed) if p is not None]
    if not force and (existing := [str(p) for p in paths if p.exists()]):
        raise FileExistsError(f"{', '.join(existing)} already exist(s); use --force to replace")
    for tag, rows in sorted(sequences.items()):
        files = outputs[tag]
        with atomic_open(files.fasta) as handle:
            writer = FastaWriter(handle)
            for record, bases, _ in rows:
                writer.start(record)
                writer.write(bases.encode())
            writer.finish()
        if files.bed is not None:
            with atomic_open(files.bed, "w") as handle:
                handle.writelines(f"{record}\t0\t{len(bases)}\t{part}\n" for record, bases, part in rows)
        for _, _, part in rows:
            files.records[part] = files.records.get(part, 0) + 1
    with atomic_open(out_dir / MANIFEST, "w") as handle:
        for tag, files in sorted(outputs.items()):
            bed = f"\t{files.bed.name}" if files.bed is not None else ""
            handle.write(f"{tag}\t{files.fasta.name}{bed}\n")
    return outputs
