"""``genossm bench ssd`` and ``ssd-stages``: the command runs on the CPU (PyTorch path), the stage calls run on the
interpreter, and the floor counts what they say."""

import json

import torch

import genossm.kernels.ssd.tiling as tiling
from genossm.bench.ssd import SSDBenchOptions, floor_bytes, floor_flops, make_inputs
from genossm.bench.ssd_stages import SSDStagesOptions, parse_variant, stage_calls
from genossm.cli.main import main


def test_bench_ssd_cpu_smoke(tmp_path, capsys):
    args = "--tokens 128 --seqlen 32,64 --dstate 4 --sweep-dstate 8 --nheads 2 --headdim 4 --chunk-size 16"
    assert main(["bench", "ssd", *args.split(), "--dtype", "float32", "--repeats", "1", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "ssd.json").read_text())
    rows = report["rows"]
    assert {(r["seqlen"], r["dstate"], r["mode"]) for r in rows} == {
        (L, n, m) for L in (32, 64) for n in (4, 8) for m in ("fwd", "fwd+bwd")
    }
    assert all(r["impl"] == "torch" and r["ms"] > 0 and r["err"] < 1e-4 for r in rows)
    assert (tmp_path / "ssd.png").is_file() and "CHECK FAILED" not in capsys.readouterr().out


def test_floor_counts():
    # One chunk of 2 positions, one head, headdim = dstate = 1: C B^T and its product over 3 causal pairs,
    # chunk state and state output over 2 positions -> 2 * (3 + 3 + 2 + 2) FLOPs.
    assert floor_flops(1, 2, 1, 1, 1, 1, 2, train=False) == 20
    assert floor_bytes(1, 2, 1, 1, 1, 1, 2, train=False) == 2 * (2 + 2 + 1) * 2
    assert floor_flops(8, 1024, 4, 64, 1, 64, 256, train=True) > 2 * floor_flops(8, 1024, 4, 64, 1, 64, 256, False)


def test_stage_calls_run(monkeypatch):
    monkeypatch.setattr(tiling, "MAX_BLOCK_T", 16)
    opts = SSDStagesOptions(dstate=8, chunk_size=32)
    inputs = make_inputs(2, 40, SSDBenchOptions(nheads=2, headdim=8, dtype="float32"), 8, torch.device("cpu"))
    calls = stage_calls(inputs, opts, parse_variant("num_warps=8,block_pn=32"))
    assert len(calls) == 8
    for call in calls.values():
        call()
