"""MAF -> one ungapped FASTA per species: small alignments made here, and the real great-ape alignment."""

import gzip
import itertools

import numpy as np
import pytest
from Bio import AlignIO
from fasta_files import SHARED

from genossm.cli.main import main
from genossm.data.genome import Genome
from genossm.data.maf import iter_maf_blocks, maf_to_fasta

MAF = """##maf version=1
# blocks out of reference order; Ggor missing from one block; a minus-strand row; two Ptro rows in one block
a score=1
s Hsap.22 100 6 + 1000 ACG-TTA
s Ptro.22  50 7 + 900  ACGGTTA
s Ggor.1   10 5 - 800  AC--TTA

a score=2
s Hsap.22  10 4 + 1000 GG-CC
s Ptro.22   5 4 + 900  GGT-C
s Ptro.7    0 2 + 300  ---GC

a
s Hsap.21  0 3 + 500 AAA
s Ggor.2   0 3 + 500 AAT
"""


def read_fasta(path):
    genome = Genome(path)
    return {name: genome.fetch_bytes(name, 0, n).decode() for name, n in genome.lengths.items()}


def test_small_alignment(tmp_path, cache):
    maf = tmp_path / "a.maf.gz"
    maf.write_bytes(gzip.compress(MAF.encode()))
    outputs = maf_to_fasta(maf, tmp_path / "out")
    assert sorted(outputs) == ["Ggor", "Hsap", "Ptro"]
    # records follow the reference sequences in first-seen order (22, then 21); blocks by reference start
    assert read_fasta(outputs["Hsap"].fasta) == {"22": "GGCC" + "ACGTTA", "21": "AAA"}
    assert read_fasta(outputs["Ptro"].fasta) == {"22": "GGTC" + "GC" + "ACGGTTA"}
    assert read_fasta(outputs["Ggor"].fasta) == {"22": "ACTTA", "21": "AAT"}
    bed = outputs["Ptro"].bed.read_text().splitlines()
    assert bed[1:] == [
        "22\t0\t4\tPtro.22:5-9\t0\t+\t1",
        "22\t4\t6\tPtro.7:0-2\t0\t+\t1",
        "22\t6\t13\tPtro.22:50-57\t0\t+\t0",
    ]
    assert outputs["Ggor"].bed.read_text().splitlines()[1] == "22\t0\t5\tGgor.1:10-15\t0\t-\t0"
    assert outputs["Ptro"].bases == 13 and outputs["Ptro"].blocks == 3


def test_reference_choice_and_skipped_blocks(tmp_path):
    maf = tmp_path / "a.maf"
    maf.write_text(MAF)
    with pytest.warns(UserWarning, match=r"skipped 1 block\(s\) without a row of the reference species"):
        outputs = maf_to_fasta(maf, tmp_path / "out", reference="Ptro")
    assert read_fasta(outputs["Ptro"].fasta) == {"22": "GGTC" + "GC" + "ACGGTTA"}
    assert read_fasta(outputs["Ggor"].fasta) == {"22": "ACTTA"}


def test_existing_outputs_are_never_overwritten(tmp_path, capsys):
    maf = tmp_path / "a.maf"
    maf.write_text(MAF)
    out = tmp_path / "out"
    out.mkdir()
    (out / "Hsap.fa").write_text("mine")
    assert main(["data", "maf2fasta", str(maf), str(out)]) == 1
    err = capsys.readouterr().err
    assert "not overwriting" in err and "Hsap.fa" in err and "--force" in err and "Traceback" not in err
    assert (out / "Hsap.fa").read_text() == "mine" and not (out / "Ptro.fa").exists()
    assert main(["data", "maf2fasta", str(maf), str(out), "--force"]) == 0
    assert (out / "Hsap.fa").read_text().startswith(">22")
    assert not list(out.glob(".maf2fasta-*"))  # scratch files removed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a\ns Hsap.1 0 3 + 10 ACGT\n", r"line 2: row Hsap.1 has size 3 but 4 ungapped bases"),
        ("a\ns Hsap.1 0 3 + 10 ACG\ns Ptro.1 0 2 + 10 AC\n", r"line 3: row Ptro.1 has 2 alignment columns"),
        ("a\ns Hsap.1 0 3 + 10\n", r"line 2: an 's' line has 7 fields"),
        ("a\ns Hsap.1 x 3 + 10 ACG\n", r"line 2: start, size and srcSize must be integers"),
        ("a\ns Hsap.1 0 3 * 10 ACG\n", r"line 2: strand must be \+ or -"),
        ("a\ns Hsap.1 9 3 + 10 ACG\n", r"line 2: row Hsap.1 ends at 12, past srcSize 10"),
        ("s Hsap.1 0 3 + 10 ACG\n", r"line 1: an 's' line outside an alignment block"),
    ],
)
def test_malformed_maf(tmp_path, text, message):
    maf = tmp_path / "bad.maf"
    maf.write_text(text)
    with pytest.raises(ValueError, match=f"bad.maf: {message}"):
        maf_to_fasta(maf, tmp_path / "out")


def test_truncated_gzip_maf(tmp_path):
    maf = tmp_path / "cut.maf.gz"
    data = gzip.compress(MAF.encode() * 50)
    maf.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.maf.gz: truncated or corrupt gzip data"):
        maf_to_fasta(maf, tmp_path / "out")


REAL = SHARED / "great_apes_chr22.epo.maf.gz"
needs_real = pytest.mark.skipif(not REAL.is_file(), reason="needs ../shared/data")


@needs_real
def test_parser_agrees_with_biopython_on_the_real_alignment():
    mine = itertools.islice(iter_maf_blocks(REAL), 300)
    with gzip.open(REAL, "rt") as handle:
        theirs = itertools.islice(AlignIO.parse(handle, "maf"), 300)
        for block, alignment in zip(mine, theirs, strict=True):
            assert [r.src for r in block.rows] == [rec.id for rec in alignment]
            assert [r.text.decode() for r in block.rows] == [str(rec.seq) for rec in alignment]
            assert [r.start for r in block.rows] == [rec.annotations["start"] for rec in alignment]


@needs_real
def test_real_alignment_lengths_equal_the_ungapped_rows(tmp_path_factory):
    out = tmp_path_factory.mktemp("apes")
    outputs = maf_to_fasta(REAL, out)
    # an independent count: every 's' line's non-gap characters, per species
    expected: dict[str, int] = {}
    rows: list[tuple[str, bytes]] = []
    with gzip.open(REAL, "rb") as handle:
        for line in handle:
            if line.startswith(b"s "):
                fields = line.split()
                species = fields[1].split(b".")[0].decode()
                ungapped = fields[6].replace(b"-", b"")
                expected[species] = expected.get(species, 0) + len(ungapped)
                rows.append((species, ungapped))
    assert {s: Genome(o.fasta).length("22") for s, o in outputs.items()} == expected
    assert sorted(expected) == ["Ggor", "Hsap", "Ppyg", "Ptro"] and all(o.blocks == 9627 for o in outputs.values())
    # spot-check block placements through the BED (the file is in reference order, so lines = rows in order)
    rng = np.random.default_rng(0)
    for species, output in outputs.items():
        bed = [line.split("\t") for line in output.bed.read_text().splitlines()[1:]]
        genome = Genome(output.fasta)
        mine = [r for r in rows if r[0] == species]
        for i in rng.integers(0, len(bed), 20).tolist():
            assert genome.fetch_bytes(bed[i][0], int(bed[i][1]), int(bed[i][2])) == mine[i][1]
