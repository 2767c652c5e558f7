"""Public selective scan: mamba_ssm's ``selective_scan_fn`` signature, checked inputs, one dispatch."""

from __future__ import annotations

import torch
from torch import Tensor

from ..backend import use_triton
from .chunked import selective_scan_chunked


def _check(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D, z, delta_bias, initial_state) -> None:
    if u.dim() != 3:
        raise ValueError(f"u must be (batch, dim, seqlen), got shape {tuple(u.shape)}")
    batch, dim, seqlen = u.shape
    if delta.shape != u.shape:
        raise ValueError(f"delta must have u's shape {tuple(u.shape)}, got {tuple(delta.shape)}")
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f"A must be (dim={dim}, dstate), got {tuple(A.shape)}")
    if A.is_complex():
        raise ValueError("complex A is not supported")
    dstate = A.shape[1]
    for name, BC in (("B", B), ("C", C)):
        ok = (BC.dim() == 3 and BC.shape == (batch, dstate, seqlen)) or (
            BC.dim() == 4 and BC.shape[0] == batch and BC.shape[2:] == (dstate, seqlen) and dim % BC.shape[1] == 0
        )
        if not ok:
            raise ValueError(
                f"{name} must be (batch, dstate, seqlen) = {(batch, dstate, seqlen)} or (batch, groups, dstate, "
                f"seqlen) with dim divisible by groups, got {tuple(BC.shape)}"
            )
    for name, vec in (("D", D), ("delta_bias", delta_bias)):
        if vec is not None and vec.shape != (dim,):
            raise ValueError(f"{name} must be ({dim},), got {tuple(vec.shape)}")
    if z is not None and z.shape != u.shape:
        raise ValueError(f"z must have u's shape {tuple(u.shape)}, got {tuple(z.shape)}")
    if initial_state is not None and initial_state.shape != (batch, dim, dstate):
        raise ValueError(f"initial_state must be {(batch, dim, dstate)}, got {tuple(initial_state.shape)}")


def selective_scan_fn(
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
) -> Tensor | tuple[Tensor, Tensor]:
    """Mamba-1 selective scan (see ``reference.py`` for the recurrence), differentiable in every input.

    Args:
        u, delta: (batch, dim, seqlen), float32 / bfloat16 / float16. A: (dim, dstate), float32.
        B, C: (batch, dstate, seqlen) or (batch, groups, dstate, seqlen). D, delta_bias: (dim,). z: like u.
        initial_state: (batch, dim, dstate) state before the first position (genossm extension; mamba_ssm
            starts from zero).
    Returns:
        out like u and, with ``return_last_state``, the float32 state after the last position; gradients flow
        into every input (``initial_state`` included) and from the returned state.

    CUDA tensors run the fused Triton kernels (float64 and empty sequences take the PyTorch path); everything
    else runs the chunked PyTorch scan. ``genossm.kernels.set_backend`` / ``GENOSSM_KERNELS`` force either.
    """
    _check(u, delta, A, B, C, D, z, delta_bias, initial_state)
    args = (u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, initial_state)
    if u.dtype != torch.float64 and u.shape[-1] > 0 and use_triton(u):
        from .fused import selective_scan_fused  # Triton is imported only here

        return selective_scan_fused(*args)
    return selective_scan_chunked(*args)
