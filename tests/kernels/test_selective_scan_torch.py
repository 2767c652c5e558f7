"""Selective scan: the chunked PyTorch path against the sequential reference, forward and gradients."""

import math

import pytest
import torch
from conftest import rel_err

from genossm.kernels import selective_scan_chunked, selective_scan_fn, selective_scan_ref
from genossm.kernels.selective_scan import chunked


def make_inputs(batch=2, dim=8, dstate=4, seqlen=37, groups=None, dtype=torch.float32, strong_decay=False):
    shape_bc = (batch, dstate, seqlen) if groups is None else (batch, groups, dstate, seqlen)
    A = -torch.rand(dim, dstate, dtype=torch.float64) * (8 if strong_decay else 2) - 0.1
    return dict(
        u=torch.randn(batch, dim, seqlen, dtype=dtype),
        delta=torch.randn(batch, dim, seqlen, dtype=dtype) * 0.5,
        A=A.to(torch.float32 if dtype != torch.float64 else dtype),
        B=torch.randn(*shape_bc, dtype=dtype),
        C=torch.randn(*shape_bc, dtype=dtype),
        D=torch.randn(dim, dtype=torch.float32 if dtype != torch.float64 else dtype),
        z=torch.randn(batch, dim, seqlen, dtype=dtype),
        delta_bias=torch.randn(dim, dtype=torch.float32 if dtype != torch.float64 else dtype) * 0.5,
        initial_state=torch.randn(batch, dim, dstate, dtype=torch.float32 if dtype != torch.float64 else dtype),
    )


@pytest.mark.parametrize("seqlen", [1, 7, 63, 64, 65, 300])
@pytest.mark.parametrize("groups", [None, 1, 2])
@pytest.mark.parametrize("optional", [True, False])
def test_chunked_matches_reference(seqlen, groups, optional):
    inputs = make_inputs(seqlen=seqlen, groups=groups)
    if not optional:
        for key in ("D", "z", "delta_bias", "initial_state"):
            inputs[key] = None
    ref_out, ref_state = selective_scan_ref(**inputs, delta_softplus=optional, return_last_state=True)
    for chunk in (None, 4, 16):
        out, state = selective_scan_chunked(**inputs, delta_softplus=optional, return_last_state=True, chunk_size=chunk)
        assert rel_err(out, ref_out) < 1e-5
        assert rel_err(state, ref_state) < 1e-5


@pytest.mark.parametrize("batch, shape", [(1, (4, 2)), (3, (2, 1))])  # (T, chunks per block); 1 chunk: no chaining
@pytest.mark.parametrize("groups", [None, 2])
@pytest.mark.parametrize("with_state", [True, False])
def test_chunked_blocks_match_reference(monkeypatch, batch, shape, groups, with_state):
    # Small blocks force the block walk: several blocks, a short last block, state carried between blocks; without
    # gradients the scan runs in place in reused buffers, with them autograd runs the same steps.
    monkeypatch.setattr(chunked, "STEP_NUMBERS", 64)
    monkeypatch.setattr(chunked, "BLOCK_NUMBERS", 256)
    inputs = make_inputs(batch=batch, dim=8, dstate=4, seqlen=45, groups=groups)
    assert chunked.block_shape(45, batch * 8 * 4) == shape
    if not with_state:
        inputs["initial_state"] = None
    grad_out = torch.randn_like(inputs["u"])
    results = []
    for scan in (selective_scan_ref, selective_scan_chunked):
        leaves = {k: None if v is None else v.detach().clone().requires_grad_() for k, v in inputs.items()}
        out, state = scan(**leaves, delta_softplus=True, return_last_state=True)
        ((out * grad_out).sum() + state.square().sum()).backward()
        results.append((out, state, {k: v.grad for k, v in leaves.items() if v is not None}))
    (ref_out, ref_state, ref_grads), (out, state, grads) = results
    assert rel_err(out, ref_out) < 1e-5 and rel_err(state, ref_state) < 1e-5
    for key, grad in ref_grads.items():
        assert rel_err(grads[key], grad) < 1e-5, key
    with torch.inference_mode():
        out, state = selective_scan_chunked(**inputs, delta_softplus=True, return_last_state=True)
    assert rel_err(out, ref_out) < 1e-5 and rel_err(state, ref_state) < 1e-5


def test_reference_recurrence_by_hand():
    # One channel, one state, two positions: h1 = dt1 B1 u1; h2 = exp(dt2 A) h1 + dt2 B2 u2; y = C h + D u.
    u, dt = torch.tensor([[[2.0, 3.0]]]), torch.tensor([[[0.5, 0.25]]])
    A, B, C, D = (
        torch.tensor([[-1.0]]),
        torch.tensor([[[1.0, 2.0]]]),
        torch.tensor([[[3.0, 4.0]]]),
        torch.tensor([0.5]),
    )
    h1 = 0.5 * 1.0 * 2.0
    h2 = math.exp(-0.25) * h1 + 0.25 * 2.0 * 3.0
    out, state = selective_scan_ref(u, dt, A, B, C, D, return_last_state=True)
    assert torch.allclose(out, torch.tensor([[[3.0 * h1 + 1.0, 4.0 * h2 + 1.5]]]))
    assert torch.allclose(state, torch.tensor([[[h2]]]))


@pytest.mark.parametrize("groups", [None, 2])
def test_chunked_gradcheck(groups):
    inputs = make_inputs(batch=1, dim=4, dstate=3, seqlen=11, groups=groups, dtype=torch.float64)
    names = list(inputs)
    tensors = [inputs[k].requires_grad_() for k in names]

    def fn(*args):
        kw = dict(zip(names, args, strict=True))
        out, state = selective_scan_chunked(**kw, delta_softplus=True, return_last_state=True, chunk_size=4)
        return out, state

    assert torch.autograd.gradcheck(fn, tensors, eps=1e-6, atol=1e-5)


def test_chunked_gradients_match_reference():
    inputs = make_inputs(seqlen=50, groups=2)
    grads = []
    for scan in (selective_scan_ref, selective_scan_chunked):
        leaves = {k: v.detach().clone().requires_grad_() for k, v in inputs.items()}
        out, state = scan(**leaves, delta_softplus=True, return_last_state=True)
        (out.square().sum() + state.sum()).backward()
        grads.append({k: v.grad for k, v in leaves.items()})
    for key in inputs:
        assert rel_err(grads[1][key], grads[0][key]) < 1e-4, key


def test_stable_at_one_million_positions():
    # Strong decays over 2^20 positions: cumulative products underflow long before the end; nothing may overflow.
    inputs = make_inputs(batch=1, dim=2, dstate=4, seqlen=1 << 20, strong_decay=True)
    out32, state32 = selective_scan_chunked(**inputs, delta_softplus=True, return_last_state=True)
    wide = {k: v.double() for k, v in inputs.items()}
    out64, state64 = selective_scan_chunked(**wide, delta_softplus=True, return_last_state=True)
    assert torch.isfinite(out32).all() and torch.isfinite(state32).all()
    assert rel_err(out32, out64) < 1e-4
    assert rel_err(state32, state64) < 1e-4


def test_bfloat16_inputs_keep_float32_state():
    inputs = make_inputs(seqlen=40)
    low = {k: (v.bfloat16() if k in ("u", "delta", "B", "C", "z") else v) for k, v in inputs.items()}
    out, state = selective_scan_fn(**low, delta_softplus=True, return_last_state=True)
    assert out.dtype == torch.bfloat16 and state.dtype == torch.float32
    ref = selective_scan_ref(**{k: v.float() for k, v in low.items()}, delta_softplus=True)
    assert rel_err(out, ref) < 1e-2


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(delta=torch.zeros(2, 8, 5)), "delta must have u's shape"),
        (dict(A=torch.zeros(7, 4)), "A must be"),
        (dict(B=torch.zeros(2, 3, 4, 37)), "B must be"),
        (dict(D=torch.zeros(3)), "D must be"),
        (dict(initial_state=torch.zeros(2, 8, 5)), "initial_state must be"),
    ],
)
def test_public_function_rejects_bad_shapes(bad, message):
    inputs = make_inputs()
    inputs.update(bad)
    with pytest.raises(ValueError, match=message):
        selective_scan_fn(**inputs)
