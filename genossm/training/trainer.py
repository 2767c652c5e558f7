"""The Lightning Trainer every genossm run uses: device and precision choice, checkpoints, logs, progress."""

from __future__ import annotations

import importlib.util
import logging
import warnings
from dataclasses import dataclass
from typing import Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar

from genossm.cli.options import option

from .csv_log import AppendingCSVLogger
from .run_dir import RunDir
from .sharding import fsdp_strategy


class _NoAdverts(logging.Filter):
    """Drops Lightning's advertising 'Tip' lines; every other message passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in record.getMessage()


logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_NoAdverts())
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
# validation sums are gathered over ranks by the modules themselves (step_module.gathered_sums)
warnings.filterwarnings("ignore", message=r".*sync_dist=True.*when logging on epoch level")


@dataclass
class HardwareOptions:
    """Where and how a run computes (shared by pretrain and finetune)."""

    devices: int = option(1, "GPUs to use (data parallel); without a GPU, that many CPU processes")
    strategy: Literal["auto", "ddp", "fsdp"] = option(
        "auto",
        "multi-GPU strategy: ddp (every GPU holds the whole model) or fsdp (parameters, gradients and optimizer state "
        "sharded over the GPUs, for models too large for one)",
    )
    precision: Literal["auto", "32-true", "bf16-mixed"] = option(
        "auto", "numeric precision: auto = bfloat16 mixed precision on GPU, float32 on CPU"
    )
    cuda_graphs: bool = option(
        True,
        "on one GPU, replay each micro-batch of up to 2^18 tokens (forward, loss, backward) from a CUDA graph: small "
        "steps are otherwise bound by the host launching hundreds of kernels",
    )


CPU_TOKENS_PER_STEP, CPU_TOKENS_PER_MICRO_BATCH = 2**13, 2**12


def token_budget(
    tokens_per_step: int | None, max_tokens_per_micro_batch: int | None, seqlen: int, gpu_tokens_per_step: int
) -> tuple[int, int]:
    """(tokens per optimizer step, at least ``seqlen``; most tokens per forward pass, a longer window taking one pass
    alone) with the device's defaults for what is not given: on a GPU ``gpu_tokens_per_step`` in one pass; on the
    CPU 2^13 in passes of 2^12 (the PyTorch path keeps every scan step for the backward, several hundred kB per
    token for a 1.4M model: a GPU's budget of 2^18 tokens in one pass would need over 100 GB)."""
    gpu = torch.cuda.is_available()
    tokens = tokens_per_step or (gpu_tokens_per_step if gpu else CPU_TOKENS_PER_STEP)
    micro = max_tokens_per_micro_batch or (tokens if gpu else CPU_TOKENS_PER_MICRO_BATCH)
    return max(tokens, seqlen), micro


def resolve_precision(precision: str) -> str:
    """'auto' -> bf16-mixed on CUDA, 32-true elsewhere."""
    if precision != "auto":
        return precision
    return "bf16-mixed" if torch.cuda.is_available() else "32-true"


def activation_dtype(precision: str) -> str:
    """The dtype of the activations under a precision setting: 'bfloat16' (mixed precision) or 'float32'."""
    return "bfloat16" if resolve_precision(precision).startswith("bf16") else "float32"


def build_trainer(
    run: RunDir,
    hardware: HardwareOptions,
    max_steps: int,
    val_every: int,
    checkpoint_every: int,
) -> L.Trainer:
    """A Trainer writing checkpoints under ``run.checkpoints`` (last.ckpt always the newest) and metrics.csv."""
    accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    devices = hardware.devices
    strategy = hardware.strategy if devices > 1 else "auto"
    if strategy == "fsdp":
        strategy = fsdp_strategy(devices)
    loggers: list = [AppendingCSVLogger(run.path)]
    if importlib.util.find_spec("tensorboard") is not None:
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(run.path, name="tensorboard", version=""))
    # Manual optimisation: a checkpoint holds the state after the step it is taken at, which is what resuming needs.
    warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")
    checkpoints = ModelCheckpoint(
        dirpath=run.checkpoints,
        filename="{step}",
        every_n_train_steps=checkpoint_every,
        save_last=True,
        save_top_k=1,
        monitor="step",
        mode="max",
    )
    return L.Trainer(
        accelerator=accelerator,
        devices=devices,
        strategy=strategy,
        precision=resolve_precision(hardware.precision),
        max_steps=max_steps,
        val_check_interval=val_every,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        logger=loggers,
        callbacks=[checkpoints, TQDMProgressBar(refresh_rate=1)],
        enable_model_summary=False,
        default_root_dir=run.path,
        use_distributed_sampler=False,  # an item is a whole optimizer step: every rank reads it and takes its share
    )
