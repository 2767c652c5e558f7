"""The Triton selective scan as one differentiable op (imported only when Triton runs; see ``interface.py``)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..common.tensors import backward_will_run
from .fused_bwd import scan_bwd
from .fused_fwd import exp2_rates, scan_fwd
from .tiling import ScanTiling, plan_scan


class SelectiveScanFn(torch.autograd.Function):
    """Forward saves the inputs and one float32 state per ``chunk`` positions; backward recomputes the rest."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, initial_state, delta_softplus, tiling: ScanTiling, save):
        A2 = exp2_rates(A)
        out, last, chunks = scan_fwd(
            u, delta, A2, B, C, D, z, delta_bias, delta_softplus, initial_state, tiling, save_chunks=save
        )
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, chunks)
        ctx.delta_softplus, ctx.tiling = delta_softplus, tiling
        ctx.initial_dtype = initial_state.dtype if initial_state is not None else None
        ctx.set_materialize_grads(False)
        return out, last

    @staticmethod
    def backward(ctx, dout, d_last):
        u, delta, A, B, C, D, z, delta_bias, chunks = ctx.saved_tensors
        if dout is None:
            dout = torch.zeros_like(u)
        A2 = exp2_rates(A)
        want_dh0 = ctx.needs_input_grad[8]
        du, ddelta, dA, dB, dC, dD, dz, dbias, dh0 = scan_bwd(
            dout, d_last, u, delta, A2, B, C, D, z, delta_bias, ctx.delta_softplus, chunks, ctx.tiling, want_dh0
        )
        return (
            du,
            ddelta,
            dA.to(A.dtype),
            dB,
            dC,
            dD.to(D.dtype) if dD is not None else None,
            dz,
            dbias.to(delta_bias.dtype) if dbias is not None else None,
            dh0.to(ctx.initial_dtype) if dh0 is not None else None,
            None,
            None,
            None,
        )


def selective_scan_fused(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    initial_state: Tensor | None = None,
    **tiling_overrides: int | bool | None,
) -> Tensor | tuple[Tensor, Tensor]:
    """:func:`selective_scan_fn` on the Triton kernels (inputs already checked).

    ``tiling_overrides`` are :func:`~.tiling.plan_scan`'s keyword choices (``tile``, ``segments``, ``chunk``,
    ``prefetch``, ``maxnreg``, ``fwd_block_d``): tests use them to exercise the multi-tile,
    multi-chunk and multi-segment paths on small inputs, benchmarks to compare variants.
    """
    batch, dim, seqlen = u.shape
    groups = 1 if B.dim() == 3 else B.shape[1]
    D = D.contiguous() if D is not None else None  # the kernels read D and delta_bias with unit stride
    delta_bias = delta_bias.contiguous() if delta_bias is not None else None
    tiling = plan_scan(batch, dim, A.shape[1], seqlen, groups, u.device, **tiling_overrides)
    inputs = (u, delta, A, B, C, D, z, delta_bias, initial_state)
    out, last = SelectiveScanFn.apply(*inputs, delta_softplus, tiling, backward_will_run(*inputs))
    return (out, last) if return_last_state else out
