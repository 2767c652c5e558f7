"""Lightning DataModules of the step-indexed datasets: genome language modelling and species classification.

The training loader starts at the step set by ``set_start_step``, else at the attached trainer's
``global_step`` (what a resumed Lightning run has already done), else at 0; item ``i`` is always step ``i``.
Indexes are built in ``setup`` (the main process); files are opened lazily inside each worker.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict
from typing import Any

import lightning as L
from torch.utils.data import DataLoader, Dataset

from .genome import Genome
from .lm import LMDataConfig, LMTrainDataset, LMValidDataset, lm_splits
from .species import SpeciesClasses, SpeciesDataConfig, SpeciesHeldoutDataset, SpeciesTrainDataset
from .steps import step_loader

# Settings that do not change which items a run sees.
_NOT_ITEM_FIELDS = ("num_workers", "cache_dir", "valid_items", "heldout_windows_per_class")


class StepDataModule(L.LightningDataModule):
    """Shared plumbing: loaders of whole steps, the resume step, and a check of the data settings on resume."""

    config: LMDataConfig | SpeciesDataConfig
    train_dataset: Dataset | None
    valid_dataset: Dataset | None

    def __init__(self) -> None:
        super().__init__()
        self.train_dataset = self.valid_dataset = None
        self._start_step: int | None = None

    def set_start_step(self, step: int) -> None:
        """Make the next training loader start at ``step`` (the first step not yet trained on)."""
        self._start_step = step

    def start_step(self) -> int:
        """Where the training loader starts."""
        if self._start_step is not None:
            return self._start_step
        trainer = getattr(self, "trainer", None)
        return trainer.global_step if trainer is not None else 0

    def train_dataloader(self) -> DataLoader:
        self.setup()
        assert self.train_dataset is not None
        return step_loader(self.train_dataset, self.start_step(), self.config.num_workers)

    def val_dataloader(self) -> DataLoader | list:
        self.setup()
        if self.valid_dataset is None:
            return []
        return step_loader(self.valid_dataset, 0, self.config.num_workers)

    def state_dict(self) -> dict[str, Any]:
        """The settings that decide the items, saved in checkpoints to check a resumed run against."""
        return {"items": {k: str(v) for k, v in asdict(self.config).items() if k not in _NOT_ITEM_FIELDS}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Warn when a run resumes with data settings that change its items."""
        saved, now = state_dict.get("items", {}), self.state_dict()["items"]
        changed = sorted(k for k in now if k in saved and saved[k] != now[k])
        if changed:
            diffs = ", ".join(f"{k}: {saved[k]} -> {now[k]}" for k in changed)
            warnings.warn(f"resuming with different data settings ({diffs}); its steps will differ", stacklevel=2)


class GenomeLMDataModule(StepDataModule):
    """Next-base language-model steps of :class:`LMDataConfig` (validation: fixed windows of the valid split)."""

    def __init__(self, config: LMDataConfig) -> None:
        super().__init__()
        self.config = config
        self.genome = Genome(config.fasta, config.cache_dir)

    def setup(self, stage: str | None = None) -> None:
        """Index the genome and build the splits."""
        if self.train_dataset is not None:
            return
        self.genome.check_bases()
        splits = lm_splits(self.genome, self.config)
        self.train_dataset = LMTrainDataset(self.genome, splits["train"], self.config)
        if self.config.valid_items:
            self.valid_dataset = LMValidDataset(self.genome, splits["valid"], self.config)


class SpeciesDataModule(StepDataModule):
    """Species classification steps of :class:`SpeciesDataConfig` (validation: the fixed held-out windows)."""

    def __init__(self, config: SpeciesDataConfig) -> None:
        super().__init__()
        self.config = config
        self._classes: SpeciesClasses | None = None

    @property
    def classes(self) -> list[str]:
        """The class labels, in label-id order."""
        self.setup()
        assert self._classes is not None
        return self._classes.labels

    def setup(self, stage: str | None = None) -> None:
        """Find the classes, index their files, place the held-out windows."""
        if self._classes is not None:
            return
        self._classes = SpeciesClasses(self.config)
        self.train_dataset = SpeciesTrainDataset(self._classes)
        self.valid_dataset = SpeciesHeldoutDataset(self._classes)
