"""The data of a fine-tuning run, from genossm.data's species module: training steps, held-out windows, the
training windows the k-mer baseline is fitted on (windows of the model's own first training steps), and the
held-out regions as whole sequences (to compare windowed and stateful reading).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from genossm.data.datamodules import SpeciesDataModule
from genossm.data.genome import Genome, RecordChunk
from genossm.data.intervals import Interval
from genossm.data.species import SpeciesDataConfig, discover_classes, split_regions

if TYPE_CHECKING:
    from .finetune import FinetuneOptions

MIN_EVAL_WINDOWS = 16


def eval_windows_per_class(opts: FinetuneOptions) -> int:
    """Held-out windows per class: ``eval_windows``, fewer at long lengths (``eval_bases`` per class, at least 16)."""
    return max(1, min(opts.eval_windows, max(MIN_EVAL_WINDOWS, opts.eval_bases // opts.seqlen)))


def build_data(opts: FinetuneOptions) -> tuple[SpeciesDataModule, list[str]]:
    """The species DataModule of a run and its class labels (the class files are checked here, before training)."""
    tokens_per_step, max_tokens_per_micro_batch = opts.step_tokens(opts.seqlen)
    config = SpeciesDataConfig(
        classes=opts.classes,
        seqlen=opts.seqlen,
        examples=opts.examples,
        tokens_per_step=tokens_per_step,
        max_tokens_per_micro_batch=max_tokens_per_micro_batch,
        max_steps=opts.max_steps,
        heldout_fraction=opts.heldout_fraction,
        heldout_windows_per_class=eval_windows_per_class(opts),
        rc_aug=opts.rc_aug,
        max_n_fraction=opts.max_n_fraction,
        num_workers=opts.num_workers,
        seed=opts.seed,
    )
    data = SpeciesDataModule(config)
    return data, data.classes


def heldout_windows(data: SpeciesDataModule) -> tuple[np.ndarray, np.ndarray]:
    """All held-out windows (n, L) as uint8 token ids, and their class indices."""
    data.setup()
    items = [data.valid_dataset[i] for i in range(len(data.valid_dataset))]
    windows = np.concatenate([item["input_ids"].flatten(0, 1).numpy().astype(np.uint8) for item in items])
    labels = np.concatenate([item["labels"].flatten().numpy() for item in items])
    return windows, labels


def kmer_training_windows(data: SpeciesDataModule, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """The windows of the first training steps, up to ``per_class`` of each class: what the model trained on."""
    data.setup()
    windows, labels = [], []
    classes = len(data.classes)
    for step in range(len(data.train_dataset)):
        item = data.train_dataset[step]
        windows.append(item["input_ids"].flatten(0, 1).numpy().astype(np.uint8))
        labels.append(item["labels"].flatten().numpy())
        if min(np.bincount(np.concatenate(labels), minlength=classes)) >= per_class:
            break
    windows_all, labels_all = np.concatenate(windows), np.concatenate(labels)
    keep = np.concatenate([np.flatnonzero(labels_all == c)[:per_class] for c in range(classes)])
    return windows_all[np.sort(keep)], labels_all[np.sort(keep)]


def heldout_regions(data: SpeciesDataModule, window: int, bases_per_class: int) -> list[tuple[int, Genome, Interval]]:
    """(class index, genome, interval) of the held-out regions, each cut to whole windows, at most
    ``bases_per_class`` bases of each class (regions shorter than a window are left out)."""
    config = data.config
    labels = data.classes
    budget = dict.fromkeys(labels, bases_per_class)
    regions = []
    for file in discover_classes(config.classes):
        genome = Genome(file.fasta, config.cache_dir)
        _, heldout = split_regions(genome, file.bed, config.heldout_fraction, config.heldout_split)
        for interval in heldout:
            length = min(len(interval), budget[file.label]) // window * window
            if length:
                budget[file.label] -= length
                cut = Interval(interval.chrom, interval.start, interval.start + length)
                regions.append((labels.index(file.label), genome, cut))
    return regions


def region_chunks(regions: list[tuple[int, Genome, Interval]], chunk: int = 1 << 22) -> Iterator[RecordChunk]:
    """The regions as records ``region<i>`` streamed in chunks (what genossm classify reads from a FASTA)."""
    for i, (_, genome, interval) in enumerate(regions):
        for start in range(interval.start, interval.end, chunk):
            end = min(start + chunk, interval.end)
            yield RecordChunk(f"region{i}", start - interval.start, genome.fetch(interval.chrom, start, end))
