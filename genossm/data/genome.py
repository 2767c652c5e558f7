"""Genome access: random access to any interval of a FASTA file as tokens, and streaming of huge files.

:class:`Genome` reads plain, gzip and bgzip FASTA by the ``.fai`` line arithmetic: one seek and read a fetch, in the
plain file or, for bgzip, through Bio.bgzf from the block the ``.gzi`` names:

- plain and bgzip files are read in place; their ``.fai`` (and bgzip ``.gzi``) index is built on first use
  beside the file, or in the cache folder when the file's folder is not writable;
- plain gzip cannot be read at random, so it is decompressed once into the cache folder;
- a file whose lines are ragged (lines of different lengths inside a record, blank lines between sequence lines,
  mixed line endings) is valid FASTA that no ``.fai`` can describe: it is rewritten once, with 60 bases a line,
  into the cache folder, with a warning.

The cache folder is ``$GENOSSM_CACHE``, else ``$XDG_CACHE_HOME/genossm``, else ``~/.cache/genossm``.
A :class:`Genome` is picklable and opens its file lazily in each process (never across a fork).
"""

from __future__ import annotations

import bisect
import hashlib
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from Bio import bgzf
from tqdm import tqdm

from genossm.fileio import atomic_open

from .faidx import (
    QUIET_BELOW,
    FaiRecord,
    FastaWriter,
    IrregularLayoutError,
    read_fai,
    read_gzi,
    scan_index,
    write_fai,
    write_gzi,
)
from .fasta import bgzf_block_offsets, iter_fasta, sniff_compression
from .tokenizer import ENCODE_BYTES, UNK_ID, check_known, encode

LINE_BASES = 60
FASTA_SUFFIXES = (".fa", ".fasta", ".fna", ".fas")


def default_cache_dir() -> Path:
    """``$GENOSSM_CACHE``, else ``$XDG_CACHE_HOME/genossm``, else ``~/.cache/genossm``."""
    if env := os.environ.get("GENOSSM_CACHE"):
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "genossm"


def _is_fresh(derived: Path, source: Path) -> bool:
    return derived.is_file() and derived.stat().st_mtime >= source.stat().st_mtime


@dataclass(frozen=True)
class RecordChunk:
    """A run of consecutive bases of one record: ``tokens`` cover ``[offset, offset + len(tokens))``."""

    name: str
    offset: int
    tokens: np.ndarray


class Genome:
    """The records of a FASTA file (plain, gzip or bgzip), fetched as token ids.

    Coordinates are 0-based and half-open, as in BED. The index is built on first use, not on construction.
    """

    def __init__(self, path: str | Path, cache_dir: str | Path | None = None) -> None:
        self.path = Path(path)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._records: dict[str, FaiRecord] | None = None
        self._source = self.path  # the file read: the original, or a regular copy in the cache
        self._fai: Path | None = None
        self._gzi: Path | None = None
        self._reader_fn: Callable[[FaiRecord, int, int], bytes] | None = None
        self._pid = -1

    def __repr__(self) -> str:
        return f"Genome({str(self.path)!r})"

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_reader_fn": None, "_pid": -1}

    # --- index -------------------------------------------------------------------------------------------
    @property
    def records(self) -> dict[str, FaiRecord]:
        """Index entries by record name, in file order (building the index on first use)."""
        if self._records is None:
            self._records = {r.name: r for r in self._prepare()}
            if empty := [name for name, r in self._records.items() if r.length == 0]:
                shown = ", ".join(empty[:5]) + (", ..." if len(empty) > 5 else "")
                warnings.warn(f"{self.path}: {len(empty)} empty record(s), never sampled: {shown}", stacklevel=2)
        return self._records

    @property
    def names(self) -> list[str]:
        """Record names in file order."""
        return list(self.records)

    @property
    def lengths(self) -> dict[str, int]:
        """Length of every record, by name."""
        return {name: r.length for name, r in self.records.items()}

    def length(self, name: str) -> int:
        """Length of record ``name``."""
        return self._record(name).length

    def _record(self, name: str) -> FaiRecord:
        try:
            return self.records[name]
        except KeyError:
            names = ", ".join(list(self.records)[:8]) + (", ..." if len(self.records) > 8 else "")
            raise ValueError(f"{self.path}: no record named {name!r} (records: {names})") from None

    def _cache_folder(self) -> Path:
        stat = self.path.stat()
        key = hashlib.sha1(f"{self.path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
        return (self.cache_dir or default_cache_dir()) / f"{self.path.name}-{key}"

    def _prepare(self) -> list[FaiRecord]:
        """Locate or build the index (and, where needed, the cached copy) that random access reads."""
        compression = sniff_compression(self.path)
        gz_name = self.path.suffix.lower() in (".gz", ".bgz")
        if compression == "plain" and gz_name:
            raise ValueError(f"{self.path} is named like a gzip file but is not compressed; rename it")
        if compression == "bgzf" and not gz_name:
            raise ValueError(f"{self.path} is bgzip-compressed; rename it to end in .gz")
        if compression == "gzip":
            return self._use_copy()
        self._fai = self._index_path(".fai")
        if _is_fresh(self._fai, self.path):
            records = read_fai(self._fai)
        else:
            try:
                records = scan_index(self.path)
            except IrregularLayoutError as err:
                warnings.warn(f"{err}; reading a copy with regular lines from the cache instead", stacklevel=3)
                return self._use_copy()
            self._fai = self._write_beside_or_cache(self._fai, lambda p: write_fai(records, p))
        if compression == "bgzf":
            self._gzi = self._index_path(".gzi")
            if not _is_fresh(self._gzi, self.path):
                offsets = bgzf_block_offsets(self.path)
                self._gzi = self._write_beside_or_cache(self._gzi, lambda p: write_gzi(offsets, p))
        return records

    def _index_path(self, suffix: str) -> Path:
        """The index beside the file when it is fresh or can be written there, else its place in the cache."""
        beside = self.path.with_name(self.path.name + suffix)
        if _is_fresh(beside, self.path) or os.access(self.path.parent, os.W_OK):
            return beside
        return self._cache_folder() / beside.name

    def _write_beside_or_cache(self, target: Path, write: Callable[[Path], None]) -> Path:
        try:
            write(target)
            return target
        except OSError:
            cached = self._cache_folder() / target.name
            if cached == target:
                raise
        try:
            write(cached)
        except OSError as err:
            raise PermissionError(
                f"cannot write the index of {self.path} beside it or in the cache folder {cached.parent} "
                f"({err.strerror}); set GENOSSM_CACHE to a writable folder"
            ) from None
        return cached

    def _use_copy(self) -> list[FaiRecord]:
        """Read a decompressed copy with regular lines from the cache, writing it on first use."""
        folder = self._cache_folder()
        self._source = folder / (self.path.name.removesuffix(".gz").removesuffix(".bgz") + ".regular.fa")
        self._fai = self._source.with_name(self._source.name + ".fai")
        if self._fai.is_file() and self._source.is_file():
            return read_fai(self._fai)
        try:
            records = write_regular_copy(self.path, self._source)
        except OSError as err:
            raise PermissionError(
                f"cannot write a decompressed copy of {self.path} into the cache folder {folder} ({err.strerror}); "
                "set GENOSSM_CACHE to a writable folder"
            ) from None
        write_fai(records, self._fai)
        return records

    # --- random access -----------------------------------------------------------------------------------
    def _reader(self) -> Callable[[FaiRecord, int, int], bytes]:
        """This process's reader of raw text: a seek and read, in the plain file or in the bgzip file's blocks."""
        if self._reader_fn is None or self._pid != os.getpid():
            self.records  # noqa: B018  (builds the index first)
            self._reader_fn = _PlainReader(self._source) if self._gzi is None else _BgzfReader(self._source, self._gzi)
            self._pid = os.getpid()
        return self._reader_fn

    def _raw(self, name: str, start: int, end: int) -> bytes:
        """The text holding ``name[start:end]``, line ends included."""
        record = self._record(name)
        if not 0 <= start <= end <= record.length:
            raise ValueError(
                f"{self.path}: record {name}: interval [{start:,}, {end:,}) is outside the record "
                f"(length {record.length:,})"
            )
        if start == end:
            return b""
        return self._reader()(record, start, end)

    def fetch_bytes(self, name: str, start: int, end: int) -> bytes:
        """The letters of ``name[start:end]`` as stored (case and IUPAC codes kept)."""
        return self._raw(name, start, end).translate(None, b"\r\n")

    def fetch(self, name: str, start: int, end: int, strict: bool = False) -> np.ndarray:
        """Token ids (uint8) of ``name[start:end]``; ``strict`` makes an unknown character an error."""
        ids = np.frombuffer(self._raw(name, start, end).translate(ENCODE_BYTES, b"\r\n"), dtype=np.uint8)
        if strict and UNK_ID in ids:
            check_record_bases(self.path, name, ids, self.fetch_bytes(name, start, end), start)
        return ids

    def check_bases(self, chunk_bases: int = 1 << 24) -> None:
        """Raise a ``ValueError`` naming the record and base of the first character that is no nucleotide code.

        Reads the whole file once (a few hundred Mb/s); a clean file is remembered in the cache folder.
        """
        stamp = self._cache_folder() / "bases-checked"
        if stamp.is_file():
            return
        total = sum(self.lengths.values())
        quiet = total < QUIET_BELOW
        with tqdm(total=total, unit="b", unit_scale=True, desc=f"checking {self.path.name}", disable=quiet) as bar:
            for name, length in self.lengths.items():
                for start in range(0, length, chunk_bases):
                    end = min(start + chunk_bases, length)
                    self.fetch(name, start, end, strict=True)
                    bar.update(end - start)
        try:
            stamp.parent.mkdir(parents=True, exist_ok=True)
            stamp.touch()
        except OSError:
            pass  # an unwritable cache only means checking again next time


def _text_range(record: FaiRecord, start: int, end: int) -> tuple[int, int]:
    """The byte range [first, last) of the file's text holding ``record[start:end]`` (``start < end``), by the
    ``.fai`` line arithmetic."""
    lines, width = record.line_bases, record.line_bytes
    first = record.offset + start // lines * width + start % lines
    last = record.offset + (end - 1) // lines * width + (end - 1) % lines + 1
    return first, last


class _PlainReader:
    """The text of an interval of a plain FASTA file: one seek and read."""

    def __init__(self, path: Path) -> None:
        self.handle = open(path, "rb", buffering=0)  # noqa: SIM115  (closed with the reader)

    def __call__(self, record: FaiRecord, start: int, end: int) -> bytes:
        first, last = _text_range(record, start, end)
        self.handle.seek(first)
        return self.handle.read(last - first)

    def __del__(self) -> None:
        self.handle.close()


class _BgzfReader:
    """The text of an interval of a bgzip FASTA file: a seek to the block holding its first byte (from the
    ``.gzi``), then a read through Bio.bgzf, which decompresses the blocks it crosses.

    (pyfaidx 0.9.2 reads bgzip files the same way but picks the block before the right one when the first byte
    starts a block, which fails for files of 64 KiB blocks, as Biopython writes them: every fetch starting at one
    of their block boundaries raised an error.)
    """

    def __init__(self, path: Path, gzi: Path) -> None:
        blocks = read_gzi(gzi)
        self.compressed = [c for c, _ in blocks]
        self.uncompressed = [u for _, u in blocks]
        self.handle = bgzf.BgzfReader(str(path), "rb")

    def __call__(self, record: FaiRecord, start: int, end: int) -> bytes:
        first, last = _text_range(record, start, end)
        block = bisect.bisect_right(self.uncompressed, first) - 1
        self.handle.seek(bgzf.make_virtual_offset(self.compressed[block], first - self.uncompressed[block]))
        return self.handle.read(last - first)

    def __del__(self) -> None:
        self.handle.close()


def write_regular_copy(src: Path, dst: Path, line_bases: int = LINE_BASES) -> list[FaiRecord]:
    """Rewrite FASTA ``src`` (any compression, any line layout) as plain FASTA with ``line_bases`` a line.

    Returns the ``.fai`` records of the copy; header lines keep only the record name.
    """
    names: dict[str, int] = {}
    quiet = src.stat().st_size < 64 << 20
    with (
        atomic_open(dst, "wb") as out,
        tqdm(unit="B", unit_scale=True, desc=f"copying {src.name}", disable=quiet) as bar,
    ):
        writer = FastaWriter(out, line_bases)
        for name, line, bases in iter_fasta(src):
            bar.update(len(bases))
            if names.get(name, line) != line:
                raise ValueError(f"{src}: record name {name!r} appears twice (lines {names[name]:,} and {line:,})")
            if name not in names:
                names[name] = line
                writer.start(name)
            writer.write(bases)
        return writer.finish()


def iter_record_chunks(path: str | Path, chunk_bases: int, strict: bool = False) -> Iterator[RecordChunk]:
    """Stream every record of a FASTA file (plain, gzip or bgzip) in chunks of ``chunk_bases`` tokens.

    Chunks never span two records; the last chunk of a record may be shorter. Memory stays at a few chunks,
    whatever the size of the file or of its records. Empty records yield nothing; records come in file order and
    duplicate names are not checked.
    """
    if chunk_bases < 1:
        raise ValueError(f"chunk_bases must be at least 1, not {chunk_bases}")
    path = Path(path)
    current: tuple[str, int] | None = None
    buf = b""
    offset = 0
    for name, line, bases in iter_fasta(path):
        if (name, line) != current:
            if buf and current is not None:
                yield _chunk(path, current[0], offset, buf, strict)
            current, buf, offset = (name, line), b"", 0
        buf += bases
        used = 0
        while len(buf) - used >= chunk_bases:
            yield _chunk(path, name, offset, buf[used : used + chunk_bases], strict)
            used, offset = used + chunk_bases, offset + chunk_bases
        buf = buf[used:]
    if buf and current is not None:
        yield _chunk(path, current[0], offset, buf, strict)


def _chunk(path: Path, name: str, offset: int, raw: bytes, strict: bool) -> RecordChunk:
    ids = encode(raw)
    if strict:
        check_record_bases(path, name, ids, raw, offset)
    return RecordChunk(name, offset, ids)


def check_record_bases(path: Path, name: str, ids: np.ndarray, raw: bytes, offset: int) -> None:
    """:func:`~.tokenizer.check_known` of bases read from record ``name`` of ``path`` from ``offset``, its error
    naming the file and the record."""
    try:
        check_known(ids, raw, offset)
    except ValueError as err:
        raise ValueError(f"{path}: record {name}: {err}") from None


def iter_records(path: str | Path, strict: bool = False) -> Iterator[tuple[str, np.ndarray]]:
    """(name, tokens) of every non-empty record, one whole record in memory at a time."""
    name, parts = None, []
    for chunk in iter_record_chunks(path, 1 << 24, strict=strict):
        if chunk.offset == 0 and parts:
            yield name, np.concatenate(parts)
            parts = []
        name = chunk.name
        parts.append(chunk.tokens)
    if parts:
        yield name, np.concatenate(parts)
