"""Causal depthwise conv1d (width 2-4) with fused SiLU in Triton, forward and backward.

    pre[t] = bias + sum_k w[k] x[t - (W - 1) + k]         out[t] = silu(pre[t])   (or pre[t])

Positions before the sequence read ``initial_states``. The backward recomputes ``pre`` instead of saving it:
    dpre[t] = dout[t] * silu'(pre[t]),   dx[t] = sum_k w[k] dpre[t + W - 1 - k],
    dw[k] = sum_t dpre[t] x[t - (W - 1) + k],   dbias = sum_t dpre[t],
and the inputs before the sequence get their gradient from the same formula (d initial_states).

Both directions cut each sequence into walks of consecutive tiles of 4 positions, held inside each thread, so the
conv's shifts are register picks between a tile and the one walked before it; a program runs two walks side by side
on 256 channels each. The forward walks from the first tile to the last, the backward from the last to the first.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from ..common.hardware import persistent_programs
from ..common.math import FMA_CONTRACTION, sigmoid_fast
from ..common.tensors import like_layout

# Walks: 4 positions per tile (a width-4 conv shifts by up to 3), two walks of 256 channels per program on two
# warps. H100, bfloat16, 2^20 tokens (results/benchmarks.md, twenty-ninth session): the forward 0.40-0.41 ms at 256
# channels and 0.90-0.91 at 512 with 32 programs per SM (0.46 and 1.44-1.45 for the 16 x 128 tiles before it);
# the backward 0.72-0.76 and 1.41-1.50 with 4 (0.91-0.97 and 1.83-2.89 for the ring kernel before it; one walk per
# program on one warp 0.90-0.94 and 2.07-2.13). The backward's fewer, longer walks add their dw sums to memory once.
TILE, SPLIT, BLOCK_D, WARPS = 4, 2, 256, 2
FWD_PROGRAMS_PER_SM, BWD_PROGRAMS_PER_SM = 32, 4


@triton.jit
def _tap(w_ptrs, m: tl.constexpr, s_w_k, mask, WIDTH: tl.constexpr):
    """v_m = w[W - 1 - m], the weight of the input m positions back (zero past the width)."""
    if m < WIDTH:
        return tl.load(w_ptrs + (WIDTH - 1 - m) * s_w_k, mask=mask, other=0.0).to(tl.float32)
    return tl.zeros(mask.shape, tl.float32)


@triton.jit
def _pre_grad(dout, pre, SILU: tl.constexpr):
    """dpre = dout * silu'(pre) (dout alone without SiLU)."""
    dpre = dout.to(tl.float32)
    if SILU:
        sig = sigmoid_fast(pre)
        dpre = dpre * sig * (1.0 + pre * (1.0 - sig))
    return dpre


@triton.jit
def _row(tile, i: tl.constexpr, offs_t):
    """Row i of a (TILE, COLS) tile: a register pick once unrolled (see ``recurrence.row``, for 3-d tiles)."""
    minus_zero = tl.full((1, 1), -2147483648, tl.int32).to(tl.float32, bitcast=True)
    return tl.sum(tl.where((offs_t == i)[:, None], tile, minus_zero), axis=0)


@triton.jit
def _with_row(tile, i: tl.constexpr, offs_t, value):
    """The tile with row i replaced by ``value`` (COLS,)."""
    return tl.where((offs_t == i)[:, None], value[None, :], tile)


@triton.jit
def _walk_rows(base, p, lo, hi, s_l):
    """The (TILE, COLS) rows at positions ``p`` (TILE,) counted from each column's walk start, in their own dtype;
    zero outside each column's [lo, hi)."""
    return tl.load(base[None, :] + p[:, None] * s_l, mask=(p[:, None] >= lo[None, :]) & (p[:, None] < hi[None, :]),
                   other=0.0)  # fmt: skip


@triton.jit
def _with_initial_states(behind, init_base, at_start, s_i_l, offs_t, TILE: tl.constexpr, WIDTH: tl.constexpr):
    """The x tile before a walk's first tile: its last W - 1 rows read ``initial_states`` where the walk starts its
    sequence (and are zero there before)."""
    for r in tl.static_range(TILE - (WIDTH - 1), TILE):  # position r - TILE, initial state slot r - TILE + W - 1
        x = tl.load(init_base + (r - TILE + WIDTH - 1) * s_i_l, mask=at_start, other=0.0).to(tl.float32)
        behind = _with_row(behind, r, offs_t, _row(behind, r, offs_t) + x)
    return behind


@triton.jit
def _shifted(tile, other, m: tl.constexpr, offs_t, TILE: tl.constexpr, BACK: tl.constexpr):
    """Rows t - m of a tile, ``other`` being the tile before (BACK), or rows t + m, ``other`` the tile after."""
    out = tile
    for r in tl.static_range(TILE):
        if BACK:
            if r >= m:
                out = _with_row(out, r, offs_t, _row(tile, r - m, offs_t))
            else:
                out = _with_row(out, r, offs_t, _row(other, TILE + r - m, offs_t))
        elif r + m < TILE:
            out = _with_row(out, r, offs_t, _row(tile, r + m, offs_t))
        else:
            out = _with_row(out, r, offs_t, _row(other, r + m - TILE, offs_t))
    return out


@triton.jit
def _taps_back(x, behind, v0, v1, v2, v3, bias, offs_t, TILE: tl.constexpr):
    """(pre = bias + sum_m v_m x[t - m], x[t - 1], x[t - 2], x[t - 3]) of a tile, ``behind`` the tile before it."""
    x_1 = _shifted(x, behind, 1, offs_t, TILE, True)
    x_2 = _shifted(x, behind, 2, offs_t, TILE, True)
    x_3 = _shifted(x, behind, 3, offs_t, TILE, True)
    pre = bias[None, :] + v0[None, :] * x + v1[None, :] * x_1 + v2[None, :] * x_2 + v3[None, :] * x_3
    return pre, x_1, x_2, x_3


@triton.jit
def _add_rows(acc, a, b, offs_t, TILE: tl.constexpr):
    """acc + sum over the tile's rows of a_t b_t, one fused multiply-add per element."""
    for i in tl.static_range(TILE):
        acc += _row(a, i, offs_t) * _row(b, i, offs_t)
    return acc


@triton.jit
def _walk_tile(
    x, behind, ahead, dout, v0, v1, v2, v3, bias, dv0, dv1, dv2, dv3, dbias, dx_base, p, hi, s_dx_l, offs_t, SILU,
    TILE,
):  # fmt: skip
    """One tile of a walk: stores dx at positions ``p``; returns dpre and the sums of dv_0 .. dv_3 and dbias."""
    pre, x_1, x_2, x_3 = _taps_back(x, behind, v0, v1, v2, v3, bias, offs_t, TILE)
    dpre = _pre_grad(dout, pre, SILU)
    dx = v0[None, :] * dpre + v1[None, :] * _shifted(dpre, ahead, 1, offs_t, TILE, False)
    dx += v2[None, :] * _shifted(dpre, ahead, 2, offs_t, TILE, False)
    dx += v3[None, :] * _shifted(dpre, ahead, 3, offs_t, TILE, False)
    tl.store(dx_base[None, :] + p[:, None] * s_dx_l, dx.to(dx_base.dtype.element_ty), mask=p[:, None] < hi[None, :])
    dv0 = _add_rows(dv0, dpre, x, offs_t, TILE)
    dv1 = _add_rows(dv1, dpre, x_1, offs_t, TILE)
    dv2 = _add_rows(dv2, dpre, x_2, offs_t, TILE)
    dv3 = _add_rows(dv3, dpre, x_3, offs_t, TILE)
    return dpre, dv0, dv1, dv2, dv3, dbias + tl.sum(dpre, axis=0)


@triton.jit
def _walk_columns(walks, groups, tiles_per_walk, dim, seqlen, TILE: tl.constexpr, SPLIT: tl.constexpr,
                  BLOCK_D: tl.constexpr):  # fmt: skip
    """(channel, mask, sequence as int64, walk start, lo, hi) of each of a program's SPLIT x BLOCK_D columns: SPLIT
    walks side by side on BLOCK_D channels. Positions count from each column's walk start; [lo, hi) is its
    sequence."""
    n_programs = tl.cdiv(walks, SPLIT)
    pid = tl.program_id(0)  # (channel block, SPLIT walks), walks fastest
    cols = tl.arange(0, SPLIT * BLOCK_D)
    walk = pid % n_programs * SPLIT + cols // BLOCK_D
    channel = pid // n_programs * BLOCK_D + cols % BLOCK_D
    mask = (walk < walks) & (channel < dim)
    first = (walk % groups) * tiles_per_walk * TILE
    return (
        channel,
        mask,
        (walk // groups).to(tl.int64),
        first,
        tl.where(mask, -first, 0),
        tl.where(mask, seqlen - first, 0),
    )


@triton.jit
def _taps(w_ptrs, bias_ptr, channel, mask, s_w_k, HAS_BIAS: tl.constexpr, WIDTH: tl.constexpr):
    """(bias, v_0 .. v_3) of the columns' channels, float32."""
    if HAS_BIAS:
        bias = tl.load(bias_ptr + channel, mask=mask, other=0.0).to(tl.float32)
    else:
        bias = tl.zeros(channel.shape, tl.float32)
    v0, v1 = _tap(w_ptrs, 0, s_w_k, mask, WIDTH), _tap(w_ptrs, 1, s_w_k, mask, WIDTH)
    v2, v3 = _tap(w_ptrs, 2, s_w_k, mask, WIDTH), _tap(w_ptrs, 3, s_w_k, mask, WIDTH)
    return bias, v0, v1, v2, v3


@triton.jit(do_not_specialize=["seqlen", "walks", "groups", "tiles_per_walk"])
def _conv_fwd_kernel(
    x_ptr,
    w_ptr,
    bias_ptr,
    init_ptr,
    out_ptr,
    seqlen,
    dim,
    walks,
    groups,
    tiles_per_walk,
    s_x_b,
    s_x_d,
    s_x_l,
    s_o_b,
    s_o_d,
    s_o_l,
    s_i_b,
    s_i_d,
    s_i_l,
    s_w_d,
    s_w_k,
    HAS_BIAS: tl.constexpr,
    HAS_INIT: tl.constexpr,
    SILU: tl.constexpr,
    WIDTH: tl.constexpr,
    TILE: tl.constexpr,
    SPLIT: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """Walks of ``tiles_per_walk`` tiles of TILE positions, SPLIT side by side per program (as the backward's), from
    the first tile to the last: x behind a tile is the tile before, kept in registers, so every input is loaded
    once."""
    channel, mask, b64, first, lo, hi = _walk_columns(walks, groups, tiles_per_walk, dim, seqlen, TILE, SPLIT, BLOCK_D)
    f64 = first.to(tl.int64)
    x_base = x_ptr + b64 * s_x_b + f64 * s_x_l + channel * s_x_d
    out_base = out_ptr + b64 * s_o_b + f64 * s_o_l + channel * s_o_d
    bias, v0, v1, v2, v3 = _taps(w_ptr + channel * s_w_d, bias_ptr, channel, mask, s_w_k, HAS_BIAS, WIDTH)
    offs_t = tl.arange(0, TILE)
    behind = _walk_rows(x_base, offs_t - TILE, lo, hi, s_x_l).to(tl.float32)
    if HAS_INIT:
        behind = _with_initial_states(behind, init_ptr + b64 * s_i_b + channel * s_i_d, mask & (first == 0), s_i_l,
                                      offs_t, TILE, WIDTH)  # fmt: skip
    x_next = _walk_rows(x_base, offs_t, lo, hi, s_x_l)
    for j in range(tiles_per_walk):
        p = j * TILE + offs_t
        x = x_next.to(tl.float32)
        x_next = _walk_rows(x_base, p + TILE, lo, hi, s_x_l)
        pre, _, _, _ = _taps_back(x, behind, v0, v1, v2, v3, bias, offs_t, TILE)
        out = pre * sigmoid_fast(pre) if SILU else pre
        tl.store(
            out_base[None, :] + p[:, None] * s_o_l, out.to(out_ptr.dtype.element_ty), mask=p[:, None] < hi[None, :]
        )
        behind = x


@triton.jit(do_not_specialize=["seqlen", "walks", "groups", "tiles_per_walk"])
def _conv_bwd_kernel(
    x_ptr,
    w_ptr,
    bias_ptr,
    init_ptr,
    dout_ptr,
    dx_ptr,
    dw_ptr,  # (dim, WIDTH) float32, accumulated
    dbias_ptr,  # (dim,) float32, accumulated
    dinit_ptr,  # (batch, dim, WIDTH - 1), its own strides (init may be a non-dense view)
    seqlen,
    dim,
    walks,
    groups,
    tiles_per_walk,
    s_x_b,
    s_x_d,
    s_x_l,
    s_g_b,
    s_g_d,
    s_g_l,
    s_dx_b,
    s_dx_d,
    s_dx_l,
    s_i_b,
    s_i_d,
    s_i_l,
    s_di_b,
    s_di_d,
    s_di_l,
    s_w_d,
    s_w_k,
    HAS_BIAS: tl.constexpr,
    HAS_INIT: tl.constexpr,
    SILU: tl.constexpr,
    WIDTH: tl.constexpr,
    TILE: tl.constexpr,
    SPLIT: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """A walk is ``tiles_per_walk`` consecutive tiles of TILE positions of one sequence (``groups`` walks per
    sequence, ``walks`` in all). A program runs SPLIT walks side by side on BLOCK_D channels as one (TILE,
    SPLIT x BLOCK_D) tile, from their last tile to their first, summing dw and dbias in registers and adding them to
    memory once.

    A tile's positions are inside each thread, so the conv's shifts (x up to W - 1 positions back, dpre up to W - 1
    ahead) are register picks: dpre ahead of a tile is the tile walked before, and x behind it is loaded one tile
    ahead of the walk.
    """
    tl.static_assert(TILE >= WIDTH - 1)
    channel, mask, b64, first, lo, hi = _walk_columns(walks, groups, tiles_per_walk, dim, seqlen, TILE, SPLIT, BLOCK_D)
    f64 = first.to(tl.int64)
    x_base = x_ptr + b64 * s_x_b + f64 * s_x_l + channel * s_x_d
    dout_base = dout_ptr + b64 * s_g_b + f64 * s_g_l + channel * s_g_d
    dx_base = dx_ptr + b64 * s_dx_b + f64 * s_dx_l + channel * s_dx_d
    w_ptrs = w_ptr + channel * s_w_d
    bias, v0, v1, v2, v3 = _taps(w_ptrs, bias_ptr, channel, mask, s_w_k, HAS_BIAS, WIDTH)
    offs_t = tl.arange(0, TILE)
    # dpre of the tile after the walk (zero past the sequence), the x tile behind it, and its last tile's dout
    p = tiles_per_walk * TILE + offs_t
    x = _walk_rows(x_base, p, lo, hi, s_x_l).to(tl.float32)
    behind = _walk_rows(x_base, p - TILE, lo, hi, s_x_l).to(tl.float32)
    pre, _, _, _ = _taps_back(x, behind, v0, v1, v2, v3, bias, offs_t, TILE)
    ahead = _pre_grad(_walk_rows(dout_base, p, lo, hi, s_g_l), pre, SILU)
    x = behind
    dout_next = _walk_rows(dout_base, p - TILE, lo, hi, s_g_l)
    dv0 = tl.zeros(channel.shape, tl.float32)  # the gradients of v_0 .. v_3 and of the bias
    dv1, dv2, dv3, dbias = dv0, dv0, dv0, dv0
    for j in range(tiles_per_walk - 1):
        p = (tiles_per_walk - 1 - j) * TILE + offs_t
        behind = _walk_rows(x_base, p - TILE, lo, hi, s_x_l).to(tl.float32)
        dout, dout_next = dout_next, _walk_rows(dout_base, p - TILE, lo, hi, s_g_l)
        ahead, dv0, dv1, dv2, dv3, dbias = _walk_tile(
            x, behind, ahead, dout, v0, v1, v2, v3, bias, dv0, dv1, dv2, dv3, dbias, dx_base, p, hi, s_dx_l, offs_t,
            SILU, TILE,
        )  # fmt: skip
        x = behind
    # the walk's first tile, apart: only the x behind it may be initial states
    behind = _walk_rows(x_base, offs_t - TILE, lo, hi, s_x_l).to(tl.float32)
    at_start = mask & (first == 0)
    if HAS_INIT:
        behind = _with_initial_states(behind, init_ptr + b64 * s_i_b + channel * s_i_d, at_start, s_i_l, offs_t, TILE,
                                      WIDTH)  # fmt: skip
    ahead, dv0, dv1, dv2, dv3, dbias = _walk_tile(
        x, behind, ahead, dout_next, v0, v1, v2, v3, bias, dv0, dv1, dv2, dv3, dbias, dx_base, offs_t, hi, s_dx_l,
        offs_t, SILU, TILE,
    )  # fmt: skip
    dw_ptrs = dw_ptr + channel * WIDTH + WIDTH - 1  # dw[W - 1 - m] = dv_m
    tl.atomic_add(dw_ptrs, dv0, mask=mask, sem="relaxed")
    tl.atomic_add(dw_ptrs - 1, dv1, mask=mask, sem="relaxed")
    if WIDTH > 2:
        tl.atomic_add(dw_ptrs - 2, dv2, mask=mask, sem="relaxed")
    if WIDTH > 3:
        tl.atomic_add(dw_ptrs - 3, dv3, mask=mask, sem="relaxed")
    if HAS_BIAS:
        tl.atomic_add(dbias_ptr + channel, dbias, mask=mask, sem="relaxed")
    if HAS_INIT:  # the W - 1 inputs before a sequence: d x[s - (W - 1)] = sum_m v_m dpre[s - (W - 1) + m]
        dinit_base = dinit_ptr + b64 * s_di_b + channel * s_di_d
        for slot in tl.static_range(WIDTH - 1):  # ahead is now the dpre of each walk's first tile
            dinit = tl.zeros(channel.shape, tl.float32)
            for m in tl.static_range(WIDTH - 1 - slot, WIDTH):
                dinit += _tap(w_ptrs, m, s_w_k, mask, WIDTH) * _row(ahead, slot - (WIDTH - 1) + m, offs_t)
            tl.store(dinit_base + slot * s_di_l, dinit.to(dinit_ptr.dtype.element_ty), mask=at_start)


def _walks(x: Tensor, programs_per_sm: int) -> tuple[int, int, int, tuple[int]]:
    """(walks, walks per sequence, tiles per walk, grid): enough programs to fill the GPU, and no more (a backward
    walk adds its dw sums to memory once)."""
    batch, dim, seqlen = x.shape
    n_tiles = triton.cdiv(seqlen, TILE)
    items = batch * triton.cdiv(dim, BLOCK_D)
    # in the interpreter three walks per sequence exercise the first, a middle and the last
    target = persistent_programs(x.device, programs_per_sm * SPLIT, interpreted=3 * items)
    tiles = triton.cdiv(n_tiles, max(1, min(n_tiles, triton.cdiv(target, items))))
    groups = triton.cdiv(n_tiles, tiles)
    walks = batch * groups
    return walks, groups, tiles, (triton.cdiv(walks, SPLIT) * triton.cdiv(dim, BLOCK_D),)  # one axis: no 65535 limit


def conv_fwd(x: Tensor, weight: Tensor, bias: Tensor | None, initial_states: Tensor | None, silu: bool) -> Tensor:
    """The conv's output (laid out like x)."""
    _, dim, seqlen = x.shape
    out = like_layout(x)
    has_init = initial_states is not None
    init = initial_states if has_init else x
    walks, groups, tiles, grid = _walks(x, FWD_PROGRAMS_PER_SM)
    _conv_fwd_kernel[grid](
        x, weight, bias if bias is not None else weight, init, out, seqlen, dim, walks, groups, tiles,
        *x.stride(), *out.stride(), *(init.stride() if has_init else (0, 0, 0)), *weight.stride(),
        HAS_BIAS=bias is not None, HAS_INIT=has_init, SILU=silu,
        WIDTH=weight.shape[1], TILE=TILE, SPLIT=SPLIT, BLOCK_D=BLOCK_D, num_warps=WARPS, **FMA_CONTRACTION,
    )  # fmt: skip
    return out


def conv_bwd(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    initial_states: Tensor | None,
    dout: Tensor,
    silu: bool,
    dx: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """(dx, float32 dweight, float32 dbias, d initial_states); ``dx``, if given, is where x's gradient goes (any
    strides: a caller's slice of a larger buffer)."""
    _, dim, seqlen = x.shape
    width = weight.shape[1]
    dx = like_layout(x) if dx is None else dx
    dw = torch.zeros(dim, width, device=x.device, dtype=torch.float32)
    dbias = torch.zeros(dim, device=x.device, dtype=torch.float32) if bias is not None else None
    has_init = initial_states is not None
    # not empty_like: for a non-dense view (the model passes history[:, :, 1:]) it would not keep the strides
    dinit = initial_states.new_empty(initial_states.shape) if has_init else None
    init = initial_states if has_init else x
    walks, groups, tiles, grid = _walks(x, BWD_PROGRAMS_PER_SM)
    _conv_bwd_kernel[grid](
        x, weight, bias if bias is not None else weight, init, dout, dx, dw, dbias if dbias is not None else dw,
        dinit if has_init else dw, seqlen, dim, walks, groups, tiles,
        *x.stride(), *dout.stride(), *dx.stride(),
        *(init.stride() if has_init else (0, 0, 0)), *(dinit.stride() if has_init else (0, 0, 0)),
        *weight.stride(),
        HAS_BIAS=bias is not None, HAS_INIT=has_init, SILU=silu,
        WIDTH=width, TILE=TILE, SPLIT=SPLIT, BLOCK_D=BLOCK_D, num_warps=WARPS, **FMA_CONTRACTION,
    )  # fmt: skip
    return dx, dw, dbias, dinit


class CausalConv1dFn(torch.autograd.Function):
    """Saves x, weight, bias and the initial states; the backward recomputes the pre-activations."""

    @staticmethod
    def forward(ctx, x, weight, bias, initial_states, silu):
        ctx.save_for_backward(x, weight, bias, initial_states)
        ctx.silu = silu
        return conv_fwd(x, weight, bias, initial_states, silu)

    @staticmethod
    def backward(ctx, dout):
        x, weight, bias, initial_states = ctx.saved_tensors
        dx, dw, dbias, dinit = conv_bwd(x, weight, bias, initial_states, dout, ctx.silu)
        return dx, dw.to(weight.dtype), dbias.to(bias.dtype) if bias is not None else None, dinit, None


def causal_conv1d_fused(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    initial_states: Tensor | None = None,
    return_final_states: bool = False,
    activation: str | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """:func:`causal_conv1d_fn` on the Triton kernels (inputs already checked; width 2 to 4)."""
    bias = bias.contiguous() if bias is not None else None  # read with unit stride
    out = CausalConv1dFn.apply(x, weight, bias, initial_states, activation is not None)
    if not return_final_states:
        return out
    width = weight.shape[1]
    seqlen = x.shape[2]
    if seqlen >= width - 1:
        final = x[:, :, seqlen - (width - 1) :]
    else:  # a short sequence keeps part of the initial states
        previous = initial_states if initial_states is not None else x.new_zeros(*x.shape[:2], width - 1)
        final = torch.cat([previous[:, :, seqlen:].to(x.dtype), x], dim=-1)
    return out, final.contiguous()
