"""Language-model steps: token budget, sequence-length warm-up, labels, determinism, resume."""

import warnings

import lightning as L
import numpy as np
import pytest
import torch
from fasta_files import random_bases, write_fasta

from genossm.data.datamodules import GenomeLMDataModule
from genossm.data.lm import LMDataConfig
from genossm.data.steps import SeqlenStage, seqlen_at, seqlen_stages, step_loader, step_shape
from genossm.data.tokenizer import A_ID, C_ID, G_ID, N_ID, T_ID, decode, reverse_complement


@pytest.mark.parametrize(
    ("seqlen", "max_micro", "shape"),
    [
        (1024, 2**20, (1, 1024)),  # 1024 x 1K = 2^20
        (1024, 2**16, (16, 64)),  # the same step in 16 micro-batches
        (2**16, 2**16, (16, 1)),
        (2**20, 2**16, (1, 1)),  # 1 x 1M
        (2**21, 2**20, (1, 1)),  # one window alone exceeds the budget
    ],
)
def test_batch_sizes_follow_the_token_budget(seqlen, max_micro, shape):
    n_micro, micro_batch = step_shape(seqlen, 2**20, max_micro)
    assert (n_micro, micro_batch) == shape
    assert n_micro * micro_batch * seqlen == max(2**20, seqlen)


def test_budget_that_does_not_split_is_an_error():
    with pytest.raises(ValueError, match="do not split into micro-batches"):
        step_shape(1000, 2**20, 2**20)


def test_seqlen_warmup_doubles_in_equal_stages():
    stages = seqlen_stages(target=8192, max_steps=100, start_seqlen=1024, fraction=0.25)
    # 1K, 2K, 4K share 25 steps (9 + 8 + 8), then the target
    assert stages == [SeqlenStage(0, 1024), SeqlenStage(9, 2048), SeqlenStage(17, 4096), SeqlenStage(25, 8192)]
    assert [seqlen_at(stages, s) for s in (0, 8, 9, 24, 25, 99)] == [1024, 1024, 2048, 4096, 8192, 8192]
    assert seqlen_stages(8192, 100, warmup=False) == [SeqlenStage(0, 8192)]
    assert seqlen_stages(1024, 100) == [SeqlenStage(0, 1024)]  # nothing to warm up
    assert seqlen_stages(8192, 8, fraction=0.25) == [SeqlenStage(0, 2048), SeqlenStage(1, 4096), SeqlenStage(2, 8192)]
    explicit = seqlen_stages(4096, 50, stages=[(256, 10), (1024, 5)])
    assert explicit == [SeqlenStage(0, 256), SeqlenStage(10, 1024), SeqlenStage(15, 4096)]
    with pytest.raises(ValueError, match="take 60 steps, but training has only 50"):
        seqlen_stages(4096, 50, stages=[(256, 60)])


@pytest.fixture
def genome_path(tmp_path, cache):
    rng = np.random.default_rng(0)
    chr2 = random_bases(rng, 3000) + b"N" * 3000 + random_bases(rng, 3000)
    return write_fasta(tmp_path / "g.fa", {"chr1": random_bases(rng, 20_000), "chr2": chr2, "chrM": b"ACGT" * 10})


def make(path, **kw):
    config = dict(fasta=path, seqlen=64, tokens_per_step=1024, max_tokens_per_micro_batch=256, max_steps=40)
    data = GenomeLMDataModule(LMDataConfig(**{**config, **kw}))
    data.setup()
    return data


def test_items_follow_the_schedule_and_labels_are_the_next_base(genome_path):
    data = make(genome_path, seqlen_warmup=True, warmup_start_seqlen=16, warmup_fraction=0.5, max_n_fraction=1.0)
    ds = data.train_dataset
    for step in range(len(ds)):
        item = ds[step]
        seqlen = ds.seqlen(step)
        n_micro, micro_batch = data.config.shape(seqlen)
        assert item["input_ids"].shape == item["labels"].shape == (n_micro, micro_batch, seqlen)
        assert item["input_ids"].dtype == item["labels"].dtype == torch.long
        assert item["input_ids"].numel() == 1024
        ids, labels = item["input_ids"], item["labels"]
        known = labels[..., :-1] != -100
        assert torch.equal(labels[..., :-1][known], ids[..., 1:][known])  # label t = input t + 1
        assert ((labels == -100) | ((labels >= A_ID) & (labels <= T_ID))).all()  # N targets are ignored
    assert [ds.seqlen(s) for s in (0, 19, 20, 39)] == [16, 32, 64, 64]
    assert (torch.cat([ds[s]["input_ids"].flatten() for s in range(10)]) == N_ID).any()  # N inputs stay


def test_max_n_fraction_filters_windows(genome_path):
    ds = make(genome_path, max_n_fraction=0.1).train_dataset
    for step in range(20):
        ids = ds[step]["input_ids"]
        assert ((ids == N_ID).float().mean(-1) <= 0.1).all()


def test_deterministic_per_seed_and_resumable_at_any_step(genome_path):
    a, b = make(genome_path).train_dataset, make(genome_path).train_dataset
    other = make(genome_path, seed=1).train_dataset
    assert all(torch.equal(a[s]["input_ids"], b[s]["input_ids"]) for s in (0, 7, 39))
    assert not torch.equal(a[3]["input_ids"], other[3]["input_ids"])
    resumed = list(step_loader(a, start_step=25))
    assert len(resumed) == 15 and all(torch.equal(x["labels"], a[25 + i]["labels"]) for i, x in enumerate(resumed))


def test_items_do_not_depend_on_the_number_of_workers(genome_path):
    ds = make(genome_path, max_steps=6).train_dataset
    single = [x["input_ids"] for x in step_loader(ds, 0, num_workers=0)]
    multi = [x["input_ids"] for x in step_loader(ds, 0, num_workers=2)]
    assert len(single) == 6 and all(torch.equal(x, y) for x, y in zip(single, multi, strict=True))


def test_rc_augmentation(tmp_path, cache):
    path = write_fasta(tmp_path / "ac.fa", {"x": random_bases(np.random.default_rng(1), 5000, b"AC")})
    plain = torch.cat([make(path, rc_aug=False).train_dataset[s]["input_ids"] for s in range(3)])
    flipped = torch.cat([make(path, rc_aug=True).train_dataset[s]["input_ids"] for s in range(3)])
    assert set(plain.unique().tolist()) == {A_ID, C_ID}
    windows = flipped.reshape(-1, 64)
    has_gt = torch.isin(windows, torch.tensor([G_ID, T_ID])).any(-1)
    assert 0.3 < has_gt.float().mean() < 0.7  # about half reverse complemented
    assert set(reverse_complement(windows[has_gt]).unique().tolist()) <= {A_ID, C_ID}


def test_validation_is_fixed_and_independent_of_the_seed(genome_path):
    a, b = make(genome_path, valid_items=3), make(genome_path, valid_items=3, seed=5)
    assert len(a.valid_dataset) == 3
    for i in range(3):
        assert torch.equal(a.valid_dataset[i]["input_ids"], b.valid_dataset[i]["input_ids"])
        assert a.valid_dataset[i]["input_ids"].shape == (4, 4, 64)


def test_bed_splits_are_used(tmp_path, genome_path):
    bed = tmp_path / "splits.bed"
    bed.write_text("chr1\t0\t10000\ttrain\nchr1\t10000\t12000\tvalid\nchr1\t12000\t20000\ttest\n")
    data = make(genome_path, bed=bed, valid_items=1)
    train_text = decode(data.genome.fetch("chr1", 0, 10_000))
    for step in range(3):
        for row in data.train_dataset[step]["input_ids"].reshape(-1, 64):
            assert decode(row) in train_text
    valid_windows = [w for item in data.valid_dataset.items for w in item]
    assert all(w.chrom == "chr1" and w.start >= 10_000 and w.end <= 12_000 for w in valid_windows)
    bed.write_text("chr1\t0\t10000\tfold0\n")
    with pytest.raises(ValueError, match=r"split column values must be train, valid or test, not \['fold0'\]"):
        make(genome_path, bed=bed)


def test_resume_through_lightning_equals_an_uninterrupted_run(genome_path, tmp_path):
    class Recorder(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))
            self.automatic_optimization = False
            self.seen = []

        def training_step(self, batch, batch_idx):
            self.seen.append(batch["input_ids"].clone())
            optimizer = self.optimizers()
            self.manual_backward((self.weight - 1).square().sum())
            optimizer.step()
            optimizer.zero_grad()

        def configure_optimizers(self):
            return torch.optim.SGD([self.weight], lr=0.1)

    def fit(steps, ckpt=None):
        module = Recorder()
        trainer = L.Trainer(
            max_steps=steps,
            accelerator="cpu",
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = GenomeLMDataModule(
                LMDataConfig(fasta=genome_path, seqlen=64, tokens_per_step=256, max_steps=8, valid_items=0)
            )
            trainer.fit(module, datamodule=data, ckpt_path=ckpt)
        return trainer, module.seen

    _, straight = fit(8)
    trainer, first = fit(3)
    trainer.save_checkpoint(tmp_path / "k.ckpt")
    _, rest = fit(8, tmp_path / "k.ckpt")
    assert len(first) == 3 and len(rest) == 5
    assert all(torch.equal(x, y) for x, y in zip(straight, first + rest, strict=True))


def test_resuming_with_other_data_settings_warns(genome_path):
    state = make(genome_path).state_dict()
    make(genome_path, num_workers=1).load_state_dict(state)  # loader settings do not matter
    with pytest.warns(UserWarning, match=r"different data settings \(seed: 0 -> 3\)"):
        make(genome_path, seed=3).load_state_dict(state)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"max_n_fraction": 1.5}, "max_n_fraction must be between 0 and 1"),
        ({"tokens_per_step": 1000}, "do not split into micro-batches"),
        ({"warmup_stages": [[32, 100]]}, "take 100 steps, but training has only 40"),
    ],
)
def test_config_errors(genome_path, kw, message):
    with pytest.raises(ValueError, match=message):
        make(genome_path, **kw)
