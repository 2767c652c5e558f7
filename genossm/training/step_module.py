"""What every genossm training module shares: one data item is one optimiser step, run micro-batch by micro-batch.

Items hold tensors of shape (n_micro, micro_batch, ...). A module runs the micro-batches itself (manual
optimisation), so gradient accumulation follows the data (the sequence-length schedule of pretraining, the window
length of fine-tuning); a non-finite loss stops training with the step and micro-batch named.
"""

from __future__ import annotations

import contextlib
import resource

import lightning as L
import torch
from torch import Tensor, nn

from .graphs import GraphedMicroBatches, graphs_apply
from .memory import MemoryPlan
from .optim import OptimConfig, build_optimizer
from .sharding import shard


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; carries where it happened."""

    def __init__(self, step: int, micro_batch: int, value: float) -> None:
        super().__init__(f"loss is {value} at optimizer step {step} (data item {step}, micro-batch {micro_batch})")
        self.step, self.micro_batch = step, micro_batch


def shard_for_rank(x: Tensor, rank: int, world: int, even: bool = True) -> Tensor:
    """This rank's share of a (n_micro, micro_batch, ...) item: split micro-batches, else sequences. A training step
    must split evenly (gradients are averaged over ranks); a validation item (``even=False``, sums gathered over
    ranks) may leave a rank fewer micro-batches, or none."""
    if world == 1:
        return x
    if x.shape[0] % world == 0:
        return x[rank::world]
    if x.shape[1] % world == 0:
        return x[:, rank::world]
    if not even:
        return x[rank::world]
    raise ValueError(
        f"a step of {x.shape[0]} micro-batches of {x.shape[1]} sequences cannot be split over {world} devices; "
        "choose --tokens-per-step so that the sequences per step are a multiple of --devices"
    )


def gathered_sums(module: L.LightningModule, sums: list[Tensor], width: int) -> Tensor | None:
    """The validation sums of every rank added up, each a (width,) tensor, or None when a single process summed
    nothing; ``sums`` is emptied. A rank whose share was empty still takes part in the gather (with zeros), or the
    others would wait for it."""
    world = module.trainer.world_size
    if not sums and world == 1:
        return None
    total = torch.stack(sums).sum(0) if sums else torch.zeros(width, device=module.device)
    sums.clear()
    if world > 1:
        total = module.all_gather(total).reshape(-1, width).sum(0)
    return total


def peak_memory_gib(device: torch.device) -> float:
    """Peak memory so far: allocated CUDA memory, or the process's maximum resident set on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


class MicroBatchModule(L.LightningModule):
    """Base class: ``self.model`` trained with ``self.optim`` (AdamW, warm-up + cosine), optimised by hand."""

    model: nn.Module
    optim: OptimConfig
    memory: MemoryPlan
    cuda_graphs: bool = True
    """Replay small micro-batches from CUDA graphs (:mod:`.graphs`); a run setting, not a hyperparameter."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self._graphed: GraphedMicroBatches | None = None

    def configure_model(self) -> None:
        """Under ``--strategy fsdp`` (a device mesh exists), shard the model over the ranks (:mod:`.sharding`)."""
        if self.device_mesh is not None:
            shard(self.model, self.device_mesh["data_parallel"])

    def summed_loss(self, input_ids: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """(summed loss, a count the module reports) of one micro-batch."""
        raise NotImplementedError

    def micro_batch(
        self, input_ids: Tensor, labels: Tensor, scale: Tensor, index: int, last: bool
    ) -> tuple[Tensor, Tensor]:
        """:meth:`summed_loss` of micro-batch ``index`` of a step, and the backward of ``loss * scale``: replayed from
        a CUDA graph where :func:`.graphs.graphs_apply`, else eagerly (skipping the backward of a non-finite loss,
        which :meth:`check_finite` then reports; a graph runs it, and the step stops all the same)."""
        plain = self.memory.mode == "plain"
        if graphs_apply(self.device, self.trainer.world_size, plain, input_ids.numel(), self.cuda_graphs):
            if self._graphed is None:
                self._graphed = GraphedMicroBatches(self.model, self.summed_loss)
            replayed = self._graphed(input_ids, labels, scale, first=index == 0)
            if replayed is not None:
                return replayed
        with self.sync_context(last):
            loss, count = self.summed_loss(input_ids, labels)
            if torch.isfinite(loss):
                self.manual_backward(loss * scale)
        return loss, count

    def sync_context(self, last: bool) -> contextlib.AbstractContextManager:
        """Skip the gradient all-reduce on all but the last micro-batch of a step (DDP)."""
        wrapped = self.trainer.strategy.model
        return contextlib.nullcontext() if last or not hasattr(wrapped, "no_sync") else wrapped.no_sync()

    def rank_share(self, batch: dict[str, Tensor], even: bool = True) -> tuple[Tensor, Tensor]:
        """This rank's (input_ids, labels) of an item (:func:`shard_for_rank`; ``even=False`` for validation)."""
        rank, world = self.global_rank, self.trainer.world_size
        return tuple(shard_for_rank(batch[key], rank, world, even) for key in ("input_ids", "labels"))

    def check_finite(self, loss: Tensor, micro_batch: int) -> None:
        """Raise :class:`NonFiniteLossError` naming this step and micro-batch when ``loss`` is NaN or infinite."""
        if not torch.isfinite(loss):
            raise NonFiniteLossError(self.global_step, micro_batch, float(loss.detach()))

    def update(self) -> float:
        """Clip the accumulated gradients, take the optimiser and scheduler step; returns the rate just used."""
        optimizer, scheduler = self.optimizers(), self.lr_schedulers()
        self.clip_gradients(optimizer, gradient_clip_val=self.optim.grad_clip, gradient_clip_algorithm="norm")
        optimizer.step()
        optimizer.zero_grad(set_to_none=self._graphed is None)  # a graph adds into the same .grad tensors
        lr = scheduler.get_last_lr()[0]
        scheduler.step()
        return lr

    def configure_optimizers(self) -> dict:
        optimizer, scheduler = build_optimizer(self.model, self.optim)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
