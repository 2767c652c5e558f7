"""Streaming a FASTA file (or the BED regions of one) as token chunks for inference, read ahead on a thread."""

from __future__ import annotations

import contextlib
import itertools
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from queue import Full, Queue
from typing import TypeVar

from tqdm import tqdm

from .faidx import read_fai
from .genome import Genome, RecordChunk, iter_record_chunks
from .intervals import Interval, read_bed

T = TypeVar("T")


def fasta_chunks(
    path: str | Path, chunk_bases: int = 1 << 22, progress: bool = False, prefetch: int = 4
) -> Iterator[RecordChunk]:
    """Stream the records of a FASTA file as token chunks, read ``prefetch`` chunks ahead in a background thread
    (so reading overlaps the model), with a progress bar (in bases) on stderr if asked.

    The bar knows the total when a ``.fai`` index lies beside the file. An empty file, a file that is not FASTA,
    or one whose records hold no bases is an error naming it (raised here, in the caller's thread), and so is a
    character that is no nucleotide code (a protein or a gapped alignment given by mistake: not an ``[UNK]`` that no
    model was trained on), by its record and base.
    """
    path = Path(path)
    fai = path.with_name(path.name + ".fai")
    total = sum(r.length for r in read_fai(fai)) if fai.is_file() else None

    def read() -> Iterator[RecordChunk]:
        bases = 0
        with _bar(total, path.name, progress) as bar:
            for chunk in iter_record_chunks(path, chunk_bases, strict=True):
                bases += len(chunk.tokens)
                yield chunk
                bar.update(len(chunk.tokens))
        if bases == 0:
            raise ValueError(f"{path}: its FASTA records hold no bases")

    return prefetched(read(), prefetch) if prefetch > 0 else read()


def region_name(interval: Interval) -> str:
    """``chrom:start-end``, 1-based and inclusive, as samtools writes regions."""
    return f"{interval.chrom}:{interval.start + 1}-{interval.end}"


def bed_regions(fasta: str | Path, bed: str | Path, split: str | None = None) -> list[Interval]:
    """The intervals of ``bed`` over ``fasta`` (checked against its records), only those of ``split`` if given
    (the BED's fourth column, as in HyenaDNA's train / valid / test files)."""
    intervals = read_bed(bed, Genome(fasta).lengths)
    if split is None:
        return intervals
    chosen = [i for i in intervals if i.split == split]
    if not chosen:
        splits = sorted({str(i.split) for i in intervals})
        raise ValueError(f"{bed}: no interval of split {split!r} (its splits: {', '.join(splits)})")
    return chosen


def region_chunks(
    fasta: str | Path,
    regions: list[Interval],
    chunk_bases: int = 1 << 22,
    progress: bool = False,
    prefetch: int = 4,
) -> Iterator[RecordChunk]:
    """Stream each region of ``fasta`` as a record of its own, named by :func:`region_name` (random access through
    :class:`~genossm.data.genome.Genome`, so the file is indexed, or decompressed once if it is plain gzip); a
    character that is no nucleotide code is an error, as in :func:`fasta_chunks`."""
    genome = Genome(fasta)
    total = sum(len(r) for r in regions)

    def read() -> Iterator[RecordChunk]:
        with _bar(total, Path(fasta).name, progress) as bar:
            for region in regions:
                name = region_name(region)
                for offset in range(0, len(region), chunk_bases):
                    start = region.start + offset
                    tokens = genome.fetch(region.chrom, start, min(start + chunk_bases, region.end), strict=True)
                    yield RecordChunk(name, offset, tokens)
                    bar.update(len(tokens))

    return prefetched(read(), prefetch) if prefetch > 0 else read()


def sequence_chunks(
    fasta: str | Path, bed: str | Path | None = None, split: str | None = None, progress: bool = False
) -> Iterator[RecordChunk]:
    """What an inference command reads: every record of ``fasta``, or its ``bed`` regions (of ``split``). The first
    chunk is read at once, so that a file that is empty or not FASTA fails here, before any output is written."""
    if split is not None and bed is None:
        raise ValueError("--split picks intervals of a --bed file; pass --bed too")
    if bed is not None:
        chunks = region_chunks(fasta, bed_regions(fasta, bed, split), progress=progress)
    else:
        chunks = fasta_chunks(fasta, progress=progress)
    first = next(chunks, None)
    if first is None:
        raise ValueError(f"{bed or fasta}: nothing to read")
    return itertools.chain([first], chunks)


def _bar(total: int | None, name: str, show: bool) -> tqdm:
    return tqdm(total=total, unit="b", unit_scale=True, desc=name, file=sys.stderr, disable=not show)


def prefetched(items: Iterator[T], depth: int) -> Iterator[T]:
    """``items``, produced by a background thread up to ``depth`` ahead; its errors are raised in the consumer."""
    queue: Queue = Queue(depth)
    stop = threading.Event()
    end = object()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    with contextlib.suppress(Full):
                        queue.put((item, None), timeout=0.1)
                        break
                if stop.is_set():
                    return
            queue.put((end, None))
        except BaseException as err:  # handed to the consumer
            queue.put((end, err))

    thread = threading.Thread(target=produce, name="fasta-reader", daemon=True)
    thread.start()
    try:
        while True:
            item, error = queue.get()
            if error is not None:
                raise error
            if item is end:
                return
            yield item
    finally:
        stop.set()
        thread.join()
