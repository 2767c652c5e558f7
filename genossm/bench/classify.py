"""``genossm classify`` throughput: bases per second over a FASTA file, end to end (reading, tokenising, windows,
forward passes, aggregation), for each window length and reading mode.

Without ``--fasta`` the file is built once from the bundled great-ape sample (``data/apes``), its records repeated
into 25 Mb chromosomes up to ``--megabases``, and cached. The classifier is a preset with random weights (speed
does not depend on the weights) or a classifier directory. Reading alone (no model) is timed too, to show the
reader is not the bottleneck.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from genossm.cli.options import option
from genossm.data.genome import default_cache_dir, iter_record_chunks
from genossm.data.species import discover_classes
from genossm.data.tokenizer import DECODE_BYTES, TOKENS
from genossm.fileio import atomic_open
from genossm.models import MambaForSequenceClassification
from genossm.presets import model_config

from .report import plot_lines, write_json
from .timing import format_table, pick_device

CHROMOSOME = 25_000_000
LINE = 60


@dataclass
class ClassifyBenchOptions:
    """Options of ``genossm bench classify``."""

    model: str = option("mamba1-1.4m", "model preset or config (random weights), or a classifier directory")
    seqlen: str = option("1024,1048576", "window length(s), comma-separated")
    modes: str = option("windowed,stateful", "reading modes to time, comma-separated")
    megabases: float = option(100.0, "size of the FASTA built from the bundled sample")
    sample: Path = option(Path("data/apes"), "folder of FASTA files the benchmark genome is built from")
    fasta: Path | None = option(None, "classify this FASTA file instead of the built one")
    batch_tokens: int | None = option(None, "tokens per forward pass (default: genossm classify's, by device)")
    piece: str | None = option(
        None,
        "positions per forward of long windows (default: genossm classify's); several "
        "separated by commas are each timed",
    )
    device: str = option("auto", "'auto' (CUDA when present), 'cpu' or 'cuda'")
    dtype: Literal["auto", "float32", "bfloat16"] = option("auto", "auto: bfloat16 autocast on GPU, float32 on CPU")
    out: Path | None = option(None, "write classify.json (and classify.png for several lengths) into this folder")


def benchmark_fasta(sample: Path, megabases: float, cache: Path | None = None) -> Path:
    """A FASTA of ``megabases`` Mb made of the sample's records, repeated into 25 Mb records (built once, cached)."""
    total = int(megabases * 1e6)
    path = (cache or default_cache_dir() / "bench") / f"{sample.name}-{total}.fa"
    if path.is_file():
        return path
    sources = [f.fasta for f in discover_classes(sample)]
    bases = np.concatenate([DECODE_BYTES[c.tokens] for p in sources for c in iter_record_chunks(p, 1 << 24)])
    genome = np.resize(bases, total)  # the sample, repeated
    with atomic_open(path, "wb") as handle:
        for index, start in enumerate(range(0, total, CHROMOSOME)):
            text = genome[start : start + CHROMOSOME]
            full, tail = divmod(len(text), LINE)
            lines = np.full((full, LINE + 1), ord("\n"), dtype=np.uint8)
            lines[:, :LINE] = text[: full * LINE].reshape(full, LINE)
            handle.write(f">chr{index + 1}\n".encode() + lines.tobytes())
            if tail:
                handle.write(text[full * LINE :].tobytes() + b"\n")
    return path


def load_model(name: str) -> MambaForSequenceClassification:
    """A classifier directory, or a preset with random weights and the four great-ape labels."""
    from genossm.classification.checkpoints import load_classifier

    if Path(name).is_dir():
        return load_classifier(name)
    model = MambaForSequenceClassification(model_config(name), ["chimpanzee", "gorilla", "human", "orangutan"])
    model.tokens = list(TOKENS)
    return model


def run(opts: ClassifyBenchOptions) -> list[dict[str, object]]:
    """Time reading alone, then every length and mode; print the table and return its rows."""
    from genossm.classification.infer import PIECE, WindowReader
    from genossm.data.stream import fasta_chunks

    device = pick_device(opts.device)
    fasta = opts.fasta or benchmark_fasta(opts.sample, opts.megabases)
    model = load_model(opts.model)
    params = sum(p.numel() for p in model.parameters())
    start = time.perf_counter()
    bases = sum(len(c.tokens) for c in fasta_chunks(fasta))
    read_s = time.perf_counter() - start
    rows: list[dict[str, object]] = [
        {
            "mode": "read only",
            "seqlen": 0,
            "piece": 0,
            "bases": bases,
            "windows": 0,
            "batch_tokens": 0,
            "seconds": read_s,
            "Mb_per_s": bases / read_s / 1e6,
        }
    ]
    bfloat16 = None if opts.dtype == "auto" else opts.dtype == "bfloat16"
    seqlens = [int(s) for s in opts.seqlen.split(",")]
    pieces = [int(p) for p in opts.piece.split(",")] if opts.piece else [None]
    for seqlen, mode, piece in itertools.product(seqlens, opts.modes.split(","), pieces):
        engine = WindowReader(
            model, window=seqlen, stateful=mode == "stateful", batch_tokens=opts.batch_tokens, device=device,
            bfloat16=bfloat16, piece=piece or PIECE,
        )  # fmt: skip
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        records = list(engine.predict(fasta_chunks(fasta)))
        seconds = time.perf_counter() - start
        row = {
            "mode": mode,
            "seqlen": seqlen,
            "piece": engine.piece,
            "bases": sum(r.length for r in records),
            "windows": sum(r.used for r in records),
            "batch_tokens": engine.batch_tokens,
            "seconds": seconds,
            "Mb_per_s": bases / seconds / 1e6,
        }
        if device.type == "cuda":
            row["peak_GiB"] = torch.cuda.max_memory_allocated(device) / 2**30
        rows.append(row)
    print(
        f"genossm classify on {device} ({opts.dtype}): {fasta} ({bases / 1e6:.1f} Mb), {opts.model} ({params:,} params)"
    )
    print(format_table(rows))
    if opts.out:
        meta = {
            "device": str(device),
            "dtype": opts.dtype,
            "model": opts.model,
            "parameters": params,
            "fasta": str(fasta),
        }
        write_json(rows, opts.out / "classify.json", **meta)
        timed = [r for r in rows if r["seqlen"]]
        if len({r["seqlen"] for r in timed}) > 1:
            plot_lines(
                timed, "seqlen", "Mb_per_s", "mode", opts.out / "classify.png",
                title=f"genossm classify, {opts.model} on {device}", ylabel="Mb per second",
            )  # fmt: skip
    return rows
