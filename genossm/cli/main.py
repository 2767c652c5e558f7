"""``genossm``: one subcommand table, each entry a module with ``add_arguments(parser)`` and ``run(args)``."""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

# name -> (module, one-line help). Modules are imported only when their command runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "pretrain": ("genossm.cli.pretrain", "next-base pretraining on a genome (Lightning)"),
    "scale": ("genossm.cli.scale", "a series of pretraining runs (length or size) with its table and plots"),
    "finetune": ("genossm.cli.finetune", "train a classifier (species, reads, any labels) on one FASTA per class"),
    "classify": ("genossm.cli.classify", "label every record of a FASTA file with a fine-tuned classifier"),
    "score": ("genossm.cli.score", "log-likelihood and bits per base of every record under a language model"),
    "score-variants": (
        "genossm.cli.score_variants",
        "zero-shot effect of VCF variants: log p(alternative) - log p(reference)",
    ),
    "embed": ("genossm.cli.embed", "embeddings of every record, region or window of a FASTA file (.npz)"),
    "generate": ("genossm.cli.generate", "sample new DNA after a prompt (or from scratch) with a language model"),
    "study": ("genossm.cli.study", "classification accuracy against window length (e.g. --config great-apes)"),
    "data": ("genossm.cli.data", "genome data: MAF to FASTA, downloads, FASTA indexes"),
    "bench": ("genossm.cli.bench", "benchmarks: model, kernels, data loading, classification throughput"),
    "memory": ("genossm.cli.memory", "predicted peak GPU memory of a training step per memory mode, longest L"),
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand's own parser."""
    parser = argparse.ArgumentParser(prog="genossm", description="Long-sequence DNA modeling with Mamba.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, text) in COMMANDS.items():
        command = sub.add_parser(name, help=text, description=text)
        importlib.import_module(module).add_arguments(command)
        command.set_defaults(_module=module)
    return parser


def _version() -> str:
    from genossm import __version__

    return f"genossm {__version__}"


def _disk_full(err: BaseException) -> bool:
    return isinstance(err, OSError) and err.errno == errno.ENOSPC


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``genossm`` console script; user errors print one line (no traceback) and exit 1.

    Set GENOSSM_DEBUG=1 to see the traceback instead.
    """
    args = build_parser().parse_args(argv)
    try:
        result = importlib.import_module(args._module).run(args)
    except (ValueError, OSError) as err:
        if os.environ.get("GENOSSM_DEBUG"):
            raise
        hint = " (the disk is full: free space and rerun, with --resume for training)" if _disk_full(err) else ""
        print(f"genossm {args.command}: error: {err}{hint}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"genossm {args.command}: interrupted", file=sys.stderr)
        return 130
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
