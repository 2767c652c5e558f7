"""``genossm bench classify``: the benchmark genome and the table/JSON (tiny settings; speed is not asserted)."""

import json
from pathlib import Path

from genossm.bench.classify import benchmark_fasta
from genossm.cli.main import main
from genossm.data.genome import Genome

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "apes"


def test_benchmark_fasta_repeats_the_sample(tmp_path):
    path = benchmark_fasta(SAMPLE, 0.03, tmp_path)
    genome = Genome(path)
    assert genome.names == ["chr1"] and genome.length("chr1") == 30_000
    assert benchmark_fasta(SAMPLE, 0.03, tmp_path) == path  # built once


def test_bench_classify_writes_json(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GENOSSM_CACHE", str(tmp_path / "cache"))
    args = ["bench", "classify", "--model", "mamba1-tiny", "--seqlen", "128,256", "--megabases", "0.004"]
    args += ["--sample", str(SAMPLE), "--device", "cpu", "--batch-tokens", "4096", "--out", str(tmp_path)]
    assert main(args) == 0
    rows = json.loads((tmp_path / "classify.json").read_text())["rows"]
    assert [(r["mode"], r["seqlen"]) for r in rows] == [
        ("read only", 0),
        ("windowed", 128),
        ("stateful", 128),
        ("windowed", 256),
        ("stateful", 256),
    ]
    assert all(r["bases"] == 4000 and r["Mb_per_s"] > 0 for r in rows)
    assert rows[1]["windows"] == 4000 // 128 + 1 and rows[2]["windows"] == 4000 // 128 + 1
    assert (tmp_path / "classify.png").is_file() and "Mb_per_s" in capsys.readouterr().out
