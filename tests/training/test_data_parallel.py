"""`--devices 2` takes the same steps as one device: two CPU processes (Lightning's DDP, or FSDP2's sharded
parameters, over gloo) against one.

Lightning starts the second rank by running the same command again, so this also checks that both processes agree
on the run folder when none is given, and that only the first one writes it.
"""

import csv
import shutil
import subprocess

import pytest
import torch
from conftest import TWO_RANKS

import genossm

pytestmark = [pytest.mark.slow, TWO_RANKS]


def pretrain(cwd, model, devices, *extra):
    args = ["pretrain", "--model", model, "--seqlen", "128", "--tokens-per-step", "512", "--max-steps", "4"]
    args += ["--val-every", "2", "--valid-items", "1", "--num-workers", "0", "--no-seqlen-warmup"]
    done = subprocess.run(
        [shutil.which("genossm"), *args, "--devices", str(devices), *extra],
        cwd=cwd, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]


def val_losses(run):
    with open(run / "metrics.csv") as f:
        return [float(row["val/loss"]) for row in csv.DictReader(f) if row["val/loss"]]


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_reach_the_weights_of_one(tmp_path, tiny_model, strategy):
    pretrain(tmp_path, tiny_model, 1, "--output", "one")
    # no --output: a dated folder, chosen once for both; a loader worker per rank, started by a fork server
    pretrain(tmp_path, tiny_model, 2, "--strategy", strategy, "--num-workers", "1")
    (two,) = (tmp_path / "runs").iterdir()
    assert {p.name for p in two.iterdir()} >= {"config.yaml", "metrics.csv", "checkpoints", "model", "summary.json"}
    one_weights, two_weights = (genossm.from_pretrained(run / "model").state_dict() for run in (tmp_path / "one", two))
    for name, weight in one_weights.items():
        torch.testing.assert_close(two_weights[name], weight, rtol=1e-4, atol=1e-5, msg=name)
    assert len(val_losses(two)) == 2 and val_losses(two) == pytest.approx(val_losses(tmp_path / "one"), rel=1e-5)
