"""The Mamba-2 mixer as one differentiable op on the Triton kernels, keeping only its input.

The forward runs in_proj, the conv, the SSD scan, the gated norm and out_proj and keeps the mixer's input (2 d_model
bytes per token in bfloat16) and the carried states it was given; autograd over the same ops keeps in_proj's, the
conv's, the scan's and the norm's outputs and the scan's chunk states (about 5 KB per token at width 128 and
N = 128). The backward recomputes in_proj, the conv and the scan's forward, then:

* the norm's backward writes the scan output's gradient over out_proj's input gradient, z's gradient over z (in
  in_proj's recomputed output) and the normed output over the scan's output (out_proj's weight gradient needs it);
* the SSD backward writes dx, dB and dC into one buffer laid out like the conv's output, the conv backward's input;
* in_proj's input gradient is a sum of two products: over dz (in place in in_proj's recomputed output) and over
  the gradients of xBC and dt, side by side in one buffer that the conv's backward writes into.

From a carried state (segmented training, reading a chromosome window by window) the op takes the conv's inputs
before the sequence and the scan's initial state, returns the states to carry on, and back-propagates their
gradients: the state's through the scan, the conv window's into xBC's last positions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..common.tensors import cast_fields, in_compute_dtype, in_dtypes_of, weight_grad
from ..conv1d.fused import conv_bwd, conv_fwd
from ..mamba_mixer.reference import conv_tail
from ..norm.gated_triton import gated_norm_bwd, gated_norm_fwd
from ..ssd.triton_scan import ssd_bwd, ssd_fwd
from .reference import scan_inputs
from .weights import Mamba2Settings, Mamba2Sizes, Mamba2Weights, padded_width

# The weights cast to the compute dtype; the kernels read the others (conv, dt bias, A, D, norm) as given.
PROJECTIONS = ("in_proj", "in_proj_bias", "out_proj", "out_proj_bias")


def _in_proj_padded(h: Tensor, w: Mamba2Weights) -> Tensor:
    """in_proj(h) as a view into rows of :func:`padded_width` elements (the padding columns are zeros, never read)."""
    width = w.in_proj.shape[0]
    pad = padded_width(width) - width
    if pad == 0:
        return F.linear(h, w.in_proj, w.in_proj_bias)
    bias = F.pad(w.in_proj_bias, (0, pad)) if w.in_proj_bias is not None else None
    return F.linear(h, F.pad(w.in_proj, (0, 0, 0, pad)), bias)[..., :width]


def _rest_of_in_proj(xBC_t: Tensor, w: Mamba2Weights, sizes: Mamba2Sizes) -> tuple[Tensor, Tensor]:
    """A buffer for the gradients of in_proj's xBC and dt columns, side by side in rows of :func:`padded_width`
    elements (padding zeroed), and in_proj's weight rows for them, padded alike: one product then takes in_proj's
    backward over both (dt's own, 4 columns wide, ran a slow unaligned GEMM)."""
    width = sizes.conv_dim + sizes.nheads
    batch, _, seqlen = xBC_t.shape
    d_rest = xBC_t.new_empty(batch, seqlen, padded_width(width))
    d_rest[..., width:].zero_()
    return d_rest, F.pad(w.in_proj[sizes.d_ssm :], (0, 0, 0, d_rest.shape[-1] - width))


def _forward(h: Tensor, w: Mamba2Weights, s: Mamba2Settings, conv_in: Tensor | None, initial: Tensor | None):
    """in_proj, conv and scan: (z, xBC before the conv (b, conv_dim, l), dt, (x, B, C), scan output, final state,
    what the scan's backward needs)."""
    sizes = Mamba2Sizes.of(w, s)
    _, _, z, xBC, dt = sizes.split(_in_proj_padded(h, w))
    xBC_t = xBC.transpose(1, 2)
    x, B, C = scan_inputs(conv_fwd(xBC_t, w.conv, w.conv_bias, conv_in, silu=True).transpose(1, 2), s, sizes)
    z_scan = None if w.norm is not None else z.unflatten(-1, (sizes.nheads, s.headdim))
    y, final, saved = ssd_fwd(x, dt, w.A, B, C, s.chunk_size, w.D, z_scan, w.dt_bias, initial, True, s.dt_limit)
    return z, xBC_t, dt, (x, B, C), y.flatten(-2), final, saved


class Mamba2MixerFn(torch.autograd.Function):
    """The mixer forward, keeping its input; the backward recomputes the rest. Returns (out, xBC's last positions
    (the conv state's part), the scan's last state) for :func:`mamba2_mixer_fused` to pick from."""

    @staticmethod
    def forward(
        ctx,
        hidden: Tensor,
        conv_initial: Tensor | None,
        initial_state: Tensor | None,
        s: Mamba2Settings,
        *weights: Tensor | None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        dtype, h, w, conv_in = in_compute_dtype(hidden, conv_initial, Mamba2Weights(*weights), PROJECTIONS)
        with torch.autocast(hidden.device.type, enabled=False):
            z, xBC_t, _, _, y, final, _ = _forward(h, w, s, conv_in, initial_state)
            if w.norm is not None:
                y = gated_norm_fwd(y, w.norm, z, s.norm_eps, y.shape[-1] // s.ngroups, s.norm_before_gate)
            out = F.linear(y, w.out_proj, w.out_proj_bias)
            tail = conv_tail(xBC_t, w.conv.shape[1]).clone(memory_format=torch.contiguous_format)  # not a view
        ctx.save_for_backward(h, conv_in, initial_state, *weights)
        ctx.settings, ctx.dtype, ctx.hidden_dtype = s, dtype, hidden.dtype
        ctx.conv_dtype = conv_initial.dtype if conv_initial is not None else None
        ctx.set_materialize_grads(False)
        return out, tail, final

    @staticmethod
    def backward(ctx, dout: Tensor | None, d_tail: Tensor | None, d_final: Tensor | None) -> tuple[Tensor | None, ...]:
        h, conv_in, initial, *weights = ctx.saved_tensors
        s: Mamba2Settings = ctx.settings
        with torch.autocast(h.device.type, enabled=False):
            w = cast_fields(Mamba2Weights(*weights), ctx.dtype, PROJECTIONS)
            dout = dout.to(ctx.dtype) if dout is not None else h.new_zeros(*h.shape[:2], w.out_proj.shape[0])
            z, xBC_t, dt, (x, B, C), y, final, saved = _forward(h, w, s, conv_in, initial)
            del final  # float32 per sequence: 128 MB at batch 1024, N = 128
            dy = dout @ w.out_proj
            dz = None
            if w.norm is not None:  # in place: dy over its input, dz over z, the normed output over y
                dy, d_norm, dz = gated_norm_bwd(
                    y, w.norm, z, dy, s.norm_eps, y.shape[-1] // s.ngroups, s.norm_before_gate, dx=dy, dz=z, out=y
                )  # fmt: skip
            d_out_proj = weight_grad(dout, y)
            d_out_bias = dout.sum((0, 1)) if w.out_proj_bias is not None else None
            del y
            d_conv_out = torch.empty_like(xBC_t.transpose(1, 2), memory_format=torch.contiguous_format)
            sizes = Mamba2Sizes.of(w, s)
            z_scan = None if w.norm is not None else z.unflatten(-1, (sizes.nheads, s.headdim))
            _, ddt, dA, _, _, dD, dz_scan, ddt_bias, d_initial = ssd_bwd(
                dy.unflatten(-1, (sizes.nheads, s.headdim)), d_final, x, dt, w.A, B, C, w.D, z_scan, w.dt_bias, saved,
                True, s.dt_limit, into=scan_inputs(d_conv_out, s, sizes),
            )  # fmt: skip
            del x, B, C, saved, dy
            if w.norm is None:
                d_norm, dz = None, dz_scan.flatten(-2)
            d_rest, rest_weight = _rest_of_in_proj(xBC_t, w, sizes)  # allocated once the scan's buffers are freed
            d_rest[..., sizes.conv_dim : sizes.conv_dim + sizes.nheads] = ddt
            dxBC = d_rest[..., : sizes.conv_dim].transpose(1, 2)
            _, d_conv, d_conv_bias, d_conv_in = conv_bwd(
                xBC_t, w.conv, w.conv_bias, conv_in, d_conv_out.transpose(1, 2), True, dx=dxBC
            )
            del d_conv_out
            if d_tail is not None:  # the carried conv window's gradient, into xBC's last positions
                dxBC[:, :, dxBC.shape[2] - d_tail.shape[2] :] += d_tail
            # in_proj's backward: dz's rows of the weight, then those of xBC and dt in one product
            dz_rows = dz.reshape(-1, sizes.d_ssm)
            dhidden = dz_rows @ w.in_proj[: sizes.d_ssm]
            dhidden.addmm_(d_rest.view(-1, d_rest.shape[-1]), rest_weight)
            d_rest = d_rest[..., : sizes.conv_dim + sizes.nheads]  # the padding's rows: a slower GEMM (H100)
            d_in_proj = torch.cat([weight_grad(dz, h), weight_grad(d_rest, h)])
            d_in_bias = torch.cat([dz_rows.sum(0), d_rest.sum((0, 1))]) if w.in_proj_bias is not None else None
        grads = (d_in_proj, d_in_bias, d_conv, d_conv_bias, ddt_bias, dA, dD, d_norm, d_out_proj, d_out_bias)
        return (
            dhidden.view(dout.shape[:2] + h.shape[2:]).to(ctx.hidden_dtype),
            d_conv_in.to(ctx.conv_dtype) if d_conv_in is not None and ctx.needs_input_grad[1] else None,
            d_initial if ctx.needs_input_grad[2] else None,
            None,
            *in_dtypes_of(grads, weights),
        )


def mamba2_mixer_fused(
    hidden: Tensor,
    w: Mamba2Weights,
    s: Mamba2Settings,
    conv_initial: Tensor | None = None,
    initial_state: Tensor | None = None,
) -> Tensor | tuple[Tensor, Tensor, Tensor]:
    """:func:`~.interface.mamba2_mixer_fn` on the Triton kernels (a mixer without a gated-MLP part)."""
    out, tail, last = Mamba2MixerFn.apply(hidden, conv_initial, initial_state, s, *w)
    return out if initial_state is None else (out, tail, last)
