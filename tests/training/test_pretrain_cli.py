"""`genossm pretrain` end to end on the bundled human sample: outputs, resume, and bad input."""

import json

import pytest
import torch
import yaml

import genossm
from genossm.cli.main import main
from genossm.training.lm_module import LMPretrainModule


def pretrain(tiny_model, output, steps, *extra):
    args = [
        "pretrain",
        "--model",
        tiny_model,
        "--seqlen",
        "128",
        "--tokens-per-step",
        "512",
        "--max-steps",
        str(steps),
        "--val-every",
        "2",
        "--valid-items",
        "1",
        "--checkpoint-every",
        "2",
        "--num-workers",
        "0",
        "--no-seqlen-warmup",
        "--output",
        str(output),
        *extra,
    ]
    return main(args)


def final_weights(run):
    return torch.cat([p.flatten() for p in genossm.from_pretrained(run / "model").parameters()])


class Killed(Exception):
    """Stands for the process being killed mid-run."""


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="CUDA steps are not bit for bit repeatable (the scan backward's float32 atomics)"
)
def test_pretrain_writes_a_run_and_resumes_exactly(tmp_path, tiny_model, monkeypatch):
    assert pretrain(tiny_model, tmp_path / "straight", 6) == 0
    run = tmp_path / "straight"
    for name in ("config.yaml", "metrics.csv", "summary.json", "checkpoints/last.ckpt", "model/config.json"):
        assert (run / name).is_file(), name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 6 and summary["val/loss"] > 0
    assert summary["options"] == yaml.safe_load((run / "config.yaml").read_text())  # the recipe beside the result
    assert summary["options"]["max_steps"] == 6 and summary["options"]["output"] == str(run)
    assert genossm.from_pretrained(run / "model").tokens[7:] == ["A", "C", "G", "T", "N"]

    original = LMPretrainModule.training_step

    def dies_at_step_5(self, batch, batch_idx):
        if self.global_step == 5:
            raise Killed
        return original(self, batch, batch_idx)

    monkeypatch.setattr(LMPretrainModule, "training_step", dies_at_step_5)
    with pytest.raises(Killed):
        pretrain(tiny_model, tmp_path / "split", 6)
    monkeypatch.setattr(LMPretrainModule, "training_step", original)
    assert not (tmp_path / "split" / "model").exists()
    assert main(["pretrain", "--resume", "--output", str(tmp_path / "split")]) == 0
    assert torch.allclose(final_weights(run), final_weights(tmp_path / "split"), atol=1e-6)
    steps = [line.split(",")[0] for line in (tmp_path / "split" / "metrics.csv").read_text().splitlines()[1:]]
    assert {str(s) for s in range(6)} <= set(steps)


def test_pretrain_refuses_a_used_output(tmp_path, tiny_model, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "mine.txt").write_text("keep")
    assert pretrain(tiny_model, tmp_path / "run", 2) == 1
    assert "already exists and is not empty" in capsys.readouterr().err
    assert (tmp_path / "run" / "mine.txt").read_text() == "keep"


def test_pretrain_bad_inputs_are_one_line(tmp_path, tiny_model, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("seqlen: 128\nlearning_rate: 0.1\n")
    assert main(["pretrain", "--config", str(bad), "--output", str(tmp_path / "a")]) == 1
    assert "unknown option(s) ['learning_rate']" in capsys.readouterr().err
    assert main(["pretrain", "--resume", "--output", str(tmp_path / "nothing")]) == 1
    assert "cannot resume" in capsys.readouterr().err
    assert pretrain(tiny_model, tmp_path / "long", 2, "--seqlen", "8388608", "--tokens-per-step", "8388608") == 1
    err = capsys.readouterr().err
    assert "8388608" in err.replace(",", "") and "Traceback" not in err
    assert not (tmp_path / "long").exists()


def test_pretrain_nan_names_the_step(tmp_path, tiny_model, capsys):
    assert pretrain(tiny_model, tmp_path / "nan", 4, "--lr", "1e30", "--grad-clip", "1e30") == 1
    err = capsys.readouterr().err
    assert "training stopped: loss is nan at optimizer step" in err and "--resume" in err


def test_final_weights_are_validated_even_between_validations(tmp_path, tiny_model):
    assert pretrain(tiny_model, tmp_path / "run", 3, "--val-every", "100") == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["val/loss"] > 0 and summary["train/tokens_per_s"] > 0  # the train metrics survive validate()
