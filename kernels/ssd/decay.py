"""The decays exp(cs_late - cs_early) of one tile of position pairs inside a chunk, for the SSD kernels.

cs falls along a chunk (a running sum of dt A <= 0, padded past the chunk's end with dt = 0). For a tile whose
earlier positions all come before position m and whose later ones all come at or after it, the decay splits into

    exp(cs_late - cs_early) = exp(cs_late - cs_m) exp(cs_m - cs_early)

two factors of at most 1: one exponential per row and one per column instead of one per pair, and no causal mask.
Tiles that straddle the diagonal take the exponentials pair by pair, masked to late >= early. (``exp2``: Triton's
``exp`` compiles to an ``ex2`` that also handles subnormal results, three more instructions each.)

On the H100 (2^20 tokens, 4 heads of 64, bfloat16) this took the chunk-scan forward from 1.43-1.50 to 1.24-1.31 ms
at N = 64 (2.0-2.1 to 1.8-1.9 at N = 128) and the dC kernel from 2.0 to 1.8 ms (2.8-2.9 to 2.4-2.5). The dx/dB
kernel gained nothing from it (3.5 ms at N = 64, 4.9 -> 5.1 at N = 128), so it keeps its pair-by-pair decays.
"""

import triton
import triton.language as tl

from ..common.math import LOG2E


@triton.jit
def _along(v, AXIS: tl.constexpr):
    """A vector as the rows (AXIS 0) or the columns (AXIS 1) of a tile."""
    if AXIS == 0:
        tile = v[:, None]
    else:
        tile = v[None, :]
    return tile


@triton.jit
def causal_decay(cs_late, cs_early, cs_mid, offs_late, offs_early, SPLIT, LATE_AXIS: tl.constexpr):
    """exp(cs_late - cs_early) where late >= early, else 0, over a tile whose axis ``LATE_AXIS`` runs over the
    later positions. ``SPLIT`` (a run-time scalar) says that every early position comes before the one of
    ``cs_mid`` and every late one at or after it.

    (Its result must not depend on a matrix product: Triton 3.6's software pipeliner fails on a branch that takes
    one as input, so the callers multiply afterwards.)
    """
    EARLY_AXIS: tl.constexpr = 1 - LATE_AXIS
    if SPLIT:
        late = tl.exp2((cs_late - cs_mid) * LOG2E)
        early = tl.exp2((cs_mid - cs_early) * LOG2E)
        decay = _along(late, LATE_AXIS) * _along(early, EARLY_AXIS)
    else:
        causal = _along(offs_late, LATE_AXIS) >= _along(offs_early, EARLY_AXIS)
        gap = _along(cs_late, LATE_AXIS) - _along(cs_early, EARLY_AXIS)
        decay = tl.exp2(tl.where(causal, gap, float("-inf")) * LOG2E)
    return decay
