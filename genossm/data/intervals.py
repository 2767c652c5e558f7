"""Splits and windows: BED intervals (HyenaDNA / Basenji ``chrom start end split``), splits by region, and
windows of length L placed inside intervals.

Window placement follows HyenaDNA: a window lies inside its interval when the interval is long enough;
a shorter interval is expanded around its centre to the window length, clipped at the chromosome ends, and the
missing positions are padded (``[PAD]``, on the right). Every possible window start of an interval is equally
likely, and an interval shorter than the window counts as one start.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .genome import Genome
from .tokenizer import BASE_IDS, PAD_ID, VOCAB_SIZE, reverse_complement

SPLITS = ("train", "valid", "test")
DEFAULT_FRACTIONS = (0.9, 0.05, 0.05)

IS_BASE = np.zeros(VOCAB_SIZE, dtype=bool)
IS_BASE[list(BASE_IDS)] = True
"""``IS_BASE[id]``: the token is A, C, G or T."""


@dataclass(frozen=True)
class Interval:
    """A 0-based half-open interval of one record; ``split`` is the BED's fourth column, if any."""

    chrom: str
    start: int
    end: int
    split: str | None = None

    def __len__(self) -> int:
        return self.end - self.start


def read_bed(path: str | Path, lengths: dict[str, int]) -> list[Interval]:
    """BED intervals checked against the genome's record ``lengths``; errors name the file and line.

    Blank lines and lines starting with ``#``, ``track`` or ``browser`` are skipped. The fourth column, when
    present, is kept as the interval's split.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise FileNotFoundError(f"BED file {path} does not exist") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a BED text file") from None
    intervals = []
    for line_no, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith(("#", "track", "browser")):
            continue
        fields = line.split("\t") if "\t" in line else line.split()
        where = f"{path}: line {line_no}"
        if len(fields) < 3:
            raise ValueError(f"{where}: a BED line needs chrom, start and end")
        try:
            start, end = int(fields[1]), int(fields[2])
        except ValueError:
            raise ValueError(f"{where}: start and end must be integers, not {fields[1]!r} {fields[2]!r}") from None
        chrom = fields[0]
        if chrom not in lengths:
            raise ValueError(f"{where}: chromosome {chrom!r} is not in the FASTA file")
        if not 0 <= start < end:
            raise ValueError(f"{where}: empty or negative interval {chrom}:{start}-{end}")
        if end > lengths[chrom]:
            raise ValueError(f"{where}: interval {chrom}:{start}-{end} ends past the chromosome ({lengths[chrom]:,})")
        intervals.append(Interval(chrom, start, end, fields[3] if len(fields) > 3 else None))
    if not intervals:
        raise ValueError(f"{path}: no intervals")
    return intervals


def split_by_region(
    lengths: dict[str, int], fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
) -> list[Interval]:
    """Every record cut into contiguous train / valid / test blocks of the given fractions, in that order."""
    if len(fractions) != 3 or min(fractions) < 0 or not np.isclose(sum(fractions), 1):
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1, not {fractions}")
    bounds = np.cumsum([0.0, *fractions])
    intervals = []
    for chrom, length in lengths.items():
        cuts = [round(b * length) for b in bounds]
        intervals += [Interval(chrom, a, b, s) for s, a, b in zip(SPLITS, cuts[:-1], cuts[1:], strict=True) if b > a]
    return intervals


def merge_intervals(intervals: list[Interval]) -> list[Interval]:
    """Overlapping or touching intervals of a chromosome merged (first-seen chromosome order, split dropped)."""
    order = {c: i for i, c in enumerate(dict.fromkeys(iv.chrom for iv in intervals))}
    merged: list[Interval] = []
    for iv in sorted(intervals, key=lambda iv: (order[iv.chrom], iv.start)):
        if merged and merged[-1].chrom == iv.chrom and iv.start <= merged[-1].end:
            merged[-1] = Interval(iv.chrom, merged[-1].start, max(merged[-1].end, iv.end))
        else:
            merged.append(Interval(iv.chrom, iv.start, iv.end))
    return merged


@dataclass(frozen=True)
class Window:
    """A window of a chromosome; ``start`` may be negative and ``end`` past the end: those positions are padding."""

    chrom: str
    start: int
    end: int


class WindowPlacer:
    """Windows of ``length`` bases in a set of intervals: random ones, or a fixed evenly spaced list."""

    def __init__(self, intervals: list[Interval], lengths: dict[str, int], length: int) -> None:
        if not intervals:
            raise ValueError("no intervals to place windows in")
        self.intervals, self.lengths, self.length = intervals, lengths, length
        self._sizes = np.array([len(iv) for iv in intervals], dtype=np.int64)
        self._starts = np.array([iv.start for iv in intervals], dtype=np.int64)
        self._choices = np.maximum(self._sizes - length + 1, 1)  # window starts per interval
        self._cumulative = np.cumsum(self._choices)

    @property
    def total_starts(self) -> int:
        """How many distinct windows the intervals hold."""
        return int(self._cumulative[-1])

    def windows(self, ks: np.ndarray) -> list[Window]:
        """The ``ks``-th of all possible windows, counted across the intervals in order."""
        i = np.searchsorted(self._cumulative, ks, side="right")
        inside = self._sizes[i] >= self.length
        first = self._cumulative[i] - self._choices[i]
        # HyenaDNA: an interval shorter than the window is expanded around its centre (clipped when fetched)
        starts = np.where(inside, self._starts[i] + ks - first, self._starts[i] - (self.length - self._sizes[i]) // 2)
        chroms = [self.intervals[j].chrom for j in i.tolist()]
        return [Window(c, s, s + self.length) for c, s in zip(chroms, starts.tolist(), strict=True)]

    def sample(self, rng: np.random.Generator, n: int) -> list[Window]:
        """``n`` windows drawn uniformly from all possible ones."""
        return self.windows(rng.integers(self.total_starts, size=n))

    def evenly_spaced(self, n: int) -> list[Window]:
        """``n`` windows spread evenly over all possible ones (the same list every time)."""
        return self.windows(((np.arange(n) + 0.5) * self.total_starts / n).astype(np.int64))

    def unusable_fraction(self, tokens: np.ndarray) -> np.ndarray:
        """Fraction of each window (along the last axis) that is not A, C, G or T: N, unknown, padding."""
        return non_base_fraction(tokens)


class ExamplePlacer(WindowPlacer):
    """Every interval is one example, however long: intervals are drawn with equal probability, then a window
    inside the drawn one (the interval itself, centred and padded, when it is shorter than the window)."""

    @property
    def total_starts(self) -> int:
        """How many examples there are (one per interval)."""
        return len(self.intervals)

    def sample(self, rng: np.random.Generator, n: int) -> list[Window]:
        """``n`` examples drawn uniformly, each as a window at a uniform position inside it."""
        i = rng.integers(len(self.intervals), size=n)
        first = self._cumulative[i] - self._choices[i]
        return self.windows(first + rng.integers(self._choices[i]))

    def evenly_spaced(self, n: int) -> list[Window]:
        """The middle window of ``n`` examples spread evenly over the list (of each one once, when there are not
        more than ``n``; the same list every time)."""
        n = min(n, len(self.intervals))
        i = ((np.arange(n) + 0.5) * len(self.intervals) / n).astype(np.int64)
        return self.windows(self._cumulative[i] - self._choices[i] + self._choices[i] // 2)

    def unusable_fraction(self, tokens: np.ndarray) -> np.ndarray:
        """Fraction of the example's own positions (padding excluded) that are not A, C, G or T."""
        present = tokens != PAD_ID
        return 1.0 - (IS_BASE.take(tokens) & present).sum(-1) / np.maximum(present.sum(-1), 1)


def fetch_window(genome: Genome, window: Window, rc: bool = False) -> np.ndarray:
    """Tokens of ``window`` (clipped at the chromosome ends, reverse complemented if ``rc``, then padded right)."""
    start, end = max(window.start, 0), min(window.end, genome.length(window.chrom))
    tokens = genome.fetch(window.chrom, start, end) if end > start else np.empty(0, dtype=np.uint8)
    if rc:
        tokens = reverse_complement(tokens)
    size = window.end - window.start
    if tokens.size == size:
        return tokens
    padded = np.full(size, PAD_ID, dtype=np.uint8)
    padded[: tokens.size] = tokens
    return padded


def fetch_windows(genome: Genome, windows: list[Window], rc: np.ndarray | None = None) -> np.ndarray:
    """Tokens of windows of one length as a (windows, length) array (see :func:`fetch_window`)."""
    rc = np.zeros(len(windows), dtype=bool) if rc is None else rc
    out = np.empty((len(windows), windows[0].end - windows[0].start), dtype=np.uint8)
    for row, (window, flip) in enumerate(zip(windows, rc.tolist(), strict=True)):
        out[row] = fetch_window(genome, window, flip)
    return out


def non_base_fraction(tokens: np.ndarray) -> np.ndarray:
    """Fraction of positions that are not A, C, G or T (N, unknown characters, padding), along the last axis."""
    return 1.0 - IS_BASE.take(tokens).mean(axis=-1)
