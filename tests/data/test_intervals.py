"""Splits and window placement."""

import itertools

import numpy as np
import pytest
from fasta_files import write_fasta

from genossm.data.genome import Genome
from genossm.data.intervals import (
    Interval,
    Window,
    WindowPlacer,
    fetch_window,
    merge_intervals,
    non_base_fraction,
    read_bed,
    split_by_region,
)
from genossm.data.tokenizer import PAD_ID, encode


def test_split_by_region_is_disjoint_and_covers_every_record():
    lengths = {"a": 1000, "b": 37, "c": 1}
    intervals = split_by_region(lengths, (0.8, 0.1, 0.1))
    for chrom, n in lengths.items():
        mine = sorted((iv for iv in intervals if iv.chrom == chrom), key=lambda iv: iv.start)
        assert mine[0].start == 0 and mine[-1].end == n
        assert all(x.end == y.start for x, y in itertools.pairwise(mine))  # contiguous, no overlap
    assert [(iv.split, iv.start, iv.end) for iv in intervals if iv.chrom == "a"] == [
        ("train", 0, 800),
        ("valid", 800, 900),
        ("test", 900, 1000),
    ]
    with pytest.raises(ValueError, match="three non-negative numbers summing to 1"):
        split_by_region(lengths, (0.5, 0.1, 0.1))


def test_read_bed_keeps_splits_and_skips_headers(tmp_path):
    bed = tmp_path / "s.bed"
    bed.write_text("browser position chr1\n#comment\nchr1\t0\t100\ttrain\nchr1 100 150 valid\n\nchr2\t5\t9\n")
    assert read_bed(bed, {"chr1": 200, "chr2": 9}) == [
        Interval("chr1", 0, 100, "train"),
        Interval("chr1", 100, 150, "valid"),
        Interval("chr2", 5, 9, None),
    ]


def test_merge_intervals():
    ivs = [
        Interval("b", 0, 5),
        Interval("a", 10, 20),
        Interval("a", 0, 10),
        Interval("a", 15, 30),
        Interval("a", 40, 50),
    ]
    assert merge_intervals(ivs) == [Interval("b", 0, 5), Interval("a", 0, 30), Interval("a", 40, 50)]


def test_windows_stay_inside_intervals_long_enough():
    intervals = [Interval("a", 100, 400), Interval("b", 0, 64), Interval("a", 1000, 1100)]
    placer = WindowPlacer(intervals, {"a": 2000, "b": 64}, 64)
    assert placer.total_starts == 237 + 1 + 37
    windows = placer.sample(np.random.default_rng(0), 5000)
    for w in windows:
        assert w.end - w.start == 64
        assert any(w.chrom == iv.chrom and iv.start <= w.start and w.end <= iv.end for iv in intervals)
    starts = {(w.chrom, w.start) for w in windows}
    assert ("a", 100) in starts and ("a", 336) in starts and ("b", 0) in starts  # both ends reachable
    assert len(set(placer.windows(np.arange(placer.total_starts)))) == placer.total_starts  # each window once


def test_short_intervals_expand_around_their_centre_like_hyenadna(tmp_path):
    placer = WindowPlacer([Interval("a", 40, 50), Interval("a", 0, 4)], {"a": 100}, 30)
    assert placer.evenly_spaced(2) == [Window("a", 30, 60), Window("a", -13, 17)]
    seq = b"ACGT" * 25
    genome = Genome(write_fasta(tmp_path / "g.fa", {"a": seq}))
    tokens = fetch_window(genome, Window("a", -13, 17))  # clipped at the start, padded on the right
    assert np.array_equal(tokens[:17], encode(seq[:17])) and (tokens[17:] == PAD_ID).all()
    tokens = fetch_window(genome, Window("a", 90, 120), rc=True)
    assert seq[90:] == b"GTACGTACGT" and np.array_equal(tokens[:10], encode(b"ACGTACGTAC"))  # its reverse complement
    assert non_base_fraction(tokens) == pytest.approx(20 / 30)


def test_evenly_spaced_windows_are_fixed():
    placer = WindowPlacer([Interval("a", 0, 1000)], {"a": 1000}, 100)
    assert placer.evenly_spaced(3) == placer.evenly_spaced(3) == [Window("a", s, s + 100) for s in (150, 450, 750)]
