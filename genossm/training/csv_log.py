"""A CSV logger that appends: a resumed run continues ``metrics.csv`` instead of deleting it.

(Lightning's CSVLogger removes an existing metrics file when it starts.)
"""

from __future__ import annotations

import csv
from argparse import Namespace
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities import rank_zero_only


class AppendingCSVLogger(Logger):
    """Writes every logged metric to ``<save_dir>/metrics.csv``, one row per step, keeping earlier rows."""

    def __init__(self, save_dir: str | Path) -> None:
        super().__init__()
        self.path = Path(save_dir) / "metrics.csv"
        self._rows: list[dict[str, Any]] = []

    @property
    def name(self) -> str:
        return "csv"

    @property
    def version(self) -> str:
        return ""

    @property
    def save_dir(self) -> str:
        return str(self.path.parent)

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace) -> None:
        """Hyperparameters are saved with the run's config, not in the CSV."""

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self._rows.append({"step": step, **{k: float(v) for k, v in metrics.items()}})

    @rank_zero_only
    def save(self) -> None:
        """Append the rows logged since the last save; rewrite the file only when new columns appear."""
        if not self._rows:
            return
        keys, old_rows = ["step"], []
        if self.path.is_file():
            with self.path.open(newline="") as handle:
                reader = csv.DictReader(handle)
                keys = list(reader.fieldnames or keys)
                new_keys = sorted({k for row in self._rows for k in row} - set(keys))
                if new_keys:
                    old_rows = list(reader)
        else:
            new_keys = sorted({k for row in self._rows for k in row} - set(keys))
        keys += new_keys
        rewrite = bool(new_keys) or not self.path.is_file()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("w" if rewrite else "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=keys)
            if rewrite:
                writer.writeheader()
                writer.writerows(old_rows)
            writer.writerows(self._rows)
        self._rows.clear()

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self.save()
