"""A mixer's weights as its ops take them, computed once for a stretch of recurrent steps instead of at every step.

A mixer hands its kernels A = -exp(A_log) and a few dtype conversions, which costs small kernels at every call:
nothing beside a training step or a long forward, but two of the eight or so kernels of a generation step's block
(H100, CUDA graph steps: the Mamba-1 1.4M model 0.33 -> 0.29 ms a step, the Mamba-2 0.8M 0.15 -> 0.14).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

from torch import nn

W = TypeVar("W")


class KeepsWeights(Generic[W]):
    """Base of the mixers: :meth:`weights` computes them (:meth:`_weights`) at every call, or returns those computed
    on entering :func:`weights_kept`."""

    _kept_weights: W | None = None

    def _weights(self) -> W:
        raise NotImplementedError

    def weights(self) -> W:
        """The parameters as the mixer ops take them."""
        return self._weights() if self._kept_weights is None else self._kept_weights


@contextmanager
def weights_kept(model: nn.Module) -> Iterator[None]:
    """Within the block, every mixer of ``model`` uses the weights computed on entering it; its parameters must not
    change meanwhile (generation), and no gradient reaches them through these weights."""
    mixers = [m for m in model.modules() if isinstance(m, KeepsWeights)]
    for mixer in mixers:
        mixer._kept_weights = mixer._weights()
    try:
        yield
    finally:
        for mixer in mixers:
            mixer._kept_weights = None
