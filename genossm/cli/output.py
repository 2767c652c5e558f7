"""What the inference commands (classify, score, score-variants, embed, generate) share: the device options they end
with, and where they write their report: a new file, written atomically and never over an existing one, or standard
output."""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TextIO

from genossm.cli.options import option
from genossm.fileio import atomic_open


@dataclass(kw_only=True)
class InferenceOptions:
    """The options every inference command ends with (keyword-only, so a command's own fields may lack defaults)."""

    device: str = option("auto", "'auto' (the GPU when there is one), 'cpu' or 'cuda'")
    dtype: Literal["auto", "float32", "bfloat16"] = option("auto", "auto: bfloat16 autocast on GPU, float32 on CPU")
    progress: bool = option(True, "show a progress bar on standard error")


def check_new_output(path: Path | None) -> None:
    """Refuse an ``--output`` that exists, before any work is done."""
    if path is not None and path.exists():
        raise FileExistsError(f"output {path} already exists; choose another --output or remove it")


def open_output(path: Path | None) -> contextlib.AbstractContextManager[TextIO]:
    """``path`` opened for writing (atomically), or standard output when there is none."""
    return atomic_open(path, "w") if path else contextlib.nullcontext(sys.stdout)
