"""Trainer plumbing: checkpoints are written, and a resumed run equals an uninterrupted one."""

from pathlib import Path

import pytest
import torch
from lightning.pytorch.utilities import rank_zero_only
from test_lm_module import TINY, PeriodicSteps

from genossm.data.steps import step_loader
from genossm.training.lm_module import LMPretrainModule
from genossm.training.optim import OptimConfig
from genossm.training.run_dir import RUN_DIR_ENV, RunDir, run_folder
from genossm.training.trainer import HardwareOptions, build_trainer


def train(run: RunDir, steps: int, start: int = 0, ckpt=None):
    torch.manual_seed(0)
    module = LMPretrainModule.create(TINY, OptimConfig(lr=1e-2, warmup_steps=2, max_steps=8), None)
    trainer = build_trainer(run, HardwareOptions(), max_steps=steps, val_every=100, checkpoint_every=2)
    trainer.fit(module, step_loader(PeriodicSteps(8), start), ckpt_path=ckpt)
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def test_resume_equals_uninterrupted(tmp_path):
    straight = train(RunDir(tmp_path / "a"), 8)
    first = RunDir(tmp_path / "b")
    train(first, 4)  # stops after 4 of the run's 8 steps
    checkpoint, step = first.resume_point()
    assert step == 4
    resumed = train(first, 8, start=step, ckpt=checkpoint)
    assert torch.allclose(straight, resumed, atol=1e-6)
    rows = (first.path / "metrics.csv").read_text().splitlines()
    assert len([r for r in rows[1:] if r.split(",")[0] != ""]) >= 8  # both halves kept


def test_run_dir_refuses_to_overwrite(tmp_path):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="already exists and is not empty"):
        RunDir(tmp_path / "used").create()
    assert (tmp_path / "used" / "notes.txt").read_text() == "mine"
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        RunDir(tmp_path / "used").resume_point()


LAUNCH_ENV = ("WORLD_SIZE", "TORCHELASTIC_RUN_ID", "SLURM_STEP_NUM_TASKS", "SLURM_JOB_ID", "SLURM_STEP_ID", RUN_DIR_ENV)


@pytest.mark.parametrize("rank", [0, 1])
@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WORLD_SIZE": "2", "TORCHELASTIC_RUN_ID": "f3a9"}, "runs/pretrain-torchrun-f3a9"),
        ({"SLURM_STEP_NUM_TASKS": "4", "SLURM_JOB_ID": "812", "SLURM_STEP_ID": "1"}, "runs/pretrain-slurm-812.1"),
    ],
)
def test_ranks_started_at_once_agree_on_the_folder(monkeypatch, rank, env, expected):
    for name in LAUNCH_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(rank_zero_only, "rank", rank)
    assert run_folder(None, "pretrain").path == Path(expected)
    monkeypatch.delenv(RUN_DIR_ENV)  # (a later rank of the same launch would take the folder handed down)
    assert run_folder(Path("mine"), "pretrain").path == Path("mine")  # an explicit --output wins


def test_run_folder_without_a_shared_launch_id(monkeypatch):
    for name in LAUNCH_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(rank_zero_only, "rank", 0)
    monkeypatch.setenv("SLURM_JOB_ID", "812")  # one process in an allocation: a dated folder, not the job's
    assert run_folder(None, "finetune").path.name.startswith("finetune-2")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")
    with pytest.raises(ValueError, match="pass --output"):
        run_folder(None, "finetune")
