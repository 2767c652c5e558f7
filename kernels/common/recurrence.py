"""The diagonal linear recurrence h_t = a_t h_{t-1} + b_t over a tile held in registers, forwards and backwards.

Tiles are (TILE, ...) tensors whose first axis lives inside each thread (the kernels pick shapes for which
Triton's default layout does that). The recurrence is then unrolled over the TILE rows: picking row i with a
masked sum and writing it back with a masked select both fold away at compile time, leaving one fused
multiply-add per element. This is cheaper than ``tl.associative_scan`` (no log-depth combine, no cumulative
products) and equally cheap in both directions, whereas reverse scans cost warp shuffles on some Triton versions.
"""

import triton
import triton.language as tl


@triton.jit
def row(x, i: tl.constexpr, offs_t):
    """x[i] of a (TILE, A, B) tile: -0.0 is the exact identity of +, so the masked sum folds to a register pick.

    -0.0 is built from its bits: Triton 3.6 merges a literal -0.0 with the constant 0.0 (they compare equal), and
    x + 0.0 does not fold.
    """
    minus_zero = tl.full((1, 1, 1), -2147483648, tl.int32).to(tl.float32, bitcast=True)
    return tl.sum(tl.where((offs_t == i)[:, None, None], x, minus_zero), axis=0)


@triton.jit
def in_scan_layout(state, TILE: tl.constexpr):
    """An (A, B) state in the layout the scan's rows come out in (a reduction over a (TILE, A, B) tile).

    A state loaded from memory otherwise keeps the load's vectorised layout as the loop-carried value, and every row
    the scan produces is moved into it through shared memory. On the H100 (256 channels, bfloat16) this took the
    forward from an initial state at 64 x 16K from 5.2 to 2.4 ms (as fast as from zero), the two-pass forward at
    1 x 1M from 5.8 to 4.2 ms, and the backward (its chunks start from saved states) from 12.0 to 10.6 ms at 1024 x 1K.
    """
    tile = tl.broadcast_to(state[None, :, :], (TILE, state.shape[0], state.shape[1]))
    return row(tile, 0, tl.arange(0, TILE))


@triton.jit
def with_row(x, i: tl.constexpr, offs_t, value):
    """x with row i replaced by ``value`` (A, B)."""
    return tl.where((offs_t == i)[:, None, None], value[None], x)


@triton.jit
def linear_scan(decay, inp, h, offs_t, TILE: tl.constexpr):
    """States h_t = decay_t h_{t-1} + inp_t of a tile from the state ``h`` before it: (all states, last state)."""
    hs = tl.zeros_like(inp)
    for i in tl.static_range(TILE):
        h = row(decay, i, offs_t) * h + row(inp, i, offs_t)
        hs = with_row(hs, i, offs_t, h)
    return hs, h


@triton.jit
def linear_scan_output(decay, inp, C, h, offs_t, TILE: tl.constexpr):
    """Outputs y_t = sum over axis 1 of C_t h_t (TILE, D) and the last state, without keeping the tile's states:
    each row's contribution is taken as soon as its state exists, which saves a tile of registers."""
    y = tl.sum(tl.zeros_like(inp), axis=1)
    for i in tl.static_range(TILE):
        h = row(decay, i, offs_t) * h + row(inp, i, offs_t)
        y_i = tl.sum(h * row(C, i, offs_t), axis=0)
        y = tl.where((offs_t == i)[:, None], y_i[None, :], y)
    return y, h


@triton.jit
def previous_states(hs, h0, offs_t, TILE: tl.constexpr):
    """The states h_{t-1} of a tile's rows: ``h0`` (the state before the tile) and then hs shifted down by one row.
    The shift is register renaming once unrolled."""
    prev = with_row(hs, 0, offs_t, h0)
    for i in tl.static_range(1, TILE):
        prev = with_row(prev, i, offs_t, row(hs, i - 1, offs_t))
    return prev


@triton.jit
def linear_scan_last(decay, inp, h, offs_t, TILE: tl.constexpr):
    """The last state only of :func:`linear_scan`."""
    for i in tl.static_range(TILE):
        h = row(decay, i, offs_t) * h + row(inp, i, offs_t)
    return h


@triton.jit
def adjoint_scan(decay, c, w, offs_t, TILE: tl.constexpr):
    """Adjoint of :func:`linear_scan`: g_t = c_t + decay_{t+1} g_{t+1}, walking the tile backwards.

    ``w`` is decay g at the position after the tile; returns (all g, all decay_t g_t). Row 0 of the latter carries
    on to the previous tile, and its rows are the products the gradient of the decays needs.
    """
    g = w
    gs = tl.zeros_like(c)
    decayed = tl.zeros_like(c)
    for j in tl.static_range(TILE):
        g = row(c, TILE - 1 - j, offs_t) + g
        gs = with_row(gs, TILE - 1 - j, offs_t, g)
        g = row(decay, TILE - 1 - j, offs_t) * g
        decayed = with_row(decayed, TILE - 1 - j, offs_t, g)
    return gs, decayed


@triton.jit
def accumulate_rows(acc, x, weight, offs_t, TILE: tl.constexpr):
    """acc + sum over the tile's rows of x_t weight_t, as one fused multiply-add per element (a tree sum of the
    products would cost a multiply and an add). ``weight`` may be (TILE, 1, B): it is broadcast to x's shape first,
    since a (TILE, 1, B) tile takes a layout of its own whose rows cost shuffles to pick."""
    weight = tl.broadcast_to(weight, x.shape)
    for i in tl.static_range(TILE):
        acc += row(x, i, offs_t) * row(weight, i, offs_t)
    return acc
