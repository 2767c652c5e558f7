"""The Mamba-2 scan on one token in one Triton kernel between in_proj and the output norm (recurrent generation).

Op by op, a token's mixer is some 25 small kernels (the conv window's shift, the conv, SiLU, the splits, softplus,
the decay, the state update, C . h + D x...), and the state update alone passes the (batch, nheads, headdim,
d_state) float32 state through memory several times. Here one program per (sequence, head, block of head
channels) shifts and convolves the conv window of its x channels and of its group's B and C, computes the head's
step size and decay, updates its block of the state once (read once, written once) and writes C . h + D x (gated
by z when the mixer has no output norm). The gated norm and out_proj stay as they are (``gate_and_project``).

Arithmetic is float32; the conv window is rounded to the conv state's dtype and x, B, C to the output's, as the
reference (``mamba2_mixer_step_ref``) rounds them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from torch import Tensor

from ..common.math import FMA_CONTRACTION, fast_math, silu_sigmoid, softplus_sigmoid
from ..common.tensors import delivered, kernel_output
from ..conv1d.step import conv_step_silu
from .reference import gate_and_project
from .weights import Mamba2Settings, Mamba2Sizes, Mamba2Weights

STATE_ELEMENTS = 2048  # state elements per program, 16 float32 per thread on 4 warps (H100, 7.5M block at 1,024
# samples: 214 us against 221 with 4096 and 243 with 8192, 2.6 TB/s)


@triton.jit
def _mamba2_step_kernel(
    zxbcdt_ptr, conv_in_ptr, conv_w_ptr, conv_b_ptr, dt_b_ptr, A_ptr, D_ptr, ssm_in_ptr,  # inputs
    y_ptr, conv_out_ptr, ssm_out_ptr,  # outputs
    d_mlp, headdim, d_state, nheads, ngroups, dt_min, dt_max,
    s_in, s_conv_b, s_conv_c, s_ssm_b, s_ssm_h, s_ssm_p, s_y,
    WIDTH: tl.constexpr, WIDTH_P2: tl.constexpr, CONV_BIAS: tl.constexpr, D_PER_CHANNEL: tl.constexpr,
    GATE: tl.constexpr, DT_LIMIT: tl.constexpr, BLOCK_P: tl.constexpr, STATE_P2: tl.constexpr, FAST: tl.constexpr,
):  # fmt: skip
    b = tl.program_id(0).to(tl.int64)
    head = tl.program_id(1)
    p_block = tl.program_id(2)
    d_ssm = nheads * headdim
    group = head // (nheads // ngroups)
    row = zxbcdt_ptr + b * s_in  # [z0, x0, z, xBC, dt]
    xbc = row + 2 * d_mlp + d_ssm
    conv_in = conv_in_ptr + b * s_conv_b
    conv_out = conv_out_ptr + b * s_conv_b

    p = p_block * BLOCK_P + tl.arange(0, BLOCK_P)
    mask_p = p < headdim
    n = tl.arange(0, STATE_P2)
    mask_n = n < d_state
    state_at = head * s_ssm_h + p[:, None] * s_ssm_p + n[None, :]
    mask_pn = mask_p[:, None] & mask_n[None, :]
    h = tl.load(ssm_in_ptr + b * s_ssm_b + state_at, mask=mask_pn, other=0.0)  # first: the conv runs while it loads
    out_ty = y_ptr.dtype.element_ty
    x_channels = head * headdim + p
    x = conv_step_silu(xbc, conv_in, conv_out, conv_w_ptr, conv_b_ptr, x_channels, mask_p, mask_p, s_conv_c,
                       WIDTH, WIDTH_P2, CONV_BIAS)  # fmt: skip
    x = x.to(out_ty).to(tl.float32)
    # B and C: every head of the group reads them; its first head's first block writes their conv state
    store_bc = mask_n & ((n * 0 + head % (nheads // ngroups) + p_block) == 0)
    B_channels = d_ssm + group * d_state + n
    B = conv_step_silu(xbc, conv_in, conv_out, conv_w_ptr, conv_b_ptr, B_channels, mask_n, store_bc,
                       s_conv_c, WIDTH, WIDTH_P2, CONV_BIAS)  # fmt: skip
    B = tl.where(mask_n, B.to(out_ty).to(tl.float32), 0.0)
    C = conv_step_silu(xbc, conv_in, conv_out, conv_w_ptr, conv_b_ptr, B_channels + ngroups * d_state, mask_n,
                       store_bc, s_conv_c, WIDTH, WIDTH_P2, CONV_BIAS)  # fmt: skip
    C = tl.where(mask_n, C.to(out_ty).to(tl.float32), 0.0)

    dt = tl.load(xbc + d_ssm + 2 * ngroups * d_state + head).to(tl.float32) + tl.load(dt_b_ptr + head)
    dt = softplus_sigmoid(dt, FAST)[0]
    if DT_LIMIT:
        dt = tl.minimum(tl.maximum(dt, dt_min), dt_max)
    decay = tl.exp(dt * tl.load(A_ptr + head))

    h = decay * h + (dt * x)[:, None] * B[None, :]
    tl.store(ssm_out_ptr + b * s_ssm_b + state_at, h, mask=mask_pn)

    if D_PER_CHANNEL:
        D = tl.load(D_ptr + x_channels, mask=mask_p, other=0.0)
    else:
        D = tl.load(D_ptr + head)
    y = tl.sum(h * C[None, :], axis=1) + D * x
    if GATE:
        z = tl.load(row + 2 * d_mlp + x_channels, mask=mask_p, other=0.0).to(tl.float32)
        y *= silu_sigmoid(z)[0]
    tl.store(y_ptr + b * s_y + x_channels, y, mask=mask_p)


def mamba2_mixer_step_fused(
    hidden: Tensor,
    w: Mamba2Weights,
    s: Mamba2Settings,
    conv_state: Tensor,
    ssm_state: Tensor,
    ssm_out: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`~.reference.mamba2_mixer_step_ref` with the conv, the scan and its gate in one kernel."""
    sizes = Mamba2Sizes.of(w, s)
    batch, width = hidden.shape[0], w.conv.shape[1]
    zxbcdt = F.linear(hidden, w.in_proj, w.in_proj_bias)
    conv_in, ssm_in = conv_state.contiguous(), ssm_state.contiguous()
    conv_w = w.conv.contiguous()
    f = ssm_state.dtype
    A, D, dt_b = (t.to(f).contiguous() for t in (w.A, w.D, w.dt_bias))
    y = hidden.new_empty(batch, sizes.d_ssm)
    conv_out = torch.empty_like(conv_in)
    ssm_new = kernel_output(ssm_out, ssm_in)  # each program reads its states before writing them
    state_p2 = triton.next_power_of_2(s.d_state)
    block_p = min(triton.next_power_of_2(s.headdim), max(1, STATE_ELEMENTS // state_p2))
    grid = (batch, sizes.nheads, math.ceil(s.headdim / block_p))
    _mamba2_step_kernel[grid](
        zxbcdt, conv_in, conv_w, conv_w if w.conv_bias is None else w.conv_bias, dt_b, A, D, ssm_in,
        y, conv_out, ssm_new,
        sizes.d_mlp, s.headdim, s.d_state, sizes.nheads, s.ngroups, *s.dt_limit,
        zxbcdt.stride(0), conv_in.stride(0), conv_in.stride(1), *ssm_in.stride()[:3], y.stride(0),
        WIDTH=width, WIDTH_P2=triton.next_power_of_2(width), CONV_BIAS=w.conv_bias is not None,
        D_PER_CHANNEL=D.dim() == 2, GATE=w.norm is None, DT_LIMIT=s.dt_limit != (0.0, math.inf),
        BLOCK_P=block_p, STATE_P2=state_p2, FAST=fast_math(), num_warps=4, **FMA_CONTRACTION,
    )  # fmt: skip
    z0, x0, z, _, _ = sizes.split(zxbcdt)
    return gate_and_project(y, z, z0, x0, w, s), conv_out, delivered(ssm_new, ssm_out)
