"""Held-out metrics on known predictions, and the k-mer baseline."""

import numpy as np
import pytest
from synthetic import windows_of

from genossm.classification.kmer import KmerBaseline, kmer_frequencies
from genossm.classification.metrics import evaluate, plot_confusion, wilson_interval
from genossm.data.tokenizer import encode


def test_metrics_on_known_predictions(tmp_path):
    truth = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
    guess = np.array([0, 0, 0, 1, 1, 1, 1, 1, 0, 2])
    result = evaluate(truth, guess, ["a", "b", "c"])
    assert result.windows == 10 and result.accuracy == pytest.approx(0.8)
    assert result.confusion == [[3, 1, 0], [0, 4, 0], [1, 0, 1]]
    # per-class F1: a 3/4 (p 3/4, r 3/4), b 8/9 (p 4/5, r 1), c 2/3 (p 1, r 1/2)
    assert result.macro_f1 == pytest.approx((0.75 + 8 / 9 + 2 / 3) / 3)
    assert (result.accuracy_low, result.accuracy_high) == pytest.approx(wilson_interval(8, 10))
    fig = plot_confusion(result, tmp_path / "confusion.png")
    assert (tmp_path / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    assert [t.get_text() for t in fig.axes[0].texts] == ["3", "1", "0", "0", "4", "0", "1", "0", "1"]


def test_wilson_interval():
    # textbook values: 8 of 10 -> (0.4902, 0.9433); 0 of 20 -> (0, 0.1611)
    assert wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson_interval(0, 20) == pytest.approx((0.0, 0.1611), abs=1e-4)
    low, high = wilson_interval(500, 1000)
    assert low < 0.5 < high and high - low == pytest.approx(2 * 1.96 * (0.25 / 1000) ** 0.5, rel=0.01)


def test_kmer_frequencies_count_only_bases():
    features = kmer_frequencies(encode("ACGTNACGa")[None], 2)
    # 2-mers without N: AC CG GT AC CG GA -> AC 2, CG 2, GT 1, GA 1 (A=0 C=1 G=2 T=3, code = 4 first + second)
    expected = np.zeros(16)
    expected[[1, 6, 11, 8]] = [2, 2, 1, 1]
    assert np.allclose(features[0], expected / 6)
    assert kmer_frequencies(encode("NNNN")[None], 2).sum() == 0


def test_kmer_baseline_beats_chance():
    rng = np.random.default_rng(0)
    train = np.concatenate([windows_of(c, 40, 64, rng) for c in range(3)])
    test = np.concatenate([windows_of(c, 40, 64, rng) for c in range(3)])
    labels = np.repeat(np.arange(3), 40)
    baseline = KmerBaseline(k=2).fit(train, labels)
    assert (baseline.predict(test) == labels).mean() > 0.9
