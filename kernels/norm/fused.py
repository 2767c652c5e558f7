"""Residual add + RMSNorm / LayerNorm in Triton, forward and backward (one read of x and the residual per pass).

    s = x + residual (rounded to the residual stream's dtype, float32 with ``residual_in_fp32``)
    out = (s - mean(s)) * rstd * w + b         (RMSNorm: s * rstd * w, rstd = 1 / sqrt(mean(s^2) + eps))

The forward saves the residual stream and one (mean, rstd) pair per row. The backward, with xhat = (s - mean) rstd
and g = w * dout,
    ds = rstd * (g - mean(g) - xhat * mean(g * xhat)) + d residual_out      (RMSNorm: no mean(g) term)
is the gradient of both x and the incoming residual; dw = sum_rows dout * xhat and db = sum_rows dout are summed
per program and then across programs.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from ..common.math import FMA_CONTRACTION

FWD_TILE, BWD_TILE = 4096, 2048  # rows x padded columns of one program's tile
PROGRAMS_PER_SM = 4


@triton.jit(do_not_specialize=["n_rows"])
def _add_norm_fwd_kernel(
    x_ptr,
    res_ptr,
    w_ptr,
    b_ptr,
    out_ptr,
    res_out_ptr,
    mean_ptr,
    rstd_ptr,
    n_rows,
    n_cols,
    s_x,
    s_r,
    s_o,
    s_ro,
    eps,
    HAS_RES: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    IS_RMS: tl.constexpr,
    STORE_RES: tl.constexpr,
    ROWS: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    cols = tl.arange(0, BLOCK_N)
    mask_c = cols < n_cols
    mask = (rows < n_rows)[:, None] & mask_c[None, :]
    rows64 = rows.to(tl.int64)[:, None]
    s = tl.load(x_ptr + rows64 * s_x + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    if HAS_RES:
        s += tl.load(res_ptr + rows64 * s_r + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    if STORE_RES:
        res_out = s.to(res_out_ptr.dtype.element_ty)
        tl.store(res_out_ptr + rows64 * s_ro + cols[None, :], res_out, mask=mask)
        s = res_out.to(tl.float32)  # normalise the stream as stored (rounded when it is a half type)
    if IS_RMS:
        mean = tl.zeros((ROWS,), tl.float32)
        centred = s
    else:
        mean = tl.sum(s, axis=1) / n_cols
        centred = tl.where(mask, s - mean[:, None], 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(centred * centred, axis=1) / n_cols + eps)
    w = tl.load(w_ptr + cols, mask=mask_c, other=0.0).to(tl.float32)
    out = centred * rstd[:, None] * w[None, :]
    if HAS_BIAS:
        out += tl.load(b_ptr + cols, mask=mask_c, other=0.0).to(tl.float32)[None, :]
    tl.store(out_ptr + rows64 * s_o + cols[None, :], out.to(out_ptr.dtype.element_ty), mask=mask)
    tl.store(mean_ptr + rows, mean, mask=rows < n_rows)
    tl.store(rstd_ptr + rows, rstd, mask=rows < n_rows)


@triton.jit(do_not_specialize=["n_rows"])
def _add_norm_bwd_kernel(
    s_ptr,  # the residual stream the forward normalised
    w_ptr,
    mean_ptr,
    rstd_ptr,
    dout_ptr,
    dres_out_ptr,
    dx_ptr,
    dres_ptr,
    dw_ptr,  # (programs, n_cols) float32 partial sums
    db_ptr,
    n_rows,
    n_cols,
    s_s,
    s_g,
    s_gr,
    s_dx,
    s_dr,
    HAS_DRES_OUT: tl.constexpr,
    HAS_RES: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    IS_RMS: tl.constexpr,
    ROWS: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    mask_c = cols < n_cols
    w = tl.load(w_ptr + cols, mask=mask_c, other=0.0).to(tl.float32)
    dw = tl.zeros((ROWS, BLOCK_N), tl.float32)
    db = tl.zeros((ROWS, BLOCK_N), tl.float32)
    for block in range(pid, tl.cdiv(n_rows, ROWS), tl.num_programs(0)):
        rows = block * ROWS + tl.arange(0, ROWS)
        mask = (rows < n_rows)[:, None] & mask_c[None, :]
        rows64 = rows.to(tl.int64)[:, None]
        s = tl.load(s_ptr + rows64 * s_s + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        rstd = tl.load(rstd_ptr + rows, mask=rows < n_rows, other=0.0)
        mean = tl.load(mean_ptr + rows, mask=rows < n_rows, other=0.0)
        xhat = tl.where(mask, (s - mean[:, None]) * rstd[:, None], 0.0)
        dout = tl.load(dout_ptr + rows64 * s_g + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        g = dout * w[None, :]
        proj = tl.sum(g * xhat, axis=1) / n_cols
        if IS_RMS:
            ds = (g - xhat * proj[:, None]) * rstd[:, None]
        else:
            ds = (g - tl.sum(g, axis=1)[:, None] / n_cols - xhat * proj[:, None]) * rstd[:, None]
        if HAS_DRES_OUT:
            ds += tl.load(dres_out_ptr + rows64 * s_gr + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        tl.store(dx_ptr + rows64 * s_dx + cols[None, :], ds.to(dx_ptr.dtype.element_ty), mask=mask)
        if HAS_RES:
            tl.store(dres_ptr + rows64 * s_dr + cols[None, :], ds.to(dres_ptr.dtype.element_ty), mask=mask)
        dw += dout * xhat
        if HAS_BIAS:
            db += dout
    tl.store(dw_ptr + pid * n_cols + cols, tl.sum(dw, axis=0), mask=mask_c)
    if HAS_BIAS:
        tl.store(db_ptr + pid * n_cols + cols, tl.sum(db, axis=0), mask=mask_c)


def _tile(n_cols: int, elements: int) -> tuple[int, int]:
    """(rows, padded columns) of one program's tile."""
    block_n = triton.next_power_of_2(n_cols)
    return max(1, min(64, elements // block_n)), block_n


def _rows(t: Tensor) -> Tensor:
    """(..., n) -> (rows, n) with unit column stride (a view when possible)."""
    t = t.reshape(-1, t.shape[-1])
    return t if t.stride(-1) == 1 else t.contiguous()


def _add_norm_fwd(
    x2: Tensor,
    res2: Tensor | None,
    weight: Tensor,
    bias: Tensor | None,
    eps: float,
    is_rms: bool,
    out_dtype: torch.dtype,
    res_dtype: torch.dtype | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(out, stream, mean, rstd) of (rows, n) inputs; the stream is x2 itself when ``res_dtype`` is None."""
    n_rows, n_cols = x2.shape
    out = torch.empty(n_rows, n_cols, device=x2.device, dtype=out_dtype)
    stream = torch.empty(n_rows, n_cols, device=x2.device, dtype=res_dtype) if res_dtype is not None else x2
    mean = torch.empty(n_rows, device=x2.device, dtype=torch.float32)
    rstd = torch.empty_like(mean)
    rows, block_n = _tile(n_cols, FWD_TILE)
    _add_norm_fwd_kernel[(triton.cdiv(n_rows, rows),)](
        x2, res2 if res2 is not None else x2, weight, bias if bias is not None else weight, out, stream, mean, rstd,
        n_rows, n_cols, x2.stride(0), res2.stride(0) if res2 is not None else 0, out.stride(0), stream.stride(0),
        eps, HAS_RES=res2 is not None, HAS_BIAS=bias is not None, IS_RMS=is_rms, STORE_RES=res_dtype is not None,
        ROWS=rows, BLOCK_N=block_n, num_warps=4 if block_n <= 2048 else 8, **FMA_CONTRACTION,
    )  # fmt: skip
    return out, stream, mean, rstd


class AddNormFn(torch.autograd.Function):
    """out = norm(x + residual); also returns the residual stream when ``res_dtype`` is given."""

    @staticmethod
    def forward(ctx, x, residual, weight, bias, eps, is_rms, res_dtype, out_dtype):
        x2, res2 = _rows(x), (_rows(residual) if residual is not None else None)
        out, stream, mean, rstd = _add_norm_fwd(x2, res2, weight, bias, eps, is_rms, out_dtype, res_dtype)
        ctx.save_for_backward(stream, weight, bias, mean, rstd)
        ctx.is_rms, ctx.shape = is_rms, x.shape
        ctx.x_dtype, ctx.res_dtype_in = x.dtype, residual.dtype if residual is not None else None
        ctx.returns_stream = res_dtype is not None
        ctx.set_materialize_grads(False)
        out = out.view(x.shape)
        return (out, stream.view(x.shape)) if ctx.returns_stream else out

    @staticmethod
    def backward(ctx, dout, dstream=None):
        stream, weight, bias, mean, rstd = ctx.saved_tensors
        n_rows, n_cols = stream.shape
        dout = _rows(dout) if dout is not None else torch.zeros(n_rows, n_cols, device=stream.device)
        dstream = _rows(dstream) if dstream is not None else None
        dx = torch.empty(n_rows, n_cols, device=stream.device, dtype=ctx.x_dtype)
        has_res = ctx.res_dtype_in is not None
        dres = torch.empty(n_rows, n_cols, device=stream.device, dtype=ctx.res_dtype_in) if has_res else None
        rows, block_n = _tile(n_cols, BWD_TILE)
        blocks = triton.cdiv(n_rows, rows)
        if stream.is_cuda:
            programs = min(blocks, torch.cuda.get_device_properties(stream.device).multi_processor_count * 4)
        else:
            programs = min(blocks, 2)
        dw = torch.empty(programs, n_cols, device=stream.device, dtype=torch.float32)
        db = torch.empty(programs, n_cols, device=stream.device, dtype=torch.float32) if bias is not None else None
        _add_norm_bwd_kernel[(programs,)](
            stream, weight, mean, rstd, dout, dstream if dstream is not None else dout, dx,
            dres if dres is not None else dx, dw, db if db is not None else dw, n_rows, n_cols,
            stream.stride(0), dout.stride(0), dstream.stride(0) if dstream is not None else 0, dx.stride(0),
            dres.stride(0) if dres is not None else 0,
            HAS_DRES_OUT=dstream is not None, HAS_RES=has_res, HAS_BIAS=bias is not None, IS_RMS=ctx.is_rms,
            ROWS=rows, BLOCK_N=block_n, num_warps=4 if block_n <= 2048 else 8, **FMA_CONTRACTION,
        )  # fmt: skip
        return (
            dx.view(ctx.shape),
            dres.view(ctx.shape) if dres is not None else None,
            dw.sum(0).to(weight.dtype),
            db.sum(0).to(bias.dtype) if db is not None else None,
            None,
            None,
            None,
            None,
        )


def add_norm_fused(
    x: Tensor,
    residual: Tensor | None,
    weight: Tensor,
    bias: Tensor | None = None,
    eps: float = 1e-5,
    is_rms_norm: bool = True,
    residual_in_fp32: bool = False,
    out_dtype: torch.dtype | None = None,
) -> tuple[Tensor, Tensor]:
    """:func:`add_norm` on the Triton kernels."""
    weight = weight.contiguous()  # read with unit stride
    bias = bias.contiguous() if bias is not None else None
    out_dtype = out_dtype or x.dtype
    if residual is None and (not residual_in_fp32 or x.dtype == torch.float32):  # the stream is x itself
        return AddNormFn.apply(x, None, weight, bias, eps, is_rms_norm, None, out_dtype), x
    res_dtype = torch.float32 if residual_in_fp32 else torch.promote_types(x.dtype, residual.dtype)
    return AddNormFn.apply(x, residual, weight, bias, eps, is_rms_norm, res_dtype, out_dtype)


def norm_of_stream_fused(
    stream: Tensor, weight: Tensor, bias: Tensor | None, eps: float, is_rms_norm: bool, dtype: torch.dtype
) -> Tensor:
    """:func:`norm_of_stream` on the Triton kernel (the forward normalises the stream as stored, so the same
    kernel on the stored stream gives the same bits)."""
    out = _add_norm_fwd(_rows(stream), None, weight.contiguous(), bias, eps, is_rms_norm, dtype, None)[0]
    return out.view(stream.shape)
