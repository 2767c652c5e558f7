"""``genossm score FASTA --model DIR``: log-likelihood, bits per base and perplexity of every record under a language
model, read whole (the state carried through each record) or in windows of ``--window`` bases.

The output format (TSV, or JSON with ``--json``) is described in genossm/scoring/report.py, and how records are read
in genossm/scoring/likelihood.py.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from genossm.cli.options import add_options, option, resolve_options
from genossm.cli.output import DEFAULT_BATCH_TOKENS, InferenceOptions, check_new_output, open_output


@dataclass
class ScoreOptions(InferenceOptions):
    """Options of ``genossm score``."""

    fasta: Path = option(help="FASTA file to score (plain, gzip or bgzip; any number of records, any size)")
    model: Path = option(help="language-model directory, as written by genossm pretrain (OUTPUT/model) or mamba_ssm")
    window: int | None = option(
        None,
        "read windows of this many bases, each from a zero state (the context pretraining at that length sees); "
        "default: every record whole, the state carried through it",
    )
    bed: Path | None = option(None, "score only these BED intervals, each as a sequence of its own (chrom:start-end)")
    split: str | None = option(None, "with --bed: only the intervals of this split (the BED's 4th column, e.g. test)")
    json: bool = option(False, "write one JSON object instead of a TSV")
    output: Path | None = option(None, "write to this file (it must not exist yet) instead of standard output")
    batch_tokens: int | None = option(
        None, f"tokens per forward pass, and the piece length of a whole record (default {DEFAULT_BATCH_TOKENS})"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, ScoreOptions, positional=("fasta",))


def run(args: argparse.Namespace) -> None:
    from genossm.data.stream import sequence_chunks
    from genossm.inference import dtype_choice, resolve_device
    from genossm.scoring import LikelihoodScorer, load_language_model
    from genossm.scoring.report import write_json, write_tsv

    opts = resolve_options(ScoreOptions, args)
    check_new_output(opts.output)
    device = resolve_device(opts.device)
    scorer = LikelihoodScorer(
        load_language_model(opts.model),
        window=opts.window,
        batch_tokens=opts.batch_tokens,
        device=device,
        bfloat16=dtype_choice(opts.dtype),
    )
    start = time.perf_counter()
    scores = scorer.score(sequence_chunks(opts.fasta, opts.bed, opts.split, opts.progress))
    with open_output(opts.output) as out:
        if opts.json:
            totals = write_json(out, scores, str(opts.fasta), str(opts.model), opts.window)
        else:
            totals = write_tsv(out, scores, str(opts.fasta))
    seconds = time.perf_counter() - start
    reading = f"windows of {opts.window:,}" if opts.window else "whole records"
    print(
        f"scored {totals.scored:,} of {totals.length:,} bases ({reading}) on {device} in {seconds:.1f} s "
        f"({totals.length / seconds / 1e6:.2f} Mb/s): {totals.bits_per_base:.4f} bits per base",
        file=sys.stderr,
    )
