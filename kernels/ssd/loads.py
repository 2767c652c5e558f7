"""Tile loads of the SSD kernels that mask only what can be out of bounds."""

import triton
import triton.language as tl


@triton.jit
def load_padded(ptrs, mask, PADDED: tl.constexpr):
    """A tile, zero where ``mask`` is false if PADDED (the block is wider than the tensor), unmasked otherwise: a
    mask costs a predicate per vector load even when it is all true."""
    if PADDED:
        tile = tl.load(ptrs, mask=mask, other=0.0)
    else:
        tile = tl.load(ptrs)
    return tile
