"""``genossm study --config great-apes``: fine-tune and evaluate at every window length, write the results document.

``--config`` takes a YAML file or the name of a shipped run preset (configs/runs/); flags override its values.
Run it again after an interruption: finished lengths are skipped and an interrupted one resumes.
"""

from __future__ import annotations

import argparse

from genossm.cli.options import add_options, resolve_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from genossm.classification.study import StudyOptions

    parser.add_argument("--config", help="YAML file or shipped run preset (e.g. great-apes); flags override it")
    add_options(parser, StudyOptions)


def run(args: argparse.Namespace) -> None:
    from genossm.classification.study import DOCUMENT, StudyOptions, run_study
    from genossm.presets import resolve_preset

    config = resolve_preset(args.config, "runs") if args.config else None
    opts = resolve_options(StudyOptions, args, config)
    rows = run_study(opts)
    if rows:
        print(f"results written to {opts.results / DOCUMENT}")
