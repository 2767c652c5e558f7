"""``genossm scale``: run a pretraining series and write its table and plots."""

from __future__ import annotations

import argparse

from genossm.cli.options import add_options, resolve_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from genossm.training.scaling import ScaleOptions

    add_options(parser, ScaleOptions)


def run(args: argparse.Namespace) -> None:
    from genossm.training.scaling import ScaleOptions, run_series

    opts = resolve_options(ScaleOptions, args)
    if opts.series is None:
        raise ValueError("--series is required (e.g. scaling-length or a YAML file)")
    run_series(opts)
