"""Species classification data: labelled windows from one or more FASTA files per class.

Classes come from a folder with one FASTA file per class (the file name without its extensions is the label;
``.fa``, ``.fasta``, ``.fna``, ``.fas``, plain, gzip or bgzip) or from a TSV manifest ``label<TAB>fasta[<TAB>bed]``
(paths relative to the manifest; several rows per label allowed; a BED restricts the class to its intervals).

Examples are either **windows** (the default: windows of L bases at random positions of long sequences, such as
chromosomes) or **records** (each FASTA record, or BED interval, is one example: an enhancer, a read, a gene).

Train and held-out examples are disjoint: a BED with a split column gives them (``train`` rows and
``heldout_split`` rows). Otherwise, with windows, the last ``heldout_fraction`` of every record (or BED interval) is
held out, the same coordinates for every class when the classes are aligned, and windows lie inside their regions;
with records, ``heldout_fraction`` of each file's records (at least one, spread evenly through the file) are held
out whole. A record is drawn with equal probability whatever its length; one longer than L gives a window at a
random position (held out: the middle one), a shorter one is padded (``[PAD]``, on the right; a BED interval is
widened around its centre first, as HyenaDNA does), and its N fraction counts its own positions only.

Training items are steps as in :mod:`genossm.data.steps` (classes balanced within a step, reverse complemented half
the time with ``rc_aug``); held-out items are a fixed list of windows, one micro-batch an item.

Items: ``{"input_ids": LongTensor (n_micro, micro_batch, L), "labels": LongTensor (n_micro, micro_batch)}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from .genome import FASTA_SUFFIXES, Genome
from .intervals import ExamplePlacer, Interval, Window, WindowPlacer, fetch_windows, read_bed
from .steps import draw_windows, filtered_windows, step_rng, step_shape


@dataclass
class SpeciesDataConfig:
    """Labelled windows for species classification."""

    classes: Path
    """A folder with one FASTA file per class, or a TSV manifest ``label<TAB>fasta[<TAB>bed]``."""
    seqlen: int = 1024
    """Window length L."""
    examples: Literal["windows", "records"] = "windows"
    """What one example is: a window of a long sequence, or a whole record (BED interval) cut or padded to L."""
    tokens_per_step: int = 2**16
    """Tokens per optimizer step (windows per step = tokens_per_step // seqlen, at least one)."""
    max_tokens_per_micro_batch: int = 2**16
    """Most tokens in one forward pass; more make several micro-batches."""
    max_steps: int = 1000
    """Number of training steps (items of the training set)."""
    heldout_fraction: float = 0.1
    """Without a BED split: the share held out at the end of every record (windows) or of the records (records)."""
    heldout_split: str = "test"
    """BED split name of the held-out intervals (``train`` rows are the training ones)."""
    heldout_windows_per_class: int = 64
    """Held-out windows of each class (a fixed, evenly spaced list)."""
    rc_aug: bool = True
    """Reverse complement each training window with probability 1/2."""
    max_n_fraction: float = 0.5
    """Skip windows with a larger fraction of positions that are not A/C/G/T."""
    num_workers: int = 0
    """DataLoader worker processes."""
    seed: int = 0
    """Seed of the training windows (held-out windows do not depend on it)."""
    cache_dir: Path | None = None
    """Where indexes and decompressed copies go when they cannot go beside the FASTA files."""

    def __post_init__(self) -> None:
        self.classes = Path(self.classes)
        self.cache_dir = Path(self.cache_dir) if self.cache_dir is not None else None
        if self.examples not in ("windows", "records"):
            raise ValueError(f"examples must be 'windows' or 'records', not {self.examples!r}")
        if not 0.0 < self.heldout_fraction < 1.0:
            raise ValueError(f"heldout_fraction must be between 0 and 1, not {self.heldout_fraction}")
        if not 0.0 <= self.max_n_fraction <= 1.0:
            raise ValueError(f"max_n_fraction must be between 0 and 1, not {self.max_n_fraction}")
        if self.max_steps < 1 or self.heldout_windows_per_class < 1:
            raise ValueError("max_steps and heldout_windows_per_class must be positive")
        self.shape()

    def shape(self) -> tuple[int, int]:
        """(n_micro, micro_batch) of a training step."""
        return step_shape(self.seqlen, self.tokens_per_step, self.max_tokens_per_micro_batch)


@dataclass(frozen=True)
class ClassFile:
    """One FASTA file of a class, optionally restricted to the intervals of a BED file."""

    label: str
    fasta: Path
    bed: Path | None = None


def _label(path: Path) -> str | None:
    """The class label of a FASTA file name (``human.fa.gz`` -> ``human``), or None for other files."""
    name = path.name.lower()
    for compressed in (".gz", ".bgz"):
        name = name.removesuffix(compressed)
    suffix = next((s for s in FASTA_SUFFIXES if name.endswith(s)), None)
    return path.name[: len(name) - len(suffix)] if suffix else None


def discover_classes(source: str | Path) -> list[ClassFile]:
    """The class files of a folder or TSV manifest (see the module docstring), sorted by label."""
    source = Path(source)
    if source.is_dir():
        files = [ClassFile(label, p) for p in sorted(source.iterdir()) if p.is_file() and (label := _label(p))]
        if not files:
            raise ValueError(f"class folder {source} holds no FASTA file (.fa, .fasta, .fna, .fas, optionally .gz)")
        labels = [f.label for f in files]
        if twice := sorted({x for x in labels if labels.count(x) > 1}):
            raise ValueError(f"class folder {source}: several FASTA files for class(es) {twice}; keep one each")
    elif source.is_file():
        files = _read_manifest(source)
    else:
        raise FileNotFoundError(f"class folder or manifest {source} does not exist")
    if len({f.label for f in files}) < 2:
        raise ValueError(
            f"{source}: classification needs at least two classes, found {sorted({f.label for f in files})}"
        )
    return sorted(files, key=lambda f: f.label)


def _read_manifest(path: Path) -> list[ClassFile]:
    files = []
    for line_no, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.rstrip("\n").split("\t")
        if len(fields) not in (2, 3) or not all(f.strip() for f in fields):
            raise ValueError(f"{path}: line {line_no}: expected label<TAB>fasta[<TAB>bed], got {line!r}")
        paths = [(path.parent / f.strip()) for f in fields[1:]]
        for p in paths:
            if not p.is_file():
                raise FileNotFoundError(f"{path}: line {line_no}: {p} does not exist")
        files.append(ClassFile(fields[0].strip(), paths[0], paths[1] if len(paths) > 1 else None))
    if not files:
        raise ValueError(f"{path}: the manifest lists no class")
    return files


def split_regions(
    genome: Genome, bed: Path | None, heldout_fraction: float, heldout_split: str, whole: bool = False
) -> tuple[list[Interval], list[Interval]]:
    """(train, held-out) intervals of one class file (see the module docstring); ``whole``: records are examples,
    held out whole."""
    lengths = {name: n for name, n in genome.lengths.items() if n > 0}
    if bed is None:
        regions = [Interval(name, 0, n) for name, n in lengths.items()]
    else:
        regions = read_bed(bed, lengths)
        if any(iv.split is not None for iv in regions):
            return [iv for iv in regions if iv.split == "train"], [iv for iv in regions if iv.split == heldout_split]
    if whole:
        if len(regions) < 2:
            return regions, []
        count = min(len(regions) - 1, max(1, round(len(regions) * heldout_fraction)))
        held = set(((np.arange(count) + 0.5) * len(regions) / count).astype(int).tolist())
        return [iv for i, iv in enumerate(regions) if i not in held], [iv for i, iv in enumerate(regions) if i in held]
    train, heldout = [], []
    for iv in regions:
        cut = iv.end - round(len(iv) * heldout_fraction)
        train += [Interval(iv.chrom, iv.start, cut)] if cut > iv.start else []
        heldout += [Interval(iv.chrom, cut, iv.end)] if iv.end > cut else []
    return train, heldout


class _ClassRegions:
    """A class file's genome with window placers over its train and held-out intervals."""

    def __init__(self, file: ClassFile, config: SpeciesDataConfig) -> None:
        self.file = file
        self.genome = Genome(file.fasta, config.cache_dir)
        self.genome.check_bases()
        records = config.examples == "records"
        train, heldout = split_regions(
            self.genome, file.bed, config.heldout_fraction, config.heldout_split, whole=records
        )
        self.train = self._placer(train, config.seqlen, records)
        self.heldout = self._placer(heldout, config.seqlen, records)

    def _placer(self, intervals: list[Interval], seqlen: int, records: bool) -> WindowPlacer | None:
        if records:
            return ExamplePlacer(intervals, self.genome.lengths, seqlen) if intervals else None
        long_enough = [iv for iv in intervals if len(iv) >= seqlen]
        return WindowPlacer(long_enough, self.genome.lengths, seqlen) if long_enough else None


class SpeciesClasses:
    """The classes, their files and regions; checks that every class has usable train and held-out windows."""

    def __init__(self, config: SpeciesDataConfig) -> None:
        self.config = config
        files = discover_classes(config.classes)
        self.labels = sorted({f.label for f in files})
        self.regions: list[list[_ClassRegions]] = [
            [_ClassRegions(f, config) for f in files if f.label == label] for label in self.labels
        ]
        for label, regions in zip(self.labels, self.regions, strict=True):
            for what in ("train", "heldout"):
                if not any(getattr(r, what) for r in regions):
                    where = ", ".join(str(r.file.fasta) for r in regions)
                    split = what.replace("heldout", "held-out")
                    if config.examples == "records":
                        raise ValueError(
                            f"class {label!r} ({where}): no {split} record; a class needs at least two records "
                            "(or a BED split) when records are the examples"
                        )
                    raise ValueError(
                        f"class {label!r} ({where}): no {split} region is at least {config.seqlen:,} bases long "
                        "(to make each record one example, however short: examples='records', --examples records)"
                    )
            for region in regions:  # a class whose train regions are (nearly) all N fails here, not mid-training
                if region.train is not None:
                    try:
                        draw_windows(
                            region.genome, region.train, np.random.default_rng(0), 1, False, config.max_n_fraction
                        )
                    except ValueError as err:
                        raise ValueError(f"class {label!r}: {err}") from None

    def train_sources(self, label: int) -> tuple[list[_ClassRegions], np.ndarray]:
        """A class's files with train windows, and the probability of drawing from each."""
        regions = [r for r in self.regions[label] if r.train is not None]
        weights = np.array([r.train.total_starts for r in regions], dtype=np.float64)  # type: ignore[union-attr]
        return regions, weights / weights.sum()


class SpeciesTrainDataset(Dataset):
    """Item ``i`` = training step ``i``: windows with balanced classes, a pure function of (seed, i)."""

    def __init__(self, classes: SpeciesClasses) -> None:
        self.classes, self.config = classes, classes.config

    def __len__(self) -> int:
        return self.config.max_steps

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        if not 0 <= step < len(self):
            raise IndexError(f"step {step} outside 0..{len(self) - 1}")
        c = self.config
        n_micro, micro_batch = c.shape()
        count = n_micro * micro_batch
        rng = step_rng(c.seed, step)
        # Classes take turns across steps: balanced within a step, and over consecutive steps when a step holds
        # fewer windows than there are classes (one 1M-base window per step must not always be the first class).
        labels = rng.permutation((step * count + np.arange(count)) % len(self.classes.labels))
        windows = np.empty((count, c.seqlen), dtype=np.uint8)
        for label in range(len(self.classes.labels)):
            rows = np.flatnonzero(labels == label)
            regions, probs = self.classes.train_sources(label)
            bounds = np.concatenate([[0], np.cumsum(rng.multinomial(rows.size, probs))])
            for region, a, b in zip(regions, bounds[:-1], bounds[1:], strict=True):
                if b > a:
                    placer = region.train
                    assert placer is not None
                    try:
                        windows[rows[a:b]] = draw_windows(region.genome, placer, rng, b - a, c.rc_aug, c.max_n_fraction)
                    except ValueError as err:
                        raise ValueError(f"class {self.classes.labels[label]!r}: {err}") from None
        return {
            "input_ids": torch.from_numpy(windows.astype(np.int64)).view(n_micro, micro_batch, c.seqlen),
            "labels": torch.from_numpy(labels.astype(np.int64)).view(n_micro, micro_batch),
        }


class SpeciesHeldoutDataset(Dataset):
    """A fixed list of held-out windows of every class; one item is one micro-batch ``(1, b, L)``."""

    def __init__(self, classes: SpeciesClasses) -> None:
        config = classes.config
        self.regions: list[_ClassRegions] = []
        entries: list[tuple[int, int, Window]] = []  # (label, region index, window)
        for label, regions in enumerate(classes.regions):
            usable = [r for r in regions if r.heldout is not None]
            sizes = np.array([r.heldout.total_starts for r in usable], dtype=np.float64)  # type: ignore[union-attr]
            counts = np.maximum(1, np.round(config.heldout_windows_per_class * sizes / sizes.sum())).astype(int)
            for region, n in zip(usable, counts.tolist(), strict=True):
                assert region.heldout is not None
                try:
                    windows = filtered_windows(region.genome, region.heldout, n, config.max_n_fraction)
                except ValueError as err:
                    raise ValueError(f"class {classes.labels[label]!r}: {err}") from None
                self.regions.append(region)
                entries += [(label, len(self.regions) - 1, w) for w in windows]
        micro_batch = config.shape()[1]
        self.items = [entries[i : i + micro_batch] for i in range(0, len(entries), micro_batch)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        entries = self.items[i]
        windows = np.concatenate(
            [fetch_windows(self.regions[region].genome, [window]) for _, region, window in entries]
        )
        labels = np.array([label for label, _, _ in entries], dtype=np.int64)
        return {
            "input_ids": torch.from_numpy(windows.astype(np.int64))[None],
            "labels": torch.from_numpy(labels)[None],
        }
