"""``genossm data table2fasta``: a table of labelled sequences to one FASTA per label, and the errors users meet."""

import gzip

import pytest

from genossm.cli.main import main
from genossm.data.datamodules import SpeciesDataModule
from genossm.data.genome import Genome
from genossm.data.labelled_table import table_to_classes
from genossm.data.species import SpeciesDataConfig
from genossm.data.tokenizer import decode

ROWS = [("r1", "ACGTACGTAA", "enhancer", "train"), ("r2", "acgtnnacgu", "enhancer", "test"),
        ("r3", "TTTTGGGGCC", "other", "train"), ("r4", "GGCCAT", "other", "test"),
        ("r5", "CATCATCATC", "other", "train")]  # fmt: skip


def write_table(path, rows=ROWS, header=("id", "sequence", "label", "split"), sep=","):
    text = sep.join(header) + "\n" + "".join(sep.join(row) + "\n" for row in rows)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def test_a_table_with_splits_becomes_records_held_out_by_its_split(tmp_path, cache):
    table = write_table(tmp_path / "bench.csv")
    written = table_to_classes(table, tmp_path / "out", split="split", name="id")
    assert {tag: f.records for tag, f in written.items()} == {
        "enhancer": {"train": 1, "test": 1},
        "other": {"train": 2, "test": 1},
    }
    out = tmp_path / "out"
    assert (out / "classes.tsv").read_text() == "enhancer\tenhancer.fa\tenhancer.bed\nother\tother.fa\tother.bed\n"
    assert (out / "other.bed").read_text() == "r3\t0\t10\ttrain\nr4\t0\t6\ttest\nr5\t0\t10\ttrain\n"
    genome = Genome(out / "enhancer.fa")
    assert genome.lengths == {"r1": 10, "r2": 10} and decode(genome.fetch("r2", 0, 10)) == "ACGTNNACGT"
    config = SpeciesDataConfig(classes=out / "classes.tsv", examples="records", seqlen=8, tokens_per_step=32,
                               max_tokens_per_micro_batch=32, max_steps=2, rc_aug=False)  # fmt: skip
    data = SpeciesDataModule(config)
    data.setup()
    heldout = data.valid_dataset[0]
    assert heldout["labels"][0].tolist() == [0, 1]  # r2 and r4, the test rows
    assert decode(heldout["input_ids"][0, 1]) == "GGCCAT[PAD][PAD]"


def test_a_gzipped_tsv_without_splits_or_names(tmp_path, cache):
    rows = [(seq, label) for _, seq, label, _ in ROWS]
    table = write_table(tmp_path / "bench.tsv.gz", rows, header=("seq", "class"), sep="\t")
    args = ["data", "table2fasta", str(table), str(tmp_path / "out"), "--sequence", "seq", "--label", "class"]
    assert main(args) == 0
    assert Genome(tmp_path / "out" / "other.fa").lengths == {"other_4": 10, "other_5": 6, "other_6": 10}
    assert (tmp_path / "out" / "classes.tsv").read_text() == "enhancer\tenhancer.fa\nother\tother.fa\n"
    assert not (tmp_path / "out" / "other.bed").exists()


@pytest.mark.parametrize(
    ("rows", "kwargs", "message"),
    [
        (ROWS, {"split": "fold"}, r"no column 'fold' \(--split\); the header has id, sequence, label, split"),
        ([*ROWS, ("r6", "", "other", "train")], {}, "line 7: empty sequence"),
        ([*ROWS, ("r6", "ACGZT", "other", "train")], {}, "line 7: 'Z' at base 4 is not a nucleotide code"),
        ([*ROWS, ("r6", "ACGT", "a/b", "train")], {}, r"line 7: label 'a/b' cannot name a file"),
        ([*ROWS, ("r1", "ACGT", "other", "train")], {"name": "id"}, "line 7: record name 'r1' repeats line 2"),
        (ROWS[:2], {}, r"at least two labels, found \['enhancer'\]"),
    ],
)
def test_bad_tables_are_one_error_naming_the_line(tmp_path, rows, kwargs, message):
    table = write_table(tmp_path / "bench.csv", rows)
    with pytest.raises(ValueError, match=message):
        table_to_classes(table, tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_outputs_are_not_replaced_without_force(tmp_path, capsys):
    table = write_table(tmp_path / "bench.csv")
    out = tmp_path / "out"
    table_to_classes(table, out)
    (out / "other.fa").write_text(">mine\nACGT\n")
    assert main(["data", "table2fasta", str(table), str(out)]) == 1
    assert "already exist" in capsys.readouterr().err and (out / "other.fa").read_text() == ">mine\nACGT\n"
    assert main(["data", "table2fasta", str(table), str(out), "--force"]) == 0
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match="binary.csv: not a CSV or TSV text table"):
        table_to_classes(tmp_path / "binary.csv", tmp_path / "out2")
