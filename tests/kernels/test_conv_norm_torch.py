"""Causal conv1d and the norms: the PyTorch references against direct formulas."""

import pytest
import torch
import torch.nn.functional as F
from conftest import rel_err

from genossm.kernels import add_norm_ref, causal_conv1d_fn, gated_rms_norm_ref


@pytest.mark.parametrize("width", [2, 3, 4])
@pytest.mark.parametrize("with_state", [False, True])
def test_causal_conv_matches_loop(width, with_state):
    x, weight, bias = torch.randn(2, 5, 13), torch.randn(5, width), torch.randn(5)
    history = torch.randn(2, 5, width - 1) if with_state else torch.zeros(2, 5, width - 1)
    out, final = causal_conv1d_fn(
        x,
        weight,
        bias,
        initial_states=history if with_state else None,
        return_final_states=True,
        activation="silu",
    )
    full = torch.cat([history, x], dim=-1)
    expected = torch.stack(
        [F.silu(bias + (full[:, :, t : t + width] * weight).sum(-1)) for t in range(x.shape[-1])], dim=-1
    )
    assert rel_err(out, expected) < 1e-6
    assert torch.equal(final, full[:, :, -(width - 1) :])


def test_conv_split_equals_whole():
    x, weight, bias = torch.randn(1, 3, 20), torch.randn(3, 4), torch.randn(3)
    whole = causal_conv1d_fn(x, weight, bias, activation="silu")
    first, state = causal_conv1d_fn(x[..., :7], weight, bias, return_final_states=True, activation="silu")
    second = causal_conv1d_fn(x[..., 7:], weight, bias, initial_states=state, activation="silu")
    assert torch.allclose(torch.cat([first, second], -1), whole, atol=1e-6)


@pytest.mark.parametrize("is_rms", [True, False])
def test_add_norm(is_rms):
    x, res, w, b = torch.randn(3, 16), torch.randn(3, 16), torch.randn(16), torch.randn(16)
    out, new_res = add_norm_ref(x.bfloat16(), res, w, b, 1e-5, is_rms, residual_in_fp32=True)
    s = x.bfloat16().float() + res
    expected = (
        (s * torch.rsqrt(s.square().mean(-1, keepdim=True) + 1e-5) * w + b)
        if is_rms
        else F.layer_norm(s, (16,), w, b, 1e-5)
    )
    assert new_res.dtype == torch.float32 and out.dtype == torch.bfloat16
    assert torch.allclose(new_res, s)
    assert rel_err(out, expected) < 1e-2


@pytest.mark.parametrize("norm_before_gate", [False, True])
def test_gated_rms_norm_groups(norm_before_gate):
    x, z, w = torch.randn(2, 12), torch.randn(2, 12), torch.randn(12)
    out = gated_rms_norm_ref(x, w, z, 1e-5, group_size=4, norm_before_gate=norm_before_gate)
    gate = F.silu(z)
    xs = x if norm_before_gate else x * gate
    g = xs.view(2, 3, 4)
    expected = (g / torch.sqrt(g.square().mean(-1, keepdim=True) + 1e-5)).view(2, 12) * w
    if norm_before_gate:
        expected = expected * gate
    assert rel_err(out, expected) < 1e-6
