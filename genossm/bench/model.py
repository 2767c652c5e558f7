"""Model throughput: forward or full training step (forward + backward + AdamW) of a preset, per length.

With ``--tokens`` the batch follows the length (2^20 tokens = 1024 x 1K = 1 x 1M), as in training. Where mamba_ssm
is importable, its own ``MambaLMHeadModel`` with the same config is timed in the same run.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from genossm.cli.options import option
from genossm.models import MambaConfig, MambaLMHeadModel
from genossm.presets import model_config
from genossm.training.graphs import GraphedMicroBatches, graphs_apply
from genossm.training.loss import summed_token_loss
from genossm.training.memory import MemoryPlan
from genossm.training.segmented import segmented_lm_backward

from .kernel_profile import kernel_times, report_breakdowns
from .report import plot_lines, write_json
from .timing import cuda_median_ms, format_table, median_ms, pick_device, wall_s


@dataclass
class ModelBenchOptions:
    """Options of ``genossm bench model``."""

    model: str = option("mamba1-1.4m", "model preset name or config file; several separated by commas")
    seqlen: str = option("1024", "sequence length, or several separated by commas")
    batch: int = option(1, "sequences per call (ignored when --tokens is given)")
    tokens: int | None = option(None, "tokens per call; the batch is tokens // seqlen")
    repeats: int = option(3, "timed calls per length (the median is reported)")
    train: bool = option(False, "time a training step (forward, backward, AdamW) instead of a forward")
    device: str = option("auto", "'auto' (CUDA when present), 'cpu' or 'cuda'")
    dtype: Literal["float32", "bfloat16"] = option("float32", "autocast dtype on CUDA; the CPU always runs float32")
    memory: str = option("plain", "activation memory of a training step: plain, checkpoint or segmented (comma list)")
    segment_len: int = option(2**18, "segment length of --memory segmented")
    cuda_graphs: bool = option(True, "replay a small plain training step's forward and backward from a CUDA graph, "
                               "as pretrain and finetune do (genossm's model only)")  # fmt: skip
    peer: bool = option(True, "also time mamba_ssm's MambaLMHeadModel when it is installed (plain memory only)")
    profile: bool = option(False, "also print the CUDA time of each kernel of every call (CUDA only)")
    out: Path | None = option(None, "write model.json (and model.png for several lengths) into this folder")


def peer_model(config: MambaConfig) -> nn.Module | None:
    """mamba_ssm's own model for the same config, or None when mamba_ssm is not installed."""
    if importlib.util.find_spec("mamba_ssm") is None:
        return None
    from mamba_ssm.models.config_mamba import MambaConfig as PeerConfig
    from mamba_ssm.models.mixer_seq_simple import MambaLMHeadModel as PeerModel

    fields = config.to_dict()
    if config.mixer == "Mamba2" and importlib.util.find_spec("causal_conv1d") is None:
        # mamba_ssm's fused Mamba-2 path needs the causal_conv1d package; without it, its unfused path runs
        fields["ssm_cfg"] = {**fields["ssm_cfg"], "use_mem_eff_path": False}
    return PeerModel(PeerConfig(**fields))


def step_fn(
    model: nn.Module, ids: torch.Tensor, train: bool, autocast: bool, plan: MemoryPlan, graphs: bool = False
) -> Callable[[], None]:
    """One forward, or one training step (forward, backward, AdamW) on ``ids`` under a memory plan; with
    ``graphs`` the step's forward and backward replay from a CUDA graph where training would (``graphs_apply``)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4) if train else None
    labels = ids.roll(-1, dims=1)
    graphed = None
    if isinstance(model, MambaLMHeadModel):
        model.backbone.gradient_checkpointing = plan.checkpoint
        if train and graphs_apply(ids.device, 1, plan.mode == "plain", ids.numel(), graphs):
            graphed = GraphedMicroBatches(model, lambda x, y: (summed_token_loss(model(x).logits, y), y.numel()))
            scale = torch.full((), 1 / ids.numel(), device=ids.device)

    def call() -> None:
        with torch.autocast(ids.device.type, torch.bfloat16, enabled=autocast), torch.set_grad_enabled(train):
            if optimizer is None:
                model(ids)
                return
            if plan.mode == "segmented":
                segmented_lm_backward(model, ids, labels, plan.segment_len, 1 / ids.numel())
            elif graphed is not None:
                graphed(ids, labels, scale, first=True)
            else:
                logits = model(ids).logits
                (summed_token_loss(logits, labels) / ids.numel()).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=graphed is None)

    return call


def run(opts: ModelBenchOptions) -> list[dict[str, object]]:
    """Time every model and length; print the table and return its rows."""
    device = pick_device(opts.device)
    autocast = device.type == "cuda" and opts.dtype == "bfloat16"
    rows, breakdowns = [], []
    for name in opts.model.split(","):
        config = model_config(name)
        impls = {"genossm": MambaLMHeadModel(config)}
        if opts.peer and device.type == "cuda" and (peer := peer_model(config)) is not None:
            impls["mamba_ssm"] = peer
        for impl, model in impls.items():
            model.to(device)
            params = sum(p.numel() for p in model.parameters())
            modes = opts.memory.split(",") if impl == "genossm" and opts.train else ["plain"]
            for seqlen, mode in ((int(s), m) for s in opts.seqlen.split(",") for m in modes):
                plan = MemoryPlan(mode, opts.segment_len if mode == "segmented" else 0)
                batch = max(1, opts.tokens // seqlen) if opts.tokens else opts.batch
                ids = torch.randint(0, config.vocab_size, (batch, seqlen), device=device)
                call = step_fn(model, ids, opts.train, autocast, plan, opts.cuda_graphs)
                row = {
                    "model": name,
                    "impl": impl,
                    "params": params,
                    "batch": batch,
                    "seqlen": seqlen,
                    "mode": f"train/{mode}" if opts.train else "fwd",
                }
                try:
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                        torch.cuda.reset_peak_memory_stats(device)
                    row["first_s"] = wall_s(call, device)  # compiles what this shape needs first
                    if device.type == "cuda":
                        ms = cuda_median_ms(call, repeats=opts.repeats, warmup=1)
                        row["peak_GiB"] = torch.cuda.max_memory_allocated(device) / 2**30
                    else:
                        ms = median_ms(call, device, repeats=opts.repeats)
                    row.update({"ms": ms, "tok_per_s": batch * seqlen / ms * 1e3})
                    if opts.profile and device.type == "cuda":
                        breakdowns.append({k: row[k] for k in ("model", "impl", "seqlen", "mode")})
                        breakdowns[-1]["kernels"] = kernel_times(call, repeats=1)
                except torch.cuda.OutOfMemoryError:
                    row.update({"ms": None, "tok_per_s": None, "note": "out of memory"})
                except Exception as err:  # a failing peer or mode is recorded, the other rows still run
                    if impl == "genossm":
                        raise
                    row.update({"ms": None, "tok_per_s": None, "note": f"{type(err).__name__}: {err}"[:120]})
                rows.append(row)
                print(format_table([row]).splitlines()[-1], flush=True)
                del ids, call
                model.zero_grad(set_to_none=True)
            model.cpu()
    if breakdowns:
        report_breakdowns(breakdowns, opts.out / "model_profile.json" if opts.out else None, top=15)
    print(f"{'training step' if opts.train else 'forward'} on {device} ({opts.dtype})")
    print(format_table(rows))
    if opts.out:
        write_json(rows, opts.out / "model.json", device=str(device), dtype=opts.dtype, train=opts.train)
        if len({r["seqlen"] for r in rows}) > 1:
            rows_ok = [dict(r, series=f"{r['model']} {r['impl']} {r['mode']}") for r in rows if r.get("ms")]
            plot_lines(
                rows_ok,
                "seqlen",
                "ms",
                "series",
                opts.out / "model.png",
                logy=True,
                title="training step" if opts.train else "forward",
                ylabel="ms per call",
            )
    return rows
