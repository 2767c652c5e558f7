"""The non-neural reference: k-mer frequencies of a window + multinomial logistic regression (scikit-learn).

A window of token ids becomes the frequencies of its 4^k k-mers (k-mers touching N, padding or any other
non-base token are not counted); the features are standardised and fed to L2-regularised logistic regression.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from genossm.data.tokenizer import TOKENS

BASE_INDEX = np.full(256, 4, dtype=np.int64)
BASE_INDEX[[TOKENS.index(b) for b in "ACGT"]] = np.arange(4)
"""``BASE_INDEX[token id]``: A, C, G, T -> 0..3, every other token -> 4 (not a base)."""


def kmer_frequencies(windows: np.ndarray, k: int) -> np.ndarray:
    """(n, L) token ids -> (n, 4^k) float32 k-mer frequencies (each row sums to 1, or 0 with no valid k-mer)."""
    windows = np.atleast_2d(np.asarray(windows))
    n, length = windows.shape
    features = np.zeros((n, 4**k), dtype=np.float32)
    if length < k:
        return features
    for row, window in enumerate(windows):
        bases = BASE_INDEX[window]
        codes = np.zeros(length - k + 1, dtype=np.int64)
        valid = np.ones(length - k + 1, dtype=bool)
        for j in range(k):
            part = bases[j : length - k + 1 + j]
            codes = codes * 4 + np.minimum(part, 3)
            valid &= part < 4
        counts = np.bincount(codes[valid], minlength=4**k)
        features[row] = counts / max(1, int(valid.sum()))
    return features


class KmerBaseline:
    """k-mer frequency features + logistic regression, fitted and applied on token windows."""

    def __init__(self, k: int = 5, c: float = 1.0, seed: int = 0) -> None:
        if not 1 <= k <= 10:
            raise ValueError(f"k-mer length must be between 1 and 10, not {k}")
        self.k = k
        self.pipeline: Pipeline = make_pipeline(
            StandardScaler(), LogisticRegression(C=c, max_iter=2000, random_state=seed)
        )

    def fit(self, windows: np.ndarray, labels: np.ndarray) -> KmerBaseline:
        """Fit on (n, L) token windows and their class indices."""
        self.pipeline.fit(kmer_frequencies(windows, self.k), np.asarray(labels))
        return self

    def predict(self, windows: np.ndarray) -> np.ndarray:
        """Class index of each (n, L) token window."""
        return self.pipeline.predict(kmer_frequencies(windows, self.k))
