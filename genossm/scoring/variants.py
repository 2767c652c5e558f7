"""Zero-shot variant effects: how much more (or less) likely a language model finds the alternative allele.

For each variant of a VCF file, the reference window of ``window`` bases centred on it (clipped at the record's
ends) and the same window carrying the alternative allele are scored; the effect is the log-likelihood ratio
``llr = log p(alternative window) - log p(reference window)`` in nats, over every predicted base of the window.
Negative: the model finds the alternative less likely, as with GPN's and Evo's zero-shot scores. A causal model
sees the variant only from its position on, so the bases before it add the same to both windows; they are the
context. An indel changes the window's length, so its ratio also counts the inserted bases (or lacks the deleted
ones): compare indels with indels.

The VCF may be plain or gzip/bgzip-compressed; its REF must match the FASTA (an error names the file, line and
position otherwise). Symbolic alleles (``<DEL>``, ``*``, ``.``) are skipped and counted.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genossm.data.genome import Genome
from genossm.data.tokenizer import PAD_ID, encode

from .likelihood import LikelihoodScorer

ALLELE_LETTERS = frozenset("ACGTNacgtn")


@dataclass(frozen=True)
class Variant:
    """One allele of a VCF line: ``pos`` is 1-based, as in the file."""

    chrom: str
    pos: int
    id: str
    ref: str
    alt: str


@dataclass
class VariantEffect:
    """A variant and its log-likelihood ratio (nats): log p(alternative window) - log p(reference window)."""

    variant: Variant
    llr: float


class VcfReader:
    """The variants of a VCF file, checked against ``genome``; ``skipped`` counts the symbolic alleles passed over."""

    def __init__(self, path: str | Path, genome: Genome) -> None:
        self.path, self.genome = Path(path), genome
        self.skipped = 0

    def _lines(self) -> Iterator[str]:
        with open(self.path, "rb") as handle:
            gzipped = handle.read(2) == b"\x1f\x8b"
        opener = gzip.open if gzipped else open
        try:
            with opener(self.path, "rt") as handle:
                yield from handle
        except (UnicodeDecodeError, gzip.BadGzipFile, EOFError) as err:
            raise ValueError(f"{self.path}: not a VCF text file ({err})") from None

    def __iter__(self) -> Iterator[Variant]:
        lengths = self.genome.lengths
        for line_no, line in enumerate(self._lines(), 1):
            if line.startswith("#") or not line.strip():
                continue
            where = f"{self.path}: line {line_no}"
            fields = line.rstrip("\r\n").split("\t")
            if len(fields) < 5:
                raise ValueError(f"{where}: a VCF line needs CHROM, POS, ID, REF and ALT separated by tabs")
            chrom, pos_text, vid, ref, alts = fields[:5]
            if chrom not in lengths:
                raise ValueError(f"{where}: chromosome {chrom!r} is not in {self.genome.path}")
            try:
                pos = int(pos_text)
            except ValueError:
                raise ValueError(f"{where}: POS must be an integer, not {pos_text!r}") from None
            if not 1 <= pos <= lengths[chrom] - len(ref) + 1 or not ref or set(ref) - ALLELE_LETTERS:
                raise ValueError(f"{where}: REF {ref!r} at {chrom}:{pos} is not a run of bases inside the record")
            found = self.genome.fetch_bytes(chrom, pos - 1, pos - 1 + len(ref)).decode()
            if found.upper() != ref.upper():
                raise ValueError(f"{where}: REF {ref!r} does not match {chrom}:{pos} of {self.genome.path} ({found!r})")
            for alt in alts.split(","):
                if not alt or set(alt) - ALLELE_LETTERS:  # <DEL>, *, . and breakends
                    self.skipped += 1
                    continue
                yield Variant(chrom, pos, vid, ref, alt)


def allele_windows(genome: Genome, variant: Variant, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Token ids of the reference window around ``variant`` (``window`` bases, the variant's first base at its
    centre, clipped at the record's ends) and of the same window with the alternative allele."""
    start = max(0, variant.pos - 1 - window // 2)
    end = min(genome.length(variant.chrom), start + window)
    ref = genome.fetch(variant.chrom, start, end)
    at = variant.pos - 1 - start
    alt = np.concatenate([ref[:at], encode(variant.alt), ref[at + len(variant.ref) :]])
    return ref, alt


def variant_effects(
    scorer: LikelihoodScorer, genome: Genome, variants: Iterable[Variant], window: int
) -> Iterator[VariantEffect]:
    """The log-likelihood ratio of every variant, in order, reference and alternative windows scored side by side
    in batches of about ``scorer.batch_tokens`` tokens."""
    per_batch = max(1, scorer.batch_tokens // (2 * window))
    batch: list[Variant] = []
    for variant in variants:
        batch.append(variant)
        if len(batch) == per_batch:
            yield from _score_batch(scorer, genome, batch, window)
            batch = []
    yield from _score_batch(scorer, genome, batch, window)


def _score_batch(
    scorer: LikelihoodScorer, genome: Genome, batch: list[Variant], window: int
) -> Iterator[VariantEffect]:
    if not batch:
        return
    windows = [w for variant in batch for w in allele_windows(genome, variant, window)]
    rows = np.full((len(windows), max(map(len, windows))), PAD_ID, dtype=np.uint8)
    for i, tokens in enumerate(windows):
        rows[i, : len(tokens)] = tokens
    nll = scorer.nll_rows(rows)[0].tolist()
    for i, variant in enumerate(batch):
        yield VariantEffect(variant, nll[2 * i] - nll[2 * i + 1])
