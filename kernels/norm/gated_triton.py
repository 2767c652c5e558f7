"""Mamba-2's gated RMSNorm on Triton: forward and backward, one pass over the rows each.

Per row and group of ``group_size`` channels, in float32 (``reference.gated_rms_norm_ref`` is the ground truth):

    gate after the norm (default):  u = x * silu(z),  out = u * rstd(u) * w
    norm before the gate:           out = x * rstd(x) * w * silu(z)

with rstd(v) = 1 / sqrt(mean(v^2) + eps). The backward recomputes the row statistics from x and z (nothing but the
inputs is saved) and writes d(weight) as per-block partial sums, added in a fixed order (deterministic). It can write
the gradients over the inputs they come from (each row is read before it is written, by the same program) and the
forward's output again, for a caller that recomputes rather than keeps (the Mamba-2 mixer op).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from ..common.hardware import persistent_programs
from ..common.math import FMA_CONTRACTION, silu_sigmoid


@triton.jit
def _gated_rms_norm_fwd_kernel(
    x_ptr, z_ptr, w_ptr, out_ptr,
    nrows, group_size, eps, stride_x, stride_z, stride_out,
    HAS_Z: tl.constexpr, NORM_BEFORE_GATE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_G: tl.constexpr,
):  # fmt: skip
    rows = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * group_size + tl.arange(0, BLOCK_G)
    mask = (rows[:, None] < nrows) & (tl.arange(0, BLOCK_G)[None, :] < group_size)
    x = tl.load(x_ptr + rows[:, None] * stride_x + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    w = tl.load(w_ptr + cols, mask=tl.arange(0, BLOCK_G) < group_size, other=0.0).to(tl.float32)
    if HAS_Z:
        z = tl.load(z_ptr + rows[:, None] * stride_z + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        gate, _ = silu_sigmoid(z)
        if not NORM_BEFORE_GATE:
            x = x * gate
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=1) / group_size + eps)
    out = x * rstd[:, None] * w[None, :]
    if HAS_Z and NORM_BEFORE_GATE:
        out = out * gate
    tl.store(out_ptr + rows[:, None] * stride_out + cols[None, :], out.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _gated_rms_norm_bwd_kernel(
    x_ptr, z_ptr, w_ptr, dout_ptr, dx_ptr, dz_ptr, dw_part_ptr, out_ptr,
    nrows, group_size, width, eps, blocks_per_program, stride_x, stride_z, stride_dout, stride_dx, stride_dz,
    stride_out,
    HAS_Z: tl.constexpr, NORM_BEFORE_GATE: tl.constexpr, WRITE_OUT: tl.constexpr, BLOCK_M: tl.constexpr,
    BLOCK_G: tl.constexpr,
):  # fmt: skip
    """A program walks ``blocks_per_program`` consecutive blocks of BLOCK_M rows, summing d(weight) in registers."""
    pid_m = tl.program_id(0)
    in_group = tl.arange(0, BLOCK_G) < group_size
    cols = tl.program_id(1) * group_size + tl.arange(0, BLOCK_G)
    w = tl.load(w_ptr + cols, mask=in_group, other=0.0).to(tl.float32)
    dw = tl.zeros((BLOCK_G,), tl.float32)
    for i in range(blocks_per_program):
        rows = (pid_m * blocks_per_program + i).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
        mask = (rows[:, None] < nrows) & in_group[None, :]
        x = tl.load(x_ptr + rows[:, None] * stride_x + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        g = tl.load(dout_ptr + rows[:, None] * stride_dout + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        if HAS_Z:
            z = tl.load(z_ptr + rows[:, None] * stride_z + cols[None, :], mask=mask, other=0.0).to(tl.float32)
            gate, sig = silu_sigmoid(z)
            dgate = sig * (1.0 + z * (1.0 - sig))  # silu'(z)
            u = x if NORM_BEFORE_GATE else x * gate
        else:
            u = x
        rstd = 1.0 / tl.sqrt(tl.sum(u * u, axis=1) / group_size + eps)
        u_hat = u * rstd[:, None]
        if WRITE_OUT:
            out = u_hat * w[None, :]
            if HAS_Z and NORM_BEFORE_GATE:
                out = out * gate
            tl.store(out_ptr + rows[:, None] * stride_out + cols[None, :], out.to(out_ptr.dtype.element_ty), mask=mask)
        if HAS_Z and NORM_BEFORE_GATE:
            dz = g * u_hat * w[None, :] * dgate
            g = g * gate
        dw += tl.sum(g * u_hat, axis=0)
        gw = g * w[None, :]
        du = rstd[:, None] * (gw - u_hat * (tl.sum(gw * u_hat, axis=1) / group_size)[:, None])
        if HAS_Z and not NORM_BEFORE_GATE:
            dz = du * x * dgate
            du = du * gate
        tl.store(dx_ptr + rows[:, None] * stride_dx + cols[None, :], du.to(dx_ptr.dtype.element_ty), mask=mask)
        if HAS_Z:
            tl.store(dz_ptr + rows[:, None] * stride_dz + cols[None, :], dz.to(dz_ptr.dtype.element_ty), mask=mask)
    tl.store(dw_part_ptr + pid_m * width + cols, dw, mask=in_group)


BWD_PROGRAMS_PER_SM = 16  # backward programs per SM we aim for


def _rows(t: Tensor) -> Tensor:
    """(..., width) -> (rows, width) with unit stride along the width (a view when possible)."""
    t = t.reshape(-1, t.shape[-1])
    return t if t.stride(-1) == 1 else t.contiguous()


def _launch_shape(group_size: int, backward: bool = False) -> tuple[int, int, int]:
    """(rows per program, group tile, warps): about 2048 elements per tile. The backward takes a warp per 256
    columns, at least two (H100, 2^28 elements, bfloat16, z: groups of 256 / 512 / 1024 1.70 / 1.74 / 2.36 ms with the
    forward's 4 / 4 / 8 warps, 1.46 / 1.48 / 1.50 ms so; the forward is 0.53 ms with either)."""
    block_g = triton.next_power_of_2(group_size)
    warps = max(2, block_g // 256) if backward else 4 if block_g <= 512 else 8
    return min(16, max(1, 2048 // block_g)), block_g, warps


def gated_norm_fwd(x: Tensor, weight: Tensor, z: Tensor | None, eps: float, group_size: int, norm_before_gate: bool
                   ) -> Tensor:  # fmt: skip
    """The normed (and gated) x, like x."""
    x2, z2 = _rows(x), None if z is None else _rows(z)
    width = x2.shape[1]
    out = torch.empty(x2.shape, device=x.device, dtype=x.dtype)
    block_m, block_g, warps = _launch_shape(group_size)
    grid = (triton.cdiv(x2.shape[0], block_m), width // group_size)
    _gated_rms_norm_fwd_kernel[grid](
        x2, z2 if z2 is not None else x2, weight, out,
        x2.shape[0], group_size, eps, x2.stride(0), (z2 if z2 is not None else x2).stride(0), out.stride(0),
        HAS_Z=z is not None, NORM_BEFORE_GATE=norm_before_gate, BLOCK_M=block_m, BLOCK_G=block_g,
        num_warps=warps, **FMA_CONTRACTION,
    )  # fmt: skip
    return out.view(x.shape)


def gated_norm_bwd(
    x: Tensor,
    weight: Tensor,
    z: Tensor | None,
    dout: Tensor,
    eps: float,
    group_size: int,
    norm_before_gate: bool,
    dx: Tensor | None = None,
    dz: Tensor | None = None,
    out: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """(dx, float32 dweight, dz). ``dx`` and ``dz``, if given, are where those go, and ``out`` receives the
    forward's output; each may be an input itself (dout, z, x): rows are read before they are written. All are
    (..., width) with unit stride along the width."""
    x2, z2, d2 = _rows(x), None if z is None else _rows(z), _rows(dout)
    nrows, width = x2.shape
    dx2 = torch.empty(x2.shape, device=x.device, dtype=x.dtype) if dx is None else dx.view(-1, width)
    dz2 = None
    if z is not None:
        dz2 = torch.empty(z2.shape, device=z.device, dtype=z.dtype) if dz is None else dz.view(-1, width)
    out2 = x2 if out is None else out.view(-1, width)
    block_m, block_g, warps = _launch_shape(group_size, backward=True)
    nblocks = triton.cdiv(nrows, block_m)
    groups = width // group_size
    programs = persistent_programs(x.device, BWD_PROGRAMS_PER_SM, interpreted=2)
    per_program = triton.cdiv(nblocks, max(1, triton.cdiv(programs, groups)))
    nprograms = triton.cdiv(nblocks, per_program)
    dw_part = torch.empty((nprograms, width), device=x.device, dtype=torch.float32)
    zz, dzz = (z2, dz2) if z is not None else (x2, dx2)
    _gated_rms_norm_bwd_kernel[(nprograms, groups)](
        x2, zz, weight, d2, dx2, dzz, dw_part, out2,
        nrows, group_size, width, eps, per_program, x2.stride(0), zz.stride(0), d2.stride(0), dx2.stride(0),
        dzz.stride(0), out2.stride(0),
        HAS_Z=z is not None, NORM_BEFORE_GATE=norm_before_gate, WRITE_OUT=out is not None, BLOCK_M=block_m,
        BLOCK_G=block_g, num_warps=warps, **FMA_CONTRACTION,
    )  # fmt: skip
    return dx2.view(x.shape), dw_part.sum(0), None if z is None else dz2.view(z.shape)


class GatedRMSNormFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, z, eps, group_size, norm_before_gate):
        ctx.save_for_backward(x, weight, z)
        ctx.settings = (eps, group_size, norm_before_gate)
        return gated_norm_fwd(x, weight, z, eps, group_size, norm_before_gate)

    @staticmethod
    def backward(ctx, dout):
        x, weight, z = ctx.saved_tensors
        dx, dweight, dz = gated_norm_bwd(x, weight, z, dout, *ctx.settings)
        return dx, dweight.to(weight.dtype), dz, None, None, None


def gated_rms_norm_triton(
    x: Tensor, weight: Tensor, z: Tensor | None, eps: float, group_size: int, norm_before_gate: bool
) -> Tensor:
    """Gated RMSNorm of x (..., width) with ``weight`` (width,) and the optional gate z (like x)."""
    return GatedRMSNormFn.apply(x, weight, z, eps, group_size, norm_before_gate)
