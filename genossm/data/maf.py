"""Multiple alignments (MAF) to one ungapped FASTA per species.

``maf_to_fasta`` streams the alignment once (plain or gzip), writing each species' ungapped bases to a scratch
file, then writes ``OUT_DIR/<species>.fa``: for every sequence of the reference species (the species of the
first row of the first block, unless given), one record holding the species' bases of the blocks aligned to it,
concatenated in reference order. ``OUT_DIR/<species>.bed`` says where each block landed.

Conventions: the species is the part of a row's source name before the first dot (``Hsap`` for ``Hsap.22``);
a record is named after the reference sequence without the species (``22``). Rows on the minus strand are
written as the alignment shows them (reverse complemented, in the reference's orientation). A species absent
from a block contributes nothing to it; a species with several rows in a block gets them in row order. Blocks
without a reference row cannot be placed and are skipped (and counted). The FASTA files are plain text with 60
bases a line. Existing output files are never overwritten unless ``force``.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import tempfile
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from genossm.fileio import atomic_open

from .faidx import FastaWriter


@dataclass(frozen=True)
class MafRow:
    """An ``s`` line: a source sequence's piece of an alignment block (0-based start on its strand)."""

    src: str
    start: int
    size: int
    strand: str
    src_size: int
    text: bytes

    @property
    def species(self) -> str:
        return self.src.split(".", 1)[0]

    @property
    def sequence_name(self) -> str:
        """The source name without the species: ``22`` for ``Hsap.22``."""
        return self.src.split(".", 1)[1] if "." in self.src else self.src

    def ungapped(self) -> bytes:
        return self.text.replace(b"-", b"")


@dataclass(frozen=True)
class MafBlock:
    """An alignment block: its number in the file (from 0), its ``a`` line, its rows."""

    index: int
    line: int
    rows: tuple[MafRow, ...]


def _open_text(path: Path) -> BinaryIO:
    with open(path, "rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gzipped else open(path, "rb")


def _row(path: Path, line_no: int, line: bytes) -> MafRow:
    fields = line.split()
    if len(fields) != 7:
        raise ValueError(f"{path}: line {line_no:,}: an 's' line has 7 fields (s src start size strand srcSize text)")
    try:
        start, size, src_size = int(fields[2]), int(fields[3]), int(fields[5])
    except ValueError:
        raise ValueError(f"{path}: line {line_no:,}: start, size and srcSize must be integers") from None
    strand = fields[4].decode()
    if strand not in "+-" or len(strand) != 1:
        raise ValueError(f"{path}: line {line_no:,}: strand must be + or -, not {strand!r}")
    row = MafRow(fields[1].decode(), start, size, strand, src_size, fields[6])
    bases = len(row.text) - row.text.count(b"-")
    if bases != size:
        raise ValueError(f"{path}: line {line_no:,}: row {row.src} has size {size:,} but {bases:,} ungapped bases")
    if start < 0 or start + size > src_size:
        raise ValueError(f"{path}: line {line_no:,}: row {row.src} ends at {start + size:,}, past srcSize {src_size:,}")
    return row


def iter_maf_blocks(path: str | Path) -> Iterator[MafBlock]:
    """Stream the blocks of a MAF file (plain or gzip); malformed lines are errors naming the line."""
    path = Path(path)
    rows: list[MafRow] = []
    index, block_line = 0, 0
    try:
        with _open_text(path) as handle:
            for line_no, line in enumerate(handle, 1):
                tag = line[:1]
                if tag == b"s":
                    if not block_line:
                        raise ValueError(f"{path}: line {line_no:,}: an 's' line outside an alignment block")
                    row = _row(path, line_no, line)
                    if rows and len(row.text) != len(rows[0].text):
                        raise ValueError(
                            f"{path}: line {line_no:,}: row {row.src} has {len(row.text):,} alignment "
                            f"columns, the block's first row {len(rows[0].text):,}"
                        )
                    rows.append(row)
                elif tag == b"a" or not line.strip():
                    if rows:
                        yield MafBlock(index, block_line, tuple(rows))
                        index, rows = index + 1, []
                    block_line = line_no if tag == b"a" else 0
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise ValueError(f"{path}: truncated or corrupt gzip data ({err})") from None
    if rows:
        yield MafBlock(index, block_line, tuple(rows))


@dataclass
class SpeciesOutput:
    """What maf_to_fasta wrote for one species."""

    fasta: Path
    bed: Path
    bases: int = 0
    blocks: int = 0


@dataclass(frozen=True)
class _Placement:
    """A row of a block (without its text) and where its bases sit in its species' scratch file."""

    species: str
    scratch_offset: int
    src: str
    start: int
    size: int
    strand: str


@dataclass
class _Block:
    reference: str  # the reference sequence name (the FASTA record)
    reference_start: int
    index: int
    placements: list[_Placement] = field(default_factory=list)


def maf_to_fasta(
    maf: str | Path, out_dir: str | Path, reference: str | None = None, force: bool = False
) -> dict[str, SpeciesOutput]:
    """Write ``out_dir/<species>.fa`` and ``out_dir/<species>.bed`` for every species of the alignment."""
    maf, out_dir = Path(maf), Path(out_dir)
    if not maf.is_file():
        raise FileNotFoundError(f"alignment {maf} does not exist")
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"output folder {out_dir} is a file")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".maf2fasta-") as scratch_dir:
        blocks, species, skipped = _collect(maf, Path(scratch_dir), reference)
        if not blocks:
            raise ValueError(f"{maf}: no alignment block contains the reference species {reference!r}")
        outputs = {s: SpeciesOutput(out_dir / f"{s}.fa", out_dir / f"{s}.bed") for s in species}
        existing = [str(p) for o in outputs.values() for p in (o.fasta, o.bed) if p.exists()]
        if existing and not force:
            raise FileExistsError(f"not overwriting {', '.join(existing)} (use --force to replace them)")
        order = {name: i for i, name in enumerate(dict.fromkeys(b.reference for b in blocks))}
        blocks.sort(key=lambda b: (order[b.reference], b.reference_start, b.index))
        for name, output in outputs.items():
            _write_species(name, blocks, Path(scratch_dir) / name, output)
    if skipped:
        warnings.warn(f"{maf}: skipped {skipped:,} block(s) without a row of the reference species", stacklevel=2)
    return outputs


def _collect(maf: Path, scratch_dir: Path, reference: str | None) -> tuple[list[_Block], list[str], int]:
    """Pass 1: the blocks that hold the reference, with every species' bases in a scratch file."""
    blocks: list[_Block] = []
    scratch: dict[str, BinaryIO] = {}
    skipped = 0
    try:
        for block in tqdm(iter_maf_blocks(maf), desc=f"reading {maf.name}", unit=" blocks", disable=None):
            reference = reference or block.rows[0].species
            ref_row = next((r for r in block.rows if r.species == reference), None)
            if ref_row is None:
                skipped += 1
                continue
            placed = _Block(ref_row.sequence_name, ref_row.start, block.index)
            for row in block.rows:
                if row.species not in scratch:
                    scratch[row.species] = open(scratch_dir / row.species, "w+b")  # noqa: SIM115
                handle = scratch[row.species]
                placement = _Placement(row.species, handle.tell(), row.src, row.start, row.size, row.strand)
                placed.placements.append(placement)
                handle.write(row.ungapped())
            blocks.append(placed)
    finally:
        for handle in scratch.values():
            handle.close()
    return blocks, sorted(scratch), skipped


def _write_species(species: str, blocks: list[_Block], scratch: Path, output: SpeciesOutput) -> None:
    """Pass 2: one species' FASTA (records in reference order) and BED of block positions."""
    bed_lines = ["#record\tstart\tend\tsource\tscore\tstrand\tblock\n"]
    with open(scratch, "rb") as bases, atomic_open(output.fasta, "wb") as out:
        writer = FastaWriter(out)
        record, position = None, 0
        for block in blocks:
            for placement in block.placements:
                if placement.species != species:
                    continue
                if block.reference != record:
                    record, position = block.reference, 0
                    writer.start(record)
                row = placement
                bases.seek(row.scratch_offset)
                writer.write(bases.read(row.size))
                bed_lines.append(
                    f"{record}\t{position}\t{position + row.size}\t{row.src}:{row.start}-{row.start + row.size}"
                    f"\t0\t{row.strand}\t{block.index}\n"
                )
                position += row.size
                output.bases += row.size
                output.blocks += 1
        writer.finish()
    with atomic_open(output.bed, "w") as handle:
        handle.writelines(bed_lines)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(scratch)
