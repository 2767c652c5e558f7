"""Build the bundled real-data sample in data/ from the great-ape chr22 alignment (see data/README.md).

    python scripts/build_sample_data.py [--source ../shared/data] [--out data]

Writes bgzip FASTA files (deterministic bytes: fixed zlib level, zero timestamps), BED files of the
classification splits, a manifest, and data/README.md with the SHA-256 of every file.
"""

from __future__ import annotations

import argparse
import hashlib
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from Bio.bgzf import BgzfWriter

from genossm.data.faidx import FastaWriter
from genossm.data.fasta import BGZF_EOF
from genossm.data.maf import MafBlock, MafRow, iter_maf_blocks
from genossm.fileio import atomic_open, atomic_write_text

ALIGNMENT = "great_apes_chr22.epo.maf.gz"
SPECIES = {"Hsap": "human", "Ptro": "chimpanzee", "Ggor": "gorilla", "Ppyg": "orangutan"}
# (first hg19 chr22 position, human bases) of each excerpt: whole alignment blocks from that position on
LM_REGION = (20_000_000, 4_000_000)
TRAIN_REGION = (30_000_000, 3_000_000)
TEST_REGION = (40_000_000, 1_000_000)


@dataclass
class Region:
    """Consecutive alignment blocks covering about ``bases`` human bases from hg19 chr22 position ``first``."""

    first: int
    bases: int
    blocks: list[MafBlock]

    def human_span(self) -> str:
        rows = [human_row(b) for b in self.blocks]
        return f"hg19 chr22:{rows[0].start + 1:,}-{rows[-1].start + rows[-1].size:,}"

    def human_bases(self) -> int:
        return sum(human_row(b).size for b in self.blocks)

    def bases_of(self, species: str) -> bytes:
        return b"".join(r.ungapped() for b in self.blocks for r in b.rows if r.species == species)


def human_row(block: MafBlock) -> MafRow:
    return next(r for r in block.rows if r.species == "Hsap")


def select_regions(maf: Path, wanted: Iterable[tuple[int, int]]) -> list[Region]:
    """Blocks in file order (which is human order: checked) from each region's first position on."""
    regions = [Region(first, bases, []) for first, bases in wanted]
    have = [0] * len(regions)
    last = -1
    for block in iter_maf_blocks(maf):
        human = human_row(block)
        assert human.start > last, f"{maf}: block {block.index} is out of human order"
        last = human.start
        for i, region in enumerate(regions):
            if human.start >= region.first and have[i] < region.bases:
                assert sorted(r.species for r in block.rows) == sorted(SPECIES), f"block {block.index}: species"
                region.blocks.append(block)
                have[i] += human.size
    return regions


def write_bgzip_fasta(path: Path, name: str, description: str, bases: bytes) -> None:
    buffer = io.BytesIO()
    compressed = BgzfWriter(fileobj=buffer, compresslevel=9)
    writer = FastaWriter(compressed)
    writer.start(name, description)
    writer.write(bases)
    writer.finish()
    compressed.flush()
    with atomic_open(path, "wb") as out:
        out.write(buffer.getvalue() + BGZF_EOF)


def build(source: Path, out: Path) -> list[Path]:
    maf = source / ALIGNMENT
    lm, train, test = select_regions(maf, [LM_REGION, TRAIN_REGION, TEST_REGION])
    files = []
    lm_path = out / "human_chr22_excerpt.fa.gz"
    write_bgzip_fasta(lm_path, "chr22", f"{lm.human_span()} (aligned blocks only)", lm.bases_of("Hsap"))
    files.append(lm_path)
    apes = out / "apes"
    manifest = []
    for tag, species in SPECIES.items():
        train_bases, test_bases = train.bases_of(tag), test.bases_of(tag)
        fasta = apes / f"{species}.fa.gz"
        description = f"{tag} rows aligned to {train.human_span()} then {test.human_span()}"
        write_bgzip_fasta(fasta, "chr22", description, train_bases + test_bases)
        bed = apes / f"{species}.bed"
        end = len(train_bases) + len(test_bases)
        atomic_write_text(bed, f"chr22\t0\t{len(train_bases)}\ttrain\nchr22\t{len(train_bases)}\t{end}\ttest\n")
        manifest.append(f"{species}\t{fasta.name}\t{bed.name}\n")
        files += [fasta, bed]
    atomic_write_text(apes / "manifest.tsv", "".join(manifest))
    files.append(apes / "manifest.tsv")
    write_readme(out, files, lm, train, test, source)
    return files


def write_readme(out: Path, files: list[Path], lm: Region, train: Region, test: Region, source: Path) -> None:
    sums = "\n".join(
        f"| `{p.relative_to(out)}` | {p.stat().st_size:,} | `{hashlib.sha256(p.read_bytes()).hexdigest()}` |"
        for p in files
    )
    atomic_write_text(
        out / "README.md",
        README.format(
            lm_span=lm.human_span(),
            lm_blocks=len(lm.blocks),
            lm_bases=lm.human_bases(),
            train_span=train.human_span(),
            train_blocks=len(train.blocks),
            test_span=test.human_span(),
            test_blocks=len(test.blocks),
            sums=sums,
        ),
    )


README = """# Bundled real data

Small real samples for demos and tests, built by `python scripts/build_sample_data.py --source ../shared/data`
from `great_apes_chr22.epo.maf.gz`: the Ensembl Compara EPO alignment of human (Hsap), chimpanzee (Ptro),
gorilla (Ggor) and orangutan (Ppyg) over part of human chromosome 22 (hg19 17.4-51.2 Mb), as shipped in the example
data of MafFilter (Debian package maffilter-examples; alignment sha256
f0b90e62f4a1e640c066734bdc9ff60717f1b9815c962e3ce71171d75d396c41). Ensembl data is free to use.

Each file holds the ungapped rows of whole alignment blocks, concatenated in human order: the bases between
aligned blocks are not there, so a record is a chain of aligned pieces rather than a contiguous chromosome.
Files are bgzip-compressed FASTA (read in place by `genossm.data.Genome`), 60 bases a line; rebuilding gives the same
bytes.

- `human_chr22_excerpt.fa.gz` — pretraining demos: record `chr22`, the human rows of {lm_blocks:,} blocks from
  {lm_span} ({lm_bases:,} bases). Without a BED, the loaders split it 90/5/5 into train/valid/test.
- `apes/<species>.fa.gz` — species classification demo (human, chimpanzee, gorilla, orangutan): record `chr22`,
  each species' rows of the same blocks: {train_blocks:,} blocks from {train_span} (train), then
  {test_blocks:,} blocks from {test_span} (test). `apes/<species>.bed` marks the two regions (`train` / `test`;
  the boundary is the same block in every species) and `apes/manifest.tsv` ties them together
  (`SpeciesDataConfig(classes="data/apes/manifest.tsv")`).

| file | bytes | sha256 |
| --- | ---: | --- |
{sums}
"""


def main() -> None:
    repo = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=repo.parent / "shared" / "data", help="folder of the alignment")
    parser.add_argument("--out", type=Path, default=repo / "data", help="output folder")
    args = parser.parse_args()
    for path in build(args.source, args.out):
        print(f"{path}  {path.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
