"""The pretraining LightningModule, optimiser and CSV log, on synthetic step-indexed data."""

import csv

import lightning as L
import pytest
import torch
from torch.utils.data import Dataset

from genossm.models import MambaConfig
from genossm.training.csv_log import AppendingCSVLogger
from genossm.training.lm_module import LMPretrainModule
from genossm.training.memory import MemoryPlan
from genossm.training.optim import OptimConfig, parameter_groups, warmup_cosine
from genossm.training.step_module import NonFiniteLossError, shard_for_rank

TINY = MambaConfig(d_model=16, n_layer=2, vocab_size=12, ssm_cfg={"d_state": 4})


class PeriodicSteps(Dataset):
    """Item i = one step of (n_micro, micro_batch, L): a period-4 base pattern at a random phase."""

    def __init__(self, steps: int, n_micro: int = 2, micro_batch: int = 2, seqlen: int = 32) -> None:
        self.steps, self.shape, self.seqlen = steps, (n_micro, micro_batch), seqlen

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        gen = torch.Generator().manual_seed(i)
        phase = torch.randint(0, 4, (*self.shape, 1), generator=gen)
        seq = 7 + (torch.arange(self.seqlen + 1) + phase) % 4
        return {"input_ids": seq[..., :-1], "labels": seq[..., 1:]}


def fit(module, steps, tmp_path, **data):
    trainer = L.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=AppendingCSVLogger(tmp_path),
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    loader = torch.utils.data.DataLoader(PeriodicSteps(steps, **data), batch_size=None)
    trainer.fit(module, loader)
    return trainer


def test_loss_falls_and_metrics_are_logged(tmp_path):
    module = LMPretrainModule.create(
        TINY, OptimConfig(lr=2e-2, warmup_steps=2, max_steps=40, weight_decay=0.0), list("ACGT")
    )
    fit(module, 40, tmp_path)
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert len(losses) == 40
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    assert float(rows[-1]["train/tokens_per_s"]) > 0 and float(rows[-1]["train/bits_per_base"]) > 0


def test_micro_batches_equal_one_big_batch(tmp_path):
    # The same 4 sequences as 4 micro-batches of 1 or 1 micro-batch of 4 give the same update.
    results = []
    for shape in ((4, 1), (1, 4)):
        torch.manual_seed(0)
        module = LMPretrainModule.create(TINY, OptimConfig(warmup_steps=1, max_steps=1, grad_clip=1e9), None)
        item = PeriodicSteps(1, 1, 4)[0]
        data = {k: v.reshape(*shape, -1) for k, v in item.items()}
        trainer = L.Trainer(
            max_steps=1,
            accelerator="cpu",
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_val_batches=0,
        )
        trainer.fit(module, torch.utils.data.DataLoader([data], batch_size=None))
        results.append(torch.cat([p.detach().flatten() for p in module.parameters()]))
    assert torch.allclose(results[0], results[1], atol=1e-6)


def test_non_finite_loss_names_the_step(tmp_path):
    module = LMPretrainModule.create(TINY, OptimConfig(warmup_steps=1, max_steps=5), None)
    with torch.no_grad():
        module.model.backbone.embedding.weight[8] = float("nan")
    with pytest.raises(NonFiniteLossError, match=r"optimizer step 0 \(data item 0, micro-batch 0\)"):
        fit(module, 5, tmp_path)


def test_shard_for_rank():
    x = torch.arange(2 * 4 * 3).reshape(2, 4, 3)
    assert torch.equal(shard_for_rank(x, 1, 2), x[1:2])
    assert torch.equal(shard_for_rank(x, 1, 4), x[:, 1:2])
    with pytest.raises(ValueError, match="cannot be split over 3 devices"):
        shard_for_rank(x, 0, 3)


def test_schedule_and_weight_decay_groups():
    assert warmup_cosine(0, 10, 100, 0.1) == pytest.approx(0.1)
    assert warmup_cosine(9, 10, 100, 0.1) == pytest.approx(1.0)
    assert warmup_cosine(100, 10, 100, 0.1) == pytest.approx(0.1)
    assert warmup_cosine(55, 10, 100, 0.1) == pytest.approx(0.55)
    module = LMPretrainModule.create(TINY, OptimConfig(), None)
    mixer = module.model.backbone.layers[0].mixer
    assert mixer.A_log._no_weight_decay  # mamba_ssm's mark, for optimisers written for it
    del mixer.A_log._no_weight_decay  # FSDP's sharding loses it: the mixer names the parameters it exempts
    decay, no_decay = parameter_groups(module.model, 0.1)
    decay_ids = {id(p) for p in decay["params"]}
    assert id(mixer.in_proj.weight) in decay_ids
    for p in (
        mixer.A_log,
        mixer.D,
        mixer.dt_proj.bias,
        module.model.backbone.embedding.weight,
        module.model.backbone.norm_f.weight,
    ):
        assert id(p) not in decay_ids
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(module.model.parameters()))


def test_csv_log_appends_across_runs(tmp_path):
    first = AppendingCSVLogger(tmp_path)
    first.log_metrics({"a": 1.0}, step=0)
    first.save()
    second = AppendingCSVLogger(tmp_path)
    second.log_metrics({"a": 2.0, "b": 3.0}, step=1)
    second.save()
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [(r["step"], r["a"], r["b"]) for r in rows] == [("0", "1.0", ""), ("1", "2.0", "3.0")]


@pytest.mark.parametrize("memory", [MemoryPlan("checkpoint"), MemoryPlan("segmented", 8)])
def test_memory_modes_give_the_plain_update(memory):
    results = []
    for plan in (MemoryPlan(), memory):
        torch.manual_seed(0)
        module = LMPretrainModule.create(TINY, OptimConfig(warmup_steps=1, max_steps=1), None, plan)
        trainer = L.Trainer(
            max_steps=1,
            accelerator="cpu",
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_val_batches=0,
        )
        trainer.fit(module, torch.utils.data.DataLoader(PeriodicSteps(1), batch_size=None))
        results.append(torch.cat([p.detach().flatten() for p in module.parameters()]))
    assert torch.allclose(results[0], results[1], atol=1e-6)
