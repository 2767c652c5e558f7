"""AdamW with the usual exemptions from weight decay, and a linear warm-up then cosine decay of the rate."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class OptimConfig:
    """Optimiser settings of a training run."""

    lr: float = 6e-4
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    max_steps: int = 10_000
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices only: no decay on biases, norms, embeddings, or the parameters a module names in its
    ``no_weight_decay_params``."""
    decay, no_decay = [], []
    exempt_names = {
        f"{prefix}.{name}" if prefix else name
        for prefix, m in model.named_modules()
        for name in getattr(m, "no_weight_decay_params", ())
    }
    norm_or_embedding = {
        id(p)
        for m in model.modules()
        if isinstance(m, nn.Embedding | nn.LayerNorm) or type(m).__name__.startswith("RMSNorm")
        for p in m.parameters(recurse=False)
    }
    seen = set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        exempt = p.dim() < 2 or name in exempt_names or id(p) in norm_or_embedding
        (no_decay if exempt or name.endswith(".bias") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_cosine(step: int, warmup_steps: int, max_steps: int, min_ratio: float) -> float:
    """Multiplier of the base rate: linear from ~0 to 1 over ``warmup_steps``, then cosine down to ``min_ratio``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_optimizer(
    model: nn.Module, config: OptimConfig
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over :func:`parameter_groups` and its per-step warm-up + cosine scheduler."""
    optimizer = torch.optim.AdamW(parameter_groups(model, config.weight_decay), lr=config.lr, betas=config.betas)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, config.warmup_steps, config.max_steps, config.min_lr_ratio)
    )
    return optimizer, scheduler
