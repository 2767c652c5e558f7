"""``genossm pretrain``: next-base pretraining on a genome (the bundled human sample by default)."""

from __future__ import annotations

import argparse
from pathlib import Path

from genossm.cli.options import add_options, resolve_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from genossm.training.pretrain import PretrainOptions

    parser.add_argument("--config", type=Path, help="YAML file of options (flags override it)")
    add_options(parser, PretrainOptions)


def run(args: argparse.Namespace) -> None:
    from genossm.training.pretrain import PretrainOptions, pretrain
    from genossm.training.run_dir import RunDir

    config = args.config
    if getattr(args, "resume", False) and config is None and getattr(args, "output", None) is not None:
        config = RunDir(args.output).config  # continue with the run's own options; flags given now override them
        if not config.is_file():
            raise FileNotFoundError(f"cannot resume: {config} is missing (is {args.output} a genossm run?)")
    pretrain(resolve_options(PretrainOptions, args, config))
