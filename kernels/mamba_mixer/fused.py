"""The Mamba-1 mixer as one differentiable op on the Triton kernels, keeping little more than its input.

The forward runs in_proj, the conv, x_proj, dt_proj, the scan and out_proj, and keeps the mixer's input, x_proj's
small output (dt, B, C) and the scan's float32 state every 128 positions: 2 d_model + 2 (dt_rank + 2 d_state) +
d_inner d_state / 32 bytes per token in bfloat16, against about 14 d_inner for the same ops under autograd (H100,
width 128 x 6 blocks at 2^20 tokens: a training step's peak 23.9 -> 10.6 GiB). The backward recomputes in_proj,
the conv and dt_proj (matrix products and one conv pass), and the scan's backward writes the gated output again for
out_proj's weight gradient. Buffers are reused where an input is dead once read: the scan's backward writes ddelta
over delta, dz over z (in_proj's output) and the gated output over its own gradient, and x_proj's input gradient
is added to du in place, which also saves the concatenation and the sum that autograd would run.

From a carried state (segmented training, reading a chromosome window by window) the op takes the conv's inputs
before the sequence and the scan's initial state, returns the states to carry on, and back-propagates their
gradients: the state's through the scan, the conv window's into x's last positions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..common.tensors import backward_will_run, cast_fields, in_compute_dtype, in_dtypes_of, weight_grad
from ..conv1d.fused import conv_bwd, conv_fwd
from ..selective_scan.fused_bwd import scan_bwd
from ..selective_scan.fused_fwd import exp2_rates, scan_fwd
from ..selective_scan.tiling import ScanTiling, plan_scan
from .dt_proj import dt_projection, dt_projection_backward
from .reference import conv_tail
from .weights import MixerWeights

# The weights cast to the compute dtype; the kernels read the others (conv, dt bias, A, D) as given.
PROJECTIONS = ("in_proj", "in_proj_bias", "x_proj", "dt_proj", "out_proj", "out_proj_bias")


def _scan_inputs(
    hidden: Tensor, w: MixerWeights, conv_initial: Tensor | None, x_dbl: Tensor | None = None
) -> tuple[Tensor, ...]:
    """(x, z, u = silu(conv(x)), x_dbl, delta): x, z, u, delta as (b, d_inner, l) views of (b, l, d_inner) memory."""
    d_inner = w.A.shape[0]
    x, z = (half.transpose(1, 2) for half in F.linear(hidden, w.in_proj, w.in_proj_bias).split(d_inner, dim=-1))
    u = conv_fwd(x, w.conv, w.conv_bias, conv_initial, silu=True)
    if x_dbl is None:
        x_dbl = F.linear(u.transpose(1, 2), w.x_proj)
    delta = dt_projection(x_dbl[..., : w.dt_rank], w.dt_proj).transpose(1, 2)
    return x, z, u, x_dbl, delta


def _B_C(x_dbl: Tensor, w: MixerWeights) -> tuple[Tensor, Tensor]:
    """B and C as (b, d_state, l) views of x_proj's output."""
    r, n = w.dt_rank, w.d_state
    return x_dbl[..., r : r + n].transpose(1, 2), x_dbl[..., r + n :].transpose(1, 2)


class MambaMixerFn(torch.autograd.Function):
    """The mixer forward, keeping its input, x_proj's output and the scan states; the backward recomputes the rest.

    Returns (out, x's last positions (the conv state's part), the scan's last state) for
    :func:`mamba_mixer_fused` to pick from.
    """

    @staticmethod
    def forward(
        ctx,
        hidden: Tensor,
        conv_initial: Tensor | None,
        initial_state: Tensor | None,
        overrides: dict,
        save: bool,
        *weights: Tensor | None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        dtype, h, w, conv_in = in_compute_dtype(hidden, conv_initial, MixerWeights(*weights), PROJECTIONS)
        with torch.autocast(hidden.device.type, enabled=False):
            x, z, u, x_dbl, delta = _scan_inputs(h, w, conv_in)
            B, C = _B_C(x_dbl, w)
            batch, d_inner, seqlen = u.shape
            tiling = plan_scan(batch, d_inner, w.d_state, seqlen, 1, u.device, **overrides)
            A2 = exp2_rates(w.A)
            y, last, chunks = scan_fwd(
                u, delta, A2, B, C, w.D, z, w.dt_bias, True, initial_state, tiling, save_chunks=save
            )
            out = F.linear(y.transpose(1, 2), w.out_proj, w.out_proj_bias)
            tail = conv_tail(x, w.conv.shape[1]).clone(memory_format=torch.contiguous_format)  # not a view of x
        ctx.save_for_backward(h, conv_in, x_dbl, chunks, *weights)
        ctx.dtype, ctx.hidden_dtype, ctx.tiling = dtype, hidden.dtype, tiling
        ctx.conv_dtype = conv_initial.dtype if conv_initial is not None else None
        ctx.state_dtype = initial_state.dtype if initial_state is not None else None
        ctx.set_materialize_grads(False)
        return out, tail, last

    @staticmethod
    def backward(ctx, dout: Tensor | None, d_tail: Tensor | None, d_last: Tensor | None) -> tuple[Tensor | None, ...]:
        h, conv_in, x_dbl, chunks, *weights = ctx.saved_tensors
        tiling: ScanTiling = ctx.tiling
        with torch.autocast(h.device.type, enabled=False):
            w = cast_fields(MixerWeights(*weights), ctx.dtype, PROJECTIONS)
            dout = dout.to(ctx.dtype) if dout is not None else h.new_zeros(*h.shape[:2], w.out_proj.shape[0])
            x, z, u, x_dbl, delta = _scan_inputs(h, w, conv_in, x_dbl)
            B, C = _B_C(x_dbl, w)
            d_inner = w.A.shape[0]
            A2 = exp2_rates(w.A)
            d_gated = (dout @ w.out_proj).transpose(1, 2)
            dx_dbl = torch.empty_like(x_dbl)  # x_proj's output gradient: the scan's backward writes dB and dC into it
            dB, dC = _B_C(dx_dbl, w)
            # in place: ddelta over delta, dz over z (in_proj's output), the gated output over its gradient
            du, ddelta, dA, _, _, dD, dz, ddt_bias, dh0 = scan_bwd(
                d_gated, d_last, u, delta, A2, B, C, w.D, z, w.dt_bias, True, chunks, tiling, ctx.needs_input_grad[2],
                ddelta=delta, dz=z, out=d_gated, dB_into=dB, dC_into=dC,
            )  # fmt: skip
            d_out_proj = weight_grad(dout, d_gated.transpose(1, 2))
            d_out_bias = dout.sum((0, 1)) if w.out_proj_bias is not None else None
            del d_gated, delta
            ddelta = ddelta.transpose(1, 2)  # (b, l, d_inner) memory
            r, n = w.dt_rank, w.d_state
            d_dt_proj = dt_projection_backward(ddelta, x_dbl[..., :r], w.dt_proj, dx_dbl[..., :r])
            del ddelta
            du.transpose(1, 2).view(-1, d_inner).addmm_(dx_dbl.view(-1, r + 2 * n), w.x_proj)  # x_proj's input grad
            d_x_proj = weight_grad(dx_dbl, u.transpose(1, 2))
            dx, d_conv, d_conv_bias, d_conv_in = conv_bwd(x, w.conv, w.conv_bias, conv_in, du, True)
            if d_tail is not None:  # the carried conv window's gradient, into x's last positions
                dx[:, :, dx.shape[2] - d_tail.shape[2] :] += d_tail
            dx, dz = dx.transpose(1, 2), dz.transpose(1, 2)  # (b, l, d_inner) views
            dhidden = dx.reshape(-1, d_inner) @ w.in_proj[:d_inner]
            dhidden.addmm_(dz.reshape(-1, d_inner), w.in_proj[d_inner:])
            d_in_proj = torch.cat([weight_grad(dx, h), weight_grad(dz, h)])
            d_in_bias = torch.cat([dx.sum((0, 1)), dz.sum((0, 1))]) if w.in_proj_bias is not None else None
        grads = (
            d_in_proj,
            d_in_bias,
            d_conv,
            d_conv_bias,
            d_x_proj,
            d_dt_proj,
            ddt_bias,
            dA,
            dD,
            d_out_proj,
            d_out_bias,
        )
        return (
            dhidden.view(dout.shape).to(ctx.hidden_dtype),
            d_conv_in.to(ctx.conv_dtype) if d_conv_in is not None and ctx.needs_input_grad[1] else None,
            dh0.to(ctx.state_dtype) if dh0 is not None else None,
            None,
            None,
            *in_dtypes_of(grads, weights),
        )


def mamba_mixer_fused(
    hidden: Tensor,
    w: MixerWeights,
    conv_initial: Tensor | None = None,
    initial_state: Tensor | None = None,
    **tiling_overrides: int | bool | None,
) -> Tensor | tuple[Tensor, Tensor, Tensor]:
    """:func:`~.interface.mamba_mixer_fn` on the Triton kernels; ``tiling_overrides`` as for the scan
    (:func:`~..selective_scan.tiling.plan_scan`'s keywords: tests force several chunks and segments)."""
    save = backward_will_run(hidden, conv_initial, initial_state, *w)
    out, tail, last = MambaMixerFn.apply(hidden, conv_initial, initial_state, tiling_overrides, save, *w)
    return out if initial_state is None else (out, tail, last)
