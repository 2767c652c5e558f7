"""Shared fixtures: every test gets its own deterministic seed, so inputs are fresh per test yet reproducible."""

import os
import zlib
from pathlib import Path

# Triton kernels run on the CPU through Triton's interpreter when there is no GPU; it must be set before import.
if not os.environ.get("CUDA_VISIBLE_DEVICES") and not os.path.exists("/dev/nvidia0"):
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest
import torch
import yaml

# Where the Triton tests put their tensors: the GPU when there is one, else the CPU (through the interpreter above).
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``gpu`` are skipped on machines without CUDA."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed(request: pytest.FixtureRequest) -> None:
    torch.manual_seed(zlib.crc32(request.node.nodeid.encode()))


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref||, in float64; NaN anywhere fails any bound."""
    out, ref = out.detach().double(), ref.detach().double()
    return float((out - ref).norm() / ref.norm().clamp(min=1e-30))


def saved_bytes(call, params) -> int:
    """Bytes of the tensors autograd saves while ``call()`` runs, besides ``params`` (each storage counted once)."""
    skip = {p.data_ptr() for p in params if p is not None}
    saved = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.data_ptr() not in skip:
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        call()
    return sum(saved.values())


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private genossm cache folder (indexes and decompressed copies of FASTA files) for one test."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("GENOSSM_CACHE", str(folder))
    return folder


TINY_MODEL = {"d_model": 16, "n_layer": 2, "vocab_size": 12, "ssm_cfg": {"layer": "Mamba1", "d_state": 4}}


@pytest.fixture
def tiny_model(tmp_path: Path) -> str:
    """A two-block Mamba-1 of width 16, as a model config file in tmp_path (for end-to-end training runs)."""
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY_MODEL))
    return str(path)
