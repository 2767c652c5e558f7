"""The length study (``genossm study``): fine-tune and evaluate one classifier per window length, then write the
results document — a table and a plot of held-out accuracy against length, the model beside the k-mer baseline.

Each length is a fine-tuning run in ``WORK/L<length>/``: a finished run (its summary.json exists) is skipped, an
interrupted one resumes from its last checkpoint, so the study can be run again and again until every length is done
(with a limited GPU time per call). With ``--maf`` the classes are the species of an alignment, written once to
``WORK/fasta/`` as genossm data maf2fasta does. A length whose pretrained backbone exists in ``--pretrained``
(``DIR/<length>/``, ``DIR/<length>/model``, or ``DIR/seqlen-<length>/model`` as a ``genossm scale`` length series
writes it) starts from it; the others train from scratch — the table says which.

The results go between two marker lines of ``RESULTS/classification.md``, so text written around them stays.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genossm.cli.options import option
from genossm.fileio import atomic_write_text
from genossm.plots import new_figure, save_png
from genossm.training.scaling import run_name

from .finetune import ClassifierTrainingOptions, FinetuneOptions, finetune, read_summary

if TYPE_CHECKING:
    from matplotlib.figure import Figure

BEGIN, END = "<!-- genossm study: begin -->", "<!-- genossm study: end -->"
DOCUMENT = "classification.md"
PLOT = "classification_accuracy.png"


@dataclass
class StudyOptions(ClassifierTrainingOptions):
    """Options of ``genossm study``."""

    maf: Path | None = option(None, "alignment (MAF, may be gzipped) whose species are the classes")
    classes: Path | None = option(None, "instead of --maf: a class folder or TSV manifest, as for genossm finetune")
    lengths: str = option("2^10,2^12,2^14,2^16,2^18,2^20", "window lengths, comma-separated (numbers or 2^k)")
    pretrained: Path | None = option(
        None, "folder of pretrained backbones by length: DIR/<length>[/model], or a genossm scale length series"
    )
    work: Path = option(Path("runs/study"), "folder of the study's runs (WORK/L<length>/), reused by later calls")
    results: Path = option(Path("results"), "folder of the results document and its plots")
    title: str = option("Species classification against window length", "heading of the results section")


def parse_lengths(text: str) -> list[int]:
    """'2^10,4096' -> [1024, 4096]."""
    lengths = []
    for item in text.split(","):
        item = item.strip()
        match = re.fullmatch(r"2\^(\d+)", item)
        try:
            lengths.append(2 ** int(match.group(1)) if match else int(item))
        except ValueError:
            raise ValueError(f"lengths: {item!r} is neither a number nor 2^k") from None
    if not lengths or min(lengths) < 1:
        raise ValueError(f"lengths: give positive window lengths, not {text!r}")
    return sorted(set(lengths))


def pretrained_backbone(folder: Path | None, length: int) -> Path | None:
    """The first of ``folder/<length>/model``, ``folder/<length>`` and ``folder/seqlen-<length>/model`` (a
    ``genossm scale`` run) that holds a model (config.json), else None."""
    if folder is None:
        return None
    if not folder.is_dir():
        raise FileNotFoundError(f"pretrained folder {folder} does not exist")
    scale_run = folder / run_name({"seqlen": length}) / "model"
    for candidate in (folder / str(length) / "model", folder / str(length), scale_run):
        if (candidate / "config.json").is_file():
            return candidate
    return None


def class_source(opts: StudyOptions) -> Path:
    """The classes: the folder of per-species FASTA written from --maf (once), or --classes."""
    if (opts.maf is None) == (opts.classes is None):
        raise ValueError("give the classes either as --maf ALIGNMENT or as --classes DIR|TSV (one of them)")
    if opts.classes is not None:
        return opts.classes
    from genossm.data.maf import maf_to_fasta

    folder = opts.work / "fasta"
    done = folder / ".complete"
    if not done.is_file():
        maf_to_fasta(opts.maf, folder, force=True)
        done.write_text(f"{opts.maf}\n")
    return folder


def length_options(opts: StudyOptions, classes: Path, length: int) -> FinetuneOptions:
    """The fine-tuning run of one length: the shared options, this length, its backbone and folder."""
    shared = {f.name: getattr(opts, f.name) for f in fields(ClassifierTrainingOptions)}
    output = opts.work / f"L{length}"
    return FinetuneOptions(
        **shared,
        classes=classes,
        seqlen=length,
        init=pretrained_backbone(opts.pretrained, length),
        output=output,
        resume=(output / "config.yaml").is_file(),
    )


def run_study(opts: StudyOptions) -> list[dict[str, Any]]:
    """Every length not yet done is trained and evaluated; the results document is rewritten after each."""
    if opts.devices != 1:
        raise ValueError("genossm study trains on one device; for several GPUs run genossm finetune per length")
    classes = class_source(opts)
    rows = []
    for length in parse_lengths(opts.lengths):
        run = length_options(opts, classes, length)
        summary = read_summary(run.output)
        if summary is None:
            print(f"== L = {length:,}: {'resuming' if run.resume else 'training'} in {run.output}", flush=True)
            summary = finetune(run)
            assert summary is not None  # one device: this process is rank 0
        else:
            print(f"== L = {length:,}: done before ({run.output / 'summary.json'})", flush=True)
        rows.append(result_row(summary, run.output))
        write_results(opts, rows)  # after every length: a study cut short still reports what it finished
    return rows


def result_row(summary: dict[str, Any], run: Path) -> dict[str, Any]:
    """The figures of one length that the table and the plot show."""
    model, kmer = summary["model"], summary["kmer"]
    modes = summary.get("reading_modes") or {}
    return {
        "seqlen": summary["seqlen"],
        "init": summary["init"],
        "steps": summary["steps"],
        "parameters": summary["parameters"],
        "windows": model["windows"],
        "accuracy": model["accuracy"],
        "accuracy_low": model["accuracy_low"],
        "accuracy_high": model["accuracy_high"],
        "macro_f1": model["macro_f1"],
        "kmer_accuracy": kmer["accuracy"],
        "kmer_low": kmer["accuracy_low"],
        "kmer_high": kmer["accuracy_high"],
        "kmer_k": kmer["k"],
        "train_minutes": summary["train_seconds"] / 60,
        "windowed": modes.get("windowed", {}).get("accuracy"),
        "stateful": modes.get("stateful", {}).get("accuracy"),
        "tiled_windows": modes.get("windowed", {}).get("windows"),
        "labels": summary["labels"],
        "run": str(run),
    }


def length_name(length: int) -> str:
    """1048576 -> '2^20 (1M)'."""
    exponent = length.bit_length() - 1
    power = f"2^{exponent} " if length == 1 << exponent else ""
    for unit, size in (("M", 1 << 20), ("K", 1 << 10)):
        if length >= size and length % size == 0:
            return f"{power}({length // size}{unit})"
    return f"{power}({length})"


def results_table(rows: list[dict[str, Any]]) -> str:
    """The markdown table of the study."""
    lines = [
        "| L | backbone | steps | held-out windows | accuracy (95% CI) | macro-F1 | k-mer baseline (95% CI) "
        "| tiled: windowed / stateful (windows) | train min |",
        "| --- | --- | ---: | ---: | --- | ---: | --- | --- | ---: |",
    ]
    for r in rows:
        backbone = "scratch" if r["init"] == "scratch" else f"pretrained ({r['init']})"
        lines.append(
            f"| {length_name(r['seqlen'])} | {backbone} | {r['steps']} | {r['windows']} | "
            f"{r['accuracy']:.3f} ({r['accuracy_low']:.3f}-{r['accuracy_high']:.3f}) | {r['macro_f1']:.3f} | "
            f"{r['kmer_k']}-mer: {r['kmer_accuracy']:.3f} ({r['kmer_low']:.3f}-{r['kmer_high']:.3f}) | "
            f"{_modes_cell(r)} | {r['train_minutes']:.1f} |"
        )
    return "\n".join(lines)


def _modes_cell(row: dict[str, Any]) -> str:
    if row["windowed"] is None:
        return "-"
    return f"{row['windowed']:.3f} / {row['stateful']:.3f} ({row['tiled_windows']})"


def plot_accuracy(rows: list[dict[str, Any]], path: Path | None, title: str) -> Figure:
    """Held-out accuracy against length, model and k-mer baseline with 95% intervals, and chance (saved as a PNG when
    a path is given)."""
    lengths = [r["seqlen"] for r in rows]
    fig = new_figure(6.4, 4.2)
    ax = fig.subplots()
    for key, low, high, name in (
        ("accuracy", "accuracy_low", "accuracy_high", "Mamba classifier"),
        ("kmer_accuracy", "kmer_low", "kmer_high", f"{rows[0]['kmer_k']}-mer + logistic regression"),
    ):
        values = [r[key] for r in rows]
        errors = [
            [v - r[low] for v, r in zip(values, rows, strict=True)],
            [r[high] - v for v, r in zip(values, rows, strict=True)],
        ]
        ax.errorbar(lengths, values, yerr=errors, marker="o", capsize=3, label=name)
    ax.axhline(1 / len(rows[0]["labels"]), color="grey", linestyle=":", label="chance")
    ax.set_xscale("log", base=2)
    ax.set_ylim(0, 1)
    ax.set_xlabel("window length L (bases)")
    ax.set_ylabel("held-out accuracy")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    if path is not None:
        save_png(fig, path)
    return fig


def write_results(opts: StudyOptions, rows: list[dict[str, Any]]) -> Path:
    """Rewrite the study's section of RESULTS/classification.md (and its plot); other text in the file stays."""
    document = opts.results / DOCUMENT
    if not rows:
        return document
    plot_accuracy(rows, opts.results / PLOT, opts.title)
    labels = rows[0]["labels"]
    section = "\n".join(
        [
            BEGIN,
            f"## {opts.title}",
            "",
            f"Classes: {', '.join(labels)} (chance {1 / len(labels):.0%}). Model `{opts.model}`"
            f"{', head only' if opts.head_only else ''}, {opts.tokens_per_step:,} tokens per step, "
            f"held-out windows from regions never trained on; the k-mer baseline is fitted on training windows and "
            f"scored on exactly the same held-out windows. *Tiled*: the held-out regions cut into consecutive "
            f"windows, each classified alone (windowed, as `genossm classify`) or with the recurrent state carried "
            f"from the windows before it (`genossm classify --stateful`). Runs: `{opts.work}`. "
            f"Generated by `genossm study`.",
            "",
            results_table(rows),
            "",
            f"![held-out accuracy against window length]({PLOT})",
            END,
        ]
    )
    old = document.read_text() if document.is_file() else "# Classification results\n\n" + BEGIN + "\n" + END + "\n"
    if BEGIN in old and END in old:
        text = old[: old.index(BEGIN)] + section + old[old.index(END) + len(END) :]
    else:
        text = old.rstrip("\n") + "\n\n" + section + "\n"
    atomic_write_text(document, text)
    return document
