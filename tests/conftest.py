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

# Tests that start two ranks: CPU processes without a GPU, one GPU each with CUDA (so none on a single GPU).
TWO_RANKS = pytest.mark.skipif(0 < torch.cuda.device_count() < 2, reason="two ranks need two GPUs where there is one")


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


def assert_step_kernel_matches(step, d_model: int, conv: torch.Tensor, ssm: torch.Tensor) -> None:
    """6 tokens through ``step(hidden, conv, ssm, ssm_out=None) -> (out, new conv, new ssm)`` from the states given,
    on the Triton backend (the interpreter on the CPU) and on the reference's: every output and state agree, and the
    states given are not changed; with ``ssm_out=ssm`` the new scan state is written over the old one alike."""
    from genossm.kernels import backend

    states = {"torch": (conv, ssm), "triton": (conv, ssm)}
    given = conv.clone(), ssm.clone()
    with torch.no_grad():
        for _ in range(6):
            hidden = torch.randn(conv.shape[0], d_model, device=conv.device)
            with backend("torch"):
                ref, *states["torch"] = step(hidden, *states["torch"])
            with backend("triton"):
                out, *states["triton"] = step(hidden, *states["triton"])
            assert rel_err(out, ref) < 1e-5
            for got, want in zip(states["triton"], states["torch"], strict=True):
                assert got.shape == want.shape and got.dtype == want.dtype
                assert rel_err(got, want) < 1e-5
    assert conv.equal(given[0]) and ssm.equal(given[1])
    hidden = torch.randn(conv.shape[0], d_model, device=conv.device)
    for name in ("torch", "triton"):
        with backend(name), torch.no_grad():
            want = step(hidden, conv, ssm)
            in_place = ssm.clone()
            got = step(hidden, conv, in_place, ssm_out=in_place)
        assert got[2] is in_place
        for a, b in zip(got, want, strict=True):
            assert rel_err(a, b) < 1e-6, name


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
