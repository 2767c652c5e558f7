"""Check the memory estimator without a GPU: trace what a training step allocates on the CPU through the Triton
path, with every Triton kernel replaced by a no-op (what is left are the launchers' and PyTorch's allocations, the
same as on the GPU), and compare the bytes per token with genossm/training/memory_estimate.py.

    python scripts/trace_step_memory.py --model mamba1-0.7m --mode checkpoint [--batch 2] [--dtype float32]

The step (forward, backward, AdamW) runs at two lengths, or for ``segmented`` at four segments of two lengths; the
difference of the peaks, divided by the tokens added, is the traced cost of a token. It relies on Triton's
interpreter (TRITON_INTERPRET=1, set here) and on the PyTorch profiler's allocation events, details that may change
between versions; the kernels' outputs are garbage, only the sizes of what they allocate matter.
"""

from __future__ import annotations

import argparse
import os

os.environ["TRITON_INTERPRET"] = "1"
os.environ["GENOSSM_KERNELS"] = "triton"

import torch
import torch.nn.functional as F
import triton.runtime.interpreter as interpreter
from torch.profiler import ProfilerActivity, profile

from genossm.models import MambaLMHeadModel
from genossm.presets import model_config
from genossm.training.memory import MODES, MemoryPlan
from genossm.training.memory_estimate import StepMemory
from genossm.training.segmented import segmented_lm_backward

interpreter.InterpretedFunction.run = lambda self, *args, **kwargs: None  # kernels allocate nothing themselves


def summed_loss(model: MambaLMHeadModel, ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    logits = model(ids).logits  # freed when this returns, as in training
    return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), reduction="sum")


def traced_peak(model: MambaLMHeadModel, batch: int, seqlen: int, plan: MemoryPlan, autocast: bool) -> int:
    """Bytes allocated at the peak of one training step above what was allocated before it."""
    model.backbone.gradient_checkpointing = plan.checkpoint
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(0, model.config.vocab_size, (batch, seqlen))
    labels = ids.roll(-1, dims=1)

    def step() -> None:
        with torch.autocast("cpu", torch.bfloat16, enabled=autocast):
            if plan.mode == "segmented":
                segmented_lm_backward(model, ids, labels, plan.segment_len)
            else:
                summed_loss(model, ids, labels).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # the optimizer's state exists before the traced step, as in training
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    sizes = []

    def walk(nodes) -> None:
        for node in nodes:
            if type(node.extra_fields).__name__ == "_ExtraFields_Allocation":
                sizes.append((node.start_time_ns, node.extra_fields.alloc_size))
            walk(node.children)

    walk(prof.profiler.kineto_results.experimental_event_tree())
    live = peak = 0
    for _, size in sorted(sizes):
        live += size
        peak = max(peak, live)
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="mamba1-0.7m", help="model preset name or config file")
    parser.add_argument("--mode", choices=MODES, default="plain")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16")
    parser.add_argument(
        "--seqlen",
        type=int,
        default=4096,
        help="the shorter length (twice it: the longer); long enough for wide models",
    )
    args = parser.parse_args()

    config = model_config(args.model)
    torch.manual_seed(0)
    model = MambaLMHeadModel(config)
    memory = StepMemory(config, args.dtype)
    segments = 4 if args.mode == "segmented" else 1
    traced, predicted = [], []
    for seqlen in (args.seqlen, 2 * args.seqlen):
        plan = MemoryPlan(args.mode, seqlen if args.mode == "segmented" else 0)
        traced.append(traced_peak(model, args.batch, segments * seqlen, plan, args.dtype == "bfloat16"))
        estimate = memory.estimate(segments * seqlen, args.batch, args.mode, seqlen)
        predicted.append(estimate.activations + estimate.working)
    tokens = args.batch * args.seqlen  # tokens added per segment (or per sequence)
    traced_per_token = (traced[1] - traced[0]) / tokens
    predicted_per_token = (predicted[1] - predicted[0]) / tokens
    print(
        f"{args.model} {args.mode} batch {args.batch} {args.dtype}: bytes per token traced {traced_per_token:,.1f}, "
        f"predicted {predicted_per_token:,.1f} (activations and working set; "
        f"{predicted_per_token / traced_per_token - 1:+.2%})"
    )


if __name__ == "__main__":
    main()
