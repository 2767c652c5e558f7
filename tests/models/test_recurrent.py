"""Recurrent inference: token-by-token steps and window-by-window forwards equal the full forward."""

import pytest
import torch
from conftest import rel_err

from genossm.models import Mamba, Mamba2, MambaConfig, MambaLMHeadModel
from genossm.models.kept_weights import weights_kept

MIXERS = {
    "Mamba1": lambda: Mamba(24, d_state=6, d_conv=4),
    "Mamba2": lambda: Mamba2(24, d_state=6, headdim=8, ngroups=3, chunk_size=8),
    "Mamba2-dmlp-nonorm": lambda: Mamba2(
        24, d_state=6, headdim=8, d_ssm=32, rmsnorm=False, D_has_hdim=True, chunk_size=8
    ),
}


@pytest.mark.parametrize("name", list(MIXERS))
def test_step_equals_forward(name):
    mixer = MIXERS[name]().double()
    x = torch.randn(2, 19, 24, dtype=torch.float64)
    with torch.no_grad():
        full = mixer(x)
        state = mixer.allocate_state(2, torch.float64)
        steps = torch.cat([mixer.step(x[:, t : t + 1], state) for t in range(19)], dim=1)
    assert rel_err(steps, full) < 1e-10


@pytest.mark.parametrize("name", list(MIXERS))
def test_forward_in_windows_equals_forward(name):
    mixer = MIXERS[name]().double()
    x = torch.randn(2, 40, 24, dtype=torch.float64)
    with torch.no_grad():
        full = mixer(x)
        state = mixer.allocate_state(2, torch.float64)
        parts = [mixer(x[:, a:b], state) for a, b in ((0, 1), (1, 3), (3, 20), (20, 40))]
    assert rel_err(torch.cat(parts, dim=1), full) < 1e-10


@pytest.mark.parametrize("layer", ["Mamba1", "Mamba2"])
def test_lm_step_equals_forward(layer):
    extra = {"headdim": 8, "chunk_size": 8} if layer == "Mamba2" else {}
    model = MambaLMHeadModel(
        MambaConfig(d_model=16, n_layer=3, vocab_size=12, ssm_cfg={"layer": layer, "d_state": 4, **extra})
    )
    ids = torch.randint(0, 12, (3, 12))
    with torch.no_grad():
        full = model(ids).logits
        states = model.allocate_states(3)
        steps = torch.stack([model.step(ids[:, t], states) for t in range(12)], dim=1)
    assert rel_err(steps, full) < 1e-5


@pytest.mark.parametrize("layer", ["Mamba1", "Mamba2"])
def test_weights_kept_for_a_stretch_of_steps_only(layer):
    """Inside ``weights_kept`` every mixer reuses the weights computed on entering (the steps equal the forward);
    outside, a change to a parameter shows at once."""
    extra = {"headdim": 8, "chunk_size": 8} if layer == "Mamba2" else {}
    model = MambaLMHeadModel(
        MambaConfig(d_model=16, n_layer=2, vocab_size=12, ssm_cfg={"layer": layer, "d_state": 4, **extra})
    )
    mixer = model.backbone.layers[1].mixer
    ids = torch.randint(0, 12, (3, 6))
    with torch.no_grad():
        full = model(ids).logits
        with weights_kept(model):
            kept = mixer.weights()
            assert mixer.weights() is kept
            states = model.allocate_states(3)
            steps = torch.stack([model.step(ids[:, t], states) for t in range(6)], dim=1)
        assert rel_err(steps, full) < 1e-5
        assert mixer.weights() is not kept
        mixer.A_log += 1.0
        assert torch.allclose(mixer.weights().A, kept.A * torch.e)


def test_gradients_flow_through_carried_state():
    mixer = Mamba(8, d_state=4).double()
    x = torch.randn(1, 10, 8, dtype=torch.float64, requires_grad=True)
    state = mixer.allocate_state(1, torch.float64)
    out = torch.cat([mixer(x[:, :5], state), mixer(x[:, 5:], state)], dim=1)
    out.sum().backward()
    grad_split = x.grad.clone()
    x.grad = None
    mixer(x).sum().backward()
    assert rel_err(grad_split, x.grad) < 1e-10


@pytest.mark.parametrize("layer", ["Mamba1", "Mamba2"])
@pytest.mark.parametrize("checkpointed", [False, True])
@pytest.mark.parametrize("seqlen", [2, 200])  # shorter than the conv window, and longer
def test_carried_conv_state_holds_only_its_window(layer, checkpointed, seqlen):
    """The conv state a forward leaves is its own (batch, channels, d_conv) tensor, not a view into a copy of the
    whole conv input: such a view keeps a segment-long buffer per block alive while segmented training carries it."""
    extra = {"headdim": 8, "chunk_size": 8} if layer == "Mamba2" else {}
    model = MambaLMHeadModel(
        MambaConfig(d_model=16, n_layer=2, vocab_size=12, ssm_cfg={"layer": layer, "d_state": 4, **extra})
    )
    model.backbone.gradient_checkpointing = checkpointed
    states = model.allocate_states(2)
    model(torch.randint(0, 12, (2, seqlen)), states).logits.sum().backward()
    for state in states:
        conv = state.conv
        assert conv.grad_fn is not None  # still in the graph: the state's gradient reaches the input
        assert conv.shape[-1] == model.backbone.layers[0].mixer.d_conv
        assert conv.untyped_storage().nbytes() == conv.numel() * conv.element_size()


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int32])
def test_token_ids_of_any_integer_dtype(dtype):
    model = MambaLMHeadModel(MambaConfig(d_model=16, n_layer=2, vocab_size=12, ssm_cfg={"d_state": 4}))
    ids = torch.randint(0, 12, (2, 9))
    with torch.no_grad():
        assert torch.equal(model(ids.to(dtype)).logits, model(ids).logits)
