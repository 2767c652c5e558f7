"""``genossm data``: genome data preparation — MAF to FASTA, labelled tables to class FASTAs, downloads, FASTA
indexes."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genossm.cli.options import add_options, option, resolve_options
from genossm.data.download import RECIPES


@dataclass
class Maf2FastaOptions:
    """Options of ``genossm data maf2fasta``."""

    alignment: Path = option(help="MAF alignment, plain or gzip")
    out_dir: Path = option(help="folder for <species>.fa (plain FASTA) and <species>.bed (where each block landed)")
    reference: str | None = option(None, "reference species (default: the species of the first row)")
    force: bool = option(False, "replace existing output files")


@dataclass
class Table2FastaOptions:
    """Options of ``genossm data table2fasta``."""

    table: Path = option(
        help="CSV or TSV table (by extension, optionally .gz) with a header: a sequence and label a row"
    )
    out_dir: Path = option(help="folder for <label>.fa, <label>.bed (with --split) and classes.tsv")
    sequence: str = option("sequence", "column of the sequences")
    label: str = option("label", "column of the labels (each becomes a file name)")
    split: str | None = option(None, "column of each row's split (train / test), written as BED beside each FASTA")
    name: str | None = option(None, "column of record names (default: <label>_<line>)")
    force: bool = option(False, "replace existing output files")


@dataclass
class DownloadOptions:
    """Options of ``genossm data download``."""

    name: str = option(help=f"what to download: {', '.join(RECIPES)}")
    out: Path = option(Path("genomes"), "download folder")
    mirror: str | None = option(None, "fetch from this host instead (same paths), e.g. a local mirror of UCSC")


@dataclass
class IndexOptions:
    """Options of ``genossm data index``."""

    fasta: Path = option(help="FASTA file, plain, gzip or bgzip")
    cache_dir: Path | None = option(None, "where the index goes when the FASTA folder is read-only")


def maf2fasta(opts: Maf2FastaOptions) -> None:
    from genossm.bench.timing import format_table
    from genossm.data.maf import maf_to_fasta

    outputs = maf_to_fasta(opts.alignment, opts.out_dir, opts.reference, opts.force)
    rows = [{"species": s, "bases": o.bases, "blocks": o.blocks, "fasta": str(o.fasta)} for s, o in outputs.items()]
    print(format_table(rows))


def table2fasta(opts: Table2FastaOptions) -> None:
    from genossm.bench.timing import format_table
    from genossm.data.labelled_table import MANIFEST, table_to_classes

    written = table_to_classes(opts.table, opts.out_dir, opts.sequence, opts.label, opts.split, opts.name, opts.force)
    rows = [
        {
            "label": tag,
            **{split or "records": n for split, n in sorted(f.records.items(), key=str)},
            "fasta": str(f.fasta),
        }
        for tag, f in written.items()
    ]
    print(format_table(rows))
    print(f"genossm finetune --classes {opts.out_dir / MANIFEST} --examples records ...")


def download(opts: DownloadOptions) -> None:
    from genossm.data.download import run_recipe

    for path in run_recipe(opts.name, opts.out, opts.mirror):
        print(path)


def index(opts: IndexOptions) -> None:
    from genossm.bench.timing import format_table
    from genossm.data.genome import Genome

    genome = Genome(opts.fasta, opts.cache_dir)
    print(format_table([{"record": name, "length": n} for name, n in genome.lengths.items()]))


# name -> (options class, positional fields, help, function)
SUBCOMMANDS: dict[str, tuple[type, tuple[str, ...], str, Callable[[Any], None]]] = {
    "maf2fasta": (
        Maf2FastaOptions,
        ("alignment", "out_dir"),
        "MAF alignment -> one ungapped FASTA and block BED per species",
        maf2fasta,
    ),
    "table2fasta": (
        Table2FastaOptions,
        ("table", "out_dir"),
        "labelled sequences (CSV / TSV) -> one FASTA per label, for genossm finetune --examples records",
        table2fasta,
    ),
    "download": (DownloadOptions, ("name",), "download hg38 (+ HyenaDNA splits) or great-ape genomes", download),
    "index": (IndexOptions, ("fasta",), "build a FASTA file's index and list its records", index),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="what", metavar="WHAT", required=True)
    for name, (options, positional, text, _) in SUBCOMMANDS.items():
        add_options(sub.add_parser(name, help=text, description=text), options, positional)


def run(args: argparse.Namespace) -> None:
    options, _, _, function = SUBCOMMANDS[args.what]
    function(resolve_options(options, args))
