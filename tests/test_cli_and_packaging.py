"""The installed package: console script, presets, and the genossm.kernels mapping."""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

import genossm.kernels
from genossm.cli.main import main
from genossm.models import MambaLMHeadModel
from genossm.presets import model_config, preset_dir, preset_names

EXPECTED_PARAMS = {
    "mamba1-0.7m": 0.70e6,
    "mamba1-1.4m": 1.40e6,
    "mamba1-7m": 7.0e6,
    "mamba2-0.8m": 0.81e6,
    "mamba2-7.5m": 7.45e6,
}


def test_kernels_are_genossm_kernels_only(tmp_path):
    assert genossm.kernels.__file__.replace("\\", "/").endswith("/kernels/__init__.py")
    probe = "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('kernels') is None else 1)"
    assert subprocess.run([sys.executable, "-c", probe], cwd=tmp_path).returncode == 0


@pytest.mark.parametrize("name", preset_names("models"))
def test_model_presets_build(name):
    model = MambaLMHeadModel(model_config(name))
    params = sum(p.numel() for p in model.parameters())
    if name in EXPECTED_PARAMS:
        assert abs(params - EXPECTED_PARAMS[name]) / EXPECTED_PARAMS[name] < 0.01


def test_presets_ship_with_the_package():
    assert (preset_dir("models") / "mamba1-1.4m.yaml").is_file()


def test_bench_model_writes_json(tmp_path, capsys):
    assert (
        main(
            [
                "bench",
                "model",
                "--model",
                "mamba1-tiny",
                "--seqlen",
                "32,64",
                "--device",
                "cpu",
                "--repeats",
                "1",
                "--train",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    rows = json.loads((tmp_path / "model.json").read_text())["rows"]
    assert [r["seqlen"] for r in rows] == [32, 64] and all(r["ms"] > 0 for r in rows)
    assert rows[0]["params"] == 131904 and (tmp_path / "model.png").is_file()
    assert "training step on cpu" in capsys.readouterr().out


def test_unknown_preset_is_one_clear_line(capsys):
    assert main(["bench", "model", "--model", "mamba9-huge"]) == 1
    err = capsys.readouterr().err
    assert "no models preset named 'mamba9-huge'" in err and "mamba1-1.4m" in err and "Traceback" not in err


def test_console_script_runs():
    result = subprocess.run(["genossm", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "bench" in result.stdout


def _every_parser(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command path, parser) for the parser and each subcommand under it, depth first."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _every_parser(sub, (*path, name))


def test_every_commands_help_prints():
    """--help of every (sub)command formats: a help text with a bare % (e.g. "5% of max_steps") used to crash."""
    from genossm.cli.main import build_parser

    commands = list(_every_parser(build_parser()))
    assert {("pretrain",), ("bench", "model"), ("data", "maf2fasta")} <= {path for path, _ in commands}
    for path, parser in commands:
        text = parser.format_help()
        assert text.startswith("usage: genossm"), path
    assert "5% of max_steps" in dict(commands)[("pretrain",)].format_help()


def test_ci_runs_the_readme_test_command():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    ci = (root / ".ci" / "run").read_text()
    test_command = next(line for line in readme.splitlines() if line.endswith("&& pytest"))
    assert test_command in ci


def test_yaml_paths_become_paths(tmp_path):
    from genossm.cli.options import build_options
    from genossm.training.pretrain import PretrainOptions

    opts = build_options(PretrainOptions, {"output": "runs/x", "data": "a.fa"}, "test")
    assert opts.output == Path("runs/x") and opts.data == Path("a.fa")
