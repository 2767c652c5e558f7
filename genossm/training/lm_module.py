"""Next-base pretraining as a LightningModule.

One data item is one optimiser step: ``input_ids`` and ``labels`` of shape (n_micro, micro_batch, L), with a
constant number of tokens per step whatever L is. The module runs the micro-batches itself (manual optimisation),
so the accumulation follows the sequence-length schedule, and it names the step and micro-batch of a non-finite
loss instead of training on.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict

import torch
from torch import Tensor

from genossm.data.steps import IGNORE_INDEX
from genossm.models import MambaConfig, MambaLMHeadModel

from .loss import summed_token_loss
from .memory import MemoryPlan
from .optim import OptimConfig
from .segmented import segmented_lm_backward
from .step_module import MicroBatchModule, gathered_sums, peak_memory_gib


class LMPretrainModule(MicroBatchModule):
    """Causal next-base language modelling over a :class:`MambaLMHeadModel`."""

    def __init__(
        self, model_config: dict, optim: dict, tokens: list[str] | None = None, memory: dict | None = None
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = MambaLMHeadModel(MambaConfig.from_dict(model_config))
        self.model.tokens = tokens
        self.optim = OptimConfig(**optim)
        self.memory = MemoryPlan(**(memory or {}))
        self.model.backbone.gradient_checkpointing = self.memory.checkpoint
        self._val_sums: list[Tensor] = []

    def summed_loss(self, input_ids: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Summed cross-entropy (float32) and the number of predicted positions of one micro-batch."""
        loss = summed_token_loss(self.model(input_ids).logits, labels)
        return loss, (labels != IGNORE_INDEX).sum()

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        start = time.perf_counter()
        world = self.trainer.world_size
        input_ids, labels = self.rank_share(batch)
        count = (labels != IGNORE_INDEX).sum().clamp(min=1)
        total = torch.zeros((), device=self.device)
        segmented = self.memory.mode == "segmented" and input_ids.shape[-1] > self.memory.segment_len
        if segmented and world > 1:
            raise ValueError("segmented memory mode trains on one device; use checkpoint mode with several")
        for i in range(input_ids.shape[0]):
            if segmented:
                loss = segmented_lm_backward(self.model, input_ids[i], labels[i], self.memory.segment_len, 1 / count)
            else:
                loss, _ = self.micro_batch(input_ids[i], labels[i], 1 / count, i, last=i == input_ids.shape[0] - 1)
            self.check_finite(loss, i)
            total += loss.detach()
        lr = self.update()

        mean = total / count
        seconds = time.perf_counter() - start
        tokens = int(count) * world
        self.log_dict(
            {"train/loss": mean, "train/ppl": mean.exp(), "train/bits_per_base": mean / math.log(2)},
            prog_bar=True,
            sync_dist=world > 1,
        )
        self.log_dict(
            {
                "train/lr": lr,
                "train/tokens_per_s": tokens / seconds,
                "train/seqlen": float(input_ids.shape[-1]),
                "train/peak_mem_gib": peak_memory_gib(self.device),
            },
        )
        return mean

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        input_ids, labels = self.rank_share(batch, even=False)
        for i in range(input_ids.shape[0]):
            loss, count = self.summed_loss(input_ids[i], labels[i])
            self._val_sums.append(torch.stack([loss, count.to(loss.dtype)]))

    def on_validation_epoch_end(self) -> None:
        totals = gathered_sums(self, self._val_sums, 2)
        if totals is None:
            return
        loss, count = totals
        mean = loss / count.clamp(min=1)
        self.log_dict(
            {"val/loss": mean, "val/ppl": mean.exp(), "val/bits_per_base": mean / math.log(2)},
            prog_bar=True,
            rank_zero_only=True,
        )

    @classmethod
    def create(
        cls, config: MambaConfig, optim: OptimConfig, tokens: list[str] | None, memory: MemoryPlan | None = None
    ) -> LMPretrainModule:
        """Build from typed configs (what the hyperparameters of a checkpoint record)."""
        return cls(config.to_dict(), asdict(optim), tokens, asdict(memory or MemoryPlan()))
