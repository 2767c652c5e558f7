"""Public SSD scan: mamba_ssm's ``mamba_chunk_scan_combined`` signature, checked inputs, one dispatch."""

from __future__ import annotations

import warnings
from functools import cache

from torch import Tensor

from ..backend import get_backend, use_triton
from .chunked import ssd_chunked

# The PyTorch path's cost inside a chunk grows with the chunk (Q x Q matrices); results do not depend on it.
TORCH_CHUNK = 64


def _check(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D, z, dt_bias, initial_states) -> None:
    if x.dim() != 4:
        raise ValueError(f"x must be (batch, seqlen, nheads, headdim), got shape {tuple(x.shape)}")
    batch, seqlen, nheads, headdim = x.shape
    if dt.shape != (batch, seqlen, nheads):
        raise ValueError(f"dt must be {(batch, seqlen, nheads)}, got {tuple(dt.shape)}")
    if A.shape != (nheads,):
        raise ValueError(f"A must be ({nheads},), got {tuple(A.shape)}")
    if B.dim() != 4 or B.shape[:2] != (batch, seqlen) or nheads % B.shape[2]:
        raise ValueError(
            f"B must be (batch, seqlen, ngroups, dstate) with nheads divisible by ngroups, got {tuple(B.shape)}"
        )
    if C.shape != B.shape:
        raise ValueError(f"C must have B's shape {tuple(B.shape)}, got {tuple(C.shape)}")
    if D is not None and D.shape not in ((nheads,), (nheads, headdim)):
        raise ValueError(f"D must be ({nheads},) or ({nheads}, {headdim}), got {tuple(D.shape)}")
    if z is not None and z.shape != x.shape:
        raise ValueError(f"z must have x's shape {tuple(x.shape)}, got {tuple(z.shape)}")
    if dt_bias is not None and dt_bias.shape != (nheads,):
        raise ValueError(f"dt_bias must be ({nheads},), got {tuple(dt_bias.shape)}")
    expected = (batch, nheads, headdim, B.shape[-1])
    if initial_states is not None and initial_states.shape != expected:
        raise ValueError(f"initial_states must be {expected}, got {tuple(initial_states.shape)}")


@cache
def _warn_fallback(reason: str) -> None:
    warnings.warn(f"genossm: the SSD Triton kernels do not take {reason}; using the PyTorch path", stacklevel=3)


def ssd_chunk_scan(
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
    """Mamba-2 SSD scan (see ``reference.py`` for the recurrence), differentiable in every input.

    Args:
        x: (batch, seqlen, nheads, headdim). dt: (batch, seqlen, nheads). A: (nheads,).
        B, C: (batch, seqlen, ngroups, dstate). chunk_size: positions per chunk of the chunked algorithm.
        D: (nheads,) or (nheads, headdim). z: like x (output gate). dt_bias: (nheads,).
        initial_states: (batch, nheads, headdim, dstate).
    Returns:
        out like x and, with ``return_final_states``, the float32 final states (batch, nheads, headdim, dstate).

    CUDA tensors run the Triton kernels (``triton_scan.py``), anything else the chunked PyTorch path; both give
    gradients for every tensor input, and the final states carry gradient back (segment-by-segment training).
    """
    _check(x, dt, A, B, C, D, z, dt_bias, initial_states)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    if use_triton(x):
        from .triton_scan import ssd_chunk_scan_triton, unsupported_reason

        reason = unsupported_reason(x, B)
        if reason is None:
            return ssd_chunk_scan_triton(
                x, dt, A, B, C, chunk_size, D, z, dt_bias, initial_states, dt_softplus, dt_limit, return_final_states
            )
        if get_backend() == "triton":
            raise ValueError(f"ssd_chunk_scan: GENOSSM_KERNELS=triton, but the Triton kernels do not take {reason}")
        _warn_fallback(reason)
    return ssd_chunked(
        x,
        dt,
        A,
        B,
        C,
        min(chunk_size, TORCH_CHUNK),
        D,
        z,
        dt_bias,
        dt_softplus,
        dt_limit,
        initial_states,
        return_final_states,
    )
