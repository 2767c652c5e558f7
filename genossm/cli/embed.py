"""``genossm embed FASTA --model DIR --output FILE.npz``: one embedding per record (or BED region, or window) from the
backbone of a language model or classifier, for downstream tools (clustering, probes, nearest neighbours).

The archive's arrays are described in genossm/embeddings.py, and how windows are read in
genossm/classification/infer.py.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from genossm.cli.options import add_options, option, resolve_options
from genossm.cli.output import WindowReadingOptions, check_new_output

DEFAULT_WINDOW = 1 << 20


@dataclass
class EmbedOptions(WindowReadingOptions):
    """Options of ``genossm embed``."""

    fasta: Path = option(help="FASTA file to embed (plain, gzip or bgzip; any number of records, any size)")
    model: Path = option(help="model directory: a language model (genossm pretrain) or a classifier (finetune)")
    output: Path = option(help="the .npz archive to write (it must not exist yet)")
    window: int | None = option(
        None,
        f"window length; a record is the base-weighted mean of its windows (default: a classifier's training "
        f"length, else {DEFAULT_WINDOW:,}, so that most records are one window)",
    )
    pooling: Literal["mean", "last"] | None = option(
        None, "hidden states to a vector: their mean, or the last one (default: the classifier's own, else mean)"
    )
    bed: Path | None = option(None, "embed only these BED intervals, each as a record of its own (chrom:start-end)")
    split: str | None = option(None, "with --bed: only the intervals of this split (the BED's 4th column, e.g. test)")
    per_window: bool = option(False, "also store one embedding per window (window_* arrays)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, EmbedOptions, positional=("fasta",))


def run(args: argparse.Namespace) -> None:
    from genossm.data.stream import sequence_chunks
    from genossm.embeddings import EmbeddingTable, load_encoder

    opts = resolve_options(EmbedOptions, args)
    check_new_output(opts.output)
    encoder = load_encoder(opts.model, opts.pooling)
    reader = opts.window_reader(encoder, opts.window or encoder.seqlen or DEFAULT_WINDOW, opts.per_window)
    start = time.perf_counter()
    chunks = sequence_chunks(opts.fasta, opts.bed, opts.split, opts.progress)
    table = EmbeddingTable(reader.width, opts.per_window).extend(reader.predict(chunks))
    config = {
        "fasta": str(opts.fasta),
        "model": str(opts.model),
        "window": reader.window,
        "stride": reader.stride,
        "stateful": opts.stateful,
        "pooling": encoder.pooling,
    }
    table.save(opts.output, config)
    seconds = time.perf_counter() - start
    bases = sum(table.lengths)
    print(
        f"embedded {len(table.names):,} records ({bases:,} bases) in {reader.width} dimensions on {reader.device} in "
        f"{seconds:.1f} s ({bases / seconds / 1e6:.2f} Mb/s): {opts.output}",
        file=sys.stderr,
    )
    if table.empty:
        shown = ", ".join(table.empty[:5]) + (" ..." if len(table.empty) > 5 else "")
        print(f"{len(table.empty)} record(s) had no usable window (NaN rows): {shown}", file=sys.stderr)
