"""``genossm generate`` throughput: new bases per second for several numbers of samples, each step replayed from a
CUDA graph or launched op by op (eager), with a preset model of random weights (speed does not depend on them) or
a language-model directory. The first call of each variant (graph capture, kernel compilation) is not timed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from genossm.cli.options import option
from genossm.data.tokenizer import TOKENS
from genossm.models import MambaLMHeadModel
from genossm.presets import model_config

from .report import write_json
from .timing import format_table, median_ms, pick_device


@dataclass
class GenerateBenchOptions:
    """Options of ``genossm bench generate``."""

    model: str = option("mamba1-1.4m", "model preset or config (random weights), or a language-model directory")
    samples: str = option("1,64,1024", "samples drawn together, comma-separated")
    length: int = option(2048, "new bases per sample in each timed call (a graph is captured in each)")
    modes: str = option("graph,eager", "step modes to time, comma-separated (graph: CUDA only)")
    prompt: int = option(1024, "bases of the (random) prompt read before sampling")
    repeats: int = option(3, "timed calls per row (the median is reported)")
    device: str = option("auto", "'auto' (CUDA when present), 'cpu' or 'cuda'")
    dtype: Literal["auto", "float32", "bfloat16"] = option("auto", "auto: bfloat16 autocast on GPU, float32 on CPU")
    out: Path | None = option(None, "write generate.json into this folder")


def load_model(name: str) -> MambaLMHeadModel:
    """A language-model directory, or a preset with random weights."""
    if Path(name).is_dir():
        from genossm.scoring import load_language_model

        return load_language_model(name)
    model = MambaLMHeadModel(model_config(name))
    model.tokens = list(TOKENS)
    return model


def run(opts: GenerateBenchOptions) -> list[dict[str, object]]:
    """Time every number of samples and step mode; print the table and return its rows."""
    from genossm.generation import Sampler

    device = pick_device(opts.device)
    model = load_model(opts.model)
    bfloat16 = None if opts.dtype == "auto" else opts.dtype == "bfloat16"
    prompt = np.random.default_rng(0).choice(np.array([TOKENS.index(b) for b in "ACGT"], np.uint8), opts.prompt)
    rows: list[dict[str, object]] = []
    modes = [m for m in opts.modes.split(",") if m == "eager" or device.type == "cuda"]
    for samples, mode in itertools.product([int(s) for s in opts.samples.split(",")], modes):
        sampler = Sampler(model, device=device, bfloat16=bfloat16, cuda_graph=mode == "graph")

        def call(sampler: Sampler = sampler, samples: int = samples) -> None:
            sampler.generate([prompt], opts.length, samples, progress=False)

        ms = median_ms(call, device, repeats=opts.repeats)
        rows.append(
            {
                "mode": mode,
                "samples": samples,
                "length": opts.length,
                "ms_per_step": ms / opts.length,
                "bases_per_s": samples * opts.length / ms * 1e3,
            }
        )
        print(format_table(rows[-1:]), flush=True)
    print(format_table(rows))
    if opts.out is not None:
        write_json(rows, opts.out / "generate.json", model=opts.model, device=str(device), prompt=opts.prompt)
    return rows
