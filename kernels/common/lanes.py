"""Sums over the channel axis of a (TILE, N, C) tile whose C channels sit on a warp's lanes (lane = channel).

``tl.sum`` over lanes is a butterfly: every lane ends with every sum, log2(C) shuffles for each of its values.
:func:`sum_channels_scattered` is a reduce-scatter instead: each level sends half of a thread's values to the
partner lane and keeps the other half. It first halves the tile's positions log2(TILE) times, then its states, and
finishes with a butterfly only on channel bits left over; a (4, 16, 16) tile with 16 lanes costs about half the
shuffles and adds of a butterfly. Lanes end up holding different (position, state) pairs, which
:func:`scattered_rows` reports.

A channel exchange is written as the permutation channel -> channel ^ mask (``tl.flip`` of a reshaped tile), which
Triton lowers to whatever its layout needs. (An earlier version issued ``shfl.sync.bfly`` directly, assuming lane =
channel; on the H100 Triton 3.6 picked another layout and dB, dC came out wrong, while the interpreter passed.)
"""

import triton
import triton.language as tl

from .recurrence import row, with_row


@triton.jit
def lane_xor(x, MASK: tl.constexpr):
    """x[..., c ^ MASK] for a (A, B, C) tile: the partner channel's value (a permutation of the channel axis)."""
    A: tl.constexpr = x.shape[0]
    B: tl.constexpr = x.shape[1]
    C: tl.constexpr = x.shape[2]
    y = tl.reshape(x, (A, B, C // (2 * MASK), 2, MASK))
    return tl.reshape(tl.flip(y, 3), (A, B, C))


@triton.jit
def _halves(x, offs_t, HALF: tl.constexpr):
    """Rows [0, HALF) and [HALF, 2 HALF) of a (2 HALF, B, C) tile, as two (HALF, B, C) tiles."""
    offs_h = tl.arange(0, HALF)
    lo = tl.zeros((HALF, x.shape[1], x.shape[2]), tl.float32)
    hi = lo
    for i in tl.static_range(HALF):
        lo = with_row(lo, i, offs_h, row(x, i, offs_t))
        hi = with_row(hi, i, offs_h, row(x, HALF + i, offs_t))
    return lo, hi


@triton.jit
def _state_halves(x):
    """States [0, B/2) and [B/2, B) of a (A, B, C) tile, as two (A, B/2, C) tiles (masked sums over a split axis,
    which fold to register picks where a thread holds both halves)."""
    A: tl.constexpr = x.shape[0]
    B: tl.constexpr = x.shape[1]
    C: tl.constexpr = x.shape[2]
    y = tl.reshape(x, (A, 2, B // 2, C))
    upper = (tl.arange(0, 2) == 1)[None, :, None, None]
    minus_zero = tl.full((1, 1, 1, 1), -2147483648, tl.int32).to(tl.float32, bitcast=True)  # see recurrence.row
    return tl.sum(tl.where(upper, minus_zero, y), axis=1), tl.sum(tl.where(upper, y, minus_zero), axis=1)


@triton.jit
def _exchange(lo, hi, offs_c, BIT: tl.constexpr):
    """Lanes with channel bit BIT set keep ``hi`` and add their partner's, the others ``lo``."""
    upper = (((offs_c >> BIT) & 1) == 1)[None, None, :]
    return tl.where(upper, hi, lo) + lane_xor(tl.where(upper, lo, hi), 1 << BIT)


@triton.jit
def sum_channels_scattered(
    x, offs_c, TILE: tl.constexpr, LOG_C: tl.constexpr, LEVELS: tl.constexpr, STATE_LEVELS: tl.constexpr
):
    """Sum over the channel axis of ``x`` (TILE, B, 2^LOG_C) with LEVELS = log2 min(TILE, C) halvings of the
    positions and then STATE_LEVELS <= LOG_C - LEVELS of the states: a (TILE >> LEVELS, B >> STATE_LEVELS, C) tile
    whose value at (t, b, c) is the sum for position ``scattered_rows(c)[0] + t`` and state
    ``scattered_rows(c)[1] + b`` - the same on lanes that differ only in their low LOG_C - LEVELS - STATE_LEVELS
    bits."""
    tl.static_assert(LOG_C <= 5)
    tl.static_assert(LEVELS + STATE_LEVELS <= LOG_C)
    offs_t = tl.arange(0, TILE)
    for level in tl.static_range(LEVELS):
        lo, hi = _halves(x, offs_t, TILE >> (level + 1))
        x = _exchange(lo, hi, offs_c, LOG_C - 1 - level)
        offs_t = tl.arange(0, TILE >> (level + 1))
    for level in tl.static_range(STATE_LEVELS):
        lo, hi = _state_halves(x)
        x = _exchange(lo, hi, offs_c, LOG_C - 1 - LEVELS - level)
    for level in tl.static_range(LOG_C - LEVELS - STATE_LEVELS):
        x += lane_xor(x, 1 << level)
    return x


@triton.jit
def scattered_rows(
    offs_c,
    TILE: tl.constexpr,
    BLOCK_N: tl.constexpr,
    LOG_C: tl.constexpr,
    LEVELS: tl.constexpr,
    STATE_LEVELS: tl.constexpr,
):
    """For :func:`sum_channels_scattered`: the tile row and the state each lane's first value holds (C,), and
    whether the lane is the first of those holding the same sums (C,)."""
    first = offs_c * 0
    for level in tl.static_range(LEVELS):
        first += ((offs_c >> (LOG_C - 1 - level)) & 1) * (TILE >> (level + 1))
    state = offs_c * 0
    for level in tl.static_range(STATE_LEVELS):
        state += ((offs_c >> (LOG_C - 1 - LEVELS - level)) & 1) * (BLOCK_N >> (level + 1))
    owner = (offs_c & ((1 << (LOG_C - LEVELS - STATE_LEVELS)) - 1)) == 0
    return first, state, owner
