"""Benchmark reports: JSON round trip and a plot file."""

import json

import matplotlib

from genossm.bench.report import plot_lines, write_json
from genossm.bench.timing import format_table


def test_report_json_and_plot(tmp_path):
    rows = [
        {"L": 1024, "impl": "ours", "ms": 1.5},
        {"L": 2048, "impl": "ours", "ms": 2.5},
        {"L": 1024, "impl": "ref", "ms": 3.0},
    ]
    write_json(rows, tmp_path / "r.json", device="cpu")
    assert json.loads((tmp_path / "r.json").read_text()) == {"meta": {"device": "cpu"}, "rows": rows}
    matplotlib.use("svg")  # a user's backend (a notebook's inline one, say) is left as it was
    fig = plot_lines(rows, "L", "ms", "impl", tmp_path / "r.png", title="t")
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    assert matplotlib.get_backend() == "svg"
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["ours", "ref"]
    table = format_table(rows)
    assert table.splitlines()[0].split() == ["L", "impl", "ms"] and "2.5" in table
