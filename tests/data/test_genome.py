"""Genome random access (plain, gzip, bgzip, any line layout) and streaming, against the sequences written."""

import os
import pickle
import warnings

import numpy as np
import pytest
from fasta_files import random_bases, three_records, write_fasta

from genossm.data.faidx import read_fai, scan_index
from genossm.data.fasta import iter_fasta, read_chunks
from genossm.data.genome import Genome, iter_record_chunks, iter_records
from genossm.data.tokenizer import decode, encode


def check_all_intervals(genome: Genome, records: dict[str, bytes], rng: np.random.Generator) -> None:
    assert genome.names == list(records)
    assert genome.lengths == {k: len(v) for k, v in records.items()}
    for name, seq in records.items():
        for _ in range(30):
            a, b = sorted(rng.integers(0, len(seq) + 1, 2).tolist())
            assert genome.fetch_bytes(name, a, b) == seq[a:b]
            assert np.array_equal(genome.fetch(name, a, b), encode(seq[a:b]))


@pytest.mark.parametrize(
    ("filename", "width", "newline"),
    [
        ("plain.fa", 60, b"\n"),
        ("crlf.fa", 60, b"\r\n"),  # Windows line endings
        ("long_lines.fa", 100_000, b"\n"),  # a record on one line
        ("gzip.fa.gz", 70, b"\n"),  # plain gzip: decompressed once into the cache
        ("bgzip.fa.bgz.gz", 50, b"\n"),  # written as bgzip (the helper strips .bgz)
    ],
)
def test_fetch_equals_the_written_sequence(tmp_path, cache, filename, width, newline):
    records = three_records()
    path = write_fasta(tmp_path / filename, records, width, newline)
    check_all_intervals(Genome(path), records, np.random.default_rng(2))


def test_gzip_copy_goes_to_the_cache_and_the_index_beside_plain_files(tmp_path, cache):
    records = three_records()
    assert Genome(write_fasta(tmp_path / "g.fa.gz", records)).names
    assert list(cache.glob("g.fa.gz-*/g.fa.regular.fa.fai"))
    assert Genome(write_fasta(tmp_path / "p.fa", records)).names
    assert (tmp_path / "p.fa.fai").is_file()


def test_read_only_folder_puts_the_index_in_the_cache(tmp_path, cache, monkeypatch):
    records = three_records()
    path = write_fasta(tmp_path / "ro.bgz.gz", records)
    monkeypatch.setattr("genossm.data.genome.os.access", lambda *args: False)
    genome = Genome(path)
    check_all_intervals(genome, records, np.random.default_rng(3))
    assert not list(tmp_path.glob("ro.gz.*"))
    assert {p.suffix for p in cache.glob("ro.gz-*/*")} == {".fai", ".gzi"}


def test_stale_index_is_rebuilt(tmp_path, cache):
    records = three_records()
    path = write_fasta(tmp_path / "s.fa", records)
    assert Genome(path).names
    records["chr1"] = records["chr1"][:500]
    write_fasta(path, records)
    later = os.stat(path.with_suffix(".fa.fai")).st_mtime + 10
    os.utime(path, (later, later))
    assert Genome(path).length("chr1") == 500


def test_index_matches_samtools_layout(tmp_path):
    records = three_records()
    path = write_fasta(tmp_path / "x.fa", records, width=60)
    entries = scan_index(path)
    offsets = [entry.offset for entry in entries]
    assert [(e.name, e.length, e.line_bases, e.line_bytes) for e in entries] == [
        ("chr1", 1000, 60, 61),
        ("chr2", 61, 60, 61),
        ("chr3", 60, 60, 61),
    ]
    text = path.read_bytes()
    assert [text[o : o + 5] for o in offsets] == [records[k][:5] for k in records]


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 61, 1000])
def test_scans_do_not_depend_on_chunk_boundaries(tmp_path, chunk):
    rng = np.random.default_rng(chunk)
    records = {f"r{i}": random_bases(rng, int(rng.integers(0, 200))) for i in range(6)}
    path = write_fasta(tmp_path / "c.fa", records, width=int(rng.integers(1, 80)), newline=b"\r\n")
    assert scan_index(path, read_chunks(path, chunk)) == scan_index(path)
    pieces: dict[str, bytes] = {}
    for name, _, bases in iter_fasta(path, chunk):
        pieces[name] = pieces.get(name, b"") + bases
    assert pieces == records


def test_ragged_lines_are_read_through_a_regular_copy(tmp_path, cache):
    path = tmp_path / "ragged.fa"
    path.write_bytes(b">x\nACGT\nAC\nACGT\n>y\nAAA\n\nCCC\n>z\nGG\n\n\n")
    with pytest.warns(UserWarning, match=r"record x \(line 1\): line 4 follows a shorter or blank line"):
        genome = Genome(path)
        assert genome.lengths == {"x": 10, "y": 6, "z": 2}
    assert decode(genome.fetch("x", 0, 10)) == "ACGTACACGT" and decode(genome.fetch("y", 2, 5)) == "ACC"


def test_trailing_blank_lines_keep_the_file_in_place(tmp_path, cache):
    path = tmp_path / "blank.fa"
    path.write_bytes(b"\n>x\nACGT\nAC\n\n>y\nGGGG\n\n\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        genome = Genome(path)
        assert genome.lengths == {"x": 6, "y": 4}
    assert not cache.exists() and decode(genome.fetch("y", 0, 4)) == "GGGG"


def test_genome_is_picklable_and_reopens_lazily(tmp_path):
    records = three_records()
    genome = Genome(write_fasta(tmp_path / "p.fa", records))
    before = genome.fetch("chr1", 10, 20)
    copy = pickle.loads(pickle.dumps(genome))
    assert copy._reader_fn is None and np.array_equal(copy.fetch("chr1", 10, 20), before)


@pytest.mark.parametrize("name", ["stream.fa", "stream.fa.gz", "stream.bgz.gz"])
def test_record_chunks_stream_every_record(tmp_path, cache, name):
    records = three_records()
    path = write_fasta(tmp_path / name, records, width=33)
    chunks = list(iter_record_chunks(path, 100))
    assert all(len(c.tokens) == 100 for c in chunks if c.offset + 100 < len(records[c.name]))
    for record, seq in records.items():
        mine = [c for c in chunks if c.name == record]
        assert [c.offset for c in mine] == list(range(0, len(seq), 100))
        assert decode(np.concatenate([c.tokens for c in mine])) == seq.decode().upper()
    assert {n: decode(t) for n, t in iter_records(path)} == {k: v.decode().upper() for k, v in records.items()}


def test_fai_written_by_other_tools_is_used(tmp_path):
    records = three_records()
    path = write_fasta(tmp_path / "t.fa", records)
    assert Genome(path).names
    fai = path.with_name("t.fa.fai")
    assert read_fai(fai) == scan_index(path)


def test_bgzip_fetches_around_every_block_boundary(tmp_path, cache):
    """Biopython writes bgzip blocks of 64 KiB; a fetch must read the block holding its first byte (pyfaidx 0.9.2
    picked the block before it for starts near a boundary and failed)."""
    records = {"chr1": random_bases(np.random.default_rng(4), 300_000)}
    genome = Genome(write_fasta(tmp_path / "big.bgz.gz", records, width=60))
    seq = records["chr1"]
    for block in range(1, 5):
        line, column = divmod(block * 65536 - len(b">chr1\n"), 61)  # the block's first byte, as a position
        boundary = line * 60 + min(column, 59)
        for start in range(boundary - 40, boundary + 41):
            for length in (1, 61, 70_000):
                end = min(start + length, len(seq))
                assert genome.fetch_bytes("chr1", start, end) == seq[start:end]
