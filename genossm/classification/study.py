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
    seeds: str | None = option(
        None,
        "several seeds, comma-separated: each length is fine-tuned once per seed, and the table and plot show "
        "the mean and the range over seeds (single runs at one length can differ by tens of points)",
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


def study_seeds(opts: StudyOptions) -> list[int] | None:
    """The seeds of a several-seed study (``--seeds``), or None for one run per length with ``--seed``."""
    if not opts.seeds:
        return None
    try:
        seeds = list(dict.fromkeys(int(s) for s in opts.seeds.split(",") if s.strip()))
    except ValueError:
        raise ValueError(f"--seeds: expected integers separated by commas, got {opts.seeds!r}") from None
    if not seeds:
        raise ValueError("--seeds: no seed given")
    return seeds


def length_options(opts: StudyOptions, classes: Path, length: int, seed: int | None = None) -> FinetuneOptions:
    """The fine-tuning run of one length (and seed of a several-seed study): the shared options, this length, its
    backbone and folder (WORK/L<length>, or WORK/L<length>-seed<seed>)."""
    shared = {f.name: getattr(opts, f.name) for f in fields(ClassifierTrainingOptions)}
    output = opts.work / (f"L{length}" if seed is None else f"L{length}-seed{seed}")
    if seed is not None:
        shared["seed"] = seed
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
    seeds = study_seeds(opts)
    classes = class_source(opts)
    rows = []
    for length in parse_lengths(opts.lengths):
        for seed in seeds or [None]:
            run = length_options(opts, classes, length, seed)
            name = f"L = {length:,}" + ("" if seed is None else f", seed {seed}")
            summary = read_summary(run.output)
            if summary is None:
                print(f"== {name}: {'resuming' if run.resume else 'training'} in {run.output}", flush=True)
                summary = finetune(run)
                assert summary is not None  # one device: this process is rank 0
            else:
                print(f"== {name}: done before ({run.output / 'summary.json'})", flush=True)
            rows.append(result_row(summary, run.output, run.seed))
            write_results(opts, rows)  # after every run: a study cut short still reports what it finished
    return rows


def result_row(summary: dict[str, Any], run: Path, seed: int | None = None) -> dict[str, Any]:
    """The figures of one run that the table and the plot show."""
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
        "seed": seed if seed is not None else summary.get("options", {}).get("seed"),
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


def by_length(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The runs of each length (one per seed), lengths in the order they were run."""
    groups: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["seqlen"], []).append(row)
    return list(groups.values())


def spread(runs: list[dict[str, Any]], key: str) -> tuple[float, float, float]:
    """Mean, smallest and largest ``key`` over runs."""
    values = [r[key] for r in runs]
    return sum(values) / len(values), min(values), max(values)


def _backbone(row: dict[str, Any]) -> str:
    return "scratch" if row["init"] == "scratch" else f"pretrained ({row['init']})"


def results_table(rows: list[dict[str, Any]]) -> str:
    """The markdown table of the study: a row per run, or with several seeds a row per length over its seeds."""
    groups = by_length(rows)
    if any(len(runs) > 1 for runs in groups):
        return seeds_table(groups)
    lines = [
        "| L | backbone | steps | held-out windows | accuracy (95% CI) | macro-F1 | k-mer baseline (95% CI) "
        "| tiled: windowed / stateful (windows) | train min |",
        "| --- | --- | ---: | ---: | --- | ---: | --- | --- | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {length_name(r['seqlen'])} | {_backbone(r)} | {r['steps']} | {r['windows']} | "
            f"{r['accuracy']:.3f} ({r['accuracy_low']:.3f}-{r['accuracy_high']:.3f}) | {r['macro_f1']:.3f} | "
            f"{r['kmer_k']}-mer: {r['kmer_accuracy']:.3f} ({r['kmer_low']:.3f}-{r['kmer_high']:.3f}) | "
            f"{_modes_cell(r)} | {r['train_minutes']:.1f} |"
        )
    return "\n".join(lines)


def seeds_table(groups: list[list[dict[str, Any]]]) -> str:
    """A row per length: accuracy's mean and range over its seeds, each seed's, and the k-mer baseline's."""
    lines = [
        "| L | backbone | steps | held-out windows | runs | accuracy: mean (min-max) | by seed | "
        "k-mer baseline: mean (min-max) | train min (mean) |",
        "| --- | --- | ---: | ---: | ---: | --- | --- | --- | ---: |",
    ]
    for runs in groups:
        first = runs[0]
        mean, low, high = spread(runs, "accuracy")
        kmer_mean, kmer_low, kmer_high = spread(runs, "kmer_accuracy")
        each = ", ".join(f"{r['seed']}: {r['accuracy']:.3f}" for r in runs)
        lines.append(
            f"| {length_name(first['seqlen'])} | {_backbone(first)} | {first['steps']} | {first['windows']} | "
            f"{len(runs)} | {mean:.3f} ({low:.3f}-{high:.3f}) | {each} | "
            f"{first['kmer_k']}-mer: {kmer_mean:.3f} ({kmer_low:.3f}-{kmer_high:.3f}) | "
            f"{spread(runs, 'train_minutes')[0]:.1f} |"
        )
    return "\n".join(lines)


def _modes_cell(row: dict[str, Any]) -> str:
    if row["windowed"] is None:
        return "-"
    return f"{row['windowed']:.3f} / {row['stateful']:.3f} ({row['tiled_windows']})"


def plot_accuracy(rows: list[dict[str, Any]], path: Path | None, title: str) -> Figure:
    """Held-out accuracy against length, model and k-mer baseline, and chance (saved as a PNG when a path is given):
    with one run per length its 95% interval, with several seeds their mean, range and each run."""
    groups = by_length(rows)
    several = any(len(runs) > 1 for runs in groups)
    lengths = [runs[0]["seqlen"] for runs in groups]
    fig = new_figure(6.4, 4.2)
    ax = fig.subplots()
    for color, (key, low, high, name) in enumerate(
        (
            ("accuracy", "accuracy_low", "accuracy_high", "Mamba classifier"),
            ("kmer_accuracy", "kmer_low", "kmer_high", f"{rows[0]['kmer_k']}-mer + logistic regression"),
        )
    ):
        if several:
            means, lows, highs = zip(*(spread(runs, key) for runs in groups), strict=True)
            errors = [
                [m - lo for m, lo in zip(means, lows, strict=True)],
                [h - m for m, h in zip(means, highs, strict=True)],
            ]
            label = f"{name}: mean, range over seeds"
            ax.plot([r["seqlen"] for r in rows], [r[key] for r in rows], ".", color=f"C{color}", alpha=0.5)
        else:
            means = [r[key] for r in rows]  # one run per length: rows and lengths line up
            errors = [[r[key] - r[low] for r in rows], [r[high] - r[key] for r in rows]]
            label = f"{name} (95% CI)"
        ax.errorbar(lengths, means, yerr=errors, marker="o", capsize=3, color=f"C{color}", label=label)
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


def seeds_note(seeds: list[int] | None) -> str:
    """The sentence of the results text that says how runs were repeated."""
    if seeds is None:
        return ""
    return f"Each length is fine-tuned once per seed ({', '.join(map(str, seeds))}): mean and range over seeds. "


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
            f"{', head only' if opts.head_only else ''}, {opts.step_tokens()[0]:,} tokens per step, "
            f"held-out windows from regions never trained on; the k-mer baseline is fitted on training windows and "
            f"scored on exactly the same held-out windows. *Tiled*: the held-out regions cut into consecutive "
            f"windows, each classified alone (windowed, as `genossm classify`) or with the recurrent state carried "
            f"from the windows before it (`genossm classify --stateful`). "
            f"{seeds_note(study_seeds(opts))}Runs: `{opts.work}`. "
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
