"""Checkpointed and sequence-segmented training give the plain gradients (float64, small models)."""

import pytest
import torch
import torch.nn.functional as F
from conftest import rel_err

from genossm.models import MambaConfig, MambaLMHeadModel
from genossm.training.segmented import segmented_lm_backward

CONFIGS = {
    "Mamba1": MambaConfig(d_model=16, n_layer=2, vocab_size=12, ssm_cfg={"d_state": 4, "d_conv": 4}),
    "Mamba2": MambaConfig(
        d_model=16, n_layer=2, vocab_size=12, ssm_cfg={"layer": "Mamba2", "d_state": 4, "headdim": 8, "chunk_size": 8}
    ),
}


def grads_of(model):
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def plain_grads(model, ids, labels):
    model.zero_grad()
    loss = F.cross_entropy(model(ids).logits.flatten(0, 1), labels.flatten(), reduction="sum")
    loss.backward()
    return loss.detach(), grads_of(model)


@pytest.mark.parametrize("mixer", ["Mamba1", "Mamba2"])
def test_checkpointed_gradients_equal_plain(mixer):
    model = MambaLMHeadModel(CONFIGS[mixer]).double()
    ids = torch.randint(7, 12, (2, 30))
    labels = torch.randint(7, 12, (2, 30))
    _, expected = plain_grads(model, ids, labels)
    model.zero_grad()
    model.backbone.gradient_checkpointing = True
    F.cross_entropy(model(ids).logits.flatten(0, 1), labels.flatten(), reduction="sum").backward()
    assert rel_err(grads_of(model), expected) < 1e-12


@pytest.mark.parametrize("mixer", ["Mamba1", "Mamba2"])
@pytest.mark.parametrize("segment", [1, 3, 7, 16, 30])  # 3: inside a conv window; 7 and 16: inside SSD chunks
@pytest.mark.parametrize("checkpointed", [False, True])
def test_segmented_gradients_equal_plain(mixer, segment, checkpointed):
    model = MambaLMHeadModel(CONFIGS[mixer]).double()
    ids = torch.randint(7, 12, (2, 30))
    labels = torch.randint(7, 12, (2, 30))
    loss, expected = plain_grads(model, ids, labels)
    model.zero_grad()
    model.backbone.gradient_checkpointing = checkpointed
    seg_loss = segmented_lm_backward(model, ids, labels, segment_len=segment)
    assert torch.allclose(seg_loss.double(), loss)
    assert rel_err(grads_of(model), expected) < 1e-10
