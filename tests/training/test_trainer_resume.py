"""Trainer plumbing: checkpoints are written, and a resumed run equals an uninterrupted one."""

import pytest
import torch
from test_lm_module import TINY, PeriodicSteps

from genossm.data.steps import step_loader
from genossm.training.lm_module import LMPretrainModule
from genossm.training.optim import OptimConfig
from genossm.training.run_dir import RunDir
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
