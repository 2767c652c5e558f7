"""Recurrent state of a mixer: what lets Mamba read a sequence piece by piece at constant memory."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def state_dtype(dtype: torch.dtype) -> torch.dtype:
    """SSM states and the recurrent step run in float32 (float64 for a float64 model)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def next_conv_state(conv: Tensor, x: Tensor) -> Tensor:
    """The conv state after reading ``x`` (batch, channels, l): the last d_conv inputs of ``conv`` followed by ``x``.

    Built from the last d_conv columns only, as a new (batch, channels, d_conv) tensor: a slice of the whole
    ``cat([conv, x])`` would be a view that keeps a copy of x alive for as long as the state is carried (in
    segmented training, a segment-long buffer per block). Gradients flow to ``conv`` and ``x``.
    """
    width, length = conv.shape[-1], x.shape[-1]
    kept = min(width, length)
    return torch.cat([conv[:, :, kept:], x[:, :, length - kept :]], dim=-1)


@dataclass
class MixerState:
    """The state a mixer carries from one position to the next.

    conv: (batch, conv_channels, d_conv), the last d_conv inputs of the causal conv (mamba_ssm's ``conv_state``).
    ssm: the SSM state in float32, (batch, d_inner, d_state) for Mamba-1 or (batch, nheads, headdim, d_state)
    for Mamba-2 (mamba_ssm's ``ssm_state``).
    """

    conv: Tensor
    ssm: Tensor

    @classmethod
    def zeros(
        cls,
        batch_size: int,
        conv: tuple[int, int],
        ssm: tuple[int, ...],
        model_weight: Tensor,
        conv_weight: Tensor,
        dtype: torch.dtype | None = None,
    ) -> MixerState:
        """A zero state for ``batch_size`` sequences on the model's device: the conv window (batch_size, *conv) in
        ``dtype`` or the conv weight's, the scan state (batch_size, *ssm) in the state dtype of ``dtype`` or of the
        model's weights."""
        device = model_weight.device
        return cls(
            conv=torch.zeros(batch_size, *conv, device=device, dtype=dtype or conv_weight.dtype),
            ssm=torch.zeros(batch_size, *ssm, device=device, dtype=state_dtype(dtype or model_weight.dtype)),
        )

    def ssm_target(self) -> Tensor | None:
        """Where a step writes the new scan state: over this one (saving a copy of it per step), unless autograd
        records, which may need the old one."""
        return None if torch.is_grad_enabled() else self.ssm

    def detach_(self) -> MixerState:
        """Cut the autograd history (truncated back-propagation between windows)."""
        self.conv = self.conv.detach()
        self.ssm = self.ssm.detach()
        return self
