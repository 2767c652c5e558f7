"""``genossm finetune --classes DIR|TSV``: train a sequence classifier, save it to OUTPUT/model, evaluate it.

Options come from ``--config FILE`` (YAML), then from flags. With ``--resume`` the run's saved options are the
base: the flags given may only change how long and where it trains (--max-steps, --devices, ...).
"""

from __future__ import annotations

import argparse
import sys

from genossm.cli.options import add_options, resolve_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from genossm.classification.finetune import FinetuneOptions

    parser.add_argument("--config", help="YAML file of options (flags given here override it)")
    add_options(parser, FinetuneOptions)


def run(args: argparse.Namespace) -> None:
    from genossm.classification.finetune import FinetuneOptions, finetune
    from genossm.training.run_dir import RunDir

    opts = resolve_options(FinetuneOptions, args, args.config)
    if opts.resume:
        if opts.output is None:
            raise ValueError("--resume needs --output: the run folder to continue")
        opts = resolve_options(FinetuneOptions, args, args.config, base=RunDir(opts.output).saved_options())
    summary = finetune(opts)
    if summary is None:
        return
    model, kmer = summary["model"], summary["kmer"]
    print(
        f"held-out ({model['windows']} windows of {summary['seqlen']:,}): model accuracy {model['accuracy']:.3f} "
        f"[{model['accuracy_low']:.3f}, {model['accuracy_high']:.3f}], macro-F1 {model['macro_f1']:.3f}; "
        f"{kmer['k']}-mer baseline {kmer['accuracy']:.3f}\nclassifier saved to {opts.output}/model",
        file=sys.stderr,
    )
