"""A fine-tuning run: options, training, the saved classifier, and its held-out evaluation beside a k-mer baseline.

OUTPUT/ holds what every genossm run holds (genossm/training/run_dir.py: config.yaml, metrics.csv, checkpoints/,
model/) and, after training, ``summary.json`` (held-out metrics of the model and of the k-mer baseline on the same
windows) and ``confusion.png``.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from genossm.cli.options import dump_options, option, plain_options
from genossm.data.datamodules import SpeciesDataModule
from genossm.data.genome import Genome
from genossm.data.intervals import Interval
from genossm.fileio import atomic_write_text
from genossm.models import MambaConfig, MambaForSequenceClassification, from_pretrained
from genossm.presets import model_config
from genossm.training.memory import MemoryPlan
from genossm.training.memory_estimate import StepShape, plan_for_run
from genossm.training.optim import OptimConfig
from genossm.training.run_dir import RunDir, is_first_process, run_folder
from genossm.training.sharding import full_state_dict, is_sharded
from genossm.training.trainer import HardwareOptions, activation_dtype, build_trainer, token_budget

from .checkpoints import init_config, init_from
from .infer import WindowReader
from .kmer import KmerBaseline
from .metrics import evaluate, plot_confusion
from .module import ClassifierModule
from .run_data import build_data, heldout_regions, heldout_windows, kmer_training_windows, region_chunks

SUMMARY_NAME = "summary.json"
GPU_TOKENS_PER_STEP = 1 << 18
# Options a resumed run may change: how long it trains and where it runs, not what it learns from.
RESUMABLE = {
    "max_steps", "devices", "strategy", "precision", "cuda_graphs", "val_every", "checkpoint_every", "num_workers",
    "max_tokens_per_micro_batch", "resume",
}  # fmt: skip


@dataclass
class ClassifierTrainingOptions(HardwareOptions):
    """How a classifier is trained and evaluated (shared by ``genossm finetune`` and ``genossm study``)."""

    model: str = option("mamba1-1.4m", "model preset name or config file (ignored with --init: its architecture)")
    pooling: Literal["mean", "last"] = option("mean", "how the hidden states of a window become one vector")
    head_only: bool = option(False, "train the classification head only, with the backbone frozen")
    max_steps: int = option(1000, "optimizer steps")
    tokens_per_step: int | None = option(
        None,
        "tokens per optimizer step (windows per step = this / seqlen, at least 1; default: 2^18 on GPU, 2^13 on CPU)",
    )
    max_tokens_per_micro_batch: int | None = option(
        None, "most tokens in one forward pass, more are accumulated (default: the whole step on GPU, 4096 on CPU)"
    )

    def step_tokens(self, seqlen: int = 1) -> tuple[int, int]:
        """(tokens per step, most tokens per forward pass) at window length ``seqlen``, device defaults resolved."""
        return token_budget(self.tokens_per_step, self.max_tokens_per_micro_batch, seqlen, GPU_TOKENS_PER_STEP)

    lr: float = option(6e-4, "peak learning rate (AdamW, linear warm-up then cosine decay)")
    warmup_steps: int = option(100, "learning-rate warm-up steps (at most a tenth of --max-steps)")
    weight_decay: float = option(0.1, "AdamW weight decay (not on biases, norms, embeddings)")
    memory: Literal["auto", "plain", "checkpoint"] = option(
        "auto", "activation memory: keep all, or recompute each block; auto: the fastest predicted to fit the GPU"
    )
    rc_aug: bool = option(True, "reverse-complement each training window with probability 1/2")
    max_n_fraction: float = option(0.1, "windows with a larger fraction of N are not used")
    heldout_fraction: float = option(
        0.1, "without a BED split: share held out at the end of every record (windows) or of the records (records)"
    )
    eval_windows: int = option(256, "held-out windows per class (validation and final evaluation)")
    eval_bases: int = option(1 << 24, "at most this many held-out bases per class (at least 16 windows)")
    compare_modes: bool = option(True, "also classify the held-out regions window by window and stateful")
    kmer_k: int = option(5, "k of the k-mer baseline")
    kmer_windows: int = option(256, "training windows per class for the k-mer baseline")
    val_every: int = option(200, "validation every this many steps")
    checkpoint_every: int = option(200, "checkpoint every this many steps")
    num_workers: int = option(1, "data-loading worker processes (0: load in the training process)")
    seed: int = option(0, "seed of the initialisation and of the training windows")


@dataclass
class FinetuneOptions(ClassifierTrainingOptions):
    """Options of ``genossm finetune``."""

    classes: Path | None = option(
        None, "a folder with one FASTA per class (stem = label), or a TSV label<TAB>fasta[<TAB>bed]"
    )
    seqlen: int = option(1024, "window length L in bases")
    examples: Literal["windows", "records"] = option(
        "windows",
        "windows: windows of L bases anywhere in long sequences (chromosomes, genomes); records: each FASTA record "
        "or BED interval is one example (reads, enhancers, genes), a random window of it when longer than L, padded "
        "when shorter",
    )
    init: Path | None = option(None, "start from this model directory (genossm LM or classifier, or mamba_ssm)")
    output: Path | None = option(None, "run folder (default runs/finetune-DATE-TIME); must be new unless --resume")
    resume: bool = option(False, "continue the run in --output from its last checkpoint")


def open_run(opts: FinetuneOptions) -> tuple[RunDir, Path | None]:
    """Claim a new run folder, or check a resumed one; returns it and the checkpoint to resume from.

    Under multi-GPU data parallelism every process runs this; only the first one (rank 0) writes.
    """
    run = run_folder(opts.output, "finetune")
    opts.output = run.path
    writer = is_first_process()
    if not opts.resume:
        opts.tokens_per_step = opts.step_tokens(opts.seqlen)[0]  # saved resolved: a resume elsewhere learns the same
        if writer:
            run.create()
            run.save_options(dump_options(opts))
        return run, None
    run.check_resumable(plain_options(opts), RESUMABLE)
    if writer:
        run.save_options(dump_options(opts))
    if not run.last_checkpoint.is_file():
        warnings.warn(f"{run.path} has no checkpoint yet: training starts from step 0", stacklevel=2)
        return run, None
    checkpoint, _ = run.resume_point()
    return run, checkpoint


def memory_plan(opts: FinetuneOptions, config: MambaConfig, data: SpeciesDataModule) -> MemoryPlan:
    """The activation-memory mode: as asked, or for 'auto' the fastest predicted to fit the GPU (by length without
    one); fails with each mode's predicted peak when none fits. A frozen backbone keeps no activations."""
    if opts.head_only:
        return MemoryPlan()
    n_micro, batch = data.config.shape()
    shapes = [StepShape(opts.seqlen, batch, n_micro)]
    dtype = activation_dtype(opts.precision)
    return plan_for_run(opts.memory, config, shapes, "classification", dtype, segmented=False)


def build_module(
    opts: FinetuneOptions, labels: list[str], config: MambaConfig, memory: MemoryPlan
) -> tuple[ClassifierModule, str]:
    """The module to train, and where its weights come from ('scratch' or the --init directory)."""
    from genossm.data.tokenizer import TOKENS

    optim = OptimConfig(
        lr=opts.lr,
        warmup_steps=min(opts.warmup_steps, max(1, opts.max_steps // 10)),
        max_steps=opts.max_steps,
        weight_decay=opts.weight_decay,
    )
    module = ClassifierModule.create(
        config, labels, optim, opts.pooling, list(TOKENS), opts.seqlen, opts.head_only, memory
    )
    source = init_from(module.model, opts.init) if opts.init else "scratch"
    module.cuda_graphs = opts.cuda_graphs
    return module, source


def evaluate_classifier(
    classifier: WindowReader,
    held_out: tuple[np.ndarray, np.ndarray],
    train: tuple[np.ndarray, np.ndarray],
    kmer_k: int,
    out_dir: Path,
) -> dict[str, Any]:
    """Metrics of the model and of the k-mer baseline on the same held-out windows; writes confusion.png."""
    labels = classifier.labels
    windows, truth = held_out
    start = time.perf_counter()
    predicted = classifier.classify_windows(windows).argmax(-1)
    model_eval = evaluate(truth, predicted, labels)
    seconds = time.perf_counter() - start
    plot_confusion(model_eval, out_dir / "confusion.png", title=f"L = {windows.shape[1]:,}: {model_eval.summary()}")
    baseline = KmerBaseline(kmer_k).fit(*train)
    kmer_eval = evaluate(truth, baseline.predict(windows), labels)
    return {
        "model": model_eval.to_dict(),
        "kmer": {**kmer_eval.to_dict(), "k": kmer_k, "train_windows": len(train[1])},
        "eval_seconds": seconds,
    }


def compare_reading_modes(
    model: MambaForSequenceClassification, regions: list[tuple[int, Genome, Interval]], batch_tokens: int
) -> dict[str, Any]:
    """Window accuracy on held-out regions tiled by windows, each window read alone (windowed) or with the state
    carried from the windows before it (stateful): the same windows, with and without the context before them."""
    result: dict[str, Any] = {"regions": len(regions), "bases": sum(len(r[2]) for r in regions)}
    for mode in ("windowed", "stateful"):
        engine = WindowReader(model, stateful=mode == "stateful", batch_tokens=batch_tokens, per_window=True)
        truth, predicted = [], []
        for (label, _, _), record in zip(regions, engine.predict(region_chunks(regions)), strict=True):
            classified = [w.values for w in record.detail or [] if w.values is not None]
            truth += [label] * len(classified)
            predicted += [int(np.argmax(p)) for p in classified]
        result[mode] = evaluate(np.array(truth), np.array(predicted), engine.labels).to_dict()
    return result


def finetune(opts: FinetuneOptions) -> dict[str, Any] | None:
    """Train (or resume), save OUTPUT/model, evaluate on held-out windows; returns the summary (None off rank 0)."""
    if not opts.classes:
        raise ValueError("--classes is required: a folder with one FASTA per class, or a TSV manifest")
    data, labels = build_data(opts)
    config = init_config(opts.init) if opts.init else model_config(opts.model)
    memory = memory_plan(opts, config, data)  # before anything is written or allocated
    run, checkpoint = open_run(opts)
    torch.manual_seed(opts.seed)
    module, source = build_module(opts, labels, config, memory)
    trainer = build_trainer(run, opts, opts.max_steps, opts.val_every, opts.checkpoint_every)
    start = time.perf_counter()
    trainer.fit(module, datamodule=data, ckpt_path=checkpoint)
    train_seconds = time.perf_counter() - start
    weights = full_state_dict(module.model)  # every rank takes part when FSDP shards the weights
    if trainer.global_rank != 0:
        return None
    module.model.save_pretrained(run.model, weights)
    model = module.model
    if is_sharded(model):  # rank 0 alone evaluates: a whole copy of the weights
        model = from_pretrained(run.model).to(module.device)
    classifier = WindowReader(model, batch_tokens=opts.step_tokens(opts.seqlen)[0])
    held_out, train = heldout_windows(data), kmer_training_windows(data, opts.kmer_windows)
    summary = {
        "labels": labels,
        "seqlen": opts.seqlen,
        "init": source,
        "steps": trainer.global_step,
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_seconds": train_seconds,
        "options": plain_options(opts),  # the whole recipe (seed, steps, learning rate, data) beside the results
        **evaluate_classifier(classifier, held_out, train, opts.kmer_k, run.path),
    }
    if opts.compare_modes and opts.examples == "windows":  # records are read whole: there is no context to carry
        regions = heldout_regions(data, opts.seqlen, opts.eval_bases)
        summary["reading_modes"] = compare_reading_modes(model, regions, classifier.batch_tokens)
    atomic_write_text(run.path / SUMMARY_NAME, json.dumps(summary, indent=2))
    return summary


def read_summary(run: Path) -> dict[str, Any] | None:
    """The summary.json of a finished run, or None."""
    path = Path(run) / SUMMARY_NAME
    return json.loads(path.read_text()) if path.is_file() else None
