"""``genossm memory --model CONFIG --seqlen L``: the predicted peak GPU memory of one training step in each memory
mode, the longest sequence that fits the GPU in each, and the mode ``--memory auto`` of the training commands picks.

How the prediction is made: genossm/training/memory_estimate.py.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Literal

from genossm.cli.options import add_options, option, resolve_options


@dataclass
class MemoryOptions:
    """Options of ``genossm memory``."""

    model: str = option(help="model preset name (configs/models) or model config file")
    seqlen: int = option(help="sequence length L in bases")
    batch: int = option(1, "sequences per forward pass (the micro-batch)")
    gpu_mem: float | None = option(None, "GPU memory in GiB (default: the current CUDA device's, else 80)")
    segment_len: int | None = option(
        None, "segment length of the segmented mode (default: 2^18; auto tries 3 x 2^18 down to 2^14)"
    )
    dtype: Literal["bfloat16", "float32"] = option("bfloat16", "activations: bfloat16 autocast or float32")
    task: Literal["lm", "classification"] = option(
        "lm", "lm: pretraining; classification: fine-tuning a classifier (no segmented mode)"
    )


def report(opts: MemoryOptions) -> str:
    """The table of predicted peaks per mode, the longest L that fits, and ``auto``'s choice, as text."""
    from genossm.bench.timing import format_table
    from genossm.presets import model_config
    from genossm.training.memory import MODES
    from genossm.training.memory_estimate import (
        AUTO_SEGMENT_LENS,
        DEFAULT_GPU_GIB,
        DEFAULT_SEGMENT_LEN,
        GIB,
        USABLE_FRACTION,
        StepMemory,
        StepShape,
        fit_plan,
        gpu_memory,
        usable_bytes,
    )

    if min(opts.seqlen, opts.batch, opts.segment_len or 1) < 1 or (opts.gpu_mem is not None and opts.gpu_mem <= 0):
        raise ValueError("--seqlen, --batch, --segment-len and --gpu-mem must be positive")
    memory = StepMemory(model_config(opts.model), opts.dtype, opts.task)
    if opts.gpu_mem is not None:
        gpu, where = int(opts.gpu_mem * GIB), "as given"
    elif (device := gpu_memory()) is not None:
        gpu, where = device, "this CUDA device"
    else:
        gpu, where = int(DEFAULT_GPU_GIB * GIB), "no CUDA device: the default"
    segment = opts.segment_len or DEFAULT_SEGMENT_LEN
    modes = [m for m in MODES if opts.task == "lm" or m != "segmented"]
    rows = []
    for mode in modes:
        peak = memory.estimate(opts.seqlen, opts.batch, mode, segment)
        rows.append(
            {
                "mode": mode,
                "peak_GiB": f"{peak.peak_gib:.2f}",
                "weights+AdamW": f"{peak.parameters / GIB:.2f}",
                "inputs": f"{peak.inputs / GIB:.2f}",
                "activations": f"{peak.activations / GIB:.2f}",
                "working": f"{peak.working / GIB:.2f}",
                "fits": "yes" if peak.peak <= usable_bytes(gpu) else "no",
                "longest_L": f"{memory.largest_seqlen(gpu, mode, opts.batch, segment):,}",
            }
        )
    try:
        segments = (opts.segment_len,) if opts.segment_len else AUTO_SEGMENT_LENS
        plan = fit_plan(memory, [StepShape(opts.seqlen, opts.batch)], gpu, modes, segments)
        segmented = f" with segments of {plan.segment_len:,}" if plan.mode == "segmented" else ""
        choice = f"--memory auto picks {plan.mode}{segmented}"
    except ValueError as err:
        choice = f"--memory auto stops before training: {err}"
    head = [
        f"{opts.model}: {memory.parameters:,} parameters; L = {opts.seqlen:,}, batch {opts.batch}, "
        f"{opts.dtype} activations, {opts.task} training step (forward, backward, AdamW)",
        f"GPU memory {gpu / GIB:.1f} GiB ({where}); a step fits in {USABLE_FRACTION:.0%} of it",
    ]
    if "segmented" in modes:
        head.append(f"segmented: segments of {segment:,}")
    return "\n".join([*head, "", format_table(rows), "", choice])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, MemoryOptions)


def run(args: argparse.Namespace) -> None:
    print(report(resolve_options(MemoryOptions, args)))
