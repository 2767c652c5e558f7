"""Model throughput: forward (or forward + backward) tokens per second of a preset at one length."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from genossm.cli.options import option
from genossm.models import MambaLMHeadModel
from genossm.presets import model_config

from .timing import format_table, median_ms, pick_device


@dataclass
class ModelBenchOptions:
    """Options of ``genossm bench model``."""

    model: str = option("mamba1-1.4m", "model preset name or config file")
    seqlen: str = option("1024", "sequence length, or several separated by commas")
    batch: int = option(1, "sequences per call")
    repeats: int = option(3, "timed calls per length (the median is reported)")
    train: bool = option(False, "time forward + backward instead of forward only")
    device: str = option("auto", "'auto' (CUDA when present), 'cpu' or 'cuda'")
    dtype: Literal["float32", "bfloat16"] = option("float32", "autocast dtype on CUDA; the CPU always runs float32")
    json: Path | None = option(None, "also write the results to this JSON file")


def run(opts: ModelBenchOptions) -> list[dict[str, object]]:
    """Time the model at each length; print the table and return its rows."""
    device = pick_device(opts.device)
    config = model_config(opts.model)
    model = MambaLMHeadModel(config).to(device)
    params = sum(p.numel() for p in model.parameters())
    autocast = device.type == "cuda" and opts.dtype == "bfloat16"
    rows = []
    for seqlen in (int(s) for s in opts.seqlen.split(",")):
        ids = torch.randint(0, config.vocab_size, (opts.batch, seqlen), device=device)

        def call(ids=ids) -> None:
            with torch.autocast(device.type, torch.bfloat16, enabled=autocast), torch.set_grad_enabled(opts.train):
                logits = model(ids).logits
                if opts.train:
                    logits.float().logsumexp(-1).mean().backward()

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        ms = median_ms(call, device, repeats=opts.repeats)
        row = {
            "model": opts.model,
            "params": params,
            "device": device.type,
            "batch": opts.batch,
            "seqlen": seqlen,
            "mode": "fwd+bwd" if opts.train else "fwd",
            "ms": ms,
            "Mtok/s": opts.batch * seqlen / ms / 1e3,
        }
        if device.type == "cuda":
            row["peak_GiB"] = torch.cuda.max_memory_allocated(device) / 2**30
        rows.append(row)
    print(f"{opts.model}: {params:,} parameters on {device}")
    print(format_table(rows))
    if opts.json:
        opts.json.write_text(json.dumps(rows, indent=2))
    return rows
