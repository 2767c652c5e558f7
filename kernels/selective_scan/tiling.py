"""Tile sizes and sequence segments of the Triton selective scan: a small heuristic table, no autotuning.

Every kernel runs one warp per program. Tiles are sized so that each thread holds about 32 float32 numbers per
(positions x states x channels) array: both tiles are (TILE, BLOCK_N, BLOCK_D), channels on lanes (16 in the
backward, whose sums over channels are a reduce-scatter over them: ``kernels/common/lanes.py``). Positions always
live inside a thread, which makes each scan a chain of fused multiply-adds.

A sequence is cut into ``segments`` when batch x channel blocks alone would leave the GPU idle (long sequences,
small batches); ``chunk`` is the spacing of the states the forward saves for the backward.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import triton

from ..common.hardware import persistent_programs
from ..common.math import FMA_CONTRACTION

PROGRAMS_PER_SM = 8  # one-warp programs in flight per SM we aim for
SEGMENTED_PROGRAMS = 4096  # programs (or work items) a segmented scan aims for: many waves, short tails
MAX_SEGMENTS = 256  # the state passing is sequential over segments
PREFETCH = True  # load the next tile while computing this one (H100: fwd 16K x 64 6.5 -> 3.8 ms; see the README)
MAXNREG = None  # registers per thread the kernels may use (fewer: more warps per SM, maybe spills); None: ptxas picks
FWD_BLOCK_D, BWD_BLOCK_D = 32, 16  # channels per program
# forward channels per program when 32 leave SMs idle but not so idle that the sequence is cut (H100, 64 x 16K x 256
# channels: 3.81 -> 2.57 ms; 256 x 4K: 2.32 -> 2.29; 1024 x 1K, which keeps 32: 2.16 -> 2.22)
FWD_FEW_PROGRAMS_BLOCK_D = 16
# positions between saved states: dstate * 4 / CHUNK bytes per channel and token (H100, 2^20 x 256 channels,
# forward+backward with 128 against 64: 14.50 / 15.43 ms at 1K, 15.48 / 15.54 at 16K, 24.15 / 23.78 at 1M)
CHUNK = 128


@dataclass(frozen=True)
class ScanTiling:
    """How one selective-scan call is cut into programs (fields chosen by :func:`plan_scan` unless forced)."""

    block_n: int  # states, padded to a power of two
    fwd_block_d: int  # channels per forward program
    fwd_tile: int  # positions per forward tile
    bwd_block_d: int  # channels per backward program
    bwd_tile: int  # positions per backward tile
    chunk: int  # positions between saved states (a multiple of both tiles)
    fwd_segments: int
    bwd_segments: int
    prefetch: bool = PREFETCH  # issue the next tile's loads before this tile's arithmetic
    maxnreg: int | None = MAXNREG  # register cap per thread


def _target_programs(device: torch.device) -> int:
    # in the interpreter, never segment unless asked
    return persistent_programs(device, PROGRAMS_PER_SM, interpreted=1)


def _largest_pow2_dividing(n: int, cap: int) -> int:
    p = 1
    while p < cap and n % (2 * p) == 0:
        p *= 2
    return p


def _cut_sequences(programs: int, target: int) -> bool:
    """Whether so few programs exist (under about two warps per SM) that sequences are cut into segments."""
    return programs * 4 < target


def _segments(programs: int, target: int, seqlen: int, chunk: int) -> int:
    """1 when the programs keep every SM busy; else enough segments (whole chunks long) for many waves of programs.

    A second segment costs a state-only pass over the sequence, so the sequence is only cut when fewer than a
    quarter of the target programs exist (about two warps per SM). Once cut, a few waves of programs are cheaper
    than one (on the H100 at 64K x 16 sequences: 9 segments 14.1 ms, 16 segments 10.4, 64 segments 9.8).
    """
    if not _cut_sequences(programs, target):
        return 1
    wanted = min(MAX_SEGMENTS, max(math.ceil(target / programs), math.ceil(SEGMENTED_PROGRAMS / programs)))
    seg_len = chunk * max(1, math.ceil(seqlen / (wanted * chunk)))
    return math.ceil(seqlen / seg_len)


def plan_scan(
    batch: int,
    dim: int,
    dstate: int,
    seqlen: int,
    groups: int,
    device: torch.device,
    tile: int | None = None,
    segments: int | None = None,
    chunk: int | None = None,
    prefetch: bool | None = None,
    maxnreg: int | None = None,
    fwd_block_d: int | None = None,
) -> ScanTiling:
    """The tiling for one call; ``tile``, ``segments``, ``chunk``, ``prefetch``, ``maxnreg`` and ``fwd_block_d``
    (channels per forward program, a power of two dividing a group) force those choices
    (tests use them to run the multi-tile, multi-chunk and multi-segment paths on tiny shapes, benchmarks to
    compare variants)."""
    group_dim = dim // groups
    block_n = max(2, triton.next_power_of_2(dstate))

    def channels(cap: int) -> int:  # one group per program
        block_d = _largest_pow2_dividing(group_dim, cap) if groups > 1 else cap
        return min(block_d, max(1, triton.next_power_of_2(dim)))

    target = _target_programs(device)
    if fwd_block_d is None:
        programs = batch * math.ceil(dim / channels(FWD_BLOCK_D))
        few = programs < target and not _cut_sequences(programs, target)  # SMs idle, yet not worth a cut
        fwd_block_d = FWD_FEW_PROGRAMS_BLOCK_D if few else FWD_BLOCK_D
    fwd_block_d, bwd_block_d = channels(fwd_block_d), channels(BWD_BLOCK_D)
    fwd_tile = tile or max(2, min(16, 2048 // (block_n * fwd_block_d)))
    bwd_tile = tile or max(2, min(16, 1024 // (block_n * bwd_block_d)))
    chunk = chunk or max(CHUNK, fwd_tile, bwd_tile)
    if chunk % fwd_tile or chunk % bwd_tile:
        raise ValueError(f"chunk ({chunk}) must be a multiple of the tiles ({fwd_tile}, {bwd_tile})")
    fwd_programs = batch * math.ceil(dim / fwd_block_d)
    bwd_programs = batch * math.ceil(dim / bwd_block_d)
    if segments is None:
        fwd_segments = _segments(fwd_programs, target, seqlen, chunk)
        bwd_segments = _segments(bwd_programs, target, seqlen, chunk)
    else:
        seg_len = chunk * max(1, math.ceil(seqlen / (segments * chunk)))
        fwd_segments = bwd_segments = max(1, math.ceil(seqlen / seg_len))
    return ScanTiling(
        block_n,
        fwd_block_d,
        fwd_tile,
        bwd_block_d,
        bwd_tile,
        chunk,
        fwd_segments,
        bwd_segments,
        PREFETCH if prefetch is None else prefetch,
        maxnreg or MAXNREG,
    )


def decays_per_update(tiling: ScanTiling, backward: bool) -> float:
    """Decays exp2(dt A) the kernels of this plan compute per state update, each one ``ex2`` (16 per clock per SM on
    Hopper): the forward one, plus its state-only pass over every segment but the last; the backward two more (the
    sweep to each tile's start state, then the tile's recomputation), plus its local adjoint pass over every segment
    but one. Cutting a sequence into segments costs about one decay more per update and direction."""
    forward = 1 + (tiling.fwd_segments - 1) / tiling.fwd_segments
    if not backward:
        return forward
    return forward + 2 + (tiling.bwd_segments - 1) / tiling.bwd_segments


def launch_options(tiling: ScanTiling) -> dict[str, int | bool]:
    """Triton launch options of a tiling: FMA contraction and the register cap, when one is set."""
    return {**FMA_CONTRACTION, "maxnreg": tiling.maxnreg} if tiling.maxnreg else dict(FMA_CONTRACTION)


def segment_length(seqlen: int, segments: int, chunk: int) -> int:
    """Positions per segment: whole chunks, so that segments start on saved states."""
    return chunk * max(1, math.ceil(seqlen / (segments * chunk)))
