"""Causal conv1d and residual add + norm speed: genossm's Triton kernels against the PyTorch references and, when
installed, the causal_conv1d package and mamba_ssm's Triton norm; forward and forward+backward."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from genossm.cli.options import option
from genossm.kernels import add_norm, add_norm_ref, backend, causal_conv1d_ref

from .kernel_timing import copy_bandwidth_gbps, forward_call, time_ms, training_call
from .report import write_json
from .timing import format_table, pick_device


@dataclass
class ConvNormBenchOptions:
    """Options of ``genossm bench conv-norm``."""

    tokens: int = option(1 << 20, "batch x seqlen of every call")
    seqlen: int = option(1 << 14, "positions per sequence (conv1d)")
    conv_dims: str = option("256,2048", "channels of the conv, comma separated")
    norm_dims: str = option("128,1024", "hidden sizes of the norm, comma separated")
    width: int = option(4, "conv width (2 to 4)")
    dtype: Literal["bfloat16", "float16", "float32"] = option("bfloat16", "activation dtype")
    repeats: int = option(20, "timed calls per measurement (the median is reported)")
    device: str = option("auto", "'auto' (CUDA when present), 'cpu' or 'cuda'")
    out: Path = option(Path("bench-results"), "directory for conv_norm.json")


def conv_impls(device: torch.device) -> dict[str, object]:
    def ours(x, weight, bias):
        with backend("triton"):
            from genossm.kernels import causal_conv1d_fn

            return causal_conv1d_fn(x, weight, bias, activation="silu")

    impls = {"pytorch": lambda x, weight, bias: causal_conv1d_ref(x, weight, bias, "silu")}
    if device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1":
        impls["genossm triton"] = ours
    try:
        from causal_conv1d import causal_conv1d_fn as peer

        impls["causal_conv1d"] = lambda x, weight, bias: peer(x, weight, bias, activation="silu")
    except Exception as err:  # not installed, or its CUDA extension does not load
        print(f"causal_conv1d is not compared: {type(err).__name__}: {err}")
    return impls


def norm_impls(device: torch.device) -> dict[str, object]:
    def ours(x, residual, weight):
        with backend("triton"):
            return add_norm(x, residual, weight, None, 1e-5, True, True)

    impls = {"pytorch": lambda x, residual, weight: add_norm_ref(x, residual, weight, None, 1e-5, True, True)}
    if device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1":
        impls["genossm triton"] = ours
    try:
        from mamba_ssm.ops.triton.layer_norm import rms_norm_fn

        def peer(x, residual, weight):
            return rms_norm_fn(x, weight, None, residual=residual, prenorm=True, residual_in_fp32=True, eps=1e-5)

        impls["mamba_ssm"] = peer
    except Exception as err:  # not installed, or its CUDA extension does not load
        print(f"mamba_ssm is not compared: {type(err).__name__}: {err}")
    return impls


def run(opts: ConvNormBenchOptions) -> list[dict[str, object]]:
    """Time each op, implementation and size, forward and forward+backward; print the table, write JSON."""
    device = pick_device(opts.device)
    dtype = getattr(torch, opts.dtype)
    esize = torch.empty(0, dtype=dtype).element_size()
    copy_gbps = copy_bandwidth_gbps(device)
    batch = max(1, opts.tokens // opts.seqlen)
    rows: list[dict[str, object]] = []

    def measure(op, size, name, fn, inputs, floors):
        """``floors``: the bytes the forward and the forward+backward cannot avoid moving."""
        for mode, moved in zip(("fwd", "fwd+bwd"), floors, strict=True):
            call = forward_call(fn, inputs) if mode == "fwd" else training_call(fn, inputs)
            ms = time_ms(call, device, opts.repeats)
            row = {"op": op, "size": size, "mode": mode, "impl": name, "ms": ms, "GB/s": moved / ms / 1e6}
            row["floor_ms"] = moved / copy_gbps / 1e6 if copy_gbps else None
            rows.append(row)

    for dim in (int(d) for d in opts.conv_dims.split(",")):
        x = torch.randn(batch, opts.seqlen, dim, device=device).to(dtype).transpose(1, 2)  # the model's layout
        inputs = dict(x=x, weight=torch.randn(dim, opts.width, device=device), bias=torch.randn(dim, device=device))
        unit = x.numel() * esize
        for name, fn in conv_impls(device).items():  # forward: x in, out; backward: x and dout in, dx out
            measure("causal_conv1d", dim, name, fn, inputs, (2 * unit, 5 * unit))
    rows_n = batch * opts.seqlen
    for dim in (int(d) for d in opts.norm_dims.split(",")):
        x = torch.randn(rows_n, dim, device=device).to(dtype)
        inputs = dict(x=x, residual=torch.randn(rows_n, dim, device=device), weight=torch.randn(dim, device=device))
        fwd = x.numel() * (2 * esize + 8)  # x and the float32 residual in; the output and the residual out
        bwd = x.numel() * (2 * esize + 12)  # residual, dout, d residual_out in; dx, d residual out
        for name, fn in norm_impls(device).items():
            measure("add_rmsnorm", dim, name, fn, inputs, (fwd, fwd + bwd))
    opts.out.mkdir(parents=True, exist_ok=True)
    write_json(rows, opts.out / "conv_norm.json", copy_GBps=copy_gbps, dtype=opts.dtype, tokens=rows_n)
    print(f"copy bandwidth {copy_gbps or float('nan'):.0f} GB/s; results in {opts.out}")
    print(format_table(rows))
    return rows
