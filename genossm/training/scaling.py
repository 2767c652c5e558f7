"""``genossm scale``: a series of pretraining runs (over length or model size) and its table and plots.

A series file (configs/series/*.yaml) holds ``base`` options shared by every run and a list of ``runs`` that
override them. Each run trains in ``OUTPUT/<run name>``; a run that already finished (its summary.json exists) is
not trained again, so an interrupted series continues where it stopped. Results go to ``OUTPUT/results.{json,md}``
and plots, and optionally into a results document of the repository.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

from genossm.bench.report import markdown_table, plot_lines, write_json
from genossm.cli.options import build_options, option, read_yaml
from genossm.fileio import atomic_write_text
from genossm.models import MambaLMHeadModel
from genossm.presets import model_config, resolve_preset

from .pretrain import PretrainOptions, pretrain


@dataclass
class ScaleOptions:
    """Options of ``genossm scale``."""

    series: str = option(None, "series preset name (configs/series) or YAML file with 'base' and 'runs'")
    output: Path = option(Path("runs/scale"), "folder of the series: one sub-folder per run, results beside them")
    data: Path | None = option(None, "FASTA for every run (overrides the series; default: the series' or the sample)")
    max_steps: int | None = option(None, "override every run's step count (e.g. a quick look)")
    results_doc: Path | None = option(None, "also write the table and plots into this markdown file")


def run_name(overrides: dict) -> str:
    """A folder name from what a run changes: 'seqlen-1024', 'model-mamba1-7m'."""
    return "_".join(f"{k}-{v}" for k, v in overrides.items()).replace("/", "-")


def load_series(name_or_path: str) -> tuple[str, dict, list[dict], str]:
    """(title, base options, per-run overrides, x axis) of a series file."""
    path = resolve_preset(name_or_path, "series")
    spec = read_yaml(path)
    unknown = sorted(set(spec) - {"title", "base", "runs", "x"})
    if unknown or not spec.get("runs"):
        raise ValueError(f"{path}: a series needs 'runs' (and may have 'title', 'base', 'x'); unknown keys {unknown}")
    base, runs = spec.get("base") or {}, spec["runs"]
    for overrides in runs:  # check every run's options before the first one trains
        build_options(PretrainOptions, {**base, **overrides}, f"{path} run {overrides}")
    return spec.get("title", path.stem), base, runs, spec.get("x", "seqlen")


def run_series(opts: ScaleOptions) -> list[dict]:
    """Train every run of the series that has not finished; return one result row per run."""
    title, base, runs, x_axis = load_series(opts.series)
    rows = []
    for overrides in runs:
        name = run_name(overrides)
        folder = opts.output / name
        values = {**base, **overrides, "output": folder}
        if opts.data:
            values["data"] = opts.data
        if opts.max_steps:
            values["max_steps"] = opts.max_steps
        run_opts = build_options(PretrainOptions, values, f"series {opts.series}, run {name}")
        summary_file = folder / "summary.json"
        if not summary_file.is_file():
            resume = (folder / "checkpoints" / "last.ckpt").is_file()
            print(f"=== {title}: run {name} ({'resuming' if resume else 'starting'})", flush=True)
            start = time.perf_counter()
            pretrain(replace(run_opts, resume=resume))
            summary = json.loads(summary_file.read_text())
            summary["wall_s"] = time.perf_counter() - start
            atomic_write_text(summary_file, json.dumps(summary, indent=2))
        rows.append(result_row(name, run_opts, json.loads(summary_file.read_text())))
    report(rows, title, x_axis, opts)
    return rows


def result_row(name: str, run: PretrainOptions, summary: dict) -> dict:
    """One table row: what the run was and what it reached on held-out data."""
    params = sum(p.numel() for p in MambaLMHeadModel(model_config(run.model)).parameters())
    return {
        "run": name,
        "model": run.model,
        "params": params,
        "seqlen": run.seqlen,
        "steps": summary.get("steps"),
        "val_loss": summary.get("val/loss"),
        "val_ppl": summary.get("val/ppl"),
        "val_bits_per_base": summary.get("val/bits_per_base"),
        "tokens_per_s": summary.get("train/tokens_per_s"),
        "peak_mem_gib": summary.get("train/peak_mem_gib"),
        "wall_s": summary.get("wall_s"),
    }


def report(rows: list[dict], title: str, x_axis: str, opts: ScaleOptions) -> None:
    """results.json, results.md and a plot of held-out perplexity in the series folder (and the results doc)."""
    write_json(rows, opts.output / "results.json", series=opts.series, title=title)
    plot_name = f"{Path(opts.series).stem}.png"  # one plot per series: a results doc can hold several
    for_plot = [r for r in rows if r["val_ppl"] is not None]
    series = "model" if x_axis == "seqlen" else "seqlen"
    xlabel = "sequence length L (bases)" if x_axis == "seqlen" else "parameters"
    folders = [opts.output] + ([opts.results_doc.parent] if opts.results_doc else [])
    for folder in folders:
        plot_lines(
            for_plot,
            x_axis,
            "val_ppl",
            series,
            folder / plot_name,
            title=title,
            logx=True,
            ylabel="held-out perplexity (per base)",
            xlabel=xlabel,
        )
    table = markdown_table(rows)
    atomic_write_text(opts.output / "results.md", f"## {title}\n\n{table}\n\n![{title}]({plot_name})\n")
    print(table)
    if opts.results_doc:
        section = f"## {title}\n\n{table}\n\n![{title}]({plot_name})\n"
        replace_section(opts.results_doc, title, section)


def replace_section(doc: Path, title: str, section: str) -> None:
    """Put ``section`` into the markdown file ``doc`` in place of the section with the same title (or at the end)."""
    text = doc.read_text() if doc.is_file() else "# Results\n"
    header = f"## {title}\n"
    if header in text:
        start = text.index(header)
        end = text.find("\n## ", start + len(header))
        text = text[:start] + section + (text[end + 1 :] if end != -1 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    atomic_write_text(doc, text)
