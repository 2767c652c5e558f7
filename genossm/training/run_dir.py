"""A training run's output folder: created fresh, never overwritten, resumable.

DIR/config.yaml         the resolved options of the run
DIR/metrics.csv         one row per step (appended across resumes)
DIR/checkpoints/        Lightning's full-state checkpoints (written atomically), last.ckpt the newest
DIR/model/              the final model in the genossm.from_pretrained format
DIR/summary.json        final metrics
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from lightning.pytorch.utilities import rank_zero_only

from genossm.fileio import atomic_write_text

CONFIG_NAME = "config.yaml"
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"


RUN_DIR_ENV = "GENOSSM_RUN_DIR"  # the run folder, handed to the processes a multi-device launch starts


def default_output(kind: str) -> Path:
    """``runs/<kind>-<date>-<time>``: a new folder name for a run that was given none."""
    return Path("runs") / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"


def is_first_process() -> bool:
    """Whether this is the process the user started, not one that a multi-device launch (Lightning's DDP, torchrun)
    started for another rank: only the first one creates and writes the run's files."""
    return rank_zero_only.rank == 0


def launch_name(kind: str) -> str | None:
    """A folder name that every process of a launcher starting all ranks at once can compute alike (torchrun's run id,
    SLURM's job and step), or None for a single process or Lightning's own launcher (which starts ranks later)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and "TORCHELASTIC_RUN_ID" in os.environ:
        run_id = os.environ["TORCHELASTIC_RUN_ID"]
        if run_id == "none":  # torchrun's default without --standalone or --rdzv-id: shared by unrelated runs
            raise ValueError(
                "torchrun started this run without a run id, so its processes cannot agree on a new output folder; "
                "pass --output DIR (or torchrun --standalone / --rdzv-id)"
            )
        return f"{kind}-torchrun-{run_id}"
    if int(os.environ.get("SLURM_STEP_NUM_TASKS", "1")) > 1 and "SLURM_JOB_ID" in os.environ:  # srun's tasks
        return f"{kind}-slurm-{os.environ['SLURM_JOB_ID']}.{os.environ.get('SLURM_STEP_ID', '0')}"
    return None


def run_folder(output: Path | None, kind: str) -> RunDir:
    """The run's folder: ``output``, else a new name. Lightning's DDP launcher starts the other ranks by running the
    same command again, later, so they take the folder the first process chose from the environment; launchers that
    start every rank at once (torchrun, srun) get a name from their job id."""
    inherited = os.environ.get(RUN_DIR_ENV)
    if inherited and not is_first_process():
        path = Path(inherited)
    elif output is not None:
        path = output
    else:
        name = launch_name(kind)
        path = Path("runs") / name if name else default_output(kind)
    os.environ[RUN_DIR_ENV] = str(path)
    return RunDir(path)


@dataclass
class RunDir:
    """The output folder of one run."""

    path: Path

    @property
    def config(self) -> Path:
        return self.path / CONFIG_NAME

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.path / LAST_CHECKPOINT

    @property
    def model(self) -> Path:
        return self.path / "model"

    def create(self) -> None:
        """Claim a new folder; refuse one that already holds files (nothing a user wrote is overwritten)."""
        if self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir())):
            raise FileExistsError(
                f"output {self.path} already exists and is not empty; pass --resume to continue the run in it, "
                "or choose another --output"
            )
        self.path.mkdir(parents=True, exist_ok=True)
        if not os.access(self.path, os.W_OK):
            raise PermissionError(f"output {self.path} is not writable")

    def saved_options(self) -> dict:
        """The options a run was started with (for --resume)."""
        if not self.config.is_file():
            raise FileNotFoundError(f"cannot resume: {self.config} is missing (is {self.path} a genossm run?)")
        return yaml.safe_load(self.config.read_text()) or {}

    def resume_point(self) -> tuple[Path, int]:
        """The newest checkpoint and the optimizer step it holds."""
        if not self.last_checkpoint.is_file():
            raise FileNotFoundError(f"cannot resume: no checkpoint at {self.last_checkpoint} yet")
        checkpoint = torch.load(self.last_checkpoint, map_location="cpu", weights_only=False, mmap=True)
        return self.last_checkpoint, int(checkpoint["global_step"])

    def check_resumable(self, options: dict, changeable: set[str]) -> None:
        """A resumed run keeps its settings: only the ``changeable`` ones (steps, hardware...) may differ."""
        saved = self.saved_options()
        changed = sorted(k for k in options if k not in changeable and k in saved and saved[k] != options[k])
        if changed:
            diffs = "; ".join(f"{k}: {saved[k]!r} -> {options[k]!r}" for k in changed)
            raise ValueError(
                f"cannot resume {self.path} with other settings than its {CONFIG_NAME} ({diffs}); "
                "start a new --output for a different run"
            )

    def save_options(self, text: str) -> None:
        """Write the resolved options (YAML)."""
        atomic_write_text(self.config, text)
