"""The fine-tuning module and model initialisation: learning, head-only training, backbones from checkpoints."""

import lightning as L
import numpy as np
import pytest
import torch
from synthetic import TINY, SyntheticSteps, windows_of
from torch.utils.data import DataLoader

from genossm.classification.checkpoints import init_from, load_classifier
from genossm.classification.module import ClassifierModule
from genossm.data.tokenizer import TOKENS
from genossm.models import MambaForSequenceClassification, MambaLMHeadModel
from genossm.training.optim import OptimConfig


def fit(module: ClassifierModule, steps: int, **data) -> None:
    trainer = L.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(module, DataLoader(SyntheticSteps(steps, **data), batch_size=None))


def accuracy(model: MambaForSequenceClassification, classes: int) -> float:
    rng = np.random.default_rng(1234)
    ids = np.concatenate([windows_of(c, 32, 32, rng) for c in range(classes)])
    truth = np.repeat(np.arange(classes), 32)
    with torch.no_grad():
        predicted = model(torch.from_numpy(ids).long()).argmax(-1).numpy()
    return float((predicted == truth).mean())


def test_finetuning_learns_a_separable_task():
    module = ClassifierModule.create(
        TINY, ["ac", "gt", "ag"], OptimConfig(lr=1e-2, warmup_steps=2, max_steps=40, weight_decay=0.0)
    )
    before = accuracy(module.model, 3)
    fit(module, 40, classes=3)
    assert accuracy(module.model, 3) > 0.9 > before + 0.2


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_padding_at_the_end_of_a_window_is_not_read(pooling):
    module = ClassifierModule.create(TINY, ["a", "b"], OptimConfig(), pooling=pooling).double()
    ids = torch.from_numpy(windows_of(0, 2, 24, np.random.default_rng(3))).long()
    padded = ids.clone()
    padded[0, 10:] = TOKENS.index("[PAD]")
    with torch.no_grad():
        logits = module.logits(padded)
        assert torch.allclose(logits[0], module.model(ids[:1, :10])[0], atol=1e-12)
        assert torch.allclose(logits[1], module.model(ids[1:])[0], atol=1e-12)


def test_head_only_freezes_the_backbone():
    module = ClassifierModule.create(
        TINY, ["a", "b"], OptimConfig(lr=1e-2, warmup_steps=1, max_steps=5), head_only=True
    )
    backbone = [p.detach().clone() for p in module.model.backbone.parameters()]
    head = [p.detach().clone() for p in module.model.classifier.parameters()]
    fit(module, 5)
    assert all(torch.equal(a, b) for a, b in zip(backbone, module.model.backbone.parameters(), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(head, module.model.classifier.parameters(), strict=True))
    assert all(p.grad is None for p in module.model.backbone.parameters())


def test_init_from_a_language_model_loads_the_backbone(tmp_path):
    lm = MambaLMHeadModel(TINY)
    lm.tokens = list(TOKENS)
    lm.save_pretrained(tmp_path / "lm")
    model = MambaForSequenceClassification(TINY, ["a", "b"])
    head = model.classifier.weight.detach().clone()
    assert "language model" in init_from(model, tmp_path / "lm")
    for name, p in lm.backbone.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[name], p), name
    assert torch.equal(model.classifier.weight, head)  # an LM has no head to give


def test_init_from_a_classifier_with_the_same_labels_loads_the_head_too(tmp_path):
    first = MambaForSequenceClassification(TINY, ["a", "b"])
    first.tokens = list(TOKENS)
    first.save_pretrained(tmp_path / "clf")
    same, other = MambaForSequenceClassification(TINY, ["a", "b"]), MambaForSequenceClassification(TINY, ["x", "y"])
    assert "backbone and head" in init_from(same, tmp_path / "clf")
    assert torch.equal(same.classifier.weight, first.classifier.weight)
    init_from(other, tmp_path / "clf")
    assert not torch.equal(other.classifier.weight, first.classifier.weight)
    assert torch.equal(other.backbone.embedding.weight, first.backbone.embedding.weight)


def test_init_from_a_mamba_ssm_directory(tmp_path):
    lm = MambaLMHeadModel(TINY)
    lm.save_pretrained(tmp_path / "peer")
    (tmp_path / "peer" / "genossm.json").unlink()  # what mamba_ssm writes: config.json + pytorch_model.bin
    model = MambaForSequenceClassification(TINY, ["a", "b"])
    assert init_from(model, tmp_path / "peer").startswith("mamba_ssm language model")
    assert torch.equal(model.backbone.embedding.weight, lm.backbone.embedding.weight)


def test_vocabulary_mismatch_names_the_file(tmp_path):
    lm = MambaLMHeadModel(TINY)
    lm.tokens = list("ACGTN")
    lm.save_pretrained(tmp_path / "lm")
    with pytest.raises(ValueError, match=r"lm/genossm.json: vocabulary mismatch"):
        init_from(MambaForSequenceClassification(TINY, ["a", "b"]), tmp_path / "lm")


def test_a_language_model_is_not_a_classifier(tmp_path):
    MambaLMHeadModel(TINY).save_pretrained(tmp_path / "lm")
    with pytest.raises(ValueError, match=r"lm holds a language model, not a classifier"):
        load_classifier(tmp_path / "lm")
