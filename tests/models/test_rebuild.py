"""Block inputs rebuilt in the backward from the residual stream: the same gradients, bit for bit, without
keeping the norm output, on both paths (Triton's interpreter on the CPU)."""

import weakref

import pytest
import torch
from conftest import DEVICE, rel_err

from genossm.kernels import add_norm, backend, norm_of_stream
from genossm.models import MambaConfig, MambaLMHeadModel, backbone

CONFIGS = {
    "Mamba1": dict(d_model=16, n_layer=3, vocab_size=12, ssm_cfg={"layer": "Mamba1", "d_state": 4}),
    "Mamba2": dict(
        d_model=32, n_layer=3, vocab_size=12, ssm_cfg={"layer": "Mamba2", "d_state": 8, "headdim": 16, "chunk_size": 8}
    ),
    "Mamba1+MLP": dict(d_model=16, n_layer=2, vocab_size=12, d_intermediate=32, ssm_cfg={"layer": "Mamba1"}),
}


def train_step(model, ids, rebuild, monkeypatch):
    """Loss gradients, and how many of the mixers' (and MLPs') inputs are still alive after the forward (a saved
    view keeps the memory but not the tensor object, so only inputs saved whole count)."""
    if not rebuild:
        monkeypatch.setattr(backbone.Block, "_rebuilt", lambda *args: backbone.nullcontext())
    inputs = []
    hooks = [
        m.register_forward_pre_hook(lambda _, args: inputs.append(weakref.ref(args[0])))
        for layer in model.backbone.layers
        for m in (layer.mixer, layer.mlp)
        if m is not None
    ]
    model.zero_grad()
    loss = model(ids).logits.logsumexp(-1).mean()
    alive = sum(ref() is not None for ref in inputs)
    loss.backward()
    for hook in hooks:
        hook.remove()
    monkeypatch.undo()
    return {n: p.grad.clone() for n, p in model.named_parameters()}, alive


def assert_same_grads(grads, kept_grads):
    """Bit for bit (on a GPU, the kernels' atomics sum in any order)."""
    for param, grad in grads.items():
        kept = kept_grads[param]
        assert torch.equal(grad, kept) if DEVICE == "cpu" else rel_err(grad, kept) < 1e-6, param


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("path", ["torch", "triton"])
def test_rebuilt_inputs_give_the_same_gradients_and_are_not_kept(name, path, monkeypatch):
    torch.manual_seed(0)
    model = MambaLMHeadModel(MambaConfig(**CONFIGS[name]), device=DEVICE)
    ids = torch.randint(0, 12, (2, 19), device=DEVICE)
    with backend(path):
        kept_grads, kept_alive = train_step(model, ids, False, monkeypatch)
        grads, alive = train_step(model, ids, True, monkeypatch)
    assert kept_alive >= model.config.n_layer  # autograd keeps the blocks' inputs...
    assert alive == 0  # ...unless they are rebuilt
    assert_same_grads(grads, kept_grads)


@pytest.mark.parametrize("path", ["torch", "triton"])
@pytest.mark.parametrize("with_residual", [False, True])
@pytest.mark.parametrize("residual_in_fp32", [False, True])
@pytest.mark.parametrize("rms", [True, False])
def test_norm_of_stream_is_add_norm_output_bit_for_bit(path, with_residual, residual_in_fp32, rms):
    torch.manual_seed(1)
    x = torch.randn(3, 17, 40, device=DEVICE).to(torch.bfloat16)
    residual = torch.randn(3, 17, 40, device=DEVICE) if with_residual else None
    weight = torch.randn(40, device=DEVICE)
    bias = None if rms else torch.randn(40, device=DEVICE)
    with backend(path), torch.no_grad():
        out, stream = add_norm(x, residual, weight, bias, 1e-5, rms, residual_in_fp32)
        again = norm_of_stream(stream, weight, bias, 1e-5, rms, out.dtype)
    assert again.dtype == out.dtype
    assert torch.equal(again, out)


def test_rebuilt_inputs_under_autocast(monkeypatch):
    """Under autocast the first block's norm output (float32, from the embedding) is cast to the autocast dtype
    before the mixer, and that cast copy is what is rebuilt."""
    torch.manual_seed(3)
    model = MambaLMHeadModel(MambaConfig(**CONFIGS["Mamba1"]), device=DEVICE)
    ids = torch.randint(0, 12, (2, 19), device=DEVICE)
    with backend("torch"), torch.autocast(DEVICE, dtype=torch.bfloat16):
        kept_grads, _ = train_step(model, ids, False, monkeypatch)
        grads, alive = train_step(model, ids, True, monkeypatch)
    assert alive == 0
    assert_same_grads(grads, kept_grads)


def test_checkpointed_blocks_keep_their_own_hooks():
    """Under gradient checkpointing the blocks do not install the rebuild hooks (checkpoint's would be replaced):
    the gradients equal those of plain mode."""
    torch.manual_seed(2)
    model = MambaLMHeadModel(MambaConfig(**CONFIGS["Mamba1"]), device=DEVICE)
    ids = torch.randint(0, 12, (2, 19), device=DEVICE)
    grads = []
    for checkpointing in (False, True):
        model.backbone.gradient_checkpointing = checkpointing
        model.zero_grad()
        model(ids).logits.logsumexp(-1).mean().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for param, grad in grads[1].items():
        assert torch.allclose(grad, grads[0][param], rtol=1e-5, atol=1e-7), param
