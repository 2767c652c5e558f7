"""Shared fixtures: every test gets its own deterministic seed, so inputs are fresh per test yet reproducible."""

import os
import zlib
from pathlib import Path

# Triton kernels run on the CPU through Triton's interpreter when there is no GPU; it must be set before import.
if not os.environ.get("CUDA_VISIBLE_DEVICES") and not os.path.exists("/dev/nvidia0"):
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed(request: pytest.FixtureRequest) -> None:
    torch.manual_seed(zlib.crc32(request.node.nodeid.encode()))


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref||, in float64; NaN anywhere fails any bound."""
    out, ref = out.double(), ref.double()
    return float((out - ref).norm() / ref.norm().clamp(min=1e-30))


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private genossm cache folder (indexes and decompressed copies of FASTA files) for one test."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("GENOSSM_CACHE", str(folder))
    return folder
