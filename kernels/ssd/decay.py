"""The decays exp(cs_i - cs_j) of one tile of position pairs (i >= j) inside a chunk, for the SSD kernels.

cs falls along a chunk (a running sum of dt A <= 0, padded past the chunk's end with dt = 0). For a tile of rows i
whose columns j all come before its first row i0, the decay splits into

    exp(cs_i - cs_j) = exp(cs_i - cs_i0) exp(cs_i0 - cs_j)

two factors of at most 1: one exponential per row and one per column instead of one per pair, and no causal mask.
The tile on the diagonal takes the exponentials pair by pair, masked to i >= j. (``exp2``: Triton's ``exp``
compiles to an ``ex2`` that also handles subnormal results, three more instructions each.)

On the H100 (2^20 tokens, 4 heads of 64, bfloat16) this took the chunk-scan forward from 1.43-1.50 to 1.24-1.31 ms
at N = 64 (2.0-2.1 to 1.8-1.9 at N = 128) and the dC kernel from 2.0 to 1.8 ms (2.8-2.9 to 2.4-2.5). The dx/dB
kernel gained nothing from it (3.5 ms at N = 64, 4.9 -> 5.1 at N = 128), so it keeps its pair-by-pair decays.
"""

import triton
import triton.language as tl

from ..common.math import LOG2E


@triton.jit
def causal_decay(cs_i, cs_j, cs_i0, offs_i, offs_j, BELOW):
    """exp(cs_i - cs_j) over an (i, j) tile, zero where j > i. ``BELOW`` (a run-time scalar) says that every j
    comes before i0, the tile's first row (whose cs is ``cs_i0``), so that the decay splits into row and column
    factors.

    (Its result must not depend on a matrix product: Triton 3.6's software pipeliner fails on a branch that takes
    one as input, so the callers multiply afterwards.)
    """
    if BELOW:
        decay = tl.exp2((cs_i - cs_i0) * LOG2E)[:, None] * tl.exp2((cs_i0 - cs_j) * LOG2E)[None, :]
    else:
        gap = tl.where(offs_i[:, None] >= offs_j[None, :], cs_i[:, None] - cs_j[None, :], float("-inf"))
        decay = tl.exp2(gap * LOG2E)
    return decay
