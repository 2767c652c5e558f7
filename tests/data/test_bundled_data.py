"""The real sample in data/: checksums as documented, size budget, and it loads."""

import hashlib
import re

import pytest
from fasta_files import REPO

from genossm.data.datamodules import GenomeLMDataModule, SpeciesDataModule
from genossm.data.genome import Genome
from genossm.data.lm import LMDataConfig
from genossm.data.species import SpeciesDataConfig

DATA = REPO / "data"


def documented_files() -> dict[str, str]:
    rows = re.findall(r"^\| `([^`]+)` \| [\d,]+ \| `([0-9a-f]{64})` \|$", (DATA / "README.md").read_text(), re.M)
    return dict(rows)


def test_readme_checksums_match_and_cover_every_file():
    documented = documented_files()
    shipped = {
        str(p.relative_to(DATA))
        for p in DATA.rglob("*")
        if p.is_file() and p.name != "README.md" and not p.name.endswith((".fai", ".gzi"))
    }
    assert set(documented) == shipped
    for name, digest in documented.items():
        assert hashlib.sha256((DATA / name).read_bytes()).hexdigest() == digest, name


def test_sample_fits_the_size_budget():
    assert sum(p.stat().st_size for p in DATA.rglob("*") if not p.name.endswith((".fai", ".gzi"))) < 15e6


def test_pretraining_excerpt_loads(cache):
    genome = Genome(DATA / "human_chr22_excerpt.fa.gz", cache_dir=cache)
    assert genome.names == ["chr22"] and 3.9e6 < genome.length("chr22") < 4.1e6
    data = GenomeLMDataModule(
        LMDataConfig(fasta=genome.path, seqlen=1024, tokens_per_step=4096, valid_items=1, cache_dir=cache)
    )
    data.setup()
    assert data.train_dataset[0]["input_ids"].shape == (1, 4, 1024)


def test_apes_manifest_loads_with_aligned_splits(cache):
    data = SpeciesDataModule(SpeciesDataConfig(classes=DATA / "apes" / "manifest.tsv", seqlen=1024, cache_dir=cache))
    assert data.classes == ["chimpanzee", "gorilla", "human", "orangutan"]
    bed_rows = [(DATA / "apes" / f"{c}.bed").read_text().split() for c in data.classes]
    assert all(rows[3::4] == ["train", "test"] for rows in bed_rows)
    train_sizes = [int(rows[2]) for rows in bed_rows]
    assert max(train_sizes) - min(train_sizes) < 0.01 * max(train_sizes)  # the same aligned blocks
    assert data.train_dataset[0]["labels"].numel() == 64


@pytest.mark.parametrize("name", ["apes/human.bed", "apes/manifest.tsv"])
def test_small_text_files_are_tab_separated(name):
    assert all("\t" in line for line in (DATA / name).read_text().splitlines())
