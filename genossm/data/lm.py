"""Next-base language-model data over a genome: one item is one optimizer step.

Item format: ``{"input_ids": LongTensor (n_micro, micro_batch, L), "labels": LongTensor (n_micro, micro_batch, L)}``.
Each window is L + 1 bases: inputs are its first L tokens and labels its last L (the next base of each position);
a label is -100 where the target is not A, C, G or T (N, an unknown character, padding). Shapes follow the token
budget and the sequence-length schedule of :mod:`genossm.data.steps`. Training windows are drawn at random from the
train intervals; validation items are a fixed list of windows from the valid intervals at the target length.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from .genome import Genome
from .intervals import (
    DEFAULT_FRACTIONS,
    SPLITS,
    Interval,
    WindowPlacer,
    fetch_windows,
    merge_intervals,
    read_bed,
    split_by_region,
)
from .steps import (
    SeqlenStage,
    draw_windows,
    filtered_windows,
    lm_tensors,
    seqlen_at,
    seqlen_stages,
    step_rng,
    step_shape,
)


@dataclass
class LMDataConfig:
    """Genome language-model data: where the bases come from and how steps are cut."""

    fasta: Path
    """FASTA file (plain, gzip or bgzip) with one or more records."""
    bed: Path | None = None
    """HyenaDNA / Basenji BED (``chrom start end split``) of train / valid / test intervals; without it, every
    record is split into contiguous blocks by ``split_fractions``."""
    seqlen: int = 1024
    """Target window length L (tokens per sequence)."""
    tokens_per_step: int = 2**20
    """Tokens per optimizer step, constant over the sequence-length schedule."""
    max_tokens_per_micro_batch: int = 2**20
    """Most tokens in one forward pass; more make several micro-batches (gradient accumulation)."""
    max_steps: int = 10_000
    """Number of training steps (items of the training set)."""
    seqlen_warmup: bool = True
    """Warm the length up from ``warmup_start_seqlen``, doubling in stages, over ``warmup_fraction`` of the steps."""
    warmup_start_seqlen: int = 1024
    """First length of the warm-up."""
    warmup_fraction: float = 0.25
    """Share of the steps spent in the warm-up stages (equally)."""
    warmup_stages: list[list[int]] | None = None
    """Explicit warm-up stages ``[[seqlen, steps], ...]`` (replaces the automatic ones)."""
    rc_aug: bool = False
    """Reverse complement each training window with probability 1/2."""
    max_n_fraction: float = 0.5
    """Skip windows with a larger fraction of positions that are not A/C/G/T (1.0 keeps every window)."""
    split_fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
    """Train / valid / test fractions of every record when there is no BED."""
    valid_items: int = 8
    """Validation items (each a step's worth of windows at the target length)."""
    num_workers: int = 0
    """DataLoader worker processes."""
    seed: int = 0
    """Seed of the training windows (validation windows do not depend on it)."""
    cache_dir: Path | None = None
    """Where indexes and decompressed copies go when they cannot go beside the FASTA file."""

    def __post_init__(self) -> None:
        self.fasta = Path(self.fasta)
        self.bed = Path(self.bed) if self.bed is not None else None
        self.cache_dir = Path(self.cache_dir) if self.cache_dir is not None else None
        if not 0.0 <= self.max_n_fraction <= 1.0:
            raise ValueError(f"max_n_fraction must be between 0 and 1, not {self.max_n_fraction}")
        if self.max_steps < 1 or self.valid_items < 0 or self.num_workers < 0:
            raise ValueError("max_steps must be positive, valid_items and num_workers not negative")
        for stage in self.stages:
            self.shape(stage.seqlen)

    @property
    def stages(self) -> list[SeqlenStage]:
        """The sequence-length schedule."""
        explicit = [(int(a), int(b)) for a, b in self.warmup_stages] if self.warmup_stages else None
        return seqlen_stages(
            self.seqlen, self.max_steps, self.seqlen_warmup, self.warmup_start_seqlen, self.warmup_fraction, explicit
        )

    def shape(self, seqlen: int) -> tuple[int, int]:
        """(n_micro, micro_batch) of a step at ``seqlen``."""
        return step_shape(seqlen, self.tokens_per_step, self.max_tokens_per_micro_batch)


def lm_splits(genome: Genome, config: LMDataConfig) -> dict[str, list[Interval]]:
    """Merged intervals of each split, from the BED or by region; errors when a split needed is empty."""
    lengths = {name: n for name, n in genome.lengths.items() if n > 0}
    if config.bed is not None:
        intervals = read_bed(config.bed, lengths)
        unknown = {iv.split for iv in intervals} - set(SPLITS)
        if unknown:
            raise ValueError(f"{config.bed}: split column values must be train, valid or test, not {sorted(unknown)}")
    else:
        intervals = split_by_region(lengths, config.split_fractions)
    splits = {s: merge_intervals([iv for iv in intervals if iv.split == s]) for s in SPLITS}
    source = config.bed or f"{config.fasta} split by {config.split_fractions}"
    if not splits["train"]:
        raise ValueError(f"{source}: no train intervals")
    if config.valid_items and not splits["valid"]:
        raise ValueError(f"{source}: no valid intervals (or set valid_items to 0)")
    longest = max(lengths.values())
    if config.seqlen + 1 > longest:
        raise ValueError(
            f"{config.fasta}: windows of {config.seqlen:,} bases (+1 for the last label) are longer than every record "
            f"(the longest has {longest:,})"
        )
    return splits


class LMTrainDataset(Dataset):
    """Item ``i`` = training step ``i``: random windows at the schedule's length, a pure function of (seed, i)."""

    def __init__(self, genome: Genome, intervals: list[Interval], config: LMDataConfig) -> None:
        self.genome, self.intervals, self.config = genome, intervals, config
        self._placers: dict[int, WindowPlacer] = {}

    def __len__(self) -> int:
        return self.config.max_steps

    def seqlen(self, step: int) -> int:
        """Window length of ``step``."""
        return seqlen_at(self.config.stages, step)

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        if not 0 <= step < len(self):
            raise IndexError(f"step {step} outside 0..{len(self) - 1}")
        seqlen = self.seqlen(step)
        n_micro, micro_batch = self.config.shape(seqlen)
        if seqlen not in self._placers:
            self._placers[seqlen] = WindowPlacer(self.intervals, self.genome.lengths, seqlen + 1)
        rng = step_rng(self.config.seed, step)
        c = self.config
        count = n_micro * micro_batch
        windows = draw_windows(self.genome, self._placers[seqlen], rng, count, c.rc_aug, c.max_n_fraction)
        return lm_tensors(windows, n_micro, micro_batch)


class LMValidDataset(Dataset):
    """A fixed list of windows of the valid intervals at the target length, cut into step-sized items."""

    def __init__(self, genome: Genome, intervals: list[Interval], config: LMDataConfig) -> None:
        self.genome = genome
        self.shape = config.shape(config.seqlen)
        per_item = self.shape[0] * self.shape[1]
        placer = WindowPlacer(intervals, genome.lengths, config.seqlen + 1)
        windows = filtered_windows(genome, placer, config.valid_items * per_item, config.max_n_fraction)
        self.items = [windows[i : i + per_item] for i in range(0, len(windows) - per_item + 1, per_item)]
        if not self.items:
            raise ValueError(
                f"{genome.path}: the valid intervals hold fewer than {per_item} usable windows of {config.seqlen:,} "
                "bases (one validation item)"
            )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return lm_tensors(fetch_windows(self.genome, self.items[i]), *self.shape)
