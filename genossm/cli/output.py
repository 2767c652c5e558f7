"""Where an inference command (classify, score, score-variants) writes its report: a new file, written atomically
and never over an existing one, or standard output."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import TextIO

from genossm.fileio import atomic_open


def check_new_output(path: Path | None) -> None:
    """Refuse an ``--output`` that exists, before any work is done."""
    if path is not None and path.exists():
        raise FileExistsError(f"output {path} already exists; choose another --output or remove it")


def open_output(path: Path | None) -> contextlib.AbstractContextManager[TextIO]:
    """``path`` opened for writing (atomically), or standard output when there is none."""
    return atomic_open(path, "w") if path else contextlib.nullcontext(sys.stdout)
