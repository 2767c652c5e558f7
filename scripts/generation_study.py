"""How human-like is DNA sampled from a pretrained language model? Samples of `genossm generate` against held-out
human sequence and against Markov chains fit to the training sequence.

    python scripts/generation_study.py --fasta /tmp/apes/Hsap.fa --model "L = 2^10=runs/lm-1k/model" \
        --model "L = 2^20=runs/lm-1m/model" --out results/runs/generation

Held-out and training sequence are the blocks ``genossm pretrain`` uses for a FASTA without a BED (test: the last 5%
of each record, train: the first 90%). Each generator produces ``--samples`` sequences of ``--length`` bases:

- each language model (``--model NAME=DIR``, repeated) from an empty prompt at each ``--temperature``;
- Markov chains of each ``--markov`` order, fit on the training block (counts + 1), started from training k-mers.

The held-out block is cut in two halves: the second is the reference, the first a set of real sequence of the same
size as every generated set (``--length`` x as many samples as fit in it), the floor of every divergence. For each set:
GC fraction, CpG observed / expected, the Jensen-Shannon divergence (bits) of its k-mer spectrum from the reference's
(k = 2 ... 12), the fraction of its 16-mers found in the training block, its bits per base under the first model,
and its GC fraction along the position in the samples (bins of 1 kb: does it drift away from where it starts?).
Writes ``rows.json``, ``table.md``, ``kmer_divergence.png`` and ``gc_position.png``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np

from genossm.bench.report import markdown_table, plot_lines
from genossm.data.genome import Genome, RecordChunk
from genossm.data.intervals import split_by_region
from genossm.data.tokenizer import BASE_IDS, N_ID, VOCAB_SIZE
from genossm.fileio import atomic_write_text
from genossm.generation.sampler import Sampler, Sampling
from genossm.scoring import LikelihoodScorer, load_language_model
from genossm.scoring.likelihood import SequenceScore

KS = [2, 4, 6, 8, 10, 12]
SEEN_K = 16
GC_BIN = 1024
TO_BASE = np.full(VOCAB_SIZE, 4, dtype=np.int64)  # token id -> 0..3 for A, C, G, T; 4 for anything else
TO_BASE[list(BASE_IDS)] = np.arange(4)


def block(genome: Genome, split: str) -> list[np.ndarray]:
    """The sequences of one split, as bases 0..3 (4 elsewhere)."""
    regions = [r for r in split_by_region(genome.lengths) if r.split == split]
    return [TO_BASE[genome.fetch(r.chrom, r.start, r.end)] for r in regions]


def kmer_codes(seq: np.ndarray, k: int) -> np.ndarray:
    """Base-4 codes of every k-mer of ``seq`` that holds only A, C, G and T."""
    if len(seq) < k:
        return np.empty(0, dtype=np.int64)
    windows = np.lib.stride_tricks.sliding_window_view(seq, k)
    windows = windows[(windows < 4).all(1)]
    return windows @ (4 ** np.arange(k - 1, -1, -1, dtype=np.int64))


def spectrum(seqs: list[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    """(k-mer codes, their frequencies), codes sorted."""
    codes, counts = np.unique(np.concatenate([kmer_codes(s, k) for s in seqs]), return_counts=True)
    return codes, counts / counts.sum()


def js_divergence(p: tuple[np.ndarray, np.ndarray], q: tuple[np.ndarray, np.ndarray]) -> float:
    """Jensen-Shannon divergence in bits of two sparse spectra."""
    codes = np.union1d(p[0], q[0])
    dense = []
    for c, f in (p, q):
        full = np.zeros(len(codes))
        full[np.searchsorted(codes, c)] = f
        dense.append(full)
    m = (dense[0] + dense[1]) / 2

    def kl(a: np.ndarray) -> float:
        keep = a > 0
        return float((a[keep] * np.log2(a[keep] / m[keep])).sum())

    return (kl(dense[0]) + kl(dense[1])) / 2


def composition(seqs: list[np.ndarray]) -> dict[str, float]:
    """GC fraction and CpG observed / expected."""
    mono = np.bincount(np.concatenate(seqs), minlength=5)[:4]
    mono = mono / mono.sum()
    codes, freq = spectrum(seqs, 2)
    cg = float(freq[codes == 1 * 4 + 2].sum())  # C then G
    return {"gc": float(mono[1] + mono[2]), "cpg_oe": cg / (mono[1] * mono[2])}


def markov_sample(train: list[np.ndarray], order: int, n: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` sequences from a Markov chain of ``order`` fit on ``train`` (add-one counts), each started from a random
    training k-mer."""
    starts = np.concatenate([kmer_codes(s, order) for s in train])
    nexts = np.concatenate([kmer_codes(s, order + 1) for s in train])
    counts = np.ones((4**order, 4))
    np.add.at(counts, (nexts // 4, nexts % 4), 1)
    cdf = np.cumsum(counts / counts.sum(1, keepdims=True), 1)
    out = np.empty((n, length), dtype=np.int64)
    context = rng.choice(starts, n)
    for i in range(order):
        out[:, i] = context // 4 ** (order - 1 - i) % 4
    for pos in range(order, length):
        base = (rng.random(n)[:, None] > cdf[context]).sum(1).clip(max=3)
        out[:, pos] = base
        context = context * 4 % 4**order + base
    return out


def bits_per_base(scorer: LikelihoodScorer, seqs: list[np.ndarray]) -> float:
    """Bits per base of the sequences (each read whole from a zero state) under the scorer's model."""
    ids = np.array([*BASE_IDS, N_ID], dtype=np.uint8)  # 4 (not a base) is read as N, never scored
    totals = SequenceScore("all")
    chunks = (RecordChunk(f"s{i}", 0, ids[s]) for i, s in enumerate(seqs))
    for score in scorer.score(chunks):
        totals.include(score)
    return totals.bits_per_base


def row(name: str, seqs: list[np.ndarray], spectra: dict, seen: np.ndarray, scorer: LikelihoodScorer,
        samples: bool = True) -> dict:  # fmt: skip
    """Every statistic of one set of sequences, its k-mer spectra against the reference ``spectra``; ``samples``:
    sequences of equal length, whose GC is also taken along the position."""
    result = {"source": name, "bases": int(sum(len(s) for s in seqs)), **composition(seqs)}
    for k in KS:
        result[f"js_{k}"] = js_divergence(spectrum(seqs, k), spectra[k])
    codes = np.concatenate([kmer_codes(s, SEEN_K) for s in seqs])
    result["seen_16mers"] = float(np.isin(codes, seen).mean())
    result["model_bits_per_base"] = bits_per_base(scorer, seqs)
    if samples:
        stacked = np.stack(seqs)[:, : len(seqs[0]) // GC_BIN * GC_BIN].reshape(len(seqs), -1, GC_BIN)
        result["gc_by_position"] = ((stacked == 1) | (stacked == 2)).mean((0, 2)).tolist()
    print(json.dumps(result), flush=True)
    return result


def model_spec(text: str) -> tuple[str, str]:
    """``--model NAME=DIR`` as (name, directory): split at the first '=' (a directory may hold one, a name not)."""
    name, sep, path = text.partition("=")
    if not (name and sep and path):
        raise ValueError(text)
    return name, path


def table(rows: list[dict]) -> str:
    def cells(r: dict) -> dict:
        ends = f"{r['gc_by_position'][0]:.3f} / {r['gc_by_position'][-1]:.3f}" if "gc_by_position" in r else "-"
        return {"source": r["source"], "GC": f"{r['gc']:.3f}", "GC first / last kb": ends,
                "CpG o/e": f"{r['cpg_oe']:.3f}", **{f"JS k={k}": f"{r[f'js_{k}']:.4f}" for k in KS},
                f"{SEEN_K}-mers seen in training": f"{r['seen_16mers']:.3f}",
                "bits/base (first model)": f"{r['model_bits_per_base']:.3f}"}  # fmt: skip

    return markdown_table([cells(r) for r in rows]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fasta", type=Path, required=True)
    parser.add_argument(
        "--model", type=model_spec, action="append", required=True, help="NAME=DIR of a language model (repeat)"
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--length", type=int, default=16384)
    parser.add_argument("--temperature", type=float, nargs="+", default=[1.0, 0.8])
    parser.add_argument("--markov", type=int, nargs="+", default=[5, 10])
    args = parser.parse_args()

    genome = Genome(args.fasta)
    train, test = block(genome, "train"), block(genome, "test")
    first, second = [s[: len(s) // 2] for s in test], [s[len(s) // 2 :] for s in test]
    spectra = {k: spectrum(second, k) for k in KS}
    samples = max(1, round(sum(len(s) for s in first) / args.length))
    seen = np.unique(np.concatenate([kmer_codes(s, SEEN_K) for s in train]))
    models = dict(args.model)
    scorer = LikelihoodScorer(load_language_model(next(iter(models.values()))))
    rng = np.random.default_rng(0)

    rows = [row("held-out human (first half of the test block)", first, spectra, seen, scorer, samples=False)]
    timings = []
    for (name, path), temperature in itertools.product(models.items(), args.temperature):
        sampler = Sampler(load_language_model(path), Sampling(temperature=temperature))
        start = time.perf_counter()
        ids = sampler.generate([np.empty(0, np.uint8)], args.length, samples, seed=0, progress=False)
        seconds = time.perf_counter() - start
        timings.append({"model": name, "temperature": temperature, "samples": samples, "length": args.length,
                        "s": seconds})  # fmt: skip
        rows.append(row(f"{name}, T = {temperature:g}", list(TO_BASE[ids]), spectra, seen, scorer))
    for order in args.markov:
        seqs = markov_sample(train, order, samples, args.length, rng)
        rows.append(row(f"Markov chain, order {order}", list(seqs), spectra, seen, scorer))

    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "rows.json", json.dumps({"rows": rows, "timings": timings}, indent=1))
    atomic_write_text(args.out / "table.md", table(rows))
    points = [{"source": r["source"], "k": k, "js": r[f"js_{k}"]} for r in rows for k in KS]
    plot_lines(points, "k", "js", "source", args.out / "kmer_divergence.png", logx=False, logy=True,
               title="k-mer spectrum divergence from held-out human chr22", ylabel="Jensen-Shannon divergence (bits)",
               xlabel="k")  # fmt: skip
    reference = rows[0]["gc"]
    bins = len(next(r["gc_by_position"] for r in rows if "gc_by_position" in r))
    gc = [{"source": "held-out human (mean)", "kb": (i + 0.5) * GC_BIN / 1e3, "gc": reference} for i in range(bins)]
    gc += [{"source": r["source"], "kb": (i + 0.5) * GC_BIN / 1e3, "gc": v}
           for r in rows for i, v in enumerate(r.get("gc_by_position", []))]  # fmt: skip
    plot_lines(gc, "kb", "gc", "source", args.out / "gc_position.png", logx=False, title="GC along the samples",
               ylabel="GC fraction (mean over samples, 1 kb bins)", xlabel="position in the sample (kb)")  # fmt: skip
    print(table(rows))


if __name__ == "__main__":
    main()
