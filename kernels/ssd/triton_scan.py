"""The SSD scan on Triton kernels: forward and backward launchers, the autograd Function, the entry point.

Forward (3 kernels): chunk_state (dt, cumsum, chunk end states) -> state passing -> chunk_scan (outputs).
Backward (5 kernels): dstarts (+ dz) -> state passing backward -> dC -> dx/dB -> dt/A/dt_bias.
The stages and their maths are described in README.md beside this file.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..common.ssd_state_passing import state_passing_bwd, state_passing_fwd
from .chunk_scan import chunk_scan_fwd
from .chunk_scan_bwd import chunk_scan_bwd_dc, chunk_scan_bwd_dstarts
from .chunk_state import chunk_state_fwd
from .dt_bwd import dt_bwd
from .dx_db_bwd import dx_db_bwd
from .tiling import ssd_tiles, state_dtype, state_passing_tiles

# Largest head dimension and state size the kernels' whole-row tiles take.
MAX_HEADDIM = 128
MAX_DSTATE = 256


def size_reason(headdim: int, dstate: int) -> str | None:
    """Why the kernels cannot take this head dimension and state size, or None when they can."""
    if headdim > MAX_HEADDIM or dstate > MAX_DSTATE:
        return f"headdim {headdim} / dstate {dstate} (at most {MAX_HEADDIM} / {MAX_DSTATE})"
    return None


def unsupported_reason(x: Tensor, B: Tensor) -> str | None:
    """Why the kernels cannot take these inputs (then the PyTorch path runs), or None when they can."""
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        return f"{x.dtype} inputs (float32, float16 and bfloat16 only)"
    if (reason := size_reason(x.shape[-1], B.shape[-1])) is not None:
        return reason
    if x.shape[1] == 0:
        return "an empty sequence"
    return None


def _state_tiles(x: Tensor, B: Tensor, nchunks: int) -> tuple[int, int]:
    batch, _, nheads, headdim = x.shape
    return state_passing_tiles(batch * nheads, headdim * B.shape[-1], nchunks)


def ssd_fwd(x, dt, A, B, C, chunk_size, D, z, dt_bias, initial_states, dt_softplus, dt_limit):
    """(out, final states, what the backward needs: (dt processed, cs, chunk start states, pre-gate output))."""
    tiles = ssd_tiles(chunk_size, x.shape[-1], B.shape[-1], x.dtype)
    dt_proc, cs, chunk_states = chunk_state_fwd(x, dt, A, B, dt_bias, dt_softplus, dt_limit, chunk_size, tiles)
    block_pn, block_chunks = _state_tiles(x, B, cs.shape[2])
    starts, final = state_passing_fwd(chunk_states, cs, initial_states, state_dtype(x.dtype), block_pn, block_chunks)
    del chunk_states
    out, ypre = chunk_scan_fwd(x, B, C, D, z, dt_proc, cs, starts, tiles)
    return out, final, (dt_proc, cs, starts, ypre)


def ssd_bwd(dout, dfinal, x, dt, A, B, C, D, z, dt_bias, saved, dt_softplus, dt_limit, into=(None, None, None)):
    """(dx, ddt, dA, dB, dC, dD, dz, ddt_bias, d initial states) from :func:`ssd_fwd`'s ``saved``; ``into``:
    optional (dx, dB, dC) buffers (any strides) that those gradients are written into."""
    dt_proc, cs, starts, ypre = saved
    nheads = x.shape[2]
    tiles = ssd_tiles(cs.shape[3], x.shape[-1], B.shape[-1], x.dtype)
    dstarts, dz = chunk_scan_bwd_dstarts(dout, z, ypre, C, cs, nheads, tiles)
    block_pn, block_chunks = _state_tiles(x, B, cs.shape[2])
    dchunk, dinitial, ddecay = state_passing_bwd(
        dstarts, cs, starts, dfinal, state_dtype(x.dtype), block_pn, block_chunks
    )
    del dstarts
    dx_into, dB_into, dC_into = into
    dC, u = chunk_scan_bwd_dc(dout, z, x, B, C, dt_proc, cs, starts, tiles, dC=dC_into)
    dx, dB, parts, dD_part = dx_db_bwd(dout, z, x, B, C, D, dt_proc, cs, dchunk, tiles, dx=dx_into, dB=dB_into)
    ddt, dA, ddt_bias = dt_bwd(dt, dt_bias, A, dt_softplus, dt_limit, dt_proc, cs, parts, u, ddecay, tiles.block_t_bwd)
    dD = None
    if D is not None:
        dD = dD_part.sum((0, 1, 2))  # (heads, headdim)
        dD = (dD if D.dim() == 2 else dD.sum(-1)).to(D.dtype)
    return dx, ddt, dA.to(A.dtype), dB, dC, dD, dz, ddt_bias, dinitial


class SSDChunkScanFn(torch.autograd.Function):
    """Differentiable in x, dt, A, B, C, D, z, dt_bias and initial_states; the final states carry gradient."""

    @staticmethod
    def forward(ctx, x, dt, A, B, C, chunk_size, D, z, dt_bias, initial_states, dt_softplus, dt_limit):
        B_dtype, C_dtype = B.dtype, C.dtype
        if B.dtype != x.dtype or C.dtype != x.dtype:  # the matrix products take one operand dtype
            B, C = B.to(x.dtype), C.to(x.dtype)
        out, final, saved = ssd_fwd(x, dt, A, B, C, chunk_size, D, z, dt_bias, initial_states, dt_softplus, dt_limit)
        ctx.save_for_backward(x, dt, A, B, C, D, z, dt_bias, *saved)
        ctx.settings = (dt_softplus, dt_limit)
        ctx.input_dtypes = (B_dtype, C_dtype, None if initial_states is None else initial_states.dtype)
        ctx.set_materialize_grads(False)
        return out, final

    @staticmethod
    def backward(ctx, dout, dfinal):
        x, dt, A, B, C, D, z, dt_bias, *saved = ctx.saved_tensors
        if dout is None:
            dout = torch.zeros_like(x)
        dx, ddt, dA, dB, dC, dD, dz, ddt_bias, dinitial = ssd_bwd(
            dout, dfinal, x, dt, A, B, C, D, z, dt_bias, saved, *ctx.settings
        )
        B_dtype, C_dtype, initial_dtype = ctx.input_dtypes
        dinitial = dinitial.to(initial_dtype) if initial_dtype is not None else None
        ddt_bias = ddt_bias.to(dt_bias.dtype) if ddt_bias is not None else None
        return dx, ddt, dA, dB.to(B_dtype), dC.to(C_dtype), None, dD, dz, ddt_bias, dinitial, None, None


def ssd_chunk_scan_triton(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    chunk_size: int,
    D: Tensor | None = None,
    z: Tensor | None = None,
    dt_bias: Tensor | None = None,
    initial_states: Tensor | None = None,
    dt_softplus: bool = False,
    dt_limit: tuple[float, float] = (0.0, float("inf")),
    return_final_states: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """The SSD scan on the Triton kernels; inputs as checked by :func:`genossm.kernels.ssd_chunk_scan`."""
    out, final = SSDChunkScanFn.apply(
        x, dt, A, B, C, chunk_size, D, z, dt_bias, initial_states, dt_softplus, tuple(map(float, dt_limit))
    )
    return (out, final) if return_final_states else out
