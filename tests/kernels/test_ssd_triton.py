"""SSD (Mamba-2) Triton kernels against the sequential reference: outputs, final states and every gradient.

On the CPU the kernels run through Triton's interpreter, on tiny shapes (several tiles per chunk are forced by
lowering the tile size); the larger grid, marked ``gpu``, runs on CUDA with fresh buffers filled with NaN.

Every error is relative to the reference's norm, except dA's: dA is a sum over batch and positions of terms
dt_t * dL/d(dt_t A) that largely cancel (|dA| ranges over 10x between random draws of the same shape, while the
error of a correct float32 computation stays put), so its error is measured against the sum of those terms'
magnitudes, per head. That is the error bound of a sum whose terms carry relative error ``tol``.
"""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from conftest import DEVICE, rel_err

import genossm.kernels.ssd.tiling as tiling
import genossm.kernels.ssd.triton_scan as triton_scan
from genossm.kernels import backend, ssd_chunk_scan, ssd_chunked, ssd_ref
from genossm.kernels.ssd.reference import prepare_dt

GRADS = ("x", "dt", "A", "B", "C", "D", "z", "dt_bias", "initial_states")
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def make_inputs(batch, seqlen, nheads, headdim, ngroups, dstate, *, optional=True, d_hdim=False, device=DEVICE):
    """Float32 inputs; A spans slow and fast decays; optional tensors are None when ``optional`` is False."""
    inputs = dict(
        x=torch.randn(batch, seqlen, nheads, headdim),
        dt=torch.randn(batch, seqlen, nheads) * 0.5 - 1.0,
        A=-torch.exp(torch.linspace(-2.0, 1.5, nheads)),
        B=torch.randn(batch, seqlen, ngroups, dstate),
        C=torch.randn(batch, seqlen, ngroups, dstate),
        D=torch.randn(nheads, headdim) if d_hdim else torch.randn(nheads),
        z=torch.randn(batch, seqlen, nheads, headdim),
        dt_bias=torch.randn(nheads) * 0.5,
        initial_states=torch.randn(batch, nheads, headdim, dstate),
    )
    if not optional:  # no softplus either: dt must be positive itself
        inputs["dt"] = F.softplus(inputs["dt"])
        for key in ("D", "z", "dt_bias", "initial_states"):
            inputs[key] = None
    return {k: None if v is None else v.to(device) for k, v in inputs.items()}


def outputs_and_grads(fn, inputs, dout, dfinal, **kwargs):
    """fn's output, final states and the gradients of <out, dout> + <final, dfinal> for every given input."""
    leaves = {k: v.detach().clone().requires_grad_() for k, v in inputs.items() if v is not None}
    args = {k: leaves.get(k) for k in inputs}
    out, final = fn(**args, **kwargs, return_final_states=True)
    loss = (out.double() * dout.double()).sum() + (final.double() * dfinal.double()).sum()
    grads = torch.autograd.grad(loss, list(leaves.values()))
    return out, final, dict(zip(leaves, grads, strict=True))


def decay_terms(inputs, dout, dfinal, dt_softplus=False, dt_limit=(0.0, float("inf"))):
    """The terms dt_t dL/d(dt_t A) (batch, seqlen, nheads) whose sum over batch and positions is dA.

    Float64, chunked path. A factor s_t = 1 multiplies the processed dt and divides x: only the decays exp(dt_t A)
    see it, so dL/ds_t = A dt_t dL/d(dt_t A). D is left out (it does not touch the decays).
    """
    wide = {k: None if v is None else v.detach().double() for k, v in inputs.items()}
    dt = prepare_dt(wide["dt"], wide["dt_bias"], dt_softplus, dt_limit, torch.float64)
    s = torch.ones_like(dt, requires_grad=True)
    out, final = ssd_chunked(
        x=wide["x"] / s[..., None],
        dt=dt * s,
        A=wide["A"],
        B=wide["B"],
        C=wide["C"],
        z=wide["z"],
        initial_states=wide["initial_states"],
        return_final_states=True,
    )
    loss = (out * dout.double()).sum() + (final * dfinal.double()).sum()
    (ds,) = torch.autograd.grad(loss, s)
    return ds / wide["A"]


def summed_error(got, ref, magnitude, n_terms):
    """Error of a gradient that is a sum of ``n_terms`` terms per head, relative to the sum of the terms' magnitudes
    (with 1e-6 of slack per term, for a sum that is exactly zero, e.g. dA of one position from a zero state)."""
    return float(((got.double() - ref).abs() / (magnitude + 1e-6 * n_terms)).max())


def check_triton(inputs, chunk_size, tol, dtype=torch.float32, dt_softplus=True, dt_limit=(0.0, float("inf"))):
    """Triton in ``dtype`` against the float64 reference on the same (rounded) inputs."""
    rounded = {k: None if v is None else v.to(dtype) if k in ("x", "B", "C", "z") else v for k, v in inputs.items()}
    x = inputs["x"]
    # Drawn on the CPU like the inputs, so that a GPU case replays exactly through the interpreter.
    dout = torch.randn(x.shape).to(x.device)
    dfinal = torch.randn(x.shape[0], x.shape[2], x.shape[3], inputs["B"].shape[-1]).to(x.device)
    kwargs = dict(dt_softplus=dt_softplus, dt_limit=dt_limit)
    with backend("triton"):
        out, final, grads = outputs_and_grads(ssd_chunk_scan, rounded, dout, dfinal, chunk_size=chunk_size, **kwargs)
    wide = {k: None if v is None else v.double() for k, v in rounded.items()}
    ref_out, ref_final, ref_grads = outputs_and_grads(ssd_ref, wide, dout, dfinal, **kwargs)
    assert out.dtype == dtype and final.dtype == torch.float32
    errors = {"out": rel_err(out.detach(), ref_out.detach()), "final": rel_err(final.detach(), ref_final.detach())}
    errors.update({name: rel_err(grads[name], ref_grads[name]) for name in grads if name not in ("A", "dt_bias")})
    terms = decay_terms(rounded, dout, dfinal, **kwargs)
    scale = terms.abs().sum((0, 1))
    assert ((terms.sum((0, 1)) - ref_grads["A"]).abs() <= 1e-9 * scale + 1e-12).all()  # they are dA's terms
    errors["A"] = summed_error(grads["A"], ref_grads["A"], scale, terms[..., 0].numel())
    if "dt_bias" in grads:  # d dt_bias: the sum over batch and positions of the gradient of dt, cancelling like dA
        terms_dt = ref_grads["dt"].abs().sum((0, 1))
        errors["dt_bias"] = summed_error(grads["dt_bias"], ref_grads["dt_bias"], terms_dt, terms[..., 0].numel())
    assert set(grads) == {k for k in GRADS if inputs.get(k) is not None}
    bad = {k: f"{v:.2e}" for k, v in errors.items() if not v < tol}
    assert not bad, f"relative errors above {tol} (dA's, d dt_bias's: relative to their terms' magnitudes): {bad}"


@pytest.fixture
def small_tiles(monkeypatch):
    """Tiles of 16 positions, so that tiny chunks still span several tiles; fresh buffers filled with NaN."""
    monkeypatch.setattr(tiling, "MAX_BLOCK_T", 16)
    monkeypatch.setattr(tiling, "POISON_BUFFERS", True)


# (seqlen, chunk_size, ngroups, optional, d_hdim): tails, non-power-of-two chunks, groups, every optional input.
INTERPRETER_CASES = [
    (37, 16, 2, True, True),
    (37, 16, 1, False, False),
    (50, 24, 2, True, False),
    (1, 16, 1, True, True),
    (32, 32, 4, True, False),
]


@pytest.mark.parametrize("seqlen, chunk_size, ngroups, optional, d_hdim", INTERPRETER_CASES)
def test_triton_matches_reference(small_tiles, seqlen, chunk_size, ngroups, optional, d_hdim):
    inputs = make_inputs(2, seqlen, 4, 5, ngroups, 6, optional=optional, d_hdim=d_hdim)
    check_triton(inputs, chunk_size, tol=1e-5, dt_softplus=optional)


def test_triton_unpadded_tiles(small_tiles):
    # headdim and dstate fill their blocks (16), so the chunk loops load without masks; chunks of two tiles (below
    # the diagonal and on it), and a last chunk of 9 whose tiles read its last row again past its end.
    inputs = make_inputs(1, 41, 2, 16, 1, 16)
    check_triton(inputs, 32, tol=1e-5, dt_softplus=True)


def test_triton_dt_limit(small_tiles):
    inputs = make_inputs(1, 40, 2, 4, 1, 5)
    check_triton(inputs, 16, tol=1e-5, dt_limit=(0.1, 0.5))


def test_triton_inner_tiles(monkeypatch):
    # dx/dB tiles of 32 with inner tiles of 16, as on the GPU with 64 / 32.
    monkeypatch.setattr(tiling, "MAX_BLOCK_T", 32)
    table = triton_scan.ssd_tiles
    monkeypatch.setattr(triton_scan, "ssd_tiles", lambda *args: dataclasses.replace(table(*args), block_t_inner=16))
    check_triton(make_inputs(1, 70, 2, 4, 1, 3), 64, tol=1e-5)


def test_triton_half_precision(small_tiles):
    # float16 here: Triton 3.9's interpreter multiplies bfloat16 tiles as their raw 16-bit integers in tl.dot.
    # The low-precision paths (operand casts, half-precision chunk states) are the same; bfloat16 runs on the GPU.
    inputs = make_inputs(2, 37, 4, 8, 2, 8, d_hdim=True)
    check_triton(inputs, 16, tol=2e-3, dtype=torch.float16)


def test_final_states_chain_segments(small_tiles):
    """Two segments chained through the final state equal one pass, gradients included (segmented training)."""
    inputs = make_inputs(1, 45, 2, 4, 1, 3)
    dout = torch.randn_like(inputs["x"])
    kwargs = dict(chunk_size=16, dt_softplus=True)
    with backend("triton"):
        whole, _, grads = outputs_and_grads(
            ssd_chunk_scan, inputs, dout, torch.zeros(1, 2, 4, 3, device=DEVICE), **kwargs
        )
        leaves = {k: v.detach().clone().requires_grad_() for k, v in inputs.items()}
        per_position = ("x", "dt", "B", "C", "z")
        first = {k: v[:, :20] if k in per_position else v for k, v in leaves.items()}
        out1, state = ssd_chunk_scan(**first, **kwargs, return_final_states=True)
        second = {k: v[:, 20:] if k in per_position else v for k, v in leaves.items()}
        second["initial_states"] = state
        out2 = ssd_chunk_scan(**second, **kwargs)
        torch.autograd.backward([out1, out2], [dout[:, :20], dout[:, 20:]])
    assert rel_err(torch.cat([out1, out2], 1).detach(), whole.detach()) < 1e-5
    for name, grad in grads.items():
        assert rel_err(leaves[name].grad, grad) < 1e-5, name


def test_forced_triton_rejects_float64():
    inputs = make_inputs(1, 8, 2, 4, 1, 3)
    wide = {k: v.double() for k, v in inputs.items()}
    with backend("triton"), pytest.raises(ValueError, match="float64"):
        ssd_chunk_scan(**wide, chunk_size=4)


# ---------------------------------------------------------------- GPU grid (pytest -m gpu)

GPU_CASES = [
    # (batch, seqlen, nheads, headdim, ngroups, dstate, chunk_size); headdim 64 with dstate 16, 64, 128 and 256 (the
    # benchmark's state sizes), headdim 128 (the largest) at dstate 128.
    (2, 1, 4, 64, 1, 64, 256),
    (2, 255, 4, 64, 1, 16, 64),
    (2, 1000, 4, 64, 2, 64, 256),
    (1, 4096, 4, 64, 1, 64, 256),
    (3, 777, 8, 64, 4, 128, 128),
    (1, 1500, 4, 64, 1, 256, 256),
    (2, 600, 4, 32, 1, 64, 100),
    (1, 700, 2, 128, 1, 128, 256),
]


@pytest.mark.gpu
@requires_cuda
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-4), (torch.bfloat16, 2e-2), (torch.float16, 3e-3)])
@pytest.mark.parametrize("case", GPU_CASES, ids=lambda c: "b{}-l{}-h{}-p{}-g{}-n{}-q{}".format(*c))
@pytest.mark.parametrize("optional", [True, False])
def test_gpu_grid(monkeypatch, optional, case, dtype, tol):
    monkeypatch.setattr(tiling, "POISON_BUFFERS", True)
    batch, seqlen, nheads, headdim, ngroups, dstate, chunk = case
    inputs = make_inputs(batch, seqlen, nheads, headdim, ngroups, dstate, optional=optional, device="cuda")
    check_triton(inputs, chunk, tol, dtype=dtype, dt_softplus=optional)


@pytest.mark.gpu
@requires_cuda
def test_gpu_long_sequence_matches_chunked(monkeypatch):
    """One 256K-position sequence, against the chunked PyTorch path in float64."""
    monkeypatch.setattr(tiling, "POISON_BUFFERS", True)
    inputs = make_inputs(1, 1 << 18, 4, 64, 1, 64, device="cuda")
    with backend("triton"):
        out, final = ssd_chunk_scan(**inputs, chunk_size=256, dt_softplus=True, return_final_states=True)
    wide = {k: v.double() for k, v in inputs.items()}
    ref_out, ref_final = ssd_chunked(**wide, chunk_size=64, dt_softplus=True, return_final_states=True)
    assert rel_err(out, ref_out) < 1e-4 and rel_err(final, ref_final) < 1e-4


@pytest.mark.gpu
@requires_cuda
def test_gpu_matches_mamba_ssm():
    """Same outputs and gradients as mamba_ssm's mamba_chunk_scan_combined, where it is installed."""
    combined = pytest.importorskip("mamba_ssm.ops.triton.ssd_combined")
    inputs = make_inputs(2, 1000, 4, 64, 1, 64, d_hdim=True, device="cuda")
    inputs = {k: v.to(torch.bfloat16) if k in ("x", "B", "C", "z") else v for k, v in inputs.items()}
    dout = torch.randn_like(inputs["x"])
    dfinal = torch.randn(2, 4, 64, 64, device="cuda")
    kwargs = dict(chunk_size=256, dt_softplus=True)
    ours = outputs_and_grads(ssd_chunk_scan, inputs, dout, dfinal, **kwargs)
    theirs = outputs_and_grads(combined.mamba_chunk_scan_combined, inputs, dout, dfinal, **kwargs)
    assert rel_err(ours[0], theirs[0]) < 2e-2 and rel_err(ours[1], theirs[1]) < 2e-2
    for name in ours[2]:
        assert rel_err(ours[2][name], theirs[2][name]) < 5e-2, name
