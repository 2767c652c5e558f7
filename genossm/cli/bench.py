"""``genossm bench``: benchmarks that print a table and can write JSON."""

from __future__ import annotations

import argparse

from genossm.cli.options import add_options, resolve_options

# what -> (module, options class name, help)
BENCHMARKS = {
    "model": ("genossm.bench.model", "ModelBenchOptions", "model forward (or training step) throughput"),
    "data": ("genossm.bench.data", "DataBenchOptions", "data loading: tokenised LM steps per second, one core"),
    "ssd": ("genossm.bench.ssd", "SSDBenchOptions", "Mamba-2 SSD scan: Triton kernels vs mamba_ssm vs PyTorch"),
    "ssd-stages": ("genossm.bench.ssd_stages", "SSDStagesOptions", "SSD Triton kernels one by one, tile variants"),
    "classify": ("genossm.bench.classify", "ClassifyBenchOptions", "genossm classify: bases per second end to end"),
    "generate": ("genossm.bench.generate", "GenerateBenchOptions", "genossm generate: new bases per second"),
    "selective-scan": (
        "genossm.bench.selective_scan",
        "SelectiveScanBenchOptions",
        "selective scan: Triton vs PyTorch vs mamba_ssm, forward and backward",
    ),
    "conv-norm": (
        "genossm.bench.conv_norm",
        "ConvNormBenchOptions",
        "causal conv1d and residual add + norm: Triton vs PyTorch (vs causal_conv1d / mamba_ssm)",
    ),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    import importlib

    sub = parser.add_subparsers(dest="what", metavar="WHAT", required=True)
    for name, (module, options, text) in BENCHMARKS.items():
        bench = sub.add_parser(name, help=text, description=text)
        add_options(bench, getattr(importlib.import_module(module), options))


def run(args: argparse.Namespace) -> None:
    import importlib

    module_name, options, _ = BENCHMARKS[args.what]
    module = importlib.import_module(module_name)
    module.run(resolve_options(getattr(module, options), args))
