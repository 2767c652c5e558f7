"""Benchmark output: a JSON file of rows and line plots (people would rather look at a plot than a table)."""

from __future__ import annotations

import json
import textwrap
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from genossm.plots import new_figure, save_png

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def markdown_table(rows: list[dict]) -> str:
    """The rows as a GitHub markdown table."""
    keys = list(rows[0])

    def cell(value: object) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def write_json(rows: list[dict[str, object]], path: str | Path, **meta: object) -> None:
    """``{"meta": {...}, "rows": [...]}`` at ``path``."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2, default=str))


def plot_lines(
    rows: list[dict[str, object]],
    x: str,
    y: str,
    series: str,
    path: str | Path,
    title: str = "",
    logx: bool = True,
    logy: bool = False,
    ylabel: str | None = None,
    xlabel: str | None = None,
) -> Figure:
    """One line per value of ``series``: ``y`` against ``x``, saved as a PNG."""
    groups: dict[object, list[tuple[float, float]]] = defaultdict(list)
    for row in rows:
        if row.get(y) is not None:
            groups[row[series]].append((float(row[x]), float(row[y])))
    fig = new_figure(6.4, 4.2)
    ax = fig.subplots()
    for name, points in groups.items():
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=str(name))
    if logx:
        ax.set_xscale("log", base=2)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(ylabel or y)
    ax.set_title(textwrap.fill(title, 60), fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend()
    save_png(fig, path)
    return fig
