"""Exact training on sequences too long for one pass: split along L, carry the recurrent state, back-propagate
segment by segment in reverse, handing the state gradient from each segment to the one before.

Memory is set by the segment length, not by L; the gradients equal those of the unsegmented pass (they are not
truncated). Cost: the forward of every segment but the last, run once more (to find each segment's start states);
the shorter segment, when the length is not a multiple, comes first so that the last is a whole one.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from genossm.models import MambaLMHeadModel, MixerState

from .loss import summed_token_loss


def _clone(states: list[MixerState]) -> list[MixerState]:
    return [MixerState(s.conv.detach().clone(), s.ssm.detach().clone()) for s in states]


def _leaves(states: list[MixerState]) -> list[MixerState]:
    return [MixerState(s.conv.detach().requires_grad_(), s.ssm.detach().requires_grad_()) for s in states]


def _summed_loss(model: MambaLMHeadModel, input_ids: Tensor, labels: Tensor, states: list[MixerState]) -> Tensor:
    """Summed cross-entropy of one segment, continuing from ``states``; its logits are freed on return (the loss
    keeps what its backward needs), not held through the segment's backward."""
    return summed_token_loss(model.lm_head(model.backbone(input_ids, states)), labels)


def segmented_lm_backward(
    model: MambaLMHeadModel, input_ids: Tensor, labels: Tensor, segment_len: int, loss_scale: float | Tensor = 1.0
) -> Tensor:
    """Back-propagate ``loss_scale * sum(cross-entropy)`` over (batch, L) one segment at a time.

    Gradients accumulate into the parameters' ``.grad``, as ``loss.backward()`` would. Returns the summed loss
    (detached, float32).
    """
    batch, length = input_ids.shape
    first = length - (math.ceil(length / segment_len) - 1) * segment_len
    bounds = [(0, first)] + [(start, start + segment_len) for start in range(first, length, segment_len)]
    dtype = model.backbone.embedding.weight.dtype
    states = model.allocate_states(batch, dtype)
    starts = []
    with torch.no_grad():  # pass 1: the state at the start of every segment
        for start, end in bounds:
            starts.append(_clone(states))
            if end < length:
                model.backbone(input_ids[:, start:end], states)

    total = torch.zeros((), device=input_ids.device)
    grad_end: list[Tensor] | None = None
    for k in reversed(range(len(bounds))):  # pass 2: each segment again, with grad, last to first
        start, end = bounds[k]
        begin = _leaves(starts[k])
        live = [MixerState(s.conv, s.ssm) for s in begin]
        loss = _summed_loss(model, input_ids[:, start:end], labels[:, start:end], live)
        outputs: list[Tensor] = [loss * loss_scale]
        grads: list[Tensor | None] = [None]
        if grad_end is not None:
            ends = [t for s in live for t in (s.conv, s.ssm)]
            outputs += [t for t, g in zip(ends, grad_end, strict=True) if t.requires_grad]
            grads += [g for t, g in zip(ends, grad_end, strict=True) if t.requires_grad]
        torch.autograd.backward(outputs, [torch.ones_like(outputs[0]), *grads[1:]])
        grad_end = [t.grad if t.grad is not None else torch.zeros_like(t) for s in begin for t in (s.conv, s.ssm)]
        total += loss.detach()
    return total
