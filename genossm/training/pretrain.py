"""``genossm pretrain``: causal next-base pretraining on a genome, from options to a saved model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import lightning as L
import torch

from genossm.cli.options import dump_options, option, plain_options
from genossm.data.datamodules import GenomeLMDataModule
from genossm.data.lm import LMDataConfig
from genossm.data.sample import sample_path
from genossm.data.tokenizer import TOKENS, VOCAB_SIZE
from genossm.fileio import atomic_write_text
from genossm.models import MambaConfig
from genossm.presets import model_config

from .lm_module import LMPretrainModule
from .memory import MemoryPlan
from .memory_estimate import StepShape, plan_for_run
from .optim import OptimConfig
from .run_dir import is_first_process, run_folder
from .sharding import full_state_dict
from .step_module import NonFiniteLossError
from .trainer import HardwareOptions, activation_dtype, build_trainer, token_budget


@dataclass
class PretrainOptions(HardwareOptions):
    """Options of ``genossm pretrain`` (YAML keys or ``--flags``)."""

    model: str = option("mamba1-1.4m", "model preset name (configs/models) or model config file")
    data: Path | None = option(None, "FASTA to train on (plain, gzip or bgzip); default: the bundled human sample")
    bed: Path | None = option(
        None, "BED of train/valid/test intervals (chrom start end split); default: split by region"
    )
    seqlen: int = option(1024, "sequence length L in bases")
    tokens_per_step: int | None = option(
        None, "tokens per optimizer step, constant at every L (default: 2^20 on GPU, 2^13 on CPU)"
    )
    max_tokens_per_micro_batch: int | None = option(
        None, "most tokens in one forward pass; more are accumulated (default: the whole step on GPU, 4096 on CPU)"
    )
    max_steps: int = option(1000, "optimizer steps")
    lr: float = option(2e-3, "peak learning rate (AdamW)")
    warmup_steps: int | None = option(None, "learning-rate warm-up steps (default: 5% of max_steps)")
    weight_decay: float = option(0.1, "AdamW weight decay (not on biases, norms, embeddings, A_log, D)")
    grad_clip: float = option(1.0, "gradient norm clipping")
    seqlen_warmup: bool = option(True, "warm the sequence length up, doubling from 1024, over the first 25% of steps")
    rc_aug: bool = option(False, "reverse-complement half of the training windows")
    memory: Literal["auto", "plain", "checkpoint", "segmented"] = option(
        "auto",
        "activation memory: keep all, recompute each block, or train the sequence in segments (each kept whole); "
        "auto: the fastest predicted to fit the GPU (`genossm memory`)",
    )
    segment_len: int | None = option(None, "segment length of --memory segmented (default: 2^18)")
    val_every: int = option(100, "validate every this many steps")
    valid_items: int = option(4, "validation items (each a step's worth of held-out windows)")
    checkpoint_every: int = option(100, "write a checkpoint every this many steps")
    num_workers: int = option(1, "data-loading worker processes (0: load in the training process)")
    seed: int = option(0, "seed of the model initialisation and the training windows")
    output: Path | None = option(None, "run folder (default: runs/pretrain-<date>-<time>); never overwritten")
    resume: bool = option(False, "continue the run in --output from its last checkpoint, with the same data order")


def memory_plan(opts: PretrainOptions, config: MambaConfig) -> MemoryPlan:
    """The activation-memory mode: as asked, or for 'auto' the fastest predicted to fit the GPU at every stage of
    the length schedule (by length without a GPU); fails with each mode's predicted peak when none fits."""
    data = data_config(opts)
    shapes = [StepShape(stage.seqlen, *reversed(data.shape(stage.seqlen))) for stage in data.stages]
    dtype = activation_dtype(opts.precision)
    return plan_for_run(opts.memory, config, shapes, "lm", dtype, opts.segment_len, segmented=opts.devices == 1)


def data_config(opts: PretrainOptions) -> LMDataConfig:
    """The data settings of a run (defaults that depend on the device are resolved here)."""
    tokens, micro = token_budget(opts.tokens_per_step, opts.max_tokens_per_micro_batch, opts.seqlen, 2**20)
    return LMDataConfig(
        fasta=opts.data or sample_path("human"),
        bed=opts.bed,
        seqlen=opts.seqlen,
        tokens_per_step=tokens,
        max_tokens_per_micro_batch=micro,
        max_steps=opts.max_steps,
        seqlen_warmup=opts.seqlen_warmup,
        rc_aug=opts.rc_aug,
        valid_items=opts.valid_items,
        num_workers=opts.num_workers,
        seed=opts.seed,
    )


def pretrain(opts: PretrainOptions) -> Path:
    """Train, checkpointing as it goes; returns the run folder (with the final model in ``model/``)."""
    run = run_folder(opts.output, "pretrain")
    if opts.resume and opts.output is None:
        raise ValueError("--resume needs --output: the run folder to continue")
    config = model_config(opts.model)
    if config.vocab_size != VOCAB_SIZE:
        raise ValueError(f"model {opts.model} has vocab_size {config.vocab_size}; the DNA tokenizer has {VOCAB_SIZE}")
    memory = memory_plan(opts, config)  # before anything is written or allocated
    data = GenomeLMDataModule(data_config(opts))
    data.setup()  # index the genome and place windows now, so bad data fails before anything is written
    checkpoint = None
    if opts.resume:
        checkpoint, step = run.resume_point()
        data.set_start_step(step)
    else:
        opts.tokens_per_step = data.config.tokens_per_step  # saved resolved: a resume elsewhere takes these steps
    if is_first_process():  # the other ranks of a multi-device run write nothing
        if not opts.resume:
            run.create()
        run.save_options(dump_options(opts))

    L.seed_everything(opts.seed, workers=True, verbose=False)
    optim = OptimConfig(
        lr=opts.lr,
        warmup_steps=opts.warmup_steps or max(1, opts.max_steps // 20),
        max_steps=opts.max_steps,
        weight_decay=opts.weight_decay,
        grad_clip=opts.grad_clip,
    )
    module = LMPretrainModule.create(config, optim, list(TOKENS), memory)
    module.cuda_graphs = opts.cuda_graphs
    trainer = build_trainer(run, opts, opts.max_steps, opts.val_every, opts.checkpoint_every)
    try:
        trainer.fit(module, datamodule=data, ckpt_path=checkpoint)
    except NonFiniteLossError as err:
        kept = (
            f"the last good checkpoint is {run.last_checkpoint}"
            if run.last_checkpoint.is_file()
            else "no checkpoint yet"
        )
        raise ValueError(f"training stopped: {err}; {kept} (lower --lr, then rerun with --resume)") from None
    except torch.cuda.OutOfMemoryError:
        raise ValueError(
            f"out of GPU memory at L={opts.seqlen} with --memory {memory.mode}: lower --max-tokens-per-micro-batch, "
            "or use --memory checkpoint (recompute blocks) or segmented (train the sequence in segments); "
            "`genossm memory` predicts each mode's peak"
        ) from None
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}  # validate() below clears the train ones
    if opts.valid_items and trainer.global_step % opts.val_every:
        trainer.validate(module, datamodule=data, verbose=False)  # held-out metrics of the final weights
        metrics |= {k: float(v) for k, v in trainer.callback_metrics.items()}
    weights = full_state_dict(module.model)  # every rank takes part when FSDP shards the weights
    if trainer.is_global_zero:
        module.model.save_pretrained(run.model, weights)
        summary = {"steps": trainer.global_step, "model": opts.model, "seqlen": opts.seqlen, **metrics}
        summary["options"] = plain_options(opts)  # the whole recipe beside the results
        atomic_write_text(run.path / "summary.json", json.dumps(summary, indent=2))
        print(f"model saved to {run.model}")
    return run.path
