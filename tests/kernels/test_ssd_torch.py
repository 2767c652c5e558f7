"""SSD (Mamba-2): the chunked PyTorch path against the sequential reference, forward and gradients."""

import math

import pytest
import torch
from conftest import rel_err

from genossm.kernels import ssd_chunk_scan, ssd_chunked, ssd_ref


def make_inputs(batch=2, seqlen=37, nheads=4, headdim=3, ngroups=2, dstate=5, dtype=torch.float32, d_hdim=False):
    return dict(
        x=torch.randn(batch, seqlen, nheads, headdim, dtype=dtype),
        dt=torch.randn(batch, seqlen, nheads, dtype=dtype) * 0.5,
        A=-torch.rand(nheads, dtype=dtype) * 2 - 0.1,
        B=torch.randn(batch, seqlen, ngroups, dstate, dtype=dtype),
        C=torch.randn(batch, seqlen, ngroups, dstate, dtype=dtype),
        D=torch.randn(*((nheads, headdim) if d_hdim else (nheads,)), dtype=dtype),
        z=torch.randn(batch, seqlen, nheads, headdim, dtype=dtype),
        dt_bias=torch.randn(nheads, dtype=dtype) * 0.5,
        initial_states=torch.randn(batch, nheads, headdim, dstate, dtype=dtype),
    )


@pytest.mark.parametrize("seqlen", [1, 15, 16, 17, 100])
@pytest.mark.parametrize("ngroups", [1, 2])
@pytest.mark.parametrize("optional", [True, False])
def test_chunked_matches_reference(seqlen, ngroups, optional):
    inputs = make_inputs(seqlen=seqlen, ngroups=ngroups, d_hdim=optional)
    if not optional:
        for key in ("D", "z", "dt_bias", "initial_states"):
            inputs[key] = None
    ref_out, ref_state = ssd_ref(**inputs, dt_softplus=optional, return_final_states=True)
    for chunk in (1, 4, 16):
        out, state = ssd_chunked(**inputs, chunk_size=chunk, dt_softplus=optional, return_final_states=True)
        assert rel_err(out, ref_out) < 1e-5
        assert rel_err(state, ref_state) < 1e-5


def test_dt_limit_clamps():
    inputs = make_inputs(seqlen=20)
    limited = ssd_ref(**inputs, dt_softplus=True, dt_limit=(0.05, 0.2))
    chunked = ssd_chunked(**inputs, chunk_size=8, dt_softplus=True, dt_limit=(0.05, 0.2))
    assert rel_err(chunked, limited) < 1e-5
    assert rel_err(limited, ssd_ref(**inputs, dt_softplus=True)) > 1e-3


def test_reference_recurrence_by_hand():
    # One head, headdim 1, dstate 1: H1 = dt1 x1 B1; H2 = exp(dt2 A) H1 + dt2 x2 B2; y = C H + D x.
    x = torch.tensor([2.0, 3.0]).view(1, 2, 1, 1)
    dt = torch.tensor([0.5, 0.25]).view(1, 2, 1)
    B, C = torch.tensor([1.0, 2.0]).view(1, 2, 1, 1), torch.tensor([3.0, 4.0]).view(1, 2, 1, 1)
    h1 = 0.5 * 2.0 * 1.0
    h2 = math.exp(-0.25) * h1 + 0.25 * 3.0 * 2.0
    out = ssd_ref(x, dt, torch.tensor([-1.0]), B, C, D=torch.tensor([0.5]))
    assert torch.allclose(out.flatten(), torch.tensor([3.0 * h1 + 1.0, 4.0 * h2 + 1.5]))


@pytest.mark.parametrize("ngroups", [1, 2])
def test_chunked_gradcheck(ngroups):
    inputs = make_inputs(batch=1, seqlen=9, nheads=2, headdim=2, ngroups=ngroups, dstate=3, dtype=torch.float64)
    names = list(inputs)
    tensors = [inputs[k].requires_grad_() for k in names]

    def fn(*args):
        kw = dict(zip(names, args, strict=True))
        return ssd_chunked(**kw, chunk_size=4, dt_softplus=True, return_final_states=True)

    assert torch.autograd.gradcheck(fn, tensors, eps=1e-6, atol=1e-5)


def test_stable_at_one_million_positions():
    inputs = make_inputs(batch=1, seqlen=1 << 20, nheads=2, headdim=2, ngroups=1, dstate=2)
    inputs["A"] = torch.tensor([-8.0, -0.01])
    out32, state32 = ssd_chunk_scan(**inputs, chunk_size=256, dt_softplus=True, return_final_states=True)
    wide = {k: v.double() for k, v in inputs.items()}
    out64, state64 = ssd_chunked(**wide, chunk_size=64, dt_softplus=True, return_final_states=True)
    assert torch.isfinite(out32).all() and torch.isfinite(state32).all()
    assert rel_err(out32, out64) < 1e-4
    assert rel_err(state32, state64) < 1e-4


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(dt=torch.zeros(2, 37, 3)), "dt must be"),
        (dict(A=torch.zeros(3)), "A must be"),
        (dict(B=torch.zeros(2, 37, 3, 5)), "B must be"),
        (dict(D=torch.zeros(5)), "D must be"),
        (dict(initial_states=torch.zeros(2, 4, 3, 4)), "initial_states must be"),
    ],
)
def test_public_function_rejects_bad_shapes(bad, message):
    inputs = make_inputs()
    inputs.update(bad)
    with pytest.raises(ValueError, match=message):
        ssd_chunk_scan(**inputs, chunk_size=16)
