"""Does a sample remember the composition of its prompt? GC of `genossm generate`'s continuations of real prompts,
against the GC of the genome's own continuations of the same prompts.

    python scripts/prompted_drift.py --fasta /tmp/apes/Hsap.fa --model "L = 2^10=runs/lm-1k/model" \\
        --model "L = 2^20=runs/lm-1m/model" --out results/runs/generation-prompted

``--prompts`` windows of ``--prompt-length`` bases, evenly spaced over the held-out test block (the last 5% of each
record, as ``genossm pretrain`` splits a FASTA), are each continued by every model (one sample, T = 1) for
``--length`` bases. In every 1 kb bin of the continuations: the correlation, across prompts, of the continuation's GC
with its prompt's GC, and the mean absolute difference between the sample's GC and the genome's own continuation's
GC in that bin. The genome's continuations give the correlation a real sequence keeps with its past (regional
composition, isochores). Writes ``rows.json``, ``table.md`` and ``prompt_memory.png``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from generation_study import GC_BIN, TO_BASE, model_spec

from genossm.bench.report import markdown_table, plot_lines
from genossm.data.genome import Genome
from genossm.data.intervals import split_by_region
from genossm.fileio import atomic_write_text
from genossm.generation.sampler import Sampler, Sampling
from genossm.scoring import load_language_model


def gc_bins(seqs: np.ndarray) -> np.ndarray:
    """GC fraction of each (sequence, 1 kb bin), over its A/C/G/T bases; bases as 0..3 (4 elsewhere)."""
    bins = seqs[:, : seqs.shape[1] // GC_BIN * GC_BIN].reshape(len(seqs), -1, GC_BIN)
    gc = ((bins == 1) | (bins == 2)).sum(2)
    return gc / np.maximum((bins < 4).sum(2), 1)


def gc_of(seqs: np.ndarray) -> np.ndarray:
    """GC fraction of each whole sequence."""
    return ((seqs == 1) | (seqs == 2)).sum(1) / np.maximum((seqs < 4).sum(1), 1)


def windows(genome: Genome, count: int, prompt: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """(prompts, the genome's continuations) as token ids: ``count`` windows evenly spaced over the test block."""
    (test,) = [r for r in split_by_region(genome.lengths) if r.split == "test"]
    starts = np.linspace(test.start, test.end - prompt - length, count).astype(int)
    seqs = np.stack([genome.fetch(test.chrom, s, s + prompt + length) for s in starts])
    return seqs[:, :prompt], seqs[:, prompt:]


def row(name: str, prompt_gc: np.ndarray, continuation: np.ndarray, real: np.ndarray) -> dict:
    """Per 1 kb bin: correlation with the prompt's GC, and mean |GC - the genome's continuation's GC|."""
    bins, real_bins = gc_bins(continuation), gc_bins(real)
    return {
        "source": name,
        "r_with_prompt": [float(np.corrcoef(prompt_gc, bins[:, i])[0, 1]) for i in range(bins.shape[1])],
        "gc_error": np.abs(bins - real_bins).mean(0).tolist(),
        "gc": float(bins.mean()),
    }


def table(rows: list[dict], shown: list[int]) -> str:
    def cells(r: dict) -> dict:
        return {"continuation": r["source"], "mean GC": f"{r['gc']:.3f}",
                **{f"r with prompt GC, kb {i + 1}": f"{r['r_with_prompt'][i]:+.2f}" for i in shown},
                **{f"abs GC error, kb {i + 1}": f"{r['gc_error'][i]:.3f}" for i in shown}}  # fmt: skip

    return markdown_table([cells(r) for r in rows]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fasta", type=Path, required=True)
    parser.add_argument(
        "--model", type=model_spec, action="append", required=True, help="NAME=DIR of a language model (repeat)"
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--prompt-length", type=int, default=4096)
    parser.add_argument("--length", type=int, default=16384)
    args = parser.parse_args()

    prompts, real = windows(Genome(args.fasta), args.prompts, args.prompt_length, args.length)
    prompt_gc = gc_of(TO_BASE[prompts])
    rows = [row("the genome's own", prompt_gc, TO_BASE[real], TO_BASE[real])]
    for name, path in args.model:
        sampler = Sampler(load_language_model(path), Sampling(temperature=1.0))
        samples = sampler.generate(list(prompts), args.length, num=1, seed=0, progress=False)
        rows.append(row(name, prompt_gc, TO_BASE[samples], TO_BASE[real]))
        print(json.dumps(rows[-1]), flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "rows.json", json.dumps({"prompts": args.prompts, "rows": rows}, indent=1))
    last = len(rows[0]["gc_error"]) - 1
    shown = sorted({0, min(3, last), last})  # the first, fourth and last kb
    atomic_write_text(args.out / "table.md", table(rows, shown))
    points = [{"source": r["source"], "kb": i + 0.5, "r": v} for r in rows for i, v in enumerate(r["r_with_prompt"])]
    plot_lines(points, "kb", "r", "source", args.out / "prompt_memory.png", logx=False,
               title=f"Memory of the prompt's GC ({args.prompts} prompts of {args.prompt_length:,} bases)",
               ylabel="correlation with the prompt's GC", xlabel="position after the prompt (kb)")  # fmt: skip
    print(table(rows, shown))


if __name__ == "__main__":
    main()
