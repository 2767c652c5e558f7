"""``genossm classify FASTA --model DIR``: label every record of a FASTA file (and the file) with a classifier.

The output format (TSV, or JSON with ``--json``) is described in genossm/classification/report.py, and how windows
are cut, batched, carried over (``--stateful``) and aggregated in genossm/classification/infer.py.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from genossm.cli.options import add_options, option, resolve_options
from genossm.cli.output import WindowReadingOptions, check_new_output, open_output


@dataclass
class ClassifyOptions(WindowReadingOptions):
    """Options of ``genossm classify``."""

    fasta: Path = option(help="FASTA file to classify (plain, gzip or bgzip; any number of records, any size)")
    model: Path = option(help="classifier directory, as written by genossm finetune (OUTPUT/model)")
    window: int | None = option(None, "window length (default: the length the model was trained on)")
    per_window: bool = option(False, "also write one row (TSV) or entry (JSON) per window")
    json: bool = option(False, "write one JSON object instead of a TSV")
    output: Path | None = option(None, "write to this file (it must not exist yet) instead of standard output")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, ClassifyOptions, positional=("fasta",))


def run(args: argparse.Namespace) -> None:
    from genossm.classification.checkpoints import load_classifier
    from genossm.classification.report import write_json, write_tsv
    from genossm.data.stream import sequence_chunks

    opts = resolve_options(ClassifyOptions, args)
    check_new_output(opts.output)
    classifier = opts.window_reader(load_classifier(opts.model), opts.window, opts.per_window)
    start = time.perf_counter()
    predictions = classifier.predict(sequence_chunks(opts.fasta, progress=opts.progress))
    with open_output(opts.output) as out:
        if opts.json:
            totals = write_json(out, predictions, classifier.labels)
        else:
            totals = write_tsv(out, predictions, classifier.labels, str(opts.fasta))
    seconds = time.perf_counter() - start
    mode = "stateful" if opts.stateful else f"stride {classifier.stride}"
    print(
        f"classified {totals.records} records, {totals.length:,} bases in {totals.windows:,} windows of "
        f"{classifier.window:,} ({mode}) on {classifier.device} in {seconds:.1f} s "
        f"({totals.length / seconds / 1e6:.2f} Mb/s)",
        file=sys.stderr,
    )
    if totals.unlabelled:
        shown = ", ".join(totals.unlabelled[:5]) + (" ..." if len(totals.unlabelled) > 5 else "")
        print(
            f"{len(totals.unlabelled)} record(s) had no window to classify (empty or more than "
            f"{opts.max_n_fraction:.0%} N): {shown}",
            file=sys.stderr,
        )
