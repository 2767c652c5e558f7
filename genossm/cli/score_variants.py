"""``genossm score-variants FASTA VCF --model DIR``: the zero-shot effect of every VCF variant under a language
model, log p(alternative window) - log p(reference window) in nats (genossm/scoring/variants.py), as a TSV:
``chrom  pos  id  ref  alt  llr``, one row per alternative allele, in the VCF's order.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from genossm.cli.options import add_options, option, resolve_options
from genossm.cli.output import DEFAULT_BATCH_TOKENS, InferenceOptions, check_new_output, open_output

COLUMNS = ("chrom", "pos", "id", "ref", "alt", "llr")


@dataclass
class ScoreVariantsOptions(InferenceOptions):
    """Options of ``genossm score-variants``."""

    fasta: Path = option(help="reference genome FASTA (plain, gzip or bgzip) whose records the VCF names")
    vcf: Path = option(help="VCF file of the variants (plain, gzip or bgzip); symbolic alleles are skipped")
    model: Path = option(help="language-model directory, as written by genossm pretrain (OUTPUT/model) or mamba_ssm")
    window: int = option(1024, "bases around each variant scored with each allele (the variant at the centre)")
    output: Path | None = option(None, "write to this file (it must not exist yet) instead of standard output")
    batch_tokens: int | None = option(None, f"tokens per forward pass (default {DEFAULT_BATCH_TOKENS})")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, ScoreVariantsOptions, positional=("fasta", "vcf"))


def run(args: argparse.Namespace) -> None:
    from genossm.data.genome import Genome
    from genossm.inference import dtype_choice, resolve_device
    from genossm.scoring import LikelihoodScorer, load_language_model
    from genossm.scoring.variants import VcfReader, variant_effects

    opts = resolve_options(ScoreVariantsOptions, args)
    check_new_output(opts.output)
    if opts.window < 2:
        raise ValueError(f"--window must be at least 2 bases, not {opts.window}")
    if not opts.vcf.is_file():
        raise FileNotFoundError(f"VCF file {opts.vcf} does not exist")
    device = resolve_device(opts.device)
    scorer = LikelihoodScorer(
        load_language_model(opts.model),
        batch_tokens=opts.batch_tokens,
        device=device,
        bfloat16=dtype_choice(opts.dtype),
    )
    genome = Genome(opts.fasta)
    variants = VcfReader(opts.vcf, genome)
    start, count = time.perf_counter(), 0
    with open_output(opts.output) as out:
        out.write("\t".join(COLUMNS) + "\n")
        bar = tqdm(unit=" variants", file=sys.stderr, disable=not opts.progress)
        for effect in variant_effects(scorer, genome, variants, opts.window):
            v = effect.variant
            out.write(f"{v.chrom}\t{v.pos}\t{v.id}\t{v.ref}\t{v.alt}\t{effect.llr:.6f}\n")
            count += 1
            bar.update()
        bar.close()
    seconds = time.perf_counter() - start
    skipped = f"; {variants.skipped} symbolic allele(s) skipped" if variants.skipped else ""
    print(f"scored {count:,} variants in windows of {opts.window:,} on {device} in {seconds:.1f} s{skipped}",
          file=sys.stderr)  # fmt: skip
