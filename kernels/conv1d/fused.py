"""Causal depthwise conv1d (width 2-4) with fused SiLU in Triton, forward and backward.

    pre[t] = bias + sum_k w[k] x[t - (W - 1) + k]         out[t] = silu(pre[t])   (or pre[t])

Positions before the sequence read ``initial_states``. The backward recomputes ``pre`` instead of saving it:
    dpre[t] = dout[t] * silu'(pre[t]),   dx[t] = sum_k w[k] dpre[t + W - 1 - k],
    dw[k] = sum_t dpre[t] x[t - (W - 1) + k],   dbias = sum_t dpre[t],
and the inputs before the sequence get their gradient from the same formula (d initial_states). Each program owns
a (BLOCK_L positions x BLOCK_D channels) tile in any memory layout; shifted loads hit L1. With initial states, the
first tile of every sequence runs as a launch of its own: only it reads them, and the loads that would read them
cost the backward 40% more registers (one program fewer per SM) and 25% more instructions in every tile.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from ..common.hardware import sm_count
from ..common.math import FMA_CONTRACTION, sigmoid_fast
from ..common.tensors import like_layout

# (positions, channels) of a tile, from H100 sweeps at 2^20 tokens, 256 and 512 channels, batch 1 and 1024
# (results/benchmarks.md): the best forward tile at three of the four shapes (eleventh session: 16 x 128 on four warps
# 0.52-0.56 ms at 256 channels and 0.98-1.14 at 512, against 0.69-0.72 and 1.36-1.37 for 64 x 64), and the best
# backward tile with loads run ahead (twenty-third: 8 x 128 on eight warps 0.91-0.97 ms at 256 channels and
# 1.75-1.89 at 512; 16 x 64 on four warps, the best before, took 212 registers with them and 1.06-1.11 / 2.14-2.24)
FWD_BLOCK_L, FWD_BLOCK_D = 16, 128
BWD_BLOCK_L, BWD_BLOCK_D, BWD_WARPS = 8, 128, 8


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
def _tap(w_ptrs, m: tl.constexpr, s_w_k, mask_d, WIDTH: tl.constexpr):
    """v_m = w[W - 1 - m], the weight of the input m positions back (zero past the width)."""
    if m < WIDTH:
        return tl.load(w_ptrs + (WIDTH - 1 - m) * s_w_k, mask=mask_d, other=0.0).to(tl.float32)
    return tl.zeros(mask_d.shape, tl.float32)


@triton.jit
def _behind(x_tile, init_tile, pos, m: tl.constexpr, seqlen, mask_d, s_x_l, s_i_l, HAS_INIT, WIDTH: tl.constexpr):
    """The inputs m positions behind ``pos`` (zero past the width)."""
    if m < WIDTH:
        return _load_shifted(x_tile, init_tile, pos - m, seqlen, mask_d, s_x_l, s_i_l, HAS_INIT, WIDTH)
    return tl.zeros((pos.shape[0], mask_d.shape[0]), tl.float32)


@triton.jit
def _load_rows(tile, p, seqlen, mask_d, s_l):
    """The rows at positions ``p`` in their own dtype, zero outside the sequence."""
    valid = (p >= 0) & (p < seqlen)
    return tl.load(tile + p[:, None] * s_l, mask=valid[:, None] & mask_d[None, :], other=0.0)


@triton.jit
def _pre_grad(dout, pre, SILU: tl.constexpr):
    """dpre = dout * silu'(pre) (dout alone without SiLU)."""
    dpre = dout.to(tl.float32)
    if SILU:
        sig = sigmoid_fast(pre)
        dpre = dpre * sig * (1.0 + pre * (1.0 - sig))
    return dpre


@triton.jit
def _ahead(ring, row, m: tl.constexpr, RING_ROWS: tl.constexpr, WIDTH: tl.constexpr, BLOCK_D: tl.constexpr):
    """dpre m positions ahead of ring rows ``row`` (the ring's rows run on into the next tile's, circularly)."""
    if m < WIDTH:
        return tl.load(ring + ((row + m) % RING_ROWS)[:, None] * BLOCK_D)
    return tl.zeros((row.shape[0], BLOCK_D), tl.float32)


@triton.jit(do_not_specialize=["seqlen", "first_tile", "n_tiles", "tiles_per_program"])
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
    ring_ptr,  # (programs, 3 BLOCK_L, BLOCK_D) float32 scratch
    seqlen,
    dim,
    first_tile,
    n_tiles,
    tiles_per_program,
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
    BLOCK_L: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """Tiles ``first_tile`` to ``first_tile + n_tiles`` of every (batch, channel block). A program walks
    ``tiles_per_program`` consecutive tiles from the last to the first, summing dw and dbias in registers, and adds
    them to memory once: per-tile sums would cost a cross-warp reduction and contended atomics per tile.

    dx[t] = sum_m v_m dpre[t + m] reads dpre up to W - 1 positions ahead, into the tile walked before. Each tile's
    dpre goes to a ring of three tiles in (L2-resident) scratch, so that every pre-activation and its SiLU
    derivative is computed once, not once per tap: the ring's third tile lets a tile be written while the tile two
    steps back may still be read, with one barrier per tile.
    """
    n_dblocks, n_lgroups = tl.cdiv(dim, BLOCK_D), tl.cdiv(n_tiles, tiles_per_program)
    pid = tl.program_id(0)  # one flat axis: (batch, channel block, group of position tiles), positions fastest
    pid_g, pid_d, pid_b = pid % n_lgroups, (pid // n_lgroups) % n_dblocks, pid // (n_lgroups * n_dblocks)
    b64 = pid_b.to(tl.int64)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_d = offs_d < dim
    x_tile = x_ptr + b64 * s_x_b + offs_d[None, :] * s_x_d
    init_tile = init_ptr + b64 * s_i_b + offs_d[None, :] * s_i_d
    dout_tile = dout_ptr + b64 * s_g_b + offs_d[None, :] * s_g_d
    dx_tile = dx_ptr + b64 * s_dx_b + offs_d[None, :] * s_dx_d
    ring_rows: tl.constexpr = 3 * BLOCK_L
    ring = ring_ptr + pid.to(tl.int64) * ring_rows * BLOCK_D + tl.arange(0, BLOCK_D)[None, :]
    w_ptrs = w_ptr + offs_d * s_w_d
    bias = (
        tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
        if HAS_BIAS
        else tl.zeros((BLOCK_D,), tl.float32)
    )
    v0, v1 = _tap(w_ptrs, 0, s_w_k, mask_d, WIDTH), _tap(w_ptrs, 1, s_w_k, mask_d, WIDTH)
    v2, v3 = _tap(w_ptrs, 2, s_w_k, mask_d, WIDTH), _tap(w_ptrs, 3, s_w_k, mask_d, WIDTH)
    rows = tl.arange(0, BLOCK_L)
    first = (first_tile + pid_g.to(tl.int64) * tiles_per_program) * BLOCK_L  # 64-bit: position x row stride
    # dpre of the W - 1 positions after this program's tiles, into the ring's rows after its last tile's
    ahead = first + tiles_per_program * BLOCK_L + rows
    pre = _pre_activation(x_tile, init_tile, w_ptrs, bias, ahead, seqlen, mask_d, s_x_l, s_i_l, s_w_k, False, WIDTH)
    row0 = (tiles_per_program % 3) * BLOCK_L
    dpre = _pre_grad(_load_rows(dout_tile, ahead, seqlen, mask_d, s_g_l), pre, SILU)
    tl.store(ring + (row0 + rows)[:, None] * BLOCK_D, dpre)
    # the gradients of v_m and of the bias, summed elementwise over this program's positions
    dv0 = tl.zeros((BLOCK_L, BLOCK_D), tl.float32)
    dv1, dv2, dv3, dbias = dv0, dv0, dv0, dv0
    # Loads run ahead of the walk: dout one tile, x two, so that the shifted loads of x (W - 1 rows into the tile
    # walked next) find its rows in L1 rather than wait for memory.
    last = first + (tiles_per_program - 1) * BLOCK_L + rows
    x_next = _load_rows(x_tile, last, seqlen, mask_d, s_x_l)
    x_after = _load_rows(x_tile, last - BLOCK_L, seqlen, mask_d, s_x_l)
    dout_next = _load_rows(dout_tile, last, seqlen, mask_d, s_g_l)
    for j in range(tiles_per_program):
        i = tiles_per_program - 1 - j
        pos = first + i * BLOCK_L + rows
        x, dout = x_next.to(tl.float32), dout_next
        x_next, x_after = x_after, _load_rows(x_tile, pos - 2 * BLOCK_L, seqlen, mask_d, s_x_l)
        dout_next = _load_rows(dout_tile, pos - BLOCK_L, seqlen, mask_d, s_g_l)
        x_1 = _behind(x_tile, init_tile, pos, 1, seqlen, mask_d, s_x_l, s_i_l, HAS_INIT, WIDTH)
        x_2 = _behind(x_tile, init_tile, pos, 2, seqlen, mask_d, s_x_l, s_i_l, HAS_INIT, WIDTH)
        x_3 = _behind(x_tile, init_tile, pos, 3, seqlen, mask_d, s_x_l, s_i_l, HAS_INIT, WIDTH)
        pre = bias[None, :] + v0[None, :] * x + v1[None, :] * x_1 + v2[None, :] * x_2 + v3[None, :] * x_3
        dpre = _pre_grad(dout, pre, SILU)
        row = (i % 3) * BLOCK_L + rows
        tl.store(ring + row[:, None] * BLOCK_D, dpre)
        tl.debug_barrier()  # the tile's dpre, and the next tile's (written before the last barrier), are in the ring
        dx = v0[None, :] * dpre + v1[None, :] * _ahead(ring, row, 1, ring_rows, WIDTH, BLOCK_D)
        dx += v2[None, :] * _ahead(ring, row, 2, ring_rows, WIDTH, BLOCK_D)
        dx += v3[None, :] * _ahead(ring, row, 3, ring_rows, WIDTH, BLOCK_D)
        mask = (pos < seqlen)[:, None] & mask_d[None, :]
        tl.store(dx_tile + pos[:, None] * s_dx_l, dx.to(dx_ptr.dtype.element_ty), mask=mask)
        dv0 += dpre * x
        dv1 += dpre * x_1
        dv2 += dpre * x_2
        dv3 += dpre * x_3
        dbias += dpre
    dw_ptrs = dw_ptr + offs_d * WIDTH + WIDTH - 1  # dw[W - 1 - m] = dv_m
    tl.atomic_add(dw_ptrs, tl.sum(dv0, axis=0), mask=mask_d, sem="relaxed")
    tl.atomic_add(dw_ptrs - 1, tl.sum(dv1, axis=0), mask=mask_d, sem="relaxed")
    if WIDTH > 2:
        tl.atomic_add(dw_ptrs - 2, tl.sum(dv2, axis=0), mask=mask_d, sem="relaxed")
    if WIDTH > 3:
        tl.atomic_add(dw_ptrs - 3, tl.sum(dv3, axis=0), mask=mask_d, sem="relaxed")
    if HAS_BIAS:
        tl.atomic_add(dbias_ptr + offs_d, tl.sum(dbias, axis=0), mask=mask_d, sem="relaxed")
    if HAS_INIT:  # the W - 1 inputs before the sequence (the launch of first tiles only): dpre of positions 0..W-2
        before = tl.arange(0, 4) - (WIDTH - 1)
        dinit = tl.zeros((4, BLOCK_D), tl.float32)
        for m in tl.static_range(1, WIDTH):  # the first tile's dpre sits in the ring's first rows
            dpre = tl.load(ring + (before + m)[:, None] * BLOCK_D, mask=(before + m >= 0)[:, None], other=0.0)
            dinit += _tap(w_ptrs, m, s_w_k, mask_d, WIDTH)[None, :] * dpre
        dinit_ptrs = dinit_ptr + b64 * s_di_b + (before + WIDTH - 1)[:, None] * s_di_l + offs_d[None, :] * s_di_d
        tl.store(dinit_ptrs, dinit.to(dinit_ptr.dtype.element_ty), mask=(before < 0)[:, None] & mask_d[None, :])


BWD_PROGRAMS_PER_SM = 8  # backward programs per SM we aim for


def _tile_ranges(seqlen: int, block_l: int, has_init: bool) -> list[tuple[int, int, bool]]:
    """(first tile, tiles, reads the initial states) of each launch: with initial states, the first tile apart."""
    n_tiles = triton.cdiv(seqlen, block_l)
    ranges = [(1, n_tiles - 1, False), (0, 1, True)] if has_init else [(0, n_tiles, False)]
    return [r for r in ranges if r[1] > 0]


def _grid(x: Tensor, block_d: int, n_tiles: int, tiles_per_program: int = 1) -> tuple[int]:
    batch, dim, _ = x.shape
    return (triton.cdiv(dim, block_d) * batch * triton.cdiv(n_tiles, tiles_per_program),)  # one axis: no 65535 limit


def _bwd_tiles_per_program(x: Tensor, n_tiles: int) -> int:
    """Position tiles per backward program: few enough programs to sum dw once each, enough to fill the GPU."""
    batch, dim, _ = x.shape
    items = batch * triton.cdiv(dim, BWD_BLOCK_D)
    # the interpreter runs programs one by one: two groups of tiles per sequence exercise both paths
    target = sm_count(x.device) * BWD_PROGRAMS_PER_SM if x.device.type == "cuda" else 2 * items
    return triton.cdiv(n_tiles, max(1, min(n_tiles, triton.cdiv(target, items))))


def conv_fwd(x: Tensor, weight: Tensor, bias: Tensor | None, initial_states: Tensor | None, silu: bool) -> Tensor:
    """The conv's output (laid out like x)."""
    out = like_layout(x)
    init = initial_states if initial_states is not None else x
    for first_tile, n_tiles, has_init in _tile_ranges(x.shape[2], FWD_BLOCK_L, initial_states is not None):
        _conv_fwd_kernel[_grid(x, FWD_BLOCK_D, n_tiles)](
            x, weight, bias if bias is not None else weight, init, out, x.shape[2], x.shape[1], first_tile, n_tiles,
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
    for first_tile, n_tiles, has_init in _tile_ranges(seqlen, BWD_BLOCK_L, initial_states is not None):
        tiles = _bwd_tiles_per_program(x, n_tiles)
        grid = _grid(x, BWD_BLOCK_D, n_tiles, tiles)
        ring = torch.empty(grid[0], 3 * BWD_BLOCK_L, BWD_BLOCK_D, device=x.device, dtype=torch.float32)
        _conv_bwd_kernel[grid](
            x, weight, bias if bias is not None else weight, init, dout, dx, dw, dbias if dbias is not None else dw,
            dinit if has_init else dw, ring, seqlen, dim, first_tile, n_tiles, tiles,
            *x.stride(), *dout.stride(), *dx.stride(),
            *(init.stride() if has_init else (0, 0, 0)), *(dinit.stride() if has_init else (0, 0, 0)),
            *weight.stride(),
            HAS_BIAS=bias is not None, HAS_INIT=has_init, SILU=silu,
            WIDTH=width, BLOCK_L=BWD_BLOCK_L, BLOCK_D=BWD_BLOCK_D, num_warps=BWD_WARPS, **FMA_CONTRACTION,
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
