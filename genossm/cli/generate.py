"""``genossm generate --model DIR``: sample new DNA after a prompt (``--prompt``), after every record of a FASTA
(``--prompt-fasta``), or from scratch, with a language model.

The output is FASTA: one record ``>{prompt}_sample{i}`` (i from 1) per sample, holding only the new bases, 80 a
line. How bases are drawn is described in genossm/generation/sampler.py.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from genossm.cli.options import add_options, option, resolve_options
from genossm.cli.output import InferenceOptions, check_new_output, open_output

LINE_BASES = 80
NO_PROMPT = "unconditional"  # the name of the samples drawn from scratch


@dataclass
class GenerateOptions(InferenceOptions):
    """Options of ``genossm generate``."""

    model: Path = option(help="language-model directory, as written by genossm pretrain (OUTPUT/model) or mamba_ssm")
    prompt: str | None = option(
        None, "DNA to continue (A, C, G, T, N); default: none, the first base drawn uniformly from A, C, G, T"
    )
    prompt_fasta: Path | None = option(None, "FASTA file whose every record is a prompt (instead of --prompt)")
    length: int = option(1000, "new bases per sample")
    num: int = option(1, "samples per prompt")
    temperature: float = option(1.0, "divide the logits by this; 0 takes the most likely base (greedy)")
    top_k: int | None = option(None, "draw only among the k most likely bases")
    top_p: float | None = option(
        None, "draw only among the most likely bases whose probabilities add up to at least this (nucleus)"
    )
    seed: int = option(0, "random seed: the same seed gives the same samples on the same device")
    output: Path | None = option(
        None, "write the FASTA to this file (it must not exist yet) instead of standard output"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, GenerateOptions)


def run(args: argparse.Namespace) -> None:
    from genossm.generation import Sampler, Sampling
    from genossm.inference import dtype_choice, resolve_device
    from genossm.scoring import load_language_model

    opts = resolve_options(GenerateOptions, args)
    check_new_output(opts.output)
    sampling = Sampling(opts.temperature, opts.top_k, opts.top_p)
    prompts = read_prompts(opts.prompt, opts.prompt_fasta)
    device = resolve_device(opts.device)
    sampler = Sampler(load_language_model(opts.model), sampling, device=device, bfloat16=dtype_choice(opts.dtype))
    start = time.perf_counter()
    tokens = sampler.generate([ids for _, ids in prompts], opts.length, opts.num, opts.seed, progress=opts.progress)
    seconds = time.perf_counter() - start
    with open_output(opts.output) as out:
        write_samples(out, [name for name, _ in prompts], tokens, opts.num, description(opts))
    print(
        f"generated {tokens.size:,} bases ({len(tokens):,} samples of {opts.length:,}) on {device} in "
        f"{seconds:.1f} s ({tokens.size / seconds:,.0f} bases/s)",
        file=sys.stderr,
    )


def read_prompts(prompt: str | None, fasta: Path | None) -> list[tuple[str, np.ndarray]]:
    """(name, token ids) of each prompt: the records of ``fasta``, else ``prompt``, else one empty prompt."""
    from genossm.data.genome import iter_records
    from genossm.generation import encode_prompt

    if fasta is not None and prompt is not None:
        raise ValueError("give --prompt or --prompt-fasta, not both")
    if fasta is None:
        return [("prompt", encode_prompt(prompt))] if prompt is not None else [(NO_PROMPT, encode_prompt(""))]
    records = list(iter_records(fasta, strict=True))
    if not records:
        raise ValueError(f"{fasta}: its FASTA records hold no bases")
    return records


def description(opts: GenerateOptions) -> str:
    """The header text after a sample's name: how it was drawn."""
    parts = [f"length={opts.length}", f"temperature={opts.temperature:g}"]
    parts += [
        f"{name}={value:g}" for name, value in (("top_k", opts.top_k), ("top_p", opts.top_p)) if value is not None
    ]
    return " ".join([*parts, f"seed={opts.seed}"])


def write_samples(out: TextIO, names: Iterable[str], tokens: np.ndarray, num: int, text: str) -> None:
    """One FASTA record per row of ``tokens``; rows come ``num`` per prompt, in the order of ``names``."""
    from genossm.data.tokenizer import decode

    rows = iter(tokens)
    for name in names:
        for i in range(1, num + 1):
            bases = decode(next(rows))
            lines = "".join(bases[s : s + LINE_BASES] + "\n" for s in range(0, len(bases), LINE_BASES))
            out.write(f">{name}_sample{i} {text}\n{lines}")
