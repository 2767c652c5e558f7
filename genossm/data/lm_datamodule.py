"""The genome language-model data as a Lightning DataModule (step-indexed items, resumable at any step)."""

from __future__ import annotations

import warnings
from dataclasses import asdict
from typing import Any

import lightning as L
from torch.utils.data import DataLoader

from .genome import Genome
from .lm import LMDataConfig, LMTrainDataset, LMValidDataset, lm_splits
from .steps import step_loader

# Config fields that decide which items a run sees (a resumed run must keep them).
_ITEM_FIELDS = (
    "fasta",
    "bed",
    "seqlen",
    "tokens_per_step",
    "max_tokens_per_micro_batch",
    "seed",
    "rc_aug",
    "max_n_fraction",
    "split_fractions",
    "seqlen_warmup",
    "warmup_start_seqlen",
    "warmup_fraction",
    "warmup_stages",
)


class GenomeLMDataModule(L.LightningDataModule):
    """Train and validation loaders of :class:`LMDataConfig` data.

    The training loader starts at the step set by :meth:`set_start_step`, else at the attached trainer's
    ``global_step`` (what a resumed Lightning run has already done), else at 0. Item ``i`` is always step ``i``.
    """

    def __init__(self, config: LMDataConfig) -> None:
        super().__init__()
        self.config = config
        self.genome = Genome(config.fasta, config.cache_dir)
        self.train_dataset: LMTrainDataset | None = None
        self.valid_dataset: LMValidDataset | None = None
        self._start_step: int | None = None

    def setup(self, stage: str | None = None) -> None:
        """Index the genome and build the splits (in the main process, before any worker starts)."""
        if self.train_dataset is not None:
            return
        splits = lm_splits(self.genome, self.config)
        self.train_dataset = LMTrainDataset(self.genome, splits["train"], self.config)
        if self.config.valid_items:
            self.valid_dataset = LMValidDataset(self.genome, splits["valid"], self.config)

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
        config = asdict(self.config)
        return {"items": {k: str(config[k]) for k in _ITEM_FIELDS}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Warn when a run resumes with data settings that change its items."""
        saved, now = state_dict.get("items", {}), self.state_dict()["items"]
        changed = sorted(k for k in now if k in saved and saved[k] != now[k])
        if changed:
            diffs = ", ".join(f"{k}: {saved[k]} -> {now[k]}" for k in changed)
            warnings.warn(f"resuming with different data settings ({diffs}); steps will differ", stacklevel=2)
