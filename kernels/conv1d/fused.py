"""Causal depthwise conv1d (width 2-4) with fused SiLU in Triton, forward and backward.

    pre[t] = bias + sum_k w[k] x[t - (W - 1) + k]         out[t] = silu(pre[t])   (or pre[t])

Positions before the sequence read ``initial_states``. The backward recomputes ``pre`` instead of saving it:
    dpre[t] = dout[t] * silu'(pre[t]),   dx[t] = sum_k w[k] dpre[t + W - 1 - k],
    dw[k] = sum_t dpre[t] x[t - (W - 1) + k],   dbias = sum_t dpre[t],
and the inputs before the sequence get their gradient from the same formula (d initial_states).

The forward's programs own (BLOCK_L positions x BLOCK_D channels) tiles in any memory layout; shifted loads hit L1.
With initial states, the first tile of every sequence runs as a launch of its own: only it reads them. The
backward walks tiles of 4 positions held inside each thread, so its shifts are register picks (``_conv_bwd_kernel``).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from ..common.hardware import sm_count
from ..common.math import FMA_CONTRACTION, sigmoid_fast
from ..common.tensors import like_layout

# (positions, channels) of a forward tile, from H100 sweeps at 2^20 tokens, 256 and 512 channels, batch 1 and 1024
# (results/benchmarks.md, eleventh session: 16 x 128 on four warps 0.52-0.56 ms at 256 channels and 0.98-1.14 at
# 512, against 0.69-0.72 and 1.36-1.37 for 64 x 64). The backward's walks: 4 positions per tile (a width-4 conv
# shifts by up to 3), two walks of 256 channels per program on two warps, 4 programs per SM (twenty-ninth session:
# 0.72-0.76 ms at 256 channels and 1.41-1.50 at 512, against 0.91-0.97 and 1.83-2.89 for the ring kernel before it;
# one walk per program on one warp 0.90-0.94 and 2.07-2.13)
FWD_BLOCK_L, FWD_BLOCK_D = 16, 128
BWD_TILE, BWD_SPLIT, BWD_BLOCK_D, BWD_WARPS, BWD_PROGRAMS_PER_SM = 4, 2, 256, 2, 4


@triton.jit
def _load_shifted(x_tile, init_tile, src, seqlen, mask_d, s_x_l, s_i_l, HAS_INIT: tl.constexpr, WIDTH: tl.constexpr):
    """x at positions ``src`` (BLOCK_L,), reading ``initial_states`` before 0 and zeros past the end; float32."""
    inside = (src >= 0) & (src < seqlen)
    x = tl.load(x_tile + src[:, None] * s_x_l, mask=inside[:, None] & mask_d[None, :], other=0.0).to(tl.float32)
    if HAS_INIT:
        before = (src < 0) & (src >= 1 - WIDTH)
        slot = src + WIDTH - 1
        x += tl.load(init_tile + slot[:, None] * s_i_l, mask=before[:, None] & mask_d[None, :], other=0.0).to(
            tl.float32
        )
    return x


@triton.jit
def _pre_activation(x_tile, init_tile, w_ptrs, bias, pos, seqlen, mask_d, s_x_l, s_i_l, s_w_k, HAS_INIT, WIDTH):
    """bias + sum_k w[k] x[pos - (W - 1) + k] for a (BLOCK_L, BLOCK_D) tile, loading and adding one tap at a time.
    (The backward sums the four input tiles it keeps for dw; summed that way here, the forward kept all W tiles
    live at once: 96 registers per thread instead of 80 for sm_90.)"""
    pre = tl.zeros((pos.shape[0], bias.shape[0]), tl.float32) + bias[None, :]
    for k in tl.static_range(WIDTH):
        w = tl.load(w_ptrs + k * s_w_k, mask=mask_d, other=0.0).to(tl.float32)
        x = _load_shifted(x_tile, init_tile, pos - (WIDTH - 1) + k, seqlen, mask_d, s_x_l, s_i_l, HAS_INIT, WIDTH)
        pre += w[None, :] * x
    return pre


@triton.jit(do_not_specialize=["seqlen", "first_tile", "n_tiles"])
def _conv_fwd_kernel(
    x_ptr,
    w_ptr,
    bias_ptr,
    init_ptr,
    out_ptr,
    seqlen,
    dim,
    first_tile,
    n_tiles,
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
    BLOCK_L: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """Tiles ``first_tile`` to ``first_tile + n_tiles`` of every (batch, channel block)."""
    n_dblocks = tl.cdiv(dim, BLOCK_D)
    pid = tl.program_id(0)  # one flat axis: (batch, channel block, position block), positions fastest
    pid_l, pid_d, pid_b = pid % n_tiles, (pid // n_tiles) % n_dblocks, pid // (n_tiles * n_dblocks)
    b64 = pid_b.to(tl.int64)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    pos = (first_tile + pid_l).to(tl.int64) * BLOCK_L + tl.arange(0, BLOCK_L)  # 64-bit: position x row stride
    mask_d = offs_d < dim
    x_tile = x_ptr + b64 * s_x_b + offs_d[None, :] * s_x_d
    init_tile = init_ptr + b64 * s_i_b + offs_d[None, :] * s_i_d
    bias = (
        tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
        if HAS_BIAS
        else tl.zeros((BLOCK_D,), tl.float32)
    )
    pre = _pre_activation(
        x_tile, init_tile, w_ptr + offs_d * s_w_d, bias, pos, seqlen, mask_d, s_x_l, s_i_l, s_w_k, HAS_INIT, WIDTH
    )
    out = pre * sigmoid_fast(pre) if SILU else pre
    out_ptrs = out_ptr + b64 * s_o_b + pos[:, None] * s_o_l + offs_d[None, :] * s_o_d
    tl.store(out_ptrs, out.to(out_ptr.dtype.element_ty), mask=(pos < seqlen)[:, None] & mask_d[None, :])


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
    n_programs = tl.cdiv(walks, SPLIT)
    pid = tl.program_id(0)  # (channel block, SPLIT walks), walks fastest
    cols = tl.arange(0, SPLIT * BLOCK_D)
    walk = pid % n_programs * SPLIT + cols // BLOCK_D  # each column's walk and channel
    channel = pid // n_programs * BLOCK_D + cols % BLOCK_D
    mask = (walk < walks) & (channel < dim)
    b64 = (walk // groups).to(tl.int64)
    first = (walk % groups) * tiles_per_walk * TILE  # positions below count from each column's walk start
    lo = tl.where(mask, -first, 0)
    hi = tl.where(mask, seqlen - first, 0)
    f64 = first.to(tl.int64)
    x_base = x_ptr + b64 * s_x_b + f64 * s_x_l + channel * s_x_d
    dout_base = dout_ptr + b64 * s_g_b + f64 * s_g_l + channel * s_g_d
    dx_base = dx_ptr + b64 * s_dx_b + f64 * s_dx_l + channel * s_dx_d
    w_ptrs = w_ptr + channel * s_w_d
    if HAS_BIAS:
        bias = tl.load(bias_ptr + channel, mask=mask, other=0.0).to(tl.float32)
    else:
        bias = tl.zeros(cols.shape, tl.float32)
    v0, v1 = _tap(w_ptrs, 0, s_w_k, mask, WIDTH), _tap(w_ptrs, 1, s_w_k, mask, WIDTH)
    v2, v3 = _tap(w_ptrs, 2, s_w_k, mask, WIDTH), _tap(w_ptrs, 3, s_w_k, mask, WIDTH)
    offs_t = tl.arange(0, TILE)
    # dpre of the tile after the walk (zero past the sequence), the x tile behind it, and its last tile's dout
    p = tiles_per_walk * TILE + offs_t
    x = _walk_rows(x_base, p, lo, hi, s_x_l).to(tl.float32)
    behind = _walk_rows(x_base, p - TILE, lo, hi, s_x_l).to(tl.float32)
    pre, _, _, _ = _taps_back(x, behind, v0, v1, v2, v3, bias, offs_t, TILE)
    ahead = _pre_grad(_walk_rows(dout_base, p, lo, hi, s_g_l), pre, SILU)
    x = behind
    dout_next = _walk_rows(dout_base, p - TILE, lo, hi, s_g_l)
    dv0 = tl.zeros(cols.shape, tl.float32)  # the gradients of v_0 .. v_3 and of the bias
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
            dinit = tl.zeros(cols.shape, tl.float32)
            for m in tl.static_range(WIDTH - 1 - slot, WIDTH):
                dinit += _tap(w_ptrs, m, s_w_k, mask, WIDTH) * _row(ahead, slot - (WIDTH - 1) + m, offs_t)
            tl.store(dinit_base + slot * s_di_l, dinit.to(dinit_ptr.dtype.element_ty), mask=at_start)


def _tile_ranges(seqlen: int, block_l: int, has_init: bool) -> list[tuple[int, int, bool]]:
    """(first tile, tiles, reads the initial states) of each forward launch: with initial states, the first tile
    apart."""
    n_tiles = triton.cdiv(seqlen, block_l)
    ranges = [(1, n_tiles - 1, False), (0, 1, True)] if has_init else [(0, n_tiles, False)]
    return [r for r in ranges if r[1] > 0]


def _walks(x: Tensor) -> tuple[int, int]:
    """(walks per sequence, tiles per walk) of the backward: enough programs to fill the GPU, few enough that each
    adds its dw sums to memory once."""
    batch, dim, seqlen = x.shape
    n_tiles = triton.cdiv(seqlen, BWD_TILE)
    items = batch * triton.cdiv(dim, BWD_BLOCK_D)
    # the interpreter runs programs one by one: three walks per sequence exercise the first, a middle and the last
    target = sm_count(x.device) * BWD_PROGRAMS_PER_SM * BWD_SPLIT if x.device.type == "cuda" else 3 * items
    tiles = triton.cdiv(n_tiles, max(1, min(n_tiles, triton.cdiv(target, items))))
    return triton.cdiv(n_tiles, tiles), tiles


def conv_fwd(x: Tensor, weight: Tensor, bias: Tensor | None, initial_states: Tensor | None, silu: bool) -> Tensor:
    """The conv's output (laid out like x)."""
    batch, dim, seqlen = x.shape
    out = like_layout(x)
    init = initial_states if initial_states is not None else x
    for first_tile, n_tiles, has_init in _tile_ranges(seqlen, FWD_BLOCK_L, initial_states is not None):
        grid = (triton.cdiv(dim, FWD_BLOCK_D) * batch * n_tiles,)  # one axis: no 65535 limit
        _conv_fwd_kernel[grid](
            x, weight, bias if bias is not None else weight, init, out, seqlen, dim, first_tile, n_tiles,
            *x.stride(), *out.stride(), *(init.stride() if has_init else (0, 0, 0)), *weight.stride(),
            HAS_BIAS=bias is not None, HAS_INIT=has_init, SILU=silu,
            WIDTH=weight.shape[1], BLOCK_L=FWD_BLOCK_L, BLOCK_D=FWD_BLOCK_D, num_warps=4, **FMA_CONTRACTION,
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
    # not empty_like: for a non-dense view (the model passes history[:, :, 1:]) it would not keep the strides
    dinit = initial_states.new_empty(initial_states.shape) if initial_states is not None else None
    init = initial_states if initial_states is not None else x
    groups, tiles = _walks(x)
    walks = x.shape[0] * groups
    grid = (triton.cdiv(walks, BWD_SPLIT) * triton.cdiv(dim, BWD_BLOCK_D),)
    has_init = initial_states is not None
    _conv_bwd_kernel[grid](
        x, weight, bias if bias is not None else weight, init, dout, dx, dw, dbias if dbias is not None else dw,
        dinit if has_init else dw, seqlen, dim, walks, groups, tiles,
        *x.stride(), *dout.stride(), *dx.stride(),
        *(init.stride() if has_init else (0, 0, 0)), *(dinit.stride() if has_init else (0, 0, 0)),
        *weight.stride(),
        HAS_BIAS=bias is not None, HAS_INIT=has_init, SILU=silu,
        WIDTH=width, TILE=BWD_TILE, SPLIT=BWD_SPLIT, BLOCK_D=BWD_BLOCK_D, num_warps=BWD_WARPS, **FMA_CONTRACTION,
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
