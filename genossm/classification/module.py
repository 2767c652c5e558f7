"""Fine-tuning a sequence classifier as a LightningModule.

One data item is one optimiser step: ``input_ids`` (n_micro, micro_batch, L) and ``labels`` (n_micro, micro_batch),
one class index per window. The loss is the mean cross-entropy over the step's windows. With ``head_only`` the
backbone is frozen and runs without autograd (no activations kept), so only the pooled features reach the head.
"""

from __future__ import annotations

import time
from dataclasses import asdict

import torch
import torch.nn.functional as F
from torch import Tensor

from genossm.data.tokenizer import PAD_ID
from genossm.models import MambaConfig, MambaForSequenceClassification
from genossm.training.memory import MemoryPlan
from genossm.training.optim import OptimConfig
from genossm.training.step_module import MicroBatchModule, gathered_sums, peak_memory_gib


class ClassifierModule(MicroBatchModule):
    """Cross-entropy training of a :class:`MambaForSequenceClassification`, whole model or head only."""

    def __init__(
        self,
        model_config: dict,
        labels: list[str],
        optim: dict,
        pooling: str = "mean",
        tokens: list[str] | None = None,
        seqlen: int | None = None,
        head_only: bool = False,
        memory: dict | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = MambaForSequenceClassification(MambaConfig.from_dict(model_config), labels, pooling)
        self.model.tokens, self.model.seqlen = tokens, seqlen
        self.optim = OptimConfig(**optim)
        self.memory = MemoryPlan(**(memory or {}))
        if self.memory.mode == "segmented":
            raise ValueError("segmented memory mode trains language models only; use --memory checkpoint")
        self.model.backbone.gradient_checkpointing = self.memory.checkpoint and not head_only
        if head_only:
            self.model.backbone.requires_grad_(False)
        self._val_sums: list[Tensor] = []

    def logits(self, input_ids: Tensor) -> Tensor:
        """Class logits (b, labels) of token windows (b, L), pooled over their positions that are not padding (a
        short record's window ends in ``[PAD]``). Through the model's own forward, which FSDP's root unit wraps; a
        frozen backbone records nothing for autograd (no parameter of it requires a gradient)."""
        return self.model(input_ids, input_ids != PAD_ID)

    def summed_loss(self, input_ids: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Summed cross-entropy (float32) and the number of correct predictions of one micro-batch."""
        logits = self.logits(input_ids).float()
        loss = F.cross_entropy(logits, labels, reduction="sum")
        return loss, (logits.argmax(-1) == labels).sum()

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        start = time.perf_counter()
        world = self.trainer.world_size
        input_ids, labels = self.rank_share(batch)
        count = labels.numel()
        total = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device)
        scale = torch.full((), 1 / count, device=self.device)
        for i in range(input_ids.shape[0]):
            loss, hits = self.micro_batch(input_ids[i], labels[i], scale, i, last=i == input_ids.shape[0] - 1)
            self.check_finite(loss, i)
            total += loss.detach()
            correct += hits
        lr = self.update()
        seconds = time.perf_counter() - start
        self.log_dict({"train/loss": total / count, "train/acc": correct / count}, prog_bar=True, sync_dist=world > 1)
        self.log_dict(
            {
                "train/lr": lr,
                "train/tokens_per_s": input_ids.numel() * world / seconds,
                "train/seqlen": float(input_ids.shape[-1]),
                "train/peak_mem_gib": peak_memory_gib(self.device),
            }
        )
        return total / count

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        input_ids, labels = self.rank_share(batch, even=False)
        for i in range(input_ids.shape[0]):
            loss, hits = self.summed_loss(input_ids[i], labels[i])
            self._val_sums.append(torch.stack([loss, hits.to(loss.dtype), loss.new_tensor(labels[i].numel())]))

    def on_validation_epoch_end(self) -> None:
        totals = gathered_sums(self, self._val_sums, 3)
        if totals is None:
            return
        loss, correct, count = totals
        self.log_dict({"val/loss": loss / count, "val/acc": correct / count}, prog_bar=True, rank_zero_only=True)

    @classmethod
    def create(
        cls,
        config: MambaConfig,
        labels: list[str],
        optim: OptimConfig,
        pooling: str = "mean",
        tokens: list[str] | None = None,
        seqlen: int | None = None,
        head_only: bool = False,
        memory: MemoryPlan | None = None,
    ) -> ClassifierModule:
        """Build from typed configs (what the hyperparameters of a checkpoint record)."""
        return cls(
            config.to_dict(), labels, asdict(optim), pooling, tokens, seqlen, head_only, asdict(memory or MemoryPlan())
        )
