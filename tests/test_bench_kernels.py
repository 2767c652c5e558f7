"""The kernel benchmarks run end to end on tiny shapes (on the CPU the Triton kernels go through the interpreter)."""

import json

from genossm.cli.main import main


def test_bench_selective_scan_writes_json_and_plots(tmp_path, capsys):
    args = ["bench", "selective-scan", "--shapes", "8x2x40", "--dstate", "4", "--dtype", "float32"]
    assert main([*args, "--repeats", "1", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "selective_scan.json").read_text())["rows"]
    impls = {r["impl"] for r in rows}
    assert {"genossm triton", "genossm triton (b,l,d)", "pytorch chunked"} <= impls
    assert {r["mode"] for r in rows} == {"fwd", "fwd+bwd"}
    assert all(r["rel_err"] < 1e-4 and r["ms"] > 0 for r in rows)
    assert (tmp_path / "selective_scan_fwd_d8.png").is_file()
    assert "Mtok/s" in capsys.readouterr().out


def test_bench_conv_norm_writes_json(tmp_path):
    args = ["bench", "conv-norm", "--tokens", "64", "--seqlen", "32", "--conv-dims", "8", "--norm-dims", "16"]
    assert main([*args, "--dtype", "float32", "--repeats", "1", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "conv_norm.json").read_text())["rows"]
    assert {(r["op"], r["impl"]) for r in rows} >= {("causal_conv1d", "genossm triton"), ("add_rmsnorm", "pytorch")}
