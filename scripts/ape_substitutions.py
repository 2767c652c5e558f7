"""Do zero-shot variant scores tell real substitutions from random ones? The chimpanzee-derived substitutions of the
held-out part of human chr22 against random alleles at the same positions.

    python scripts/ape_substitutions.py build --maf great_apes_chr22.epo.maf.gz --apes /tmp/apes --out /tmp/subs
    genossm score-variants /tmp/apes/Hsap.fa /tmp/subs/chimp.vcf --model M --output /tmp/subs/M-1024-chimp.tsv
    genossm score-variants /tmp/apes/Hsap.fa /tmp/subs/random.vcf --model M --output /tmp/subs/M-1024-random.tsv
    python scripts/ape_substitutions.py summarize --apes /tmp/apes --scores /tmp/subs --out results/runs/variants

``build`` reads the alignment's columns where all four apes have a base and human, gorilla and orangutan agree
while chimpanzee differs (a substitution on the chimpanzee lineage; human holds the ancestral base), inside the
test block of the human FASTA that ``genossm data maf2fasta`` wrote (the last 5%, never trained on). It writes
``chimp.vcf`` (human base -> chimpanzee base) and ``random.vcf`` (the same positions, a base that is neither).
``summarize`` compares the log-likelihood ratios of each ``<model>-<window>-chimp.tsv`` with its random twin, in
all and by the class of the substitution (CpG transitions, other transitions, transversions), site by site, and
writes ``summary.json`` and a table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from genossm.data.genome import Genome
from genossm.data.intervals import split_by_region
from genossm.data.maf import iter_maf_blocks
from genossm.fileio import atomic_write_text

APES = ("Hsap", "Ptro", "Ggor", "Ppyg")
BASES = np.frombuffer(b"ACGT", dtype=np.uint8)
TRANSITIONS = ({"A", "G"}, {"C", "T"})


def block_starts(bed: Path) -> dict[int, int]:
    """Block number -> where its human bases start in the human FASTA (maf2fasta's block BED)."""
    starts: dict[int, int] = {}
    for line in bed.read_text().splitlines():
        if not line.startswith("#"):
            fields = line.split("\t")
            starts.setdefault(int(fields[6]), int(fields[1]))
    return starts


def chimp_substitutions(maf: Path, apes: Path) -> list[tuple[str, int, str, str]]:
    """(record, 0-based position in the human FASTA, human base, chimpanzee base) in the test block."""
    genome = Genome(apes / "Hsap.fa")
    test = {i.chrom: i for i in split_by_region(genome.lengths) if i.split == "test"}
    starts = block_starts(apes / "Hsap.bed")
    found = []
    for block in iter_maf_blocks(maf):
        rows = {s: [r for r in block.rows if r.species == s] for s in APES}
        if block.index not in starts or any(len(r) != 1 for r in rows.values()):
            continue
        human = rows["Hsap"][0]
        region = test[human.sequence_name]
        first = starts[block.index]
        if first + human.size <= region.start:
            continue
        cols = np.stack([np.frombuffer(rows[s][0].text.upper(), dtype=np.uint8) for s in APES])
        position = first + np.cumsum(cols[0] != ord("-")) - 1
        chimp = np.isin(cols, BASES).all(0) & (cols[0] == cols[2]) & (cols[0] == cols[3]) & (cols[1] != cols[0])
        for j in np.flatnonzero(chimp & (position >= region.start)):
            found.append((region.chrom, int(position[j]), chr(cols[0, j]), chr(cols[1, j])))
    return found


def build(args: argparse.Namespace) -> None:
    subs = chimp_substitutions(args.maf, args.apes)
    rng = np.random.default_rng(0)
    args.out.mkdir(parents=True, exist_ok=True)
    header = "#CHROM\tPOS\tID\tREF\tALT\n"
    chimp = [f"{c}\t{p + 1}\t.\t{ref}\t{alt}\n" for c, p, ref, alt in subs]
    other = [rng.choice([b for b in "ACGT" if b not in (ref, alt)]) for _, _, ref, alt in subs]
    random = [f"{c}\t{p + 1}\t.\t{ref}\t{o}\n" for (c, p, ref, _), o in zip(subs, other, strict=True)]
    atomic_write_text(args.out / "chimp.vcf", header + "".join(chimp))
    atomic_write_text(args.out / "random.vcf", header + "".join(random))
    print(f"{len(subs):,} chimpanzee-derived substitutions in the held-out block -> {args.out}")


def read_scores(path: Path) -> tuple[list[list[str]], np.ndarray]:
    rows = [line.split("\t") for line in path.read_text().splitlines()[1:]]
    return rows, np.array([float(r[5]) for r in rows])


def classes(rows: list[list[str]], genome: Genome) -> dict[str, np.ndarray]:
    """Masks of CpG transitions (C of a CpG to T, or its G to A), other transitions, and transversions."""
    transition = np.array([{r[3], r[4]} in TRANSITIONS for r in rows])
    cpg = []
    for r in rows:
        pos = int(r[1]) - 1
        start = max(0, pos - 1)
        context, at = genome.fetch_bytes(r[0], start, pos + 2).upper().decode(), pos - start
        cpg.append(context[at : at + 2] == "CG" or (at > 0 and context[at - 1 : at + 1] == "CG"))
    cpg = np.array(cpg)
    return {"CpG transitions": transition & cpg, "other transitions": transition & ~cpg, "transversions": ~transition}


def paired(chimp: np.ndarray, random: np.ndarray) -> dict[str, float]:
    """Mean (and its standard error) of the chimpanzee allele's ratio minus the random allele's, site by site, and
    the chimpanzee allele's mean ratio."""
    diff = chimp - random
    se = float(diff.std(ddof=1) / np.sqrt(len(diff)))
    return {"n": len(diff), "diff": float(diff.mean()), "se": se, "chimp_llr": float(chimp.mean())}


def summarize(args: argparse.Namespace) -> None:
    genome = Genome(args.apes / "Hsap.fa")
    summary = []
    for chimp_path in sorted(args.scores.glob("*-chimp.tsv")):
        label = chimp_path.name.removesuffix("-chimp.tsv")
        rows, chimp = read_scores(chimp_path)
        _, random = read_scores(chimp_path.with_name(f"{label}-random.tsv"))
        entry = {
            "run": label,
            "chimp_llr": float(chimp.mean()),
            "random_llr": float(random.mean()),
            "chimp_higher": float(np.mean(chimp > random)),
            "all": paired(chimp, random),
        }
        # by the class of the substitution that happened (the random allele at the same sites)
        entry |= {name: paired(chimp[mask], random[mask]) for name, mask in classes(rows, genome).items()}
        summary.append(entry)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "summary.json", json.dumps(summary, indent=1) + "\n")
    names = ("all", "CpG transitions", "other transitions", "transversions")
    lines = [
        "| run | chimp allele | random allele | " + " | ".join(f"paired, {n} ({summary[0][n]['n']:,})" for n in names)
        + " |",
        "| --- | ---: | ---: |" + " --- |" * len(names),
    ]  # fmt: skip
    for e in summary:
        cells = [f"{e[n]['diff']:+.3f} +- {e[n]['se']:.3f}" for n in names]
        lines.append(f"| {e['run']} | {e['chimp_llr']:.3f} | {e['random_llr']:.3f} | " + " | ".join(cells) + " |")
    atomic_write_text(args.out / "table.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="step", required=True)
    b = sub.add_parser("build", help="write chimp.vcf and random.vcf")
    b.add_argument("--maf", type=Path, required=True)
    b.add_argument("--apes", type=Path, required=True, help="the folder genossm data maf2fasta wrote")
    b.add_argument("--out", type=Path, required=True)
    s = sub.add_parser("summarize", help="compare the scores of the two VCFs")
    s.add_argument("--apes", type=Path, required=True)
    s.add_argument("--scores", type=Path, required=True, help="folder of <model>-<window>-{chimp,random}.tsv")
    s.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.step == "build":
        build(args)
    else:
        summarize(args)


if __name__ == "__main__":
    main()
