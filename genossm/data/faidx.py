"""samtools-compatible ``.fai`` (and BGZF ``.gzi``) indexes, built by a vectorised scan of the FASTA file.

A ``.fai`` line is ``name  length  offset  line_bases  line_bytes``; random access needs every line of a record
but its last to hold the same number of bases. Files that break that rule (ragged lines, blank lines inside a
record, mixed line endings) raise :class:`IrregularLayoutError`, and :mod:`genossm.data.genome` then reads a
normalised copy instead.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from tqdm import tqdm

from genossm.fileio import atomic_open

from .fasta import MAX_HEADER_BYTES, check_bytes, read_chunks, record_name


@dataclass(frozen=True)
class FaiRecord:
    """One ``.fai`` line: where a record's bases start and how its lines are laid out."""

    name: str
    length: int
    offset: int
    line_bases: int
    line_bytes: int


class IrregularLayoutError(ValueError):
    """The file is valid FASTA but its line layout does not allow random access through a ``.fai``."""


class _Record:
    """A record being scanned: header line, layout of its sequence lines, bases so far."""

    def __init__(self, name: str, line: int) -> None:
        self.name, self.line = name, line
        self.offset = -1  # byte offset of the first sequence line, -1 until one is seen
        self.line_bases = self.line_bytes = self.length = 0
        self.closed = False  # a short or blank line was seen: only blank lines may follow

    def add_lines(self, path: Path, starts: np.ndarray, lengths: np.ndarray, cr: np.ndarray, first_line: int) -> None:
        """Account for complete sequence lines (``lengths`` in bytes without the line feed)."""
        bases = lengths - cr
        if self.offset < 0:
            filled = np.flatnonzero(bases > 0)
            if not filled.size:
                return
            k = int(filled[0])
            self.offset, self.line_bases, self.line_bytes = int(starts[k]), int(bases[k]), int(lengths[k]) + 1
            starts, lengths, bases, first_line = starts[k:], lengths[k:], bases[k:], first_line + k
        rest = 0
        if not self.closed:
            full = (bases == self.line_bases) & (lengths + 1 == self.line_bytes)
            not_full = np.flatnonzero(~full)
            rest = int(not_full[0]) if not_full.size else len(bases)
            if rest < len(bases):
                b, n = int(bases[rest]), int(lengths[rest]) + 1
                if b > self.line_bases or (b and n - b != self.line_bytes - self.line_bases):
                    self._irregular(
                        path,
                        first_line + rest,
                        f"holds {b} bases where the record's lines hold {self.line_bases} (with the same line ending)",
                    )
                self.closed, rest = True, rest + 1
        late = np.flatnonzero(bases[rest:] > 0)
        if late.size:
            self._irregular(path, first_line + rest + int(late[0]), "follows a shorter or blank line of the record")
        self.length += int(bases.sum())

    def _irregular(self, path: Path, line: int, problem: str) -> None:
        raise IrregularLayoutError(
            f"{path}: record {self.name} (line {self.line:,}): line {line:,} {problem}; only the last line of a "
            "record may be shorter"
        )

    def entry(self) -> FaiRecord:
        return FaiRecord(self.name, self.length, max(self.offset, 0), self.line_bases, self.line_bytes)


class _Indexer:
    """A streaming ``.fai`` builder: feed it the decompressed file chunk by chunk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: list[FaiRecord] = []
        self.record: _Record | None = None
        self.pos = 0  # offset of the next chunk
        self.line_no = 1  # line number of the next chunk's first byte
        self.line_start = 0  # offset of the line being read
        self.line_first = -1  # first byte of that line (-1: not seen yet)
        self.header = b""  # that line's bytes while it is a header line
        self.last_byte = 10

    def feed(self, chunk: bytes) -> None:
        arr = np.frombuffer(chunk, dtype=np.uint8)
        check_bytes(self.path, arr, self.line_no)
        newlines = np.flatnonzero(arr == 10)
        if newlines.size:
            self._lines(chunk, arr, newlines)
            tail = newlines[-1] + 1
            self.line_start = self.pos + int(tail)
            self.line_first = int(arr[tail]) if tail < arr.size else -1
            self.header = chunk[tail:] if self.line_first == 62 else b""
        else:
            if self.line_first < 0 and arr.size:
                self.line_first = int(arr[0])
            if self.line_first == 62:
                self.header += chunk
        if len(self.header) > MAX_HEADER_BYTES:
            raise ValueError(f"{self.path}: line {self.line_no:,}: header line longer than {MAX_HEADER_BYTES:,} bytes")
        if arr.size:
            self.last_byte = int(arr[-1])
        self.pos += arr.size
        self.line_no += newlines.size

    def _lines(self, chunk: bytes, arr: np.ndarray, newlines: np.ndarray) -> None:
        """Handle the complete lines of a chunk: headers one by one, sequence lines in bulk."""
        starts = np.empty(newlines.size, dtype=np.int64)
        starts[0] = self.line_start
        starts[1:] = self.pos + newlines[:-1] + 1
        lengths = self.pos + newlines - starts
        nonempty = lengths > 0
        first = np.full(newlines.size, 10, dtype=np.int64)
        first[1:] = np.where(nonempty[1:], arr[np.minimum(newlines[:-1] + 1, arr.size - 1)], 10)
        if nonempty[0]:
            first[0] = self.line_first if self.line_first >= 0 else arr[self.line_start - self.pos]
        before = np.where(newlines > 0, arr[np.maximum(newlines - 1, 0)], self.last_byte)
        cr = (nonempty & (before == 13)).astype(np.int64)
        headers = np.flatnonzero(first == 62).tolist()
        prev = 0
        for h in [*headers, newlines.size]:
            if h > prev:
                self._sequence_lines(starts[prev:h], lengths[prev:h], cr[prev:h], self.line_no + prev)
            if h < newlines.size:
                local = int(starts[h]) - self.pos
                text = (self.header if local < 0 else b"") + chunk[max(local, 0) : int(newlines[h])]
                self._start_record(record_name(self.path, text, self.line_no + h), self.line_no + h)
            prev = h + 1

    def _sequence_lines(self, starts: np.ndarray, lengths: np.ndarray, cr: np.ndarray, first_line: int) -> None:
        if self.record is None:
            if np.any(lengths - cr > 0):
                k = int(np.flatnonzero(lengths - cr > 0)[0])
                raise ValueError(
                    f"{self.path}: line {first_line + k:,} holds sequence before any '>' header line "
                    "(a FASTA record starts with '>name')"
                )
            return
        self.record.add_lines(self.path, starts, lengths, cr, first_line)

    def _start_record(self, name: str, line: int) -> None:
        self._close_record()
        self.record = _Record(name, line)

    def _close_record(self) -> None:
        if self.record is not None:
            self.records.append(self.record.entry())

    def finish(self) -> list[FaiRecord]:
        """The index; a final line without a line feed counts as a line."""
        if self.pos > self.line_start:
            self.feed(b"\n")
        self._close_record()
        if not self.records:
            raise ValueError(f"{self.path}: no FASTA record (the file is empty or has no '>' header line)")
        seen: dict[str, int] = {}
        for i, rec in enumerate(self.records):
            if rec.name in seen:
                raise ValueError(
                    f"{self.path}: record name {rec.name!r} appears twice (records {seen[rec.name] + 1} and {i + 1}); "
                    "record names must be unique"
                )
            seen[rec.name] = i
        return self.records


QUIET_BELOW = 256 << 20  # a pass over fewer bytes (bases) than this takes about a second: no progress bar


def scan_index(path: Path, chunks: Iterable[bytes] | None = None, total: int | None = None) -> list[FaiRecord]:
    """Build the index of ``path`` (or of the decompressed ``chunks`` of it) in one pass."""
    indexer = _Indexer(path)
    total = total if total is not None else path.stat().st_size
    with tqdm(total=total, unit="B", unit_scale=True, desc=f"indexing {path.name}", disable=total < QUIET_BELOW) as bar:
        for chunk in chunks if chunks is not None else read_chunks(path):
            indexer.feed(chunk)
            bar.update(len(chunk))
    return indexer.finish()


def write_fai(records: list[FaiRecord], path: Path) -> None:
    """Write a ``.fai`` atomically."""
    lines = "".join(f"{r.name}\t{r.length}\t{r.offset}\t{r.line_bases}\t{r.line_bytes}\n" for r in records)
    with atomic_open(path, "w") as handle:
        handle.write(lines)


def read_fai(path: Path) -> list[FaiRecord]:
    """Read a ``.fai``; a malformed line is an error naming it."""
    records = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split("\t")
        try:
            name, length, offset, line_bases, line_bytes = fields[0], *map(int, fields[1:5])
        except (ValueError, IndexError):
            raise ValueError(f"{path}: line {i} is not a .fai line (name, length, offset, bases, bytes)") from None
        records.append(FaiRecord(name, length, offset, line_bases, line_bytes))
    return records


def write_gzi(offsets: list[tuple[int, int]], path: Path) -> None:
    """Write htslib's ``.gzi`` (block count, then compressed/uncompressed offset pairs) atomically."""
    with atomic_open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(offsets)))
        for cstart, ustart in offsets:
            handle.write(struct.pack("<QQ", cstart, ustart))


def read_gzi(path: Path) -> list[tuple[int, int]]:
    """The (compressed, uncompressed) start of every block of a bgzip file from its ``.gzi``, the first block's
    (0, 0), which the file leaves out, included; a truncated index is an error naming it."""
    data = path.read_bytes()
    count = struct.unpack_from("<Q", data)[0] if len(data) >= 8 else -1
    if count < 0 or len(data) != 8 + 16 * count:
        raise ValueError(f"{path}: not a .gzi index (block count and offset pairs); delete it to rebuild it")
    pairs = struct.unpack_from(f"<{2 * count}Q", data, 8)
    return [(0, 0), *zip(pairs[::2], pairs[1::2], strict=True)]


class FastaWriter:
    """Write FASTA records with ``line_bases`` bases a line to a binary handle, keeping their ``.fai`` entries.

    ``offset`` columns are positions in the uncompressed text, whatever the handle compresses.
    """

    def __init__(self, handle: BinaryIO, line_bases: int = 60) -> None:
        self.handle, self.line_bases = handle, line_bases
        self.records: list[FaiRecord] = []
        self._written = 0
        self._pending = b""
        self._name: str | None = None
        self._length = self._offset = 0

    def start(self, name: str, description: str = "") -> None:
        """Begin a record (ending the previous one)."""
        self._end_record()
        header = f">{name} {description}".rstrip().encode() + b"\n"
        self._emit(header)
        self._name, self._length, self._offset = name, 0, self._written

    def write(self, bases: bytes) -> None:
        """Append bases to the current record."""
        buf = self._pending + bases
        full = len(buf) // self.line_bases * self.line_bases
        if full:
            lines = np.empty((full // self.line_bases, self.line_bases + 1), dtype=np.uint8)
            lines[:, : self.line_bases] = np.frombuffer(buf[:full], dtype=np.uint8).reshape(-1, self.line_bases)
            lines[:, self.line_bases] = 10
            self._emit(lines.tobytes())
        self._pending = buf[full:]
        self._length += len(bases)

    def finish(self) -> list[FaiRecord]:
        """End the last record; the ``.fai`` entries of everything written."""
        self._end_record()
        return self.records

    def _emit(self, data: bytes) -> None:
        self.handle.write(data)
        self._written += len(data)

    def _end_record(self) -> None:
        if self._name is None:
            return
        if self._pending:
            self._emit(self._pending + b"\n")
        self.records.append(FaiRecord(self._name, self._length, self._offset, self.line_bases, self.line_bases + 1))
        self._name, self._pending = None, b""
