"""Selective scan on the Triton kernels against the sequential reference: outputs, last state and every gradient.

On the CPU the kernels run in Triton's interpreter (tests/conftest.py), so this grid stays small; ``-m gpu`` runs a
larger one on CUDA. ``tile``, ``segments`` and ``chunk`` are forced small so that multi-tile, multi-chunk and
multi-segment paths run on tiny shapes.
"""

import pytest
import torch
from conftest import DEVICE, rel_err

from genossm.kernels import backend, selective_scan_chunked, selective_scan_fn, selective_scan_ref
from genossm.kernels.selective_scan.fused import selective_scan_fused

OPTIONAL = ("D", "z", "delta_bias", "initial_state")
# relative error bounds per input dtype: float32 compares like-for-like; half types round inputs and outputs
TOL = {torch.float32: 2e-5, torch.bfloat16: 2e-2, torch.float16: 4e-3}


def make_inputs(batch=2, dim=8, dstate=4, seqlen=37, groups=None, dtype=torch.float32, layout="bdl", device=DEVICE):
    """Random inputs; ``layout='bld'`` gives the model's layout (transposed views of (b, l, .) memory)."""

    def seq(channels):  # (batch, channels, seqlen) in the requested memory layout
        if layout == "bld":
            return torch.randn(batch, seqlen, channels, device=device).to(dtype).transpose(1, 2)
        return torch.randn(batch, channels, seqlen, device=device).to(dtype)

    shape_bc = (batch, dstate, seqlen) if groups is None else (batch, groups, dstate, seqlen)
    if layout == "bld" and groups is None:
        B = torch.randn(batch, seqlen, dstate, device=device).to(dtype).transpose(1, 2)
        C = torch.randn(batch, seqlen, dstate, device=device).to(dtype).transpose(1, 2)
    else:
        B, C = (torch.randn(*shape_bc, device=device).to(dtype) for _ in range(2))
    return dict(
        u=seq(dim),
        delta=seq(dim) * 0.5,
        A=-torch.rand(dim, dstate, device=device) * 2 - 0.1,
        B=B,
        C=C,
        D=torch.randn(dim, device=device),
        z=seq(dim),
        delta_bias=torch.randn(dim, device=device) * 0.5,
        initial_state=torch.randn(batch, dim, dstate, device=device),
    )


def run_with_grads(scan, inputs, grad_out, grad_state, **kwargs):
    """out, last state and the gradient of every input, for sum(out * grad_out) + sum(state * grad_state)."""
    leaves = {k: (v.detach().clone().requires_grad_() if v is not None else None) for k, v in inputs.items()}
    out, state = scan(**leaves, return_last_state=True, **kwargs)
    loss = (out.float() * grad_out).sum()  # out.float(): the gradient reaching out is rounded to out's dtype
    if grad_state is not None:
        loss = loss + (state * grad_state).sum()
    loss.backward()
    return out, state, {k: v.grad for k, v in leaves.items() if v is not None}


def grad_error(got, ref):
    """Relative error of a gradient, with an absolute slack of 1e-6 per element: a gradient that is exactly zero
    in the reference (dA of a one-position scan from a zero state) is matched by float rounding, not by zero."""
    diff = (got.double() - ref.double()).norm()
    return float(diff / (ref.double().norm() + 1e-6 * got.numel() ** 0.5))


def check_against_reference(inputs, softplus=True, with_state_grad=True, **forced):
    dtype = inputs["u"].dtype
    grad_out = torch.randn(inputs["u"].shape, device=inputs["u"].device)
    grad_state = torch.randn_like(inputs["A"][None].expand(inputs["u"].shape[0], -1, -1)) if with_state_grad else None
    wide = {k: (v.float() if v is not None else None) for k, v in inputs.items()}  # same rounded values, in fp32
    ref_out, ref_state, ref_grads = run_with_grads(
        selective_scan_ref, wide, grad_out, grad_state, delta_softplus=softplus
    )
    scan = lambda **kw: selective_scan_fused(**kw, **forced)  # noqa: E731
    out, state, grads = run_with_grads(scan, inputs, grad_out, grad_state, delta_softplus=softplus)
    assert out.dtype == dtype and out.shape == ref_out.shape and state.dtype == torch.float32
    tol = TOL[dtype]
    assert rel_err(out, ref_out) < tol
    assert rel_err(state, ref_state) < TOL[torch.float32] * (1 if dtype == torch.float32 else 10)
    for name, ref_grad in ref_grads.items():  # half types also round the incoming gradient of out
        assert grads[name].shape == ref_grad.shape and grads[name].dtype == inputs[name].dtype, name
        assert grad_error(grads[name], ref_grad) < tol, (name, grad_error(grads[name], ref_grad))


@pytest.mark.parametrize(
    "seqlen, groups, optional, forced",
    [
        (1, None, True, {}),
        (7, 2, False, {}),
        (63, None, True, dict(tile=4)),  # 16 tiles, the last one partial
        (37, None, True, dict(tile=4, chunk=8, segments=3)),  # chunks and segments, partial last segment
        (37, 2, False, dict(tile=4, chunk=8, segments=2)),
        (37, None, True, dict(tile=4, chunk=8, segments=3, prefetch=True)),  # loads one tile ahead
        (63, 2, False, dict(tile=4, chunk=16, prefetch=True, maxnreg=128)),
    ],
)
def test_matches_reference_float32(seqlen, groups, optional, forced):
    inputs = make_inputs(seqlen=seqlen, groups=groups)
    if not optional:
        inputs.update({k: None for k in OPTIONAL})
    check_against_reference(inputs, **forced)


def test_production_tiling():
    # 32 channels and 16 states: the forward's (4, 16, 32) and the backward's (4, 16, 16) tiles of the GPU runs,
    # whose backward sums over 16 channel lanes by reduce-scatter.
    check_against_reference(make_inputs(batch=1, dim=32, dstate=16, seqlen=13), chunk=8, segments=2)


def test_forward_with_16_channels_per_program():
    # (tile, 16, 16) forward tiles: twice the programs, for batch x channel blocks that leave SMs idle
    check_against_reference(make_inputs(batch=1, dim=32, dstate=16, seqlen=13, layout="bld"), fwd_block_d=16, tile=4)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_matches_reference_half_types(dtype):
    check_against_reference(make_inputs(seqlen=21, dtype=dtype), tile=4, chunk=8, segments=2)


def test_model_layout_and_state_only_gradient():
    # Transposed (b, l, d) views in, as the model passes them; the loss reads only the last state.
    inputs = make_inputs(seqlen=19, layout="bld")
    inputs["D"] = inputs["z"] = None
    check_against_reference(inputs, softplus=False, tile=4, chunk=8, segments=2)
    state_only = {k: v.detach().clone().requires_grad_() for k, v in inputs.items() if v is not None}
    _, state = selective_scan_fused(**state_only, return_last_state=True, tile=4, chunk=8, segments=2)
    state.sum().backward()
    ref = {k: v.detach().clone().requires_grad_() for k, v in inputs.items() if v is not None}
    selective_scan_ref(**ref, return_last_state=True)[1].sum().backward()
    for name, leaf in ref.items():  # C does not reach the state: the reference leaves its gradient None
        expected = leaf.grad if leaf.grad is not None else torch.zeros_like(leaf)
        assert (
            rel_err(state_only[name].grad, expected) < 1e-4
            or expected.abs().max() == state_only[name].grad.abs().max() == 0
        ), name


def test_public_function_dispatches_to_triton():
    inputs = make_inputs(seqlen=9)
    with backend("triton"), torch.no_grad():
        out, state = selective_scan_fn(**inputs, delta_softplus=True, return_last_state=True)
    ref_out, ref_state = selective_scan_ref(**inputs, delta_softplus=True, return_last_state=True)
    assert rel_err(out, ref_out) < 1e-5 and rel_err(state, ref_state) < 1e-5


# ---- the larger grid on CUDA: pytest -m gpu tests/kernels -------------------------------------------------------

gpu = pytest.mark.gpu


@pytest.fixture
def poisoned_empty(monkeypatch):
    """Fresh float tensors start as NaN, so an element a kernel forgets to write fails the comparison."""
    empty = torch.empty

    def nan_empty(*args, **kwargs):
        out = empty(*args, **kwargs)
        return out.fill_(float("nan")) if out.is_floating_point() else out

    monkeypatch.setattr(torch, "empty", nan_empty)


@gpu
@pytest.mark.parametrize("seqlen", [1, 63, 300, 2049])
@pytest.mark.parametrize("groups", [None, 4])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("layout", ["bdl", "bld"])
def test_gpu_grid(seqlen, groups, dtype, layout, poisoned_empty):
    # Half the lengths run without the optional inputs and without softplus: two kernel variants per dtype and
    # layout keep the compile time of the grid to a few minutes.
    full = seqlen in (63, 2049)
    inputs = make_inputs(batch=2, dim=64, dstate=16, seqlen=seqlen, groups=groups, dtype=dtype, layout=layout)
    if not full:  # without softplus, step sizes must be positive themselves (else the state grows past fp16)
        inputs.update({k: None for k in OPTIONAL})
        inputs["delta"] = inputs["delta"].abs()
    check_against_reference(inputs, softplus=full)


@gpu
@pytest.mark.parametrize("dstate", [1, 4, 16, 24])
@pytest.mark.parametrize(
    "forced",
    [
        dict(tile=4, chunk=8, segments=5),
        dict(tile=8, chunk=64, segments=3),
        {},
        dict(tile=4, chunk=8, segments=5, prefetch=True),
        dict(prefetch=True),
        dict(maxnreg=168),
        dict(prefetch=True, maxnreg=128),
        dict(prefetch=True, fwd_block_d=16),
    ],
)
def test_gpu_forced_tiling(dstate, forced, poisoned_empty):
    inputs = make_inputs(batch=3, dim=48, dstate=dstate, seqlen=777)
    check_against_reference(inputs, **forced)


@gpu
@pytest.mark.parametrize("batch, seqlen", [(1, 1 << 16), (4, 1 << 14)])
@pytest.mark.parametrize("prefetch", [False, True])
def test_gpu_long_sequences_against_chunked(batch, seqlen, prefetch, poisoned_empty):
    # The genomics shape: 256 channels, 16 states, bfloat16, few sequences -> several segments per sequence.
    inputs = make_inputs(batch=batch, dim=256, dstate=16, seqlen=seqlen, dtype=torch.bfloat16, layout="bld")
    grad_out = torch.randn(inputs["u"].shape, device=DEVICE)
    grad_state = torch.randn(batch, 256, 16, device=DEVICE)
    wide = {k: v.float() for k, v in inputs.items()}
    ref = run_with_grads(selective_scan_chunked, wide, grad_out, grad_state, delta_softplus=True)
    ours = run_with_grads(selective_scan_fused, inputs, grad_out, grad_state, delta_softplus=True, prefetch=prefetch)
    assert rel_err(ours[0], ref[0]) < TOL[torch.bfloat16] and rel_err(ours[1], ref[1]) < 1e-4
    for name in ref[2]:
        assert rel_err(ours[2][name], ref[2][name]) < TOL[torch.bfloat16], name


@gpu
def test_gpu_deterministic_forward():
    inputs = make_inputs(batch=2, dim=256, dstate=16, seqlen=5000, dtype=torch.bfloat16)
    with torch.no_grad():
        first = selective_scan_fused(**inputs, delta_softplus=True, return_last_state=True)
        second = selective_scan_fused(**inputs, delta_softplus=True, return_last_state=True)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
