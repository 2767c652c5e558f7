"""Held-out evaluation of a classifier: accuracy with a 95% interval, macro-F1 and a confusion matrix (scikit-learn)."""

from __future__ import annotations

import math
import textwrap
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from genossm.plots import new_figure, save_png

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Z_95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a proportion (95% by default); (0, 1) when ``n`` is 0."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact ends (no rounding below 1 or above 0)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


@dataclass
class Evaluation:
    """Metrics of one classifier on a set of labelled windows."""

    labels: list[str]
    windows: int
    accuracy: float
    accuracy_low: float
    """Lower end of the 95% Wilson interval of the accuracy."""
    accuracy_high: float
    macro_f1: float
    confusion: list[list[int]]
    """confusion[true][predicted], in the order of ``labels``."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One line: accuracy with its interval, macro-F1 and the number of windows."""
        return (
            f"accuracy {self.accuracy:.3f} (95% CI {self.accuracy_low:.3f}-{self.accuracy_high:.3f}), "
            f"macro-F1 {self.macro_f1:.3f}, {self.windows} windows"
        )


def evaluate(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> Evaluation:
    """Accuracy, Wilson interval, macro-F1 (over every label) and confusion matrix of class-index predictions."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{y_true.shape[0]} true labels but {y_pred.shape[0]} predictions")
    n = int(y_true.size)
    classes = list(range(len(labels)))
    correct = int((y_true == y_pred).sum())
    low, high = wilson_interval(correct, n)
    return Evaluation(
        labels=list(labels),
        windows=n,
        accuracy=float(accuracy_score(y_true, y_pred)) if n else float("nan"),
        accuracy_low=low,
        accuracy_high=high,
        macro_f1=float(f1_score(y_true, y_pred, labels=classes, average="macro", zero_division=0)),
        confusion=confusion_matrix(y_true, y_pred, labels=classes).tolist(),
    )


def plot_confusion(evaluation: Evaluation, path: str | Path | None = None, title: str = "") -> Figure:
    """The confusion matrix (counts in each cell, shaded by the fraction of the true class), saved as a PNG when a
    path is given."""
    counts = np.asarray(evaluation.confusion)
    fractions = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    size = 1.2 + 0.7 * len(evaluation.labels)
    fig = new_figure(size + 1.2, size)
    ax = fig.subplots()
    image = ax.imshow(fractions, cmap="Blues", vmin=0, vmax=1)
    for i, j in np.ndindex(counts.shape):
        ax.text(j, i, str(counts[i, j]), ha="center", va="center", color="white" if fractions[i, j] > 0.5 else "black")
    ticks = range(len(evaluation.labels))
    ax.set_xticks(ticks, evaluation.labels, rotation=45, ha="right")
    ax.set_yticks(ticks, evaluation.labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    title = title or f"accuracy {evaluation.accuracy:.3f} on {evaluation.windows} windows"
    ax.set_title(textwrap.fill(title, width=round(12 * size)), fontsize=10)  # a long title wraps, never cut off
    fig.colorbar(image, ax=ax, fraction=0.046, label="fraction of the true class")
    if path is not None:
        save_png(fig, path)
    return fig
