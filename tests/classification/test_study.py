"""``genossm study``: one run per length from a MAF, the results document and plot, reruns that skip finished work."""

import numpy as np
import pytest
import yaml
from test_finetune_cli import TINY_YAML

from genossm.classification.study import (
    StudyOptions,
    length_name,
    parse_lengths,
    pretrained_backbone,
    study_seeds,
)
from genossm.cli.main import main
from genossm.cli.options import build_options, read_yaml
from genossm.models import MambaConfig, MambaLMHeadModel
from genossm.presets import preset_names, resolve_preset


def write_maf(path, blocks: int = 3, size: int = 600) -> None:
    """Two species, Hsap drawing A/T and Ptro C/G, in ``blocks`` aligned blocks of ``size`` columns."""
    rng = np.random.default_rng(0)
    lines = ["##maf version=1", ""]
    for b in range(blocks):
        lines.append("a score=0")
        for species, bases in (("Hsap", "AT"), ("Ptro", "CG")):
            seq = "".join(rng.choice(list(bases), size))
            lines.append(f"s {species}.22 {b * size} {size} + 100000 {seq}")
        lines.append("")
    path.write_text("\n".join(lines))


def study_args(tmp_path, *extra) -> list[str]:
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text(yaml.safe_dump(TINY_YAML))
    return [
        "study",
        "--maf", str(tmp_path / "apes.maf"),
        "--model", str(tiny),
        "--lengths", "2^5,64",
        "--max-steps", "3",
        "--tokens-per-step", "256",
        "--max-tokens-per-micro-batch", "256",
        "--eval-windows", "8",
        "--kmer-windows", "8",
        "--kmer-k", "2",
        "--checkpoint-every", "2",
        "--work", str(tmp_path / "work"),
        "--results", str(tmp_path / "results"),
        *extra,
    ]  # fmt: skip


def test_study_writes_the_results_and_skips_finished_lengths(tmp_path, capsys):
    write_maf(tmp_path / "apes.maf")
    pretrained = tmp_path / "pretrained" / "64"
    MambaLMHeadModel(MambaConfig(**TINY_YAML)).save_pretrained(pretrained)
    results = tmp_path / "results"
    results.mkdir()
    (results / "classification.md").write_text("# Classification results\n\nMy notes stay.\n")
    assert main(study_args(tmp_path, "--pretrained", str(tmp_path / "pretrained"))) == 0
    out = capsys.readouterr().out
    assert "L = 32: training" in out and "L = 64: training" in out
    document = (results / "classification.md").read_text()
    assert document.startswith("# Classification results\n\nMy notes stay.\n")
    rows = [line for line in document.splitlines() if line.startswith("| 2^")]
    assert (
        len(rows) == 2
        and " / " in rows[0]
        and "| scratch |" in rows[0]
        and "pretrained" in rows[1]
        and str(pretrained) in rows[1]
    )
    assert "Hsap, Ptro (chance 50%)" in document and "classification_accuracy.png" in document
    assert (results / "classification_accuracy.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["L32", "L64", "fasta"]

    assert main(study_args(tmp_path, "--pretrained", str(tmp_path / "pretrained"))) == 0
    assert "L = 32: done before" in capsys.readouterr().out
    again = (results / "classification.md").read_text()
    assert again == document  # regenerated in place, once


def test_study_over_seeds_reports_their_mean_and_range(tmp_path, capsys):
    write_maf(tmp_path / "apes.maf")
    args = [*study_args(tmp_path, "--seeds", "0,1")]
    args[args.index("--lengths") + 1] = "2^5"
    assert main(args) == 0
    assert "L = 32, seed 1: training" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["L32-seed0", "L32-seed1", "fasta"]
    seeds = [yaml.safe_load((tmp_path / "work" / f"L32-seed{s}" / "config.yaml").read_text())["seed"] for s in (0, 1)]
    assert seeds == [0, 1]
    document = (tmp_path / "results" / "classification.md").read_text()
    (row,) = [line for line in document.splitlines() if line.startswith("| 2^")]
    cells = [c.strip() for c in row.split("|")[1:-1]]
    accuracies = [float(part.split(": ")[1]) for part in cells[6].split(", ")]
    assert cells[4] == "2" and [part.split(":")[0] for part in cells[6].split(", ")] == ["0", "1"]
    mean = sum(accuracies) / 2
    assert cells[5] == f"{mean:.3f} ({min(accuracies):.3f}-{max(accuracies):.3f})"
    assert "once per seed (0, 1)" in document
    assert main(args) == 0 and "L = 32, seed 0: done before" in capsys.readouterr().out


def test_seeds_option():
    assert study_seeds(StudyOptions(seeds="3, 1,3")) == [3, 1] and study_seeds(StudyOptions()) is None
    with pytest.raises(ValueError, match="--seeds: expected integers"):
        study_seeds(StudyOptions(seeds="1,x"))


def test_pretrained_backbones_are_found_in_a_scale_series(tmp_path):
    series = tmp_path / "scale"
    MambaLMHeadModel(MambaConfig(**TINY_YAML)).save_pretrained(series / "seqlen-1024" / "model")
    (series / "seqlen-4096").mkdir()  # a run that has not finished: no model yet
    assert pretrained_backbone(series, 1024) == series / "seqlen-1024" / "model"
    assert pretrained_backbone(series, 4096) is None and pretrained_backbone(None, 1024) is None


def test_lengths_and_names():
    assert parse_lengths("2^10, 4096,2^10") == [1024, 4096]
    assert length_name(1 << 20) == "2^20 (1M)" and length_name(1024) == "2^10 (1K)" and length_name(3000) == "(3000)"


def test_shipped_run_presets_parse():
    assert {"great-apes", "great-apes-cpu"} <= set(preset_names("runs"))
    for name in preset_names("runs"):
        path = resolve_preset(name, "runs")
        opts = build_options(StudyOptions, read_yaml(path), str(path))
        assert parse_lengths(opts.lengths)[0] >= 2**8
    full = build_options(StudyOptions, read_yaml(resolve_preset("great-apes", "runs")), "great-apes")
    assert parse_lengths(full.lengths)[-1] == 1 << 20  # the paper's study goes to 2^20
