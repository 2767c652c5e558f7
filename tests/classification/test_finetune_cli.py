"""``genossm finetune`` end to end on small FASTA classes: training, the saved model, evaluation, resume, bad input."""

import json
import shutil
import subprocess

import numpy as np
import pytest
import torch
import yaml
from conftest import TWO_RANKS

import genossm
from genossm.classification.finetune import FinetuneOptions, open_run
from genossm.cli.main import main
from genossm.data.tokenizer import TOKENS
from genossm.models import MambaForSequenceClassification, MambaLMHeadModel
from genossm.presets import model_config

# Each class draws its bases from a set closed under reverse complement (training uses RC augmentation).
BASES = {"at": "AT", "cg": "CG", "short": "ACGT"}
TINY_YAML = {"d_model": 16, "n_layer": 2, "vocab_size": 12, "ssm_cfg": {"layer": "Mamba1", "d_state": 4}}


def class_fasta(path, label: str, records: int = 2, length: int = 1500) -> None:
    rng = np.random.default_rng(len(BASES[label]))
    with open(path, "w") as handle:
        for r in range(records):
            seq = "".join(rng.choice(list(BASES[label]), length))
            handle.write(f">rec{r}\n" + "\n".join(seq[i : i + 60] for i in range(0, length, 60)) + "\n")


@pytest.fixture
def classes(tmp_path):
    folder = tmp_path / "classes"
    folder.mkdir()
    class_fasta(folder / "at.fa", "at")
    class_fasta(folder / "cg.fasta", "cg")
    (folder / "notes.txt").write_text("not a FASTA file: ignored")
    return folder


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY_YAML))
    return path


def finetune_args(classes, tiny, output, *extra) -> list[str]:
    return [
        "finetune",
        "--classes", str(classes),
        "--model", str(tiny),
        "--seqlen", "32",
        "--tokens-per-step", "256",
        "--max-tokens-per-micro-batch", "128",
        "--lr", "0.01",
        "--warmup-steps", "2",
        "--weight-decay", "0",
        "--eval-windows", "24",
        "--kmer-windows", "16",
        "--kmer-k", "2",
        "--val-every", "100",
        "--checkpoint-every", "4",
        "--output", str(output),
        *extra,
    ]  # fmt: skip


def test_finetune_trains_saves_and_evaluates(classes, tiny, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(finetune_args(classes, tiny, out, "--max-steps", "25")) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["labels"] == ["at", "cg"] and summary["seqlen"] == 32 and summary["init"] == "scratch"
    assert summary["steps"] == 25 and summary["model"]["windows"] == 48
    assert summary["options"]["max_steps"] == 25 and summary["options"]["seqlen"] == 32  # the recipe, seed included
    assert "seed" in summary["options"]
    assert summary["model"]["accuracy"] > 0.9 and summary["kmer"]["accuracy"] > 0.9
    assert summary["model"]["accuracy_low"] < summary["model"]["accuracy"] <= summary["model"]["accuracy_high"]
    assert (out / "confusion.png").is_file() and (out / "metrics.csv").is_file()
    modes = summary["reading_modes"]  # held-out regions: 2 records x 150 bases per class -> 4 windows each
    assert modes["windowed"]["windows"] == modes["stateful"]["windows"] == 16
    model = genossm.from_pretrained(out / "model")
    assert isinstance(model, MambaForSequenceClassification)
    assert model.labels == ["at", "cg"] and model.seqlen == 32 and model.tokens[7:11] == list("ACGT")
    assert "model accuracy" in capsys.readouterr().err
    # the saved classifier labels a FASTA file of each class
    assert main(["classify", str(classes / "cg.fasta"), "--model", str(out / "model"), "--no-progress"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [r[3] for r in rows[1:]] == ["cg", "cg", "cg"]


@pytest.mark.slow
@TWO_RANKS
def test_two_processes_sharding_the_model_reach_the_weights_of_one(classes, tiny, tmp_path):
    """FSDP over two CPU processes (gloo); the first evaluates a copy of the whole weights gathered from both."""
    assert main(finetune_args(classes, tiny, tmp_path / "one", "--max-steps", "8")) == 0
    two = ("--devices", "2", "--strategy", "fsdp")
    args = finetune_args(classes, tiny, tmp_path / "two", "--max-steps", "8", *two)
    done = subprocess.run([shutil.which("genossm"), *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = (json.loads((tmp_path / r / "summary.json").read_text()) for r in ("one", "two"))
    assert two["parameters"] == one["parameters"] and two["model"]["windows"] == one["model"]["windows"]
    one_weights, two_weights = (genossm.from_pretrained(tmp_path / r / "model").state_dict() for r in ("one", "two"))
    for name, weight in one_weights.items():  # AdamW's normalised steps magnify the ranks' other summation order
        torch.testing.assert_close(two_weights[name], weight, rtol=1e-3, atol=1e-4, msg=name)


def test_finetune_on_records_as_examples(tmp_path, tiny, capsys):
    """Many short records per class, each one example (reads, enhancers): held out whole, padded to the window."""
    folder = tmp_path / "reads"
    folder.mkdir()
    rng = np.random.default_rng(11)
    for label in ("at", "cg"):
        lengths = rng.integers(8, 60, 40)  # around the window of 32
        records = {f"{label}{i}": "".join(rng.choice(list(BASES[label]), n)) for i, n in enumerate(lengths)}
        (folder / f"{label}.fa").write_text("".join(f">{name}\n{seq}\n" for name, seq in records.items()))
    out = tmp_path / "run"
    assert main(finetune_args(folder, tiny, out, "--examples", "records", "--max-steps", "25")) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["options"]["examples"] == "records" and "reading_modes" not in summary
    assert summary["model"]["windows"] == 8  # 10% of 40 records per class, each once
    assert summary["model"]["accuracy"] > 0.9 and summary["kmer"]["accuracy"] > 0.9
    capsys.readouterr()
    assert main(["classify", str(folder / "at.fa"), "--model", str(out / "model"), "--no-progress"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 42 and sum(r[3] == "at" for r in rows[1:]) >= 38  # header, 40 records, the file


def test_resume_continues_and_refuses_other_settings(classes, tiny, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(finetune_args(classes, tiny, out, "--max-steps", "4")) == 0
    assert main(finetune_args(classes, tiny, out, "--max-steps", "4")) == 1
    assert "already exists" in capsys.readouterr().err
    resume = ["finetune", "--output", str(out), "--resume"]
    assert main([*resume, "--max-steps", "6", "--max-tokens-per-micro-batch", "64"]) == 0  # memory may change
    assert json.loads((out / "summary.json").read_text())["steps"] == 6
    assert main([*resume, "--seqlen", "64"]) == 1
    assert "cannot resume" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU's default")
def test_a_new_run_saves_the_device_default_of_tokens_per_step(classes, tmp_path):
    opts = FinetuneOptions(classes=classes, seqlen=32, output=tmp_path / "run")
    assert opts.tokens_per_step is None
    open_run(opts)
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["tokens_per_step"] == 8192  # the CPU's default, which a resume on a GPU keeps
    assert saved["max_tokens_per_micro_batch"] is None


def test_init_from_a_language_model(classes, tiny, tmp_path):
    lm = MambaLMHeadModel(model_config(tiny))
    lm.tokens = list(TOKENS)
    lm.save_pretrained(tmp_path / "lm")
    out = tmp_path / "run"
    assert main(finetune_args(classes, "unused", out, "--max-steps", "2", "--init", str(tmp_path / "lm"))) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["init"].startswith("genossm language model") and str(tmp_path / "lm") in summary["init"]


def test_head_only_keeps_the_initial_backbone(classes, tiny, tmp_path):
    lm = MambaLMHeadModel(model_config(tiny))
    lm.save_pretrained(tmp_path / "lm")
    out = tmp_path / "run"
    args = finetune_args(classes, tiny, out, "--max-steps", "3", "--init", str(tmp_path / "lm"), "--head-only")
    assert main(args) == 0
    model = genossm.from_pretrained(out / "model")
    for name, p in lm.backbone.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[name], p), name


def one_line_error(capsys, *fragments) -> None:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, err


def test_bad_class_inputs(classes, tiny, tmp_path, capsys):
    out = tmp_path / "run"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(finetune_args(empty, tiny, out)) == 1
    one_line_error(capsys, str(empty), "no FASTA file")

    manifest = tmp_path / "classes.tsv"
    manifest.write_text(f"at\t{classes / 'at.fa'}\ncg\tmissing.fa\n")
    assert main(finetune_args(manifest, tiny, out)) == 1
    one_line_error(capsys, str(manifest), "missing.fa", "does not exist")

    single = tmp_path / "single"
    single.mkdir()
    class_fasta(single / "at.fa", "at")
    assert main(finetune_args(single, tiny, out)) == 1
    one_line_error(capsys, str(single), "at least two classes")

    class_fasta(classes / "short.fa", "short", length=20)  # every record shorter than the window
    assert main(finetune_args(classes, tiny, out)) == 1
    one_line_error(capsys, "class 'short'", str(classes / "short.fa"))
    (classes / "short.fa").write_text(">n\n" + "N" * 1500 + "\n")  # long enough, but all N
    assert main(finetune_args(classes, tiny, out)) == 1
    one_line_error(capsys, "class 'short'", str(classes / "short.fa"))
    assert not out.exists()  # nothing was started


def test_init_with_another_vocabulary(classes, tiny, tmp_path, capsys):
    lm = MambaLMHeadModel(model_config(tiny))
    lm.tokens = list("ACGTN")
    lm.save_pretrained(tmp_path / "lm")
    assert main(finetune_args(classes, tiny, tmp_path / "run", "--init", str(tmp_path / "lm"))) == 1
    one_line_error(capsys, "vocabulary mismatch", str(tmp_path / "lm" / "genossm.json"))
