"""Data-loader throughput: tokenised windows and bases per second of genome LM steps, on one core.

Each timed call builds one whole training step (random windows fetched, N-filtered, tokenised, shifted into
``input_ids`` / ``labels`` LongTensors) as a DataLoader worker does, at a constant token budget per step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from genossm.cli.options import option
from genossm.data.datamodules import GenomeLMDataModule
from genossm.data.fasta import sniff_compression
from genossm.data.lm import LMDataConfig

from .report import plot_lines, write_json
from .timing import format_table, median_ms


@dataclass
class DataBenchOptions:
    """Options of ``genossm bench data``."""

    fasta: str = option("data/human_chr22_excerpt.fa.gz", "FASTA file(s) to read, separated by commas")
    seqlen: str = option("1024,65536,1048576", "window length(s), separated by commas")
    tokens_per_step: int = option(2**20, "tokens per step (windows per step = tokens_per_step // seqlen)")
    repeats: int = option(5, "timed steps per length (the median is reported)")
    threads: int = option(1, "CPU threads (1 = one core, as one DataLoader worker)")
    out: Path | None = option(None, "write data.json (and data.png) into this folder")


def time_file(fasta: Path, seqlen: int, opts: DataBenchOptions) -> dict[str, object]:
    """One table row: set-up time and the median time of building one step of ``fasta`` at ``seqlen``."""
    config = LMDataConfig(
        fasta=fasta,
        seqlen=seqlen,
        tokens_per_step=opts.tokens_per_step,
        max_steps=opts.repeats + 1,
        seqlen_warmup=False,
        valid_items=0,
    )
    data = GenomeLMDataModule(config)
    start = time.perf_counter()
    data.setup()  # indexes the file (or decompresses it into the cache) on first use
    setup_s = time.perf_counter() - start
    dataset = data.train_dataset
    assert dataset is not None
    steps = iter(range(len(dataset)))
    ms = median_ms(lambda: dataset[next(steps)], torch.device("cpu"), repeats=opts.repeats)
    n_micro, micro_batch = config.shape(seqlen)
    windows = n_micro * micro_batch
    return {
        "file": fasta.name,
        "format": sniff_compression(fasta),
        "bases": sum(data.genome.lengths.values()),
        "seqlen": seqlen,
        "windows": windows,
        "setup_s": setup_s,
        "ms_per_step": ms,
        "windows_per_s": windows / ms * 1e3,
        "Mbases_per_s": windows * seqlen / ms / 1e3,
    }


def run(opts: DataBenchOptions) -> list[dict[str, object]]:
    """Time one LM step per call for every file and length; print the table and return its rows."""
    torch.set_num_threads(opts.threads)
    lengths = [int(s) for s in opts.seqlen.split(",")]
    rows = [time_file(Path(fasta), seqlen, opts) for fasta in opts.fasta.split(",") for seqlen in lengths]
    print(f"LM data steps of {opts.tokens_per_step:,} tokens on {opts.threads} CPU thread(s)")
    print(format_table(rows))
    if opts.out:
        write_json(rows, opts.out / "data.json", tokens_per_step=opts.tokens_per_step, threads=opts.threads)
        if len(lengths) > 1:
            plot_lines(
                rows,
                "seqlen",
                "Mbases_per_s",
                "file",
                opts.out / "data.png",
                title="LM data loading, one core",
                ylabel="million bases per second",
            )
    return rows
