"""The fused Mamba-1 mixer op (Triton; the interpreter on the CPU) against the composition of the public ops:
output and every gradient, with the scan cut into several chunks and segments, and what it keeps for the backward."""

import pytest
import torch
import torch.nn.functional as F
from conftest import DEVICE, assert_step_kernel_matches, rel_err, saved_bytes

from genossm.kernels import MixerWeights, backend, mamba_mixer_fn, mamba_mixer_ref, mamba_mixer_step
from genossm.kernels.mamba_mixer.dt_proj import dt_projection, dt_projection_backward
from genossm.kernels.mamba_mixer.fused import mamba_mixer_fused
from genossm.kernels.selective_scan.tiling import CHUNK


def make_weights(d_model=8, d_inner=16, d_state=4, dt_rank=3, d_conv=4, biases=False) -> MixerWeights:
    def param(*shape, scale=0.3):
        return (torch.randn(*shape, device=DEVICE) * scale).requires_grad_()

    return MixerWeights(
        in_proj=param(2 * d_inner, d_model),
        in_proj_bias=param(2 * d_inner) if biases else None,
        conv=param(d_inner, d_conv),
        conv_bias=param(d_inner),
        x_proj=param(dt_rank + 2 * d_state, d_inner),
        dt_proj=param(d_inner, dt_rank),
        dt_bias=(torch.rand(d_inner, device=DEVICE) - 3.0).requires_grad_(),
        A=(-torch.rand(d_inner, d_state, device=DEVICE) * 2 - 0.1).requires_grad_(),
        D=param(d_inner, scale=1.0),
        out_proj=param(d_model, d_inner),
        out_proj_bias=param(d_model) if biases else None,
    )


def output_and_grads(mixer, hidden, weights, grad_out):
    for p in (hidden, *weights):
        if p is not None:
            p.grad = None
    out = mixer(hidden, weights)
    (out.float() * grad_out).sum().backward()
    return out, [p.grad.clone() for p in (hidden, *weights) if p is not None]


@pytest.mark.parametrize(
    "seqlen,tiling,biases",
    [
        (37, {}, False),
        (150, {"tile": 4, "chunk": 16}, True),  # several chunks per sequence
        (150, {"tile": 4, "chunk": 16, "segments": 3}, False),  # the scan cut into segments, forward and backward
        (1, {}, True),
    ],
)
def test_fused_mixer_equals_composition(seqlen, tiling, biases):
    weights = make_weights(biases=biases)
    hidden = torch.randn(2, seqlen, 8, device=DEVICE, requires_grad=True)
    grad_out = torch.randn(2, seqlen, 8, device=DEVICE)
    with backend("torch"):
        ref, ref_grads = output_and_grads(mamba_mixer_ref, hidden, weights, grad_out)
    with backend("triton"):
        out, grads = output_and_grads(lambda h, w: mamba_mixer_fused(h, w, **tiling), hidden, weights, grad_out)
    assert rel_err(out, ref) < 1e-5
    names = ["hidden", *(n for n, p in zip(MixerWeights._fields, weights, strict=True) if p is not None)]
    for name, got, want in zip(names, grads, ref_grads, strict=True):
        assert rel_err(got, want) < 1e-4, name


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-6), (torch.float16, 1e-3)])
@pytest.mark.parametrize("rank, d_inner", [(3, 40), (16, 24)])
def test_dt_projection_equals_linear(dtype, tol, rank, d_inner):
    """The dt_proj kernel on x_proj's first columns (a strided slice), over several position tiles."""
    x_dbl = torch.randn(2, 150, rank + 10, device=DEVICE).to(dtype)
    weight = torch.randn(d_inner, rank, device=DEVICE).to(dtype)
    out = dt_projection(x_dbl[..., :rank], weight)
    assert out.shape == (2, 150, d_inner) and out.dtype == dtype
    assert rel_err(out, F.linear(x_dbl[..., :rank].float(), weight.float())) < tol
    with pytest.raises(ValueError, match="dtype"):
        dt_projection(x_dbl[..., :rank].double(), weight)


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float16, 2e-3)])
@pytest.mark.parametrize("rank, d_inner, seqlen", [(3, 40, 150), (16, 24, 7)])
def test_dt_projection_backward_equals_autograd(dtype, tol, rank, d_inner, seqlen):
    """Both gradients in one pass over ddelta, into a strided slice of x_proj's output gradient; the rest of that
    buffer is left alone."""
    x_dbl = torch.randn(2, seqlen, rank + 10, device=DEVICE).to(dtype)
    weight = torch.randn(d_inner, rank, device=DEVICE).to(dtype)
    ddelta = torch.randn(2, seqlen, d_inner, device=DEVICE).to(dtype)
    low, w = x_dbl[..., :rank].float().requires_grad_(), weight.float().requires_grad_()
    F.linear(low, w).backward(ddelta.float())
    dx_dbl = torch.full_like(x_dbl, 7.0)
    dw = dt_projection_backward(ddelta, x_dbl[..., :rank], weight, dx_dbl[..., :rank])
    assert dw.dtype == torch.float32 and rel_err(dw, w.grad) < tol
    assert rel_err(dx_dbl[..., :rank], low.grad) < tol and bool((dx_dbl[..., rank:] == 7.0).all())


def test_fused_mixer_under_autocast():
    """Autocast runs the products in half precision as nn.Linear would; gradients come back in the parameters'
    float32. (float16 through the interpreter, which multiplies bfloat16 tiles as integers in tl.dot.)"""
    half = torch.bfloat16 if DEVICE == "cuda" else torch.float16
    weights = make_weights()
    hidden = torch.randn(2, 70, 8, device=DEVICE, requires_grad=True)
    grad_out = torch.randn(2, 70, 8, device=DEVICE)
    results = {}
    for name in ("torch", "triton"):
        with backend(name), torch.autocast(DEVICE, half):
            results[name] = output_and_grads(mamba_mixer_fn, hidden, weights, grad_out)
    (ref, ref_grads), (out, grads) = results["torch"], results["triton"]
    assert out.dtype == ref.dtype == half
    assert rel_err(out, ref) < 2e-2
    for got, want in zip(grads, ref_grads, strict=True):
        assert got.dtype == want.dtype
        assert rel_err(got, want) < 5e-2


def test_fused_mixer_keeps_its_input_not_its_activations():
    """What the backward holds: the input, x_proj's output, the scan's float32 state every CHUNK positions (and the
    parameters), not in_proj's, the conv's, dt_proj's or the scan's outputs."""
    batch, seqlen, d_model, d_inner, d_state, dt_rank = 2, 256, 8, 16, 4, 3
    weights = make_weights(d_model, d_inner, d_state, dt_rank)
    hidden = torch.randn(batch, seqlen, d_model, device=DEVICE, requires_grad=True)
    with backend("triton"):
        per_token = saved_bytes(lambda: mamba_mixer_fn(hidden, weights), weights) / (batch * seqlen)
    expected = 4 * d_model + 4 * (dt_rank + 2 * d_state) + 4 * d_inner * d_state // CHUNK
    assert per_token == pytest.approx(expected, rel=0.01), per_token


@pytest.mark.parametrize(
    "seqlen,tiling",
    [
        (1, {}),  # shorter than the conv window: the carried window keeps part of the initial one
        (2, {}),
        (70, {}),
        (150, {"tile": 4, "chunk": 16, "segments": 3}),
    ],
)
def test_fused_mixer_from_a_carried_state(seqlen, tiling):
    """From given conv and scan states: the output, the states carried on, and the gradients of all of them,
    including those flowing in from the carried states (as the next segment of segmented training sends them)."""
    batch, d_model, d_inner, d_state, d_conv = 2, 8, 16, 4, 4
    weights = make_weights(d_model, d_inner, d_state, d_conv=d_conv)
    hidden = torch.randn(batch, seqlen, d_model, device=DEVICE, requires_grad=True)
    conv_initial = torch.randn(batch, d_inner, d_conv - 1, device=DEVICE, requires_grad=True)
    initial_state = torch.randn(batch, d_inner, d_state, device=DEVICE, requires_grad=True)
    k = min(seqlen, d_conv)
    cotangents = (
        torch.randn(batch, seqlen, d_model, device=DEVICE),
        torch.randn(batch, d_inner, k, device=DEVICE),
        torch.randn(batch, d_inner, d_state, device=DEVICE),
    )
    leaves = [hidden, conv_initial, initial_state, *(p for p in weights if p is not None)]

    def run(mixer):
        for p in leaves:
            p.grad = None
        outputs = mixer(hidden, weights, conv_initial, initial_state)
        sum((o.float() * g).sum() for o, g in zip(outputs, cotangents, strict=True)).backward()
        return outputs, [p.grad.clone() for p in leaves]

    with backend("torch"):
        ref, ref_grads = run(mamba_mixer_ref)
    with backend("triton"):
        got, grads = run(lambda *args: mamba_mixer_fused(*args, **tiling))
    for name, a, b in zip(("out", "conv tail", "last state"), got, ref, strict=True):
        assert a.shape == b.shape, name
        assert rel_err(a, b) < 1e-5, name
    names = ["hidden", "conv_initial", "initial_state"]
    names += [n for n, p in zip(MixerWeights._fields, weights, strict=True) if p is not None]
    for name, a, b in zip(names, grads, ref_grads, strict=True):
        assert rel_err(a, b) < 1e-4, name


@pytest.mark.parametrize(
    "d_inner,d_state,dt_rank,d_conv,biases",
    [(16, 4, 3, 4, False), (150, 16, 8, 4, True), (40, 5, 1, 3, False), (70, 16, 2, 2, True)],
)
def test_one_kernel_step_equals_the_reference_over_many_steps(d_inner, d_state, dt_rank, d_conv, biases):
    """Blocks of channels with a remainder (150, 70), a state and a rank that are no powers of two, conv widths
    2-4, with and without biases; the states carried through 6 steps from random ones."""
    weights = make_weights(8, d_inner, d_state, dt_rank, d_conv, biases)
    if not biases:
        weights = weights._replace(conv_bias=None)
    conv = torch.randn(3, d_inner, d_conv, device=DEVICE)
    ssm = torch.randn(3, d_inner, d_state, device=DEVICE)
    assert_step_kernel_matches(lambda hidden, *a, **kw: mamba_mixer_step(hidden, weights, *a, **kw), 8, conv, ssm)


@pytest.mark.gpu
def test_one_kernel_step_under_bfloat16_autocast():
    weights = make_weights(128, 256, 16, 8)
    conv = torch.randn(64, 256, 4, device=DEVICE)
    ssm = torch.randn(64, 256, 16, device=DEVICE)
    hidden = torch.randn(64, 128, device=DEVICE)
    results = {}
    for name in ("torch", "triton"):
        with backend(name), torch.no_grad(), torch.autocast(DEVICE, torch.bfloat16):
            results[name] = mamba_mixer_step(hidden, weights, conv, ssm)
    for got, want in zip(results["triton"], results["torch"], strict=True):
        assert got.dtype == want.dtype
        assert rel_err(got, want) < 2e-2
