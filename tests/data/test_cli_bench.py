"""``genossm data index`` and ``genossm bench data`` end to end."""

import json

import numpy as np
from fasta_files import random_bases, write_fasta

from genossm.cli.main import main


def test_index_lists_records(tmp_path, cache, capsys):
    path = write_fasta(tmp_path / "g.fa.gz", {"a": b"ACGT" * 100, "b": b"AC"})
    assert main(["data", "index", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["record", "length"] and out[1].split() == ["a", "400"] and out[2].split() == ["b", "2"]


def test_bench_data_writes_json(tmp_path, cache, capsys):
    path = write_fasta(tmp_path / "g.fa", {"a": random_bases(np.random.default_rng(0), 50_000)})
    argv = ["bench", "data", "--fasta", str(path), "--seqlen", "256,1024", "--tokens-per-step", "8192"]
    assert main([*argv, "--repeats", "2", "--out", str(tmp_path / "bench")]) == 0
    rows = json.loads((tmp_path / "bench" / "data.json").read_text())["rows"]
    assert [(r["seqlen"], r["windows"]) for r in rows] == [(256, 32), (1024, 8)]
    assert all(r["Mbases_per_s"] > 0 and r["format"] == "plain" for r in rows)
    assert (tmp_path / "bench" / "data.png").is_file() and "Mbases_per_s" in capsys.readouterr().out
