"""A sequence-level task from real annotation: is a read from a repeat or from unique sequence?

UCSC's and Ensembl's genomes mark repeats (RepeatMasker, Tandem Repeats Finder) in lower case. This script tiles a
soft-masked FASTA into consecutive reads of 100-250 bases and labels a read ``repeat`` when at least 90% of its
bases are lower case and ``unique`` when at most 10% are (reads in between, and reads with N, are left out). The
reads are written in upper case, so the label is not visible in the sequence the model reads, as one FASTA per class
with a BED per class that holds out the reads of the last 10% of each record (region-disjoint, not shuffled; other
copies of a repeat family are of course on both sides), both classes equally represented in each split. Then

    python scripts/repeat_reads.py build data/human_chr22_excerpt.fa.gz runs/repeat-reads
    genossm finetune --classes runs/repeat-reads/classes.tsv --examples records --seqlen 256 --output runs/rr-a ...
    python scripts/repeat_reads.py summarize runs/rr-a runs/rr-b --out table.md   # held-out metrics of each run
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from genossm.bench.report import markdown_table
from genossm.data.genome import Genome

MIN_READ, MAX_READ = 100, 250
PURE = 0.9  # share of lower-case (repeat) or upper-case (unique) bases a read needs for its label
HELDOUT = 0.1  # the last share of every record


def records(path: Path) -> dict[str, bytes]:
    """Every record of a FASTA file (plain, gzip or bgzip), case kept."""
    genome = Genome(path)
    return {name: genome.fetch_bytes(name, 0, length) for name, length in genome.lengths.items()}


def labelled_reads(name: str, seq: bytes, rng: np.random.Generator) -> list[tuple[str, int, int, bytes]]:
    """(label, start, end, upper-case bases) of the labelled reads tiling one record."""
    codes = np.frombuffer(seq, dtype=np.uint8)
    lower = np.isin(codes, np.frombuffer(b"acgt", dtype=np.uint8))
    base = lower | np.isin(codes, np.frombuffer(b"ACGT", dtype=np.uint8))
    reads, start = [], 0
    while start + MAX_READ <= len(seq):
        end = start + int(rng.integers(MIN_READ, MAX_READ + 1))
        if base[start:end].all():
            share = lower[start:end].mean()
            label = "repeat" if share >= PURE else "unique" if share <= 1 - PURE else None
            if label:
                reads.append((label, start, end, seq[start:end].upper()))
        start = end
    return reads


def evenly(items: list, n: int) -> list:
    """``n`` of ``items`` spread evenly over the list (all of them when there are not more)."""
    if len(items) <= n:
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int).tolist()]


def write_classes(
    fasta: Path, out: Path, per_class: int, seed: int, train_per_class: int | None = None
) -> dict[str, dict[str, int]]:
    """Write OUT/<label>.fa, OUT/<label>.bed (split column) and OUT/classes.tsv, with as many reads of each label in
    each split (at most ``per_class`` in all, and at most ``train_per_class`` training reads: the same held-out reads
    with fewer labelled ones); returns the reads per label and split."""
    rng = np.random.default_rng(seed)
    reads = []
    for name, seq in records(fasta).items():
        cut = round(len(seq) * (1 - HELDOUT))
        reads += [(label, name, s, e, bases, "test" if s >= cut else "train")
                  for label, s, e, bases in labelled_reads(name, seq, rng)]  # fmt: skip
    labels = ("repeat", "unique")
    chosen: dict[str, list] = {label: [] for label in labels}
    for split, share in (("train", 1 - HELDOUT), ("test", HELDOUT)):
        pools = {label: [r for r in reads if r[0] == label and r[5] == split] for label in labels}
        n = min(round(per_class * share), *(len(pool) for pool in pools.values()))
        if split == "train" and train_per_class is not None:
            n = min(n, train_per_class)
        for label in labels:
            chosen[label] += evenly(pools[label], n)
    out.mkdir(parents=True, exist_ok=True)
    for label in labels:
        with open(out / f"{label}.fa", "w") as fa, open(out / f"{label}.bed", "w") as bed:
            for _, name, s, e, bases, split in chosen[label]:
                read = f"{name}:{s}-{e}"
                fa.write(f">{read}\n{bases.decode()}\n")
                bed.write(f"{read}\t0\t{e - s}\t{split}\n")
    (out / "classes.tsv").write_text("".join(f"{label}\t{label}.fa\t{label}.bed\n" for label in labels))
    splits = ("train", "test")
    return {label: {split: sum(r[5] == split for r in chosen[label]) for split in splits} for label in labels}


def with_interval(metrics: dict) -> str:
    """Accuracy with its 95% interval, as text."""
    return f"{metrics['accuracy']:.3f} ({metrics['accuracy_low']:.3f}-{metrics['accuracy_high']:.3f})"


def summary_rows(runs: list[Path]) -> list[dict[str, object]]:
    """One table row per finished fine-tuning run (named by its folder): the model's and the k-mer baseline's held-out
    metrics (accuracy with its 95% interval, macro-F1) and the training time."""
    rows = []
    for run in runs:
        summary = json.loads((run / "summary.json").read_text())
        model, kmer = summary["model"], summary["kmer"]
        rows.append({
            "run": run.name,
            "steps": summary["steps"],
            "held-out reads": model["windows"],
            "accuracy (95% CI)": with_interval(model),
            "macro-F1": round(model["macro_f1"], 3),
            f"{kmer['k']}-mer baseline": with_interval(kmer),
            "train s": round(summary["train_seconds"]),
        })  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="write the two classes of reads and classes.tsv")
    build.add_argument("fasta", type=Path, help="a soft-masked FASTA (lower case = repeats)")
    build.add_argument("out", type=Path, help="folder for the class files and classes.tsv")
    build.add_argument("--per-class", type=int, default=10_000, help="at most this many reads per class")
    build.add_argument("--train-per-class", type=int, help="at most this many of them to train on (few labels)")
    build.add_argument("--seed", type=int, default=0, help="seed of the read lengths")
    summarize = commands.add_parser("summarize", help="a markdown table of finished genossm finetune runs")
    summarize.add_argument("runs", type=Path, nargs="+", help="run folders (OUTPUT of genossm finetune)")
    summarize.add_argument("--out", type=Path, help="also write the table here")
    args = parser.parse_args()
    if args.command == "build":
        written = write_classes(args.fasta, args.out, args.per_class, args.seed, args.train_per_class)
        for label, splits in written.items():
            print(f"{label}: {splits['train']:,} train reads, {splits['test']:,} held-out reads")
        return
    table = markdown_table(summary_rows(args.runs))
    print(table)
    if args.out:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
