"""Figures drawn without pyplot, so that saving a plot never switches the backend of a user's session (a notebook
keeps its inline plots) and works on machines without a display. matplotlib is imported on first use."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from genossm.fileio import atomic_open

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def new_figure(width: float, height: float) -> Figure:
    """An empty figure of ``width`` x ``height`` inches that belongs to no pyplot window."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def save_png(fig: Figure, path: str | Path) -> None:
    """Lay the figure out and write it as a PNG, atomically (a reader never sees half a file)."""
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=120)
