"""Malformed files: one clear error naming the file, the record and the position (or the documented handling)."""

import gzip
import os

import pytest
from fasta_files import bgzip, fasta_text, three_records, write_fasta

from genossm.data.datamodules import GenomeLMDataModule, SpeciesDataModule
from genossm.data.genome import Genome, iter_record_chunks
from genossm.data.intervals import read_bed
from genossm.data.lm import LMDataConfig, lm_splits
from genossm.data.species import SpeciesDataConfig
from genossm.data.tokenizer import decode


def open_genome(path):
    genome = Genome(path)
    assert genome.names is not None
    return genome


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"ACGT\n>x\nACGT\n", r"line 1 holds sequence before any '>' header line"),
        (b"\n\nAC\n", r"line 3 holds sequence before any '>' header line"),
        (b">x\nACGT\n>\nACGT\n", r"line 3: a header line '>' without a record name"),
        (b">x\nAC\x00\x01GT\n", r"not a FASTA text file: byte 0x00 on line 2"),
        (b"\x89PNG\r\n\x1a\n" + bytes(range(256)), r"not a FASTA text file: byte 0x89 on line 1"),
        (b"", r"no FASTA record \(the file is empty"),
    ],
)
def test_malformed_fasta(tmp_path, cache, content, message):
    path = tmp_path / "bad.fa"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as err:
        open_genome(path)
    assert str(path) in str(err.value)
    with pytest.raises(ValueError, match=message):  # the streaming reader says the same
        list(iter_record_chunks(path, 10))


def test_duplicate_record_names(tmp_path, cache):
    path = tmp_path / "twice.fa"
    path.write_bytes(b">x\nAC\n>x\nGT\n")
    with pytest.raises(ValueError, match=r"twice.fa: record name 'x' appears twice \(records 1 and 2\)"):
        open_genome(path)
    assert [c.name for c in iter_record_chunks(path, 10)] == ["x", "x"]  # streaming keeps both


def test_malformed_gzip_fasta_is_reported_through_the_copy(tmp_path, cache):
    path = tmp_path / "bad.fa.gz"
    path.write_bytes(gzip.compress(b">x\nACGT\n>\nAC\n"))
    with pytest.raises(ValueError, match=r"bad.fa.gz: line 3: a header line '>' without a record name"):
        open_genome(path)


def test_empty_records_are_kept_with_length_zero(tmp_path, cache):
    path = tmp_path / "empty.fa"
    path.write_bytes(b">a\n>b\nACGT\n>c\n")
    with pytest.warns(UserWarning, match=r"2 empty record\(s\), never sampled: a, c"):
        assert open_genome(path).lengths == {"a": 0, "b": 4, "c": 0}


@pytest.mark.parametrize("kind", ["gzip", "bgzip"])
def test_truncated_compressed_file(tmp_path, cache, kind):
    records = three_records()
    text = fasta_text(records)
    data = gzip.compress(text) if kind == "gzip" else bgzip(text)
    path = tmp_path / "cut.fa.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut.fa.gz: truncated"):
        open_genome(path)


def test_bgzip_without_end_marker(tmp_path, cache):
    records = three_records()
    path = tmp_path / "noeof.fa.gz"
    path.write_bytes(bgzip(fasta_text(records))[:-28])
    with pytest.raises(ValueError, match="end-of-file marker is missing"):
        open_genome(path)


def test_other_compressions_and_misleading_names(tmp_path, cache):
    records = three_records()
    (tmp_path / "x.fa.bz2").write_bytes(b"BZh91AY&SY" + b"\x00" * 20)
    with pytest.raises(ValueError, match="bzip2-compressed"):
        open_genome(tmp_path / "x.fa.bz2")
    write_fasta(tmp_path / "plain.fa", records).rename(tmp_path / "plain.fa.gz")
    with pytest.raises(ValueError, match="named like a gzip file but is not compressed"):
        open_genome(tmp_path / "plain.fa.gz")


def test_unknown_characters_become_unk_or_a_strict_error(tmp_path, cache):
    path = tmp_path / "odd.fa"
    path.write_bytes(b">x\nACGT\n>y\nAC\nG*\nT\n")
    genome = open_genome(path)
    assert decode(genome.fetch("y", 0, 5)) == "ACG[UNK]T"
    for start in (0, 1):  # bases are counted in the record, from 1, wherever the read starts
        with pytest.raises(ValueError, match=r"odd.fa: record y: '\*' at base 4 is not a nucleotide code"):
            genome.fetch("y", start, 5, strict=True)
    with pytest.raises(ValueError, match=r"odd.fa: record y: '\*' at base 4 is not"):
        list(iter_record_chunks(path, 100, strict=True))
    with pytest.raises(ValueError, match=r"odd.fa: record y: '\*' at base 4 is not"):
        list(iter_record_chunks(path, 2, strict=True))  # in the record's second chunk


def test_fetch_outside_a_record_or_of_a_missing_record(tmp_path):
    records = three_records()
    genome = open_genome(write_fasta(tmp_path / "g.fa", records))
    with pytest.raises(ValueError, match=r"g.fa: record chr2: interval \[50, 62\) is outside the record \(length 61\)"):
        genome.fetch("chr2", 50, 62)
    with pytest.raises(ValueError, match=r"g.fa: no record named 'chrX' \(records: chr1, chr2, chr3\)"):
        genome.fetch("chrX", 0, 1)


def test_missing_or_unreadable_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="FASTA file .*nothing.fa does not exist"):
        open_genome(tmp_path / "nothing.fa")
    with pytest.raises(IsADirectoryError, match="is a folder, not a FASTA file"):
        open_genome(tmp_path)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path):
    records = three_records()
    path = write_fasta(tmp_path / "secret.fa", records)
    path.chmod(0)
    with pytest.raises(PermissionError, match="cannot read .*secret.fa: permission denied"):
        open_genome(path)


def test_unwritable_cache_is_one_clear_error(tmp_path):
    records = three_records()
    path = write_fasta(tmp_path / "c.fa.gz", records)
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache folder should be")
    with pytest.raises(PermissionError, match="cannot write a decompressed copy of .*c.fa.gz into the cache folder"):
        assert Genome(path, cache_dir=blocker).names


def test_bed_errors_name_the_line(tmp_path):
    lengths = {"chr1": 1000, "chr2": 50}
    bed = tmp_path / "s.bed"
    cases = {
        "chrX\t0\t10\ttrain\n": r"line 1: chromosome 'chrX' is not in the FASTA file",
        "# c\nchr2\t0\t60\ttrain\n": r"line 2: interval chr2:0-60 ends past the chromosome \(50\)",
        "chr1\t5\t5\n": r"line 1: empty or negative interval",
        "chr1\tzero\t5\n": r"line 1: start and end must be integers",
        "chr1 5\n": r"line 1: a BED line needs chrom, start and end",
        "track name=x\n": r"no intervals",
    }
    for text, message in cases.items():
        bed.write_text(text)
        with pytest.raises(ValueError, match=f"{bed.name}: {message}"):
            read_bed(bed, lengths)
    with pytest.raises(FileNotFoundError, match="BED file .*nope.bed does not exist"):
        read_bed(tmp_path / "nope.bed", lengths)


def test_window_longer_than_every_record(tmp_path):
    records = three_records()
    path = write_fasta(tmp_path / "short.fa", records)
    config = LMDataConfig(fasta=path, seqlen=1000, tokens_per_step=1000)
    with pytest.raises(ValueError, match=r"windows of 1,000 bases \(\+1 for the last label\) are longer than every"):
        lm_splits(Genome(path), config)


def test_training_data_is_checked_once_before_the_first_step(tmp_path, cache):
    path = tmp_path / "odd.fa"
    path.write_bytes(b">x\n" + b"ACGT" * 40 + b"\n>y\nACGTAC\nGT-A\n")
    with pytest.raises(ValueError, match=r"odd.fa: record y: '-' at base 9 is not a nucleotide code"):
        Genome(path).check_bases(chunk_bases=4)  # the gap is in the record's third chunk
    data = GenomeLMDataModule(LMDataConfig(fasta=path, seqlen=8, tokens_per_step=16, max_steps=2))
    with pytest.raises(ValueError, match=r"record y: '-' at base 9"):
        data.setup()
    (tmp_path / "apes").mkdir()
    path.rename(tmp_path / "apes" / "gapped.fa")
    write_fasta(tmp_path / "apes" / "clean.fa", three_records())
    classes = SpeciesDataModule(SpeciesDataConfig(classes=tmp_path / "apes", seqlen=8, tokens_per_step=16))
    with pytest.raises(ValueError, match=r"gapped.fa: record y: '-' at base 9"):
        classes.setup()


def test_a_clean_file_is_remembered_until_it_changes(tmp_path, cache, monkeypatch):
    path = write_fasta(tmp_path / "g.fa", three_records())
    Genome(path).check_bases()
    monkeypatch.setattr(Genome, "fetch", lambda *args, **kwargs: pytest.fail("a clean file was read again"))
    Genome(path).check_bases()
    monkeypatch.undo()
    with path.open("ab") as f:
        f.write(b">late\nAC*T\n")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    with pytest.raises(ValueError, match=r"record late: '\*' at base 3"):
        Genome(path).check_bases()
