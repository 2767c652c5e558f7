"""The Mamba-1 mixer on one token in one Triton kernel between in_proj and out_proj (recurrent generation).

Op by op, a token's mixer is some 30 small kernels (the conv window's shift, x_proj, dt_proj, softplus, the decays,
the state update, the gate...), each reading and writing a few kB: a generation step is bound by their count, not by
memory. Here one program per sequence does all of it between in_proj's output and out_proj's input:

1. for each block of channels, shift the conv window (writing the new conv state), convolve, SiLU, and add the
   block's share of x_proj's outputs (dt's low rank, B and C: sums over every channel);
2. for each block again, with dt, B and C complete: recompute the block's conv output from the inputs (cheaper than
   a round trip through memory, and nothing to synchronise), dt_proj and softplus, the decays, the state update
   (writing the new scan state), C . h + D u and the gate.

Arithmetic is float32; the conv window is rounded to the conv state's dtype and the conv output to the output's,
as the reference rounds them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from torch import Tensor

from ..common.math import FMA_CONTRACTION, fast_math, silu_sigmoid, softplus_sigmoid
from ..common.tensors import delivered, kernel_output
from ..conv1d.step import conv_step_silu
from .weights import MixerWeights

BLOCK_D = 64  # channels per iteration: a (64, x_proj rows) tile of x_proj's weight stays in registers


@triton.jit
def _x_proj_rows(x_proj, rows, n_rows, d, mask_d, x, s_xp):
    """Sum over channels ``d`` of x_proj's ``rows`` (those below ``n_rows``) times x: (len(rows),) float32."""
    mask = (rows[:, None] < n_rows) & mask_d[None, :]
    weight = tl.load(x_proj + rows[:, None] * s_xp + d[None, :], mask=mask, other=0.0).to(tl.float32)
    return tl.sum(weight * x[None, :], axis=1)


@triton.jit
def _mamba_step_kernel(
    xz_ptr, conv_in_ptr, conv_w_ptr, conv_b_ptr, x_proj_ptr, dt_w_ptr, dt_b_ptr, A_ptr, D_ptr, ssm_in_ptr,  # inputs
    y_ptr, conv_out_ptr, ssm_out_ptr,  # outputs
    d_inner, dt_rank, d_state,
    s_xz, s_conv_b, s_conv_d, s_xp, s_dtw, s_ssm_b, s_y,
    WIDTH: tl.constexpr, WIDTH_P2: tl.constexpr, CONV_BIAS: tl.constexpr,
    RANK_P2: tl.constexpr, STATE_P2: tl.constexpr, BLOCK: tl.constexpr, FAST: tl.constexpr,
):  # fmt: skip
    b = tl.program_id(0)
    xz = xz_ptr + b * s_xz  # this sequence's rows
    conv_in = conv_in_ptr + b * s_conv_b
    conv_out = conv_out_ptr + b * s_conv_b
    ssm_in = ssm_in_ptr + b * s_ssm_b
    ssm_out = ssm_out_ptr + b * s_ssm_b
    r = tl.arange(0, RANK_P2)
    n = tl.arange(0, STATE_P2)
    dt_low = tl.zeros([RANK_P2], dtype=tl.float32)
    B = tl.zeros([STATE_P2], dtype=tl.float32)
    C = tl.zeros([STATE_P2], dtype=tl.float32)
    for d0 in range(0, d_inner, BLOCK):
        d = d0 + tl.arange(0, BLOCK)
        mask_d = d < d_inner
        x = conv_step_silu(
            xz, conv_in, conv_out, conv_w_ptr, conv_b_ptr, d, mask_d, mask_d, s_conv_d, WIDTH, WIDTH_P2, CONV_BIAS
        )
        x = tl.where(mask_d, x.to(y_ptr.dtype.element_ty).to(tl.float32), 0.0)
        dt_low += _x_proj_rows(x_proj_ptr, r, dt_rank, d, mask_d, x, s_xp)
        B += _x_proj_rows(x_proj_ptr, dt_rank + n, dt_rank + d_state, d, mask_d, x, s_xp)
        C += _x_proj_rows(x_proj_ptr, dt_rank + d_state + n, dt_rank + 2 * d_state, d, mask_d, x, s_xp)

    mask_n = n < d_state
    for d0 in range(0, d_inner, BLOCK):
        d = d0 + tl.arange(0, BLOCK)
        mask_d = d < d_inner
        x = conv_step_silu(  # the window was written in the first pass
            xz, conv_in, conv_out, conv_w_ptr, conv_b_ptr, d, mask_d, d < 0, s_conv_d, WIDTH, WIDTH_P2, CONV_BIAS
        )
        x = x.to(y_ptr.dtype.element_ty).to(tl.float32)
        w_dt = tl.load(
            dt_w_ptr + d[:, None] * s_dtw + r[None, :], mask=mask_d[:, None] & (r[None, :] < dt_rank), other=0.0
        )
        dt = tl.sum(w_dt.to(tl.float32) * dt_low[None, :], axis=1) + tl.load(dt_b_ptr + d, mask=mask_d, other=0.0)
        dt = softplus_sigmoid(dt, FAST)[0]
        mask_dn = mask_d[:, None] & mask_n[None, :]
        a = tl.load(A_ptr + d[:, None] * d_state + n[None, :], mask=mask_dn, other=0.0)
        h = tl.load(ssm_in + d[:, None] * d_state + n[None, :], mask=mask_dn, other=0.0)
        h = tl.exp(dt[:, None] * a) * h + (dt * x)[:, None] * B[None, :]
        tl.store(ssm_out + d[:, None] * d_state + n[None, :], h, mask=mask_dn)
        out = tl.sum(h * C[None, :], axis=1) + tl.load(D_ptr + d, mask=mask_d, other=0.0) * x
        z = tl.load(xz + d_inner + d, mask=mask_d, other=0.0).to(tl.float32)
        tl.store(y_ptr + b * s_y + d, out * silu_sigmoid(z)[0], mask=mask_d)


def mamba_mixer_step_fused(
    hidden: Tensor, w: MixerWeights, conv_state: Tensor, ssm_state: Tensor, ssm_out: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`~.reference.mamba_mixer_step_ref` with everything between in_proj and out_proj in one kernel."""
    batch = hidden.shape[0]
    d_inner, d_state = w.A.shape
    width = w.conv.shape[1]
    xz = F.linear(hidden, w.in_proj, w.in_proj_bias)
    conv_in, ssm_in = conv_state.contiguous(), ssm_state.contiguous()
    conv_w, x_proj, dt_w = w.conv.contiguous(), w.x_proj.contiguous(), w.dt_proj.contiguous()
    A, D, dt_b = (t.to(ssm_state.dtype).contiguous() for t in (w.A, w.D, w.dt_bias))
    y = hidden.new_empty(batch, d_inner)
    conv_out = torch.empty_like(conv_in)
    ssm_new = kernel_output(ssm_out, ssm_in)  # each program reads its states before writing them
    _mamba_step_kernel[(batch,)](
        xz, conv_in, conv_w, conv_w if w.conv_bias is None else w.conv_bias, x_proj, dt_w, dt_b, A, D, ssm_in,
        y, conv_out, ssm_new,
        d_inner, w.dt_rank, d_state,
        xz.stride(0), conv_in.stride(0), conv_in.stride(1), x_proj.stride(0), dt_w.stride(0), ssm_in.stride(0),
        y.stride(0),
        WIDTH=width, WIDTH_P2=triton.next_power_of_2(width), CONV_BIAS=w.conv_bias is not None,
        RANK_P2=triton.next_power_of_2(w.dt_rank), STATE_P2=triton.next_power_of_2(d_state),
        BLOCK=min(BLOCK_D, triton.next_power_of_2(d_inner)), FAST=fast_math(), num_warps=4, **FMA_CONTRACTION,
    )  # fmt: skip
    return F.linear(y, w.out_proj, w.out_proj_bias), conv_out, delivered(ssm_new, ssm_out)
