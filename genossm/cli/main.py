"""``genossm``: one subcommand table, each entry a module with ``add_arguments(parser)`` and ``run(args)``."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# name -> (module, one-line help). Modules are imported only when their command runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "bench": ("genossm.cli.bench", "benchmarks: model throughput and the kernels"),
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


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``genossm`` console script; user errors print one line and exit 1."""
    args = build_parser().parse_args(argv)
    try:
        result = importlib.import_module(args._module).run(args)
    except (ValueError, FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as err:
        if os.environ.get("GENOSSM_DEBUG"):
            raise
        print(f"genossm {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"genossm {args.command}: interrupted", file=sys.stderr)
        return 130
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
