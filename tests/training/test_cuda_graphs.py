"""Micro-batches replayed from CUDA graphs: when they are used, and (on a GPU) that they give eager gradients."""

import copy

import numpy as np
import pytest
import torch

from genossm.classification.module import ClassifierModule
from genossm.models import MambaConfig, MambaLMHeadModel
from genossm.training.graphs import MAX_GRAPH_TOKENS, GraphedMicroBatches, graphs_apply
from genossm.training.loss import summed_token_loss
from genossm.training.optim import OptimConfig

CUDA, CPU = torch.device("cuda"), torch.device("cpu")
CONFIG = MambaConfig(d_model=32, n_layer=2, vocab_size=12, ssm_cfg={"layer": "Mamba1", "d_state": 8})


@pytest.mark.parametrize(
    ("device", "world", "plain", "tokens", "enabled", "expected"),
    [
        (CUDA, 1, True, 1 << 16, True, True),
        (CUDA, 1, True, MAX_GRAPH_TOKENS, True, True),
        (CUDA, 1, True, MAX_GRAPH_TOKENS * 2, True, False),  # a large micro-batch hides its launches anyway
        (CUDA, 2, True, 1 << 16, True, False),  # DDP's gradient hooks stay eager
        (CUDA, 1, False, 1 << 16, True, False),  # checkpointed and segmented backward passes stay eager
        (CUDA, 1, True, 1 << 16, False, False),  # --no-cuda-graphs
        (CPU, 1, True, 1 << 16, True, False),
    ],
)
def test_when_graphs_apply(device, world, plain, tokens, enabled, expected):
    assert graphs_apply(device, world, plain, tokens, enabled) == expected


def eager_step(model, ids, labels, scale):
    loss = summed_token_loss(model(ids).logits, labels)
    (loss * scale).backward()
    return loss.detach()


@pytest.mark.gpu
@pytest.mark.parametrize("bfloat16", [False, True])
def test_replayed_micro_batches_give_the_eager_gradients(bfloat16):
    torch.manual_seed(0)
    graphed_model = MambaLMHeadModel(CONFIG).cuda()
    eager_model = copy.deepcopy(graphed_model)
    graphed = GraphedMicroBatches(
        graphed_model, lambda ids, labels: (summed_token_loss(graphed_model(ids).logits, labels), labels.numel())
    )
    rng = np.random.default_rng(1)
    optimizers = [torch.optim.AdamW(m.parameters(), lr=1e-2) for m in (graphed_model, eager_model)]
    with torch.autocast("cuda", torch.bfloat16, enabled=bfloat16):
        for _step in range(3):  # 2 micro-batches a step, the optimiser between steps
            ids = torch.from_numpy(rng.integers(7, 11, (2, 4, 65))).cuda()
            scale = torch.full((), 1 / ids[..., 1:].numel(), device="cuda")
            for i in range(2):
                loss, _ = graphed(ids[i, :, :-1], ids[i, :, 1:], scale, first=i == 0)
                expected = eager_step(eager_model, ids[i, :, :-1], ids[i, :, 1:], scale)
                assert torch.allclose(loss, expected, rtol=1e-4 if bfloat16 else 1e-5)
            for (name, p), q in zip(graphed_model.named_parameters(), eager_model.parameters(), strict=True):
                tol = 2e-2 if bfloat16 else 1e-4
                assert torch.allclose(p.grad, q.grad, rtol=tol, atol=tol * q.grad.abs().max().item()), name
            for optimizer in optimizers:
                optimizer.step()
                optimizer.zero_grad(set_to_none=False)
    assert len(graphed._graphs) == 1


@pytest.mark.gpu
def test_a_module_step_uses_a_graph_and_keeps_its_gradients(monkeypatch):
    """Through MicroBatchModule: the optimiser zeroes .grad in place, so the next replay still feeds it."""
    module = ClassifierModule.create(CONFIG, ["a", "b"], OptimConfig(lr=1e-2, warmup_steps=1, max_steps=4)).cuda()
    trainer = type("T", (), {"world_size": 1})()
    monkeypatch.setattr(ClassifierModule, "trainer", property(lambda self: trainer))
    ids = torch.randint(7, 11, (8, 32), device="cuda")
    labels = torch.randint(0, 2, (8,), device="cuda")
    scale = torch.full((), 1 / 8, device="cuda")
    module.micro_batch(ids, labels, scale, 0, last=True)
    assert module._graphed is not None
    grads = [p.grad for p in module.model.parameters()]
    module.model.zero_grad(set_to_none=False)
    module.micro_batch(ids, labels, scale, 0, last=True)
    assert all(p.grad is g and g.abs().sum() > 0 for p, g in zip(module.model.parameters(), grads, strict=True))
