"""Causal conv1d and residual add + norm on the Triton kernels against the PyTorch references, with gradients.

The CPU cases run in Triton's interpreter; ``-m gpu`` runs a larger grid on CUDA.
"""

import pytest
import torch
from conftest import DEVICE, rel_err

from genossm.kernels import add_norm, backend, causal_conv1d_fn

TOL = {torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 4e-3}


def both_backends(fn, tensors, grads_for):
    """Run ``fn(*leaves)`` on the torch path (in float32, from the same rounded inputs) and on the triton path;
    returns their (outputs, input gradients)."""
    results = []
    for name in ("torch", "triton"):
        cast = (lambda t: t.float()) if name == "torch" else (lambda t: t)
        leaves = [cast(t).detach().clone().requires_grad_() if t is not None else None for t in tensors]
        with backend(name):
            outs = fn(*leaves)
        gen = torch.Generator(device=DEVICE).manual_seed(0)
        loss = sum((o.float() * torch.randn(o.shape, device=DEVICE, generator=gen)).sum() for o in outs)
        loss.backward()
        results.append((outs, [leaves[i].grad for i in grads_for]))
    return results


def assert_close(results, tol, out_dtypes, grad_dtypes):
    (ref_outs, ref_grads), (outs, grads) = results
    for out, ref, dtype in zip(outs, ref_outs, out_dtypes, strict=True):
        assert out.shape == ref.shape and out.dtype == dtype
        assert rel_err(out, ref) < tol
    for i, (grad, ref, dtype) in enumerate(zip(grads, ref_grads, grad_dtypes, strict=True)):
        assert grad.dtype == dtype and rel_err(grad, ref) < tol, (i, rel_err(grad, ref))


def conv_inputs(batch, dim, seqlen, width, dtype, layout, with_state):
    if layout == "bld":
        x = torch.randn(batch, seqlen, dim, device=DEVICE).to(dtype).transpose(1, 2)
    else:
        x = torch.randn(batch, dim, seqlen, device=DEVICE).to(dtype)
    weight, bias = torch.randn(dim, width, device=DEVICE), torch.randn(dim, device=DEVICE)
    state = torch.randn(batch, dim, width - 1, device=DEVICE).to(dtype) if with_state else None
    return [x, weight, bias, state]


def check_conv(batch, dim, seqlen, width, dtype, layout, with_state, activation):
    tensors = conv_inputs(batch, dim, seqlen, width, dtype, layout, with_state)
    grads_for = [0, 1, 2, 3] if with_state else [0, 1, 2]

    def fn(x, w, b, s):
        return causal_conv1d_fn(x, w, b, initial_states=s, return_final_states=True, activation=activation)

    grad_dtypes = [tensors[i].dtype for i in grads_for]
    assert_close(both_backends(fn, tensors, grads_for), TOL[dtype], [dtype, dtype], grad_dtypes)


@pytest.mark.parametrize(
    "seqlen, width, layout, with_state, activation",
    [
        (70, 4, "bdl", True, "silu"),
        (300, 4, "bld", True, "silu"),  # three walks of 25 tiles per sequence in the backward
        (37, 3, "bld", False, None),
        (2, 4, "bdl", True, "silu"),
        (1, 2, "bld", True, None),
    ],
)
def test_causal_conv1d_matches_reference(seqlen, width, layout, with_state, activation):
    # three sequences: nine backward walks, two per program, so the last program has a walk past the end
    check_conv(3, 40, seqlen, width, torch.float32, layout, with_state, activation)


def check_add_norm(shape, with_residual, with_bias, rms, residual_in_fp32, dtype, out_dtype=None):
    x = torch.randn(*shape, device=DEVICE).to(dtype)
    residual = torch.randn(*shape, device=DEVICE).to(dtype) if with_residual else None
    weight = torch.randn(shape[-1], device=DEVICE)
    bias = torch.randn(shape[-1], device=DEVICE) if with_bias else None
    grads_for = [i for i, t in enumerate((x, residual, weight, bias)) if t is not None]

    def fn(x, r, w, b):
        return add_norm(x, r, w, b, 1e-5, rms, residual_in_fp32, out_dtype)

    tensors = [x, residual, weight, bias]
    stream_dtype = torch.float32 if residual_in_fp32 else dtype
    grad_dtypes = [tensors[i].dtype for i in grads_for]
    out_dtype = out_dtype or dtype
    tol = max(TOL[dtype], TOL[out_dtype])
    assert_close(both_backends(fn, tensors, grads_for), tol, [out_dtype, stream_dtype], grad_dtypes)


@pytest.mark.parametrize(
    "shape, with_residual, with_bias, rms, residual_in_fp32",
    [
        ((2, 5, 48), True, False, True, True),
        ((3, 33), True, True, False, False),
        ((2, 7, 40), False, True, True, False),
    ],
)
def test_add_norm_matches_reference(shape, with_residual, with_bias, rms, residual_in_fp32):
    check_add_norm(shape, with_residual, with_bias, rms, residual_in_fp32, torch.float32)


def test_first_add_norm_writes_half_precision_and_keeps_its_float32_input_as_the_stream():
    """The first block (a float32 embedding, no residual, a float32 stream) under autocast: the norm output comes out
    in half precision from the kernel, and the stream is the input itself, not a copy."""
    check_add_norm((2, 9, 48), False, False, True, True, torch.float32, out_dtype=torch.float16)
    x = torch.randn(2, 9, 48, device=DEVICE)
    for name in ("torch", "triton"):
        with backend(name):
            out, stream = add_norm(x, None, torch.ones(48, device=DEVICE), None, 1e-5, True, True, torch.bfloat16)
        assert out.dtype == torch.bfloat16 and stream is x, name


@pytest.mark.gpu
@pytest.mark.parametrize("seqlen", [1, 3, 1000, 4099])
@pytest.mark.parametrize("width", [2, 4])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layout", ["bdl", "bld"])
def test_gpu_causal_conv1d(seqlen, width, dtype, layout):
    for with_state, activation in ((True, "silu"), (False, None)):
        check_conv(3, 160, seqlen, width, dtype, layout, with_state, activation)


@pytest.mark.gpu
@pytest.mark.parametrize("cols", [64, 1000, 2048, 5000])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rms", [True, False])
def test_gpu_add_norm(cols, dtype, rms):
    for with_residual, residual_in_fp32 in ((True, True), (True, False), (False, False), (False, True)):
        check_add_norm((4, 333, cols), with_residual, not rms, rms, residual_in_fp32, dtype)


def test_causal_conv1d_state_as_a_view():
    # The model passes history[:, :, 1:] of its (b, d, width) conv state: a non-dense view. Its gradient must land
    # in history's last width - 1 columns (and nowhere else in memory).
    x, weight, bias, _ = conv_inputs(2, 40, 9, 4, torch.float32, "bld", False)
    history = torch.randn(2, 40, 4, device=DEVICE)

    def fn(x, w, b, h):
        return (causal_conv1d_fn(x, w, b, initial_states=h[:, :, 1:], activation="silu"),)

    assert_close(
        both_backends(fn, [x, weight, bias, history], [0, 1, 2, 3]),
        TOL[torch.float32],
        [torch.float32],
        [torch.float32] * 4,
    )
