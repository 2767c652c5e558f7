"""The Mamba-1 model on the Triton kernels (the interpreter on the CPU) equals the PyTorch path, in its logits, its
parameter gradients and its carried recurrent state."""

import torch
from conftest import DEVICE, rel_err

from genossm.kernels import backend
from genossm.models import MambaConfig, MambaLMHeadModel


def test_triton_path_equals_torch_path():
    config = MambaConfig(d_model=16, n_layer=2, vocab_size=12, ssm_cfg={"layer": "Mamba1", "d_state": 4})
    model = MambaLMHeadModel(config, device=DEVICE)
    ids = torch.randint(0, 12, (2, 23), device=DEVICE)
    results = {}
    for name in ("torch", "triton"):
        model.zero_grad()
        with backend(name):
            logits = model(ids).logits
            logits.logsumexp(-1).mean().backward()
            states = model.allocate_states(2)
            with torch.no_grad():  # two windows through the carried state
                model(ids[:, :9], states)
                tail = model(ids[:, 9:], states).logits
        results[name] = (logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}, tail)
    (ref_logits, ref_grads, ref_tail), (logits, grads, tail) = results["torch"], results["triton"]
    assert rel_err(logits, ref_logits) < 1e-5
    assert rel_err(tail, ref_tail) < 1e-5
    for name, grad in grads.items():
        assert rel_err(grad, ref_grads[name]) < 1e-4, name


def test_segmented_training_on_the_triton_path_equals_one_pass():
    """Segments carry the conv and scan states through the fused mixer op, forward and backward: the gradients of
    a sequence trained in pieces (the first shorter than the conv window) equal those of one pass."""
    from genossm.training.segmented import segmented_lm_backward

    config = MambaConfig(d_model=16, n_layer=2, vocab_size=12, ssm_cfg={"layer": "Mamba1", "d_state": 4})
    model = MambaLMHeadModel(config, device=DEVICE)
    ids = torch.randint(0, 12, (1, 26), device=DEVICE)
    labels = torch.randint(0, 12, (1, 26), device=DEVICE)
    with backend("triton"):
        model.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(ids).logits[0], labels[0], reduction="sum")
        loss.backward()
        expected = {n: p.grad.clone() for n, p in model.named_parameters()}
        model.zero_grad()
        segmented_loss = segmented_lm_backward(model, ids, labels, segment_len=8)  # segments of 2, 8, 8, 8
    assert rel_err(segmented_loss, loss.detach()) < 1e-5
    for name, p in model.named_parameters():
        assert rel_err(p.grad, expected[name]) < 1e-4, name
