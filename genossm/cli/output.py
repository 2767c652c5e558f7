"""What the inference commands (classify, score, score-variants, embed, generate) share: the device options they end
with (and, for classify and embed, how they read a record in windows), and where they write their report: a new
file, written atomically and never over an existing one, or standard output."""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TextIO

from genossm.cli.options import option
from genossm.fileio import atomic_open

if TYPE_CHECKING:
    from genossm.classification.infer import WindowReader
    from genossm.models.heads import SequenceEncoder

# How commands describe the default of --batch-tokens (genossm.inference.default_batch_tokens).
DEFAULT_BATCH_TOKENS = "2^21 on a GPU of 40 GiB or more, 2^20 on a smaller one, 2^15 on the CPU"


@dataclass(kw_only=True)
class InferenceOptions:
    """The options every inference command ends with (keyword-only, so a command's own fields may lack defaults)."""

    device: str = option("auto", "'auto' (the GPU when there is one), 'cpu' or 'cuda'")
    dtype: Literal["auto", "float32", "bfloat16"] = option("auto", "auto: bfloat16 autocast on GPU, float32 on CPU")
    progress: bool = option(True, "show a progress bar on standard error")


@dataclass(kw_only=True)
class WindowReadingOptions(InferenceOptions):
    """How classify and embed read each record: windows, their batches, the state carried between them."""

    stride: int | None = option(None, "distance between window starts (default: the window length, no overlap)")
    stateful: bool = option(
        False, "carry the recurrent state from window to window, so each record is read as one sequence"
    )
    batch_tokens: int | None = option(
        None, f"tokens per forward pass (windows per batch = this / window length; default {DEFAULT_BATCH_TOKENS})"
    )
    max_n_fraction: float = option(0.5, "windows with a larger fraction of N are left out")

    def window_reader(self, model: SequenceEncoder, window: int | None, per_window: bool) -> WindowReader:
        """The engine that reads records in windows of ``window`` (None: the classifier's training length)."""
        from genossm.classification.infer import WindowReader
        from genossm.inference import dtype_choice

        return WindowReader(
            model,
            window=window,
            stride=self.stride,
            stateful=self.stateful,
            batch_tokens=self.batch_tokens,
            max_n_fraction=self.max_n_fraction,
            device=self.device,
            bfloat16=dtype_choice(self.dtype),
            per_window=per_window,
        )


def check_new_output(path: Path | None) -> None:
    """Refuse an ``--output`` that exists, before any work is done."""
    if path is not None and path.exists():
        raise FileExistsError(f"output {path} already exists; choose another --output or remove it")


def open_output(path: Path | None) -> contextlib.AbstractContextManager[TextIO]:
    """``path`` opened for writing (atomically), or standard output when there is none."""
    return atomic_open(path, "w") if path else contextlib.nullcontext(sys.stdout)
