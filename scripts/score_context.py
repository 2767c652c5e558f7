"""How much context pretrained language models use: bits per base of held-out DNA read in windows of 2^10 ... 2^20
bases (each from a zero state) and whole (the state carried through the region), for several models.

    python scripts/score_context.py --fasta /tmp/apes/Hsap.fa --model L1K=runs/scale-length/seqlen-1024/model \
        --model L1M=runs/scale-length/seqlen-1048576/model --out results/runs/score-context

The held-out regions are the valid and test blocks of every record (the last 10%, as ``genossm pretrain`` splits a
FASTA without a BED). Writes ``rows.json`` (one row per model, split and window), ``table.md`` and ``context.png``;
``--from-rows rows.json`` redraws the table and plot without scoring.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from generation_study import model_spec

from genossm.bench.report import markdown_table, plot_lines
from genossm.data.genome import Genome
from genossm.data.intervals import split_by_region
from genossm.data.stream import region_chunks
from genossm.fileio import atomic_write_text
from genossm.scoring import LikelihoodScorer, load_language_model
from genossm.scoring.likelihood import SequenceScore

WINDOWS = [2**k for k in range(10, 21, 2)]
SPLITS = ("valid", "test")


def score_rows(fasta: Path, models: dict[str, Path]) -> list[dict]:
    """One row per model, held-out split and window (None: whole regions)."""
    regions = split_by_region(Genome(fasta).lengths)
    rows = []
    for label, path in models.items():
        model = load_language_model(path)
        for split in SPLITS:
            chosen = [r for r in regions if r.split == split]
            for window in [*WINDOWS, None]:
                totals = SequenceScore(split)
                for score in LikelihoodScorer(model, window=window).score(region_chunks(fasta, chosen)):
                    totals.include(score)
                rows.append(
                    {"model": label, "split": split, "window": window, "bases": totals.scored,
                     "bits_per_base": totals.bits_per_base}
                )  # fmt: skip
                print(f"{label} {split} {window or 'whole'}: {totals.bits_per_base:.4f} bits per base", flush=True)
    return rows


def table(rows: list[dict]) -> str:
    """Markdown: a row per model and split, a column per window."""
    table_rows = []
    for model, split in dict.fromkeys((r["model"], r["split"]) for r in rows):
        bits = {r["window"]: r["bits_per_base"] for r in rows if (r["model"], r["split"]) == (model, split)}
        columns = {f"2^{w.bit_length() - 1}" if w else "whole": w for w in [*WINDOWS, None]}
        table_rows.append({"model": model, "held out": split,
                      **{c: f"{bits[w]:.4f}" if w in bits else "" for c, w in columns.items()}})  # fmt: skip
    return markdown_table(table_rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fasta", type=Path, help="the FASTA the models were pretrained on")
    parser.add_argument(
        "--model", type=model_spec, action="append", default=[], help="LABEL=DIR of a language model (repeat)"
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for rows.json, table.md and context.png")
    parser.add_argument("--from-rows", type=Path, help="redraw from this rows.json instead of scoring")
    args = parser.parse_args()
    if args.from_rows:
        rows = json.loads(args.from_rows.read_text())
    else:
        if args.fasta is None or not args.model:
            parser.error("--fasta and at least one --model are needed to score")
        rows = score_rows(args.fasta, dict(args.model))
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "rows.json", json.dumps(rows, indent=1) + "\n")
    atomic_write_text(args.out / "table.md", table(rows))
    windowed = [{**r, "series": f"{r['model']}, {r['split']}"} for r in rows if r["window"] is not None]
    plot_lines(
        windowed, "window", "bits_per_base", "series", args.out / "context.png",
        title="Held-out bits per base against the context a window gives (each window from a zero state)",
        xlabel="window (bases)", ylabel="bits per base",
    )  # fmt: skip
    print(table(rows), end="")


if __name__ == "__main__":
    main()
