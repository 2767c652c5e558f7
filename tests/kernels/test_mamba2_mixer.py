"""The fused Mamba-2 mixer op (Triton; the interpreter on the CPU) against the composition of the public ops:
output and every gradient, from a zero and from a carried state, with and without the output norm, and what it
keeps for the backward."""

import pytest
import torch
from conftest import DEVICE, assert_step_kernel_matches, rel_err, saved_bytes

from genossm.kernels import (
    Mamba2Settings,
    Mamba2Weights,
    backend,
    mamba2_mixer_fn,
    mamba2_mixer_ref,
    mamba2_mixer_step,
)
from genossm.kernels.mamba2_mixer.fused import mamba2_mixer_fused
from genossm.kernels.ssd import tiling


def make_mixer(d_model=8, nheads=2, headdim=16, d_state=8, ngroups=1, d_conv=4, norm=True, d_has_hdim=False,
               biases=False, d_mlp=0, **settings) -> tuple[Mamba2Weights, Mamba2Settings]:  # fmt: skip
    """Random weights; ``d_mlp`` channels of a gated-MLP part beside the scan's (in_proj's z0 and x0)."""
    d_ssm = nheads * headdim
    conv_dim = d_ssm + 2 * ngroups * d_state
    d_in_proj = 2 * d_mlp + 2 * d_ssm + 2 * ngroups * d_state + nheads

    def param(*shape, scale=0.3, shift=0.0):
        return (torch.randn(*shape, device=DEVICE) * scale + shift).requires_grad_()

    weights = Mamba2Weights(
        in_proj=param(d_in_proj, d_model),
        in_proj_bias=param(d_in_proj) if biases else None,
        conv=param(conv_dim, d_conv),
        conv_bias=param(conv_dim),
        dt_bias=param(nheads, scale=0.5, shift=-2.0),
        A=(-torch.rand(nheads, device=DEVICE) * 2 - 0.5).requires_grad_(),
        D=param(nheads, headdim, scale=1.0) if d_has_hdim else param(nheads, scale=1.0),
        norm=param(d_ssm, scale=0.2, shift=1.0) if norm else None,
        out_proj=param(d_model, d_mlp + d_ssm),
        out_proj_bias=param(d_model) if biases else None,
    )
    return weights, Mamba2Settings(headdim, d_state, ngroups, **{"chunk_size": 16, **settings})


def run(mixer, hidden, weights, settings, cotangents, *states):
    leaves = [hidden, *states, *(p for p in weights if p is not None)]
    for p in leaves:
        p.grad = None
    outputs = mixer(hidden, weights, settings, *states)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    sum((o.float() * g).sum() for o, g in zip(outputs, cotangents, strict=True)).backward()
    return outputs, [p.grad.clone() for p in leaves]


def names(weights, states=()):
    return ["hidden", *states, *(n for n, p in zip(Mamba2Weights._fields, weights, strict=True) if p is not None)]


@pytest.mark.parametrize(
    "seqlen,options",
    [
        (37, {}),
        (50, {"ngroups": 2, "biases": True}),
        (40, {"norm": False, "d_has_hdim": True}),  # z gates the scan's output
        (45, {"norm_before_gate": True, "dt_limit": (0.05, 0.5)}),
        (1, {}),
    ],
)
def test_fused_mixer_equals_composition(seqlen, options, monkeypatch):
    monkeypatch.setattr(tiling, "MAX_BLOCK_T", 16)  # several tiles per chunk
    monkeypatch.setattr(tiling, "POISON_BUFFERS", True)  # a gradient buffer left unwritten shows as NaN
    weights, settings = make_mixer(**options)
    hidden = torch.randn(2, seqlen, 8, device=DEVICE, requires_grad=True)
    cotangent = torch.randn(2, seqlen, 8, device=DEVICE)
    with backend("torch"):
        (ref,), ref_grads = run(mamba2_mixer_ref, hidden, weights, settings, [cotangent])
    with backend("triton"):
        (out,), grads = run(mamba2_mixer_fused, hidden, weights, settings, [cotangent])
    assert rel_err(out, ref) < 1e-5
    for name, got, want in zip(names(weights), grads, ref_grads, strict=True):
        assert rel_err(got, want) < 1e-4, name


@pytest.mark.parametrize("seqlen", [1, 2, 40])
def test_fused_mixer_from_a_carried_state(seqlen, monkeypatch):
    """From given conv and scan states: the output, the states carried on, and the gradients of all of them,
    including those flowing in from the carried states (as the next segment of segmented training sends them)."""
    monkeypatch.setattr(tiling, "MAX_BLOCK_T", 16)
    batch, nheads, headdim, d_state, d_conv = 2, 2, 16, 8, 4
    weights, settings = make_mixer(nheads=nheads, headdim=headdim, d_state=d_state, d_conv=d_conv)
    conv_dim = nheads * headdim + 2 * d_state
    hidden = torch.randn(batch, seqlen, 8, device=DEVICE, requires_grad=True)
    conv_initial = torch.randn(batch, conv_dim, d_conv - 1, device=DEVICE, requires_grad=True)
    initial_state = torch.randn(batch, nheads, headdim, d_state, device=DEVICE, requires_grad=True)
    cotangents = (
        torch.randn(batch, seqlen, 8, device=DEVICE),
        torch.randn(batch, conv_dim, min(seqlen, d_conv), device=DEVICE),
        torch.randn(batch, nheads, headdim, d_state, device=DEVICE),
    )
    states = (conv_initial, initial_state)
    with backend("torch"):
        ref, ref_grads = run(mamba2_mixer_ref, hidden, weights, settings, cotangents, *states)
    with backend("triton"):
        got, grads = run(mamba2_mixer_fused, hidden, weights, settings, cotangents, *states)
    for name, a, b in zip(("out", "conv tail", "last state"), got, ref, strict=True):
        assert a.shape == b.shape, name
        assert rel_err(a, b) < 1e-5, name
    for name, a, b in zip(names(weights, ("conv_initial", "initial_state")), grads, ref_grads, strict=True):
        assert rel_err(a, b) < 1e-4, name


def test_fused_mixer_under_autocast():
    """Autocast runs the products in half precision as nn.Linear would; gradients come back in the parameters'
    float32. (float16 through the interpreter, which multiplies bfloat16 tiles as integers in tl.dot.)"""
    half = torch.bfloat16 if DEVICE == "cuda" else torch.float16
    weights, settings = make_mixer()
    hidden = torch.randn(2, 40, 8, device=DEVICE, requires_grad=True)
    cotangent = torch.randn(2, 40, 8, device=DEVICE)
    results = {}
    for name in ("torch", "triton"):
        with backend(name), torch.autocast(DEVICE, half):
            results[name] = run(mamba2_mixer_fn, hidden, weights, settings, [cotangent])
    ((ref,), ref_grads), ((out,), grads) = results["torch"], results["triton"]
    assert out.dtype == ref.dtype == half
    assert rel_err(out, ref) < 2e-2
    for name, got, want in zip(names(weights), grads, ref_grads, strict=True):
        assert got.dtype == want.dtype, name
        assert rel_err(got, want) < 5e-2, name


def test_fused_mixer_keeps_only_its_input():
    """What the backward holds besides the parameters: the mixer's input, nothing of in_proj's, the conv's, the
    scan's or the norm's outputs."""
    batch, seqlen, d_model = 2, 64, 8
    weights, settings = make_mixer(d_model=d_model)
    hidden = torch.randn(batch, seqlen, d_model, device=DEVICE, requires_grad=True)
    with backend("triton"):
        kept = saved_bytes(lambda: mamba2_mixer_fn(hidden, weights, settings), weights)
    assert kept == hidden.numel() * hidden.element_size()


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"ngroups": 2, "nheads": 4, "biases": True, "d_conv": 3},
        {"norm": False, "d_has_hdim": True, "headdim": 12, "d_state": 5},  # z gates the scan's output
        {"dt_limit": (0.05, 0.5), "d_conv": 2, "d_state": 40},  # 40 states: blocks of the head's channels
        {"d_mlp": 24, "norm": False},  # in_proj's pieces shifted by a gated-MLP part
    ],
)
def test_one_kernel_step_equals_the_reference_over_many_steps(options):
    """Groups, D per channel, a head size and a state size that are no powers of two, a head cut into blocks,
    conv widths 2-4, dt limits, with and without the output norm, a gated-MLP part; the states carried through 6
    steps from random ones."""
    weights, settings = make_mixer(**options)
    if options.get("biases"):
        weights = weights._replace(conv_bias=None)
    conv_dim, d_conv = weights.conv.shape
    nheads = weights.A.shape[0]
    conv = torch.randn(3, conv_dim, d_conv, device=DEVICE)
    ssm = torch.randn(3, nheads, settings.headdim, settings.d_state, device=DEVICE)

    def step(hidden, *states, **out):
        return mamba2_mixer_step(hidden, weights, settings, *states, **out)

    assert_step_kernel_matches(step, 8, conv, ssm)


@pytest.mark.gpu
def test_one_kernel_step_under_bfloat16_autocast():
    weights, settings = make_mixer(d_model=128, nheads=4, headdim=64, d_state=128)
    conv = torch.randn(64, weights.conv.shape[0], 4, device=DEVICE)
    ssm = torch.randn(64, 4, 64, 128, device=DEVICE)
    hidden = torch.randn(64, 128, device=DEVICE)
    results = {}
    for name in ("torch", "triton"):
        with backend(name), torch.no_grad(), torch.autocast(DEVICE, torch.bfloat16):
            results[name] = mamba2_mixer_step(hidden, weights, settings, conv, ssm)
    for got, want in zip(results["triton"], results["torch"], strict=True):
        assert got.dtype == want.dtype
        assert rel_err(got, want) < 2e-2
