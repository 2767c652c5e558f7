"""Mamba-2's gated RMSNorm on Triton against the float64 reference: output and the gradients of x, weight, z."""

import pytest
import torch
from conftest import DEVICE, rel_err

from genossm.kernels import backend, gated_rms_norm, gated_rms_norm_ref


def check(shape, group_size, has_z, norm_before_gate, dtype, tol, device=DEVICE):
    x = torch.randn(*shape, device=device).to(dtype)
    z = torch.randn(*shape, device=device).to(dtype) if has_z else None
    weight = (1 + 0.5 * torch.randn(shape[-1], device=device)).to(dtype)
    dout = torch.randn(*shape, device=device)
    inputs = {"x": x, "weight": weight, "z": z}
    leaves = {k: v.clone().requires_grad_() for k, v in inputs.items() if v is not None}
    wide = {k: v.double().requires_grad_() for k, v in inputs.items() if v is not None}
    with backend("triton"):
        out = gated_rms_norm(**leaves, group_size=group_size, norm_before_gate=norm_before_gate)
    ref = gated_rms_norm_ref(**wide, group_size=group_size, norm_before_gate=norm_before_gate)
    grads = torch.autograd.grad(out, list(leaves.values()), dout.to(dtype))
    ref_grads = torch.autograd.grad(ref, list(wide.values()), dout.double())
    assert out.dtype == dtype and rel_err(out.detach(), ref.detach()) < tol
    for name, grad, ref_grad in zip(leaves, grads, ref_grads, strict=True):
        assert grad.dtype == dtype and rel_err(grad, ref_grad) < tol, name


@pytest.mark.parametrize("group_size", [None, 16, 12])
@pytest.mark.parametrize("has_z", [True, False])
@pytest.mark.parametrize("norm_before_gate", [False, True])
def test_gated_norm_matches_reference(group_size, has_z, norm_before_gate):
    check((2, 7, 48), group_size, has_z, norm_before_gate, torch.float32, 1e-5)


def test_gated_norm_half_precision_and_strided_gate():
    check((3, 5, 32), 16, True, False, torch.float16, 2e-3)
    # z as a column slice of a wider tensor (as split from in_proj): rows are strided.
    x, zx, weight = (
        torch.randn(2, 6, 32, device=DEVICE),
        torch.randn(2, 6, 80, device=DEVICE),
        torch.ones(32, device=DEVICE),
    )
    with backend("triton"):
        out = gated_rms_norm(x, weight, zx[..., 40:72], group_size=8)
    assert rel_err(out, gated_rms_norm_ref(x, weight, zx[..., 40:72], group_size=8)) < 1e-5


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("width, group_size", [(512, None), (1536, 768), (96, 32), (4096, None)])
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.bfloat16, 1e-2)])
@pytest.mark.parametrize("norm_before_gate", [False, True])
def test_gpu_gated_norm(width, group_size, dtype, tol, norm_before_gate):
    check((4, 999, width), group_size, True, norm_before_gate, dtype, tol, device="cuda")


@pytest.mark.parametrize("norm_before_gate", [False, True])
def test_gated_norm_backward_in_place(norm_before_gate):
    """The backward written over its inputs (dx over dout, dz over z, the forward's output over x), as the Mamba-2
    mixer op runs it, equals the backward into fresh buffers bit for bit, and its output the forward's (to rounding:
    on a GPU the two kernels sum a row's squares in different orders)."""
    from genossm.kernels.norm.gated_triton import gated_norm_bwd, gated_norm_fwd

    x, z, dout = (torch.randn(3, 20, 32, device=DEVICE) for _ in range(3))
    weight = 1 + 0.5 * torch.randn(32, device=DEVICE)
    args = (1e-5, 16, norm_before_gate)
    out = torch.empty_like(x)
    dx, dw, dz = gated_norm_bwd(x, weight, z, dout, *args, out=out)
    x2, z2, dout2 = x.clone(), z.clone(), dout.clone()
    dx2, dw2, dz2 = gated_norm_bwd(x2, weight, z2, dout2, *args, dx=dout2, dz=z2, out=x2)
    assert dx2.data_ptr() == dout2.data_ptr() and dz2.data_ptr() == z2.data_ptr()
    for got, want in ((dx2, dx), (dw2, dw), (dz2, dz), (x2, out)):
        assert torch.equal(got, want)
    assert rel_err(out, gated_norm_fwd(x, weight, z, *args)) < 1e-6
