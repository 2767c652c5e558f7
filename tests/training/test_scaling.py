"""`genossm scale`: a tiny series runs, skips finished runs, and writes the table, plot and results document."""

import json

import pytest
import yaml

from genossm.cli.main import main
from genossm.presets import preset_names
from genossm.training.scaling import load_series, replace_section


def test_series_runs_and_reports(tmp_path, capsys):
    model = tmp_path / "tiny.yaml"
    model.write_text(yaml.safe_dump({"d_model": 16, "n_layer": 1, "vocab_size": 12, "ssm_cfg": {"d_state": 4}}))
    series = tmp_path / "series.yaml"
    series.write_text(
        yaml.safe_dump(
            {
                "title": "tiny series",
                "x": "seqlen",
                "base": {
                    "model": str(model),
                    "tokens_per_step": 256,
                    "max_steps": 2,
                    "val_every": 2,
                    "valid_items": 1,
                    "num_workers": 0,
                    "seqlen_warmup": False,
                },
                "runs": [{"seqlen": 64}, {"seqlen": 128}],
            }
        )
    )
    doc = tmp_path / "results" / "pretraining.md"
    args = ["scale", "--series", str(series), "--output", str(tmp_path / "out"), "--results-doc", str(doc)]
    assert main(args) == 0
    rows = json.loads((tmp_path / "out" / "results.json").read_text())["rows"]
    assert [r["seqlen"] for r in rows] == [64, 128] and all(r["val_ppl"] > 1 for r in rows)
    plot = f"{series.stem}.png"
    assert (tmp_path / "out" / plot).is_file() and (doc.parent / plot).is_file() and f"]({plot})" in doc.read_text()
    assert "## tiny series" in doc.read_text()
    capsys.readouterr()
    assert main(args) == 0  # finished runs are not trained again
    assert "=== tiny series: run" not in capsys.readouterr().out


@pytest.mark.parametrize("name", preset_names("series"))
def test_shipped_series_parse(name):
    _, _, runs, x_axis = load_series(name)
    assert runs and x_axis in ("seqlen", "params")


def test_replace_section_keeps_the_rest(tmp_path):
    doc = tmp_path / "r.md"
    doc.write_text("# Results\n\nintro\n\n## A\n\nold a\n\n## B\n\nkeep b\n")
    replace_section(doc, "A", "## A\n\nnew a\n")
    text = doc.read_text()
    assert "new a" in text and "old a" not in text and "keep b" in text and "intro" in text
