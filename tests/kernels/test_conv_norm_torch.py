"""Causal conv1d and the norms: the PyTorch references against direct formulas."""

import pytest
import torch
import torch.nn.functional as F
from conftest import rel_err

from genossm.kernels import add_norm_ref, causal_conv1d_fn, causal_conv1d_ref, gated_rms_norm_ref
from genossm.kernels.conv1d import causal_conv1d_shifted


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


@pytest.mark.parametrize("width", [1, 2, 4])
@pytest.mark.parametrize("seqlen", [2, 11])
@pytest.mark.parametrize("layout", ["bld", "bdl"])
@pytest.mark.parametrize("optional", [True, False])
def test_shifted_conv_matches_reference(width, seqlen, layout, optional):
    # The CPU path against F.conv1d: outputs, final states and every gradient, on the model's transposed views
    # ((b, l, d) memory) and on (b, d, l)-contiguous inputs, with sequences shorter than the history.
    batch, dim = 2, 6
    x = torch.randn(batch, seqlen, dim).transpose(1, 2) if layout == "bld" else torch.randn(batch, dim, seqlen)
    inputs = {
        "x": x,
        "weight": torch.randn(dim, width),
        "bias": torch.randn(dim) if optional else None,
        "initial_states": torch.randn(batch, dim, width - 1) if optional else None,
    }
    activation = "silu" if optional else None
    grad_out, grad_final = torch.randn(batch, dim, seqlen), torch.randn(batch, dim, width - 1)
    results = []
    for conv in (causal_conv1d_ref, causal_conv1d_shifted):
        leaves = {k: None if v is None else v.detach().clone().requires_grad_() for k, v in inputs.items()}
        out, final = conv(**leaves, activation=activation, return_final_states=True)
        ((out * grad_out).sum() + (final * grad_final).sum()).backward()
        results.append((out, final, {k: v.grad for k, v in leaves.items() if v is not None}))
    (ref_out, ref_final, ref_grads), (out, final, grads) = results
    assert rel_err(out, ref_out) < 1e-6
    assert torch.equal(final, ref_final)
    for key, grad in ref_grads.items():
        if grad is not None and grad.numel():  # width 1: the history is empty
            assert rel_err(grads[key], grad) < 1e-6, key
    with torch.inference_mode():
        assert (
            rel_err(
                causal_conv1d_shifted(inputs["x"], inputs["weight"], activation="silu"),
                causal_conv1d_ref(inputs["x"], inputs["weight"], activation="silu"),
            )
            < 1e-6
        )


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
