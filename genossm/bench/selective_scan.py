"""Selective scan speed: genossm's Triton kernels, the chunked PyTorch path and mamba_ssm, forward and
forward+backward, at the genomics shapes of issue 4 (or any others), with each shape's memory and exp floors: the
exps any implementation needs (one decay per state update and pass over the data) and, for genossm's kernels, the
exps of their plan (a sequence cut into segments for parallelism pays a second pass)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from genossm.cli.options import option
from genossm.kernels import selective_scan_chunked, selective_scan_ref

from .kernel_profile import kernel_times, report_breakdowns
from .kernel_timing import copy_bandwidth_gbps, exp_rate_per_ms, forward_call, time_ms, training_call
from .report import plot_lines, write_json
from .timing import format_table, pick_device

# (dim, batch, seqlen): 2^20 tokens at 256 channels from 1K to 1M positions, and 2^17 tokens at 2048 channels.
GENOMICS_SHAPES = [
    (256, 1024, 1 << 10),
    (256, 256, 1 << 12),
    (256, 64, 1 << 14),
    (256, 16, 1 << 16),
    (256, 4, 1 << 18),
    (256, 1, 1 << 20),
    (2048, 128, 1 << 10),
    (2048, 16, 1 << 13),
]
CHECK_POSITIONS = 4096  # outputs are compared with the PyTorch scan on this prefix of the first two sequences
AUTOGRAD_MAX_ELEMENTS = 1 << 24  # the chunked path's autograd keeps every step: time its backward only below this


@dataclass
class SelectiveScanBenchOptions:
    """Options of ``genossm bench selective-scan``."""

    shapes: str = option("genomics", "'genomics' or shapes DIMxBATCHxSEQLEN separated by commas, e.g. 256x4x65536")
    dstate: int = option(16, "states per channel")
    dtype: Literal["bfloat16", "float16", "float32"] = option("bfloat16", "dtype of u, delta, z, B, C")
    modes: str = option("fwd,fwd+bwd", "what to time: fwd, fwd+bwd or both")
    repeats: int = option(20, "timed calls per measurement (the median is reported)")
    torch_max_seqlen: int = option(4096, "time the chunked PyTorch path only up to this length (it is slow)")
    tile: int | None = option(None, "force the Triton tile (positions per tile)")
    segments: int | None = option(None, "force the number of sequence segments of the Triton kernels")
    prefetch: bool | None = option(None, "Triton kernels load each next tile early (--prefetch) or not (--no-prefetch)")
    maxnreg: int | None = option(None, "cap the Triton kernels' registers per thread (more warps per SM)")
    fwd_block_d: int | None = option(None, "force the channels per Triton forward program (16 or 32)")
    profile: bool = option(False, "also print the CUDA time of each kernel")
    device: str = option("auto", "'auto' (CUDA when present), 'cpu' or 'cuda'")
    out: Path = option(Path("bench-results"), "directory for selective_scan.json and the plots")


def parse_shapes(text: str) -> list[tuple[int, int, int]]:
    if text == "genomics":
        return GENOMICS_SHAPES
    try:
        return [tuple(int(v) for v in item.lower().split("x")) for item in text.split(",")]  # type: ignore[misc]
    except ValueError:
        raise ValueError(f"--shapes: expected 'genomics' or DIMxBATCHxSEQLEN,..., got {text!r}") from None


def make_inputs(dim, batch, seqlen, dstate, dtype, device, layout="bdl") -> dict[str, torch.Tensor]:
    """Inputs like a trained Mamba layer's: softplus'd step sizes around 0.01-0.1, A = -(1..dstate)."""

    def seq(channels: int, scale: float = 1.0) -> torch.Tensor:
        if layout == "bld":  # the model's layout: (b, l, d) memory seen as (b, d, l)
            return (torch.randn(batch, seqlen, channels, device=device) * scale).to(dtype).transpose(1, 2)
        return (torch.randn(batch, channels, seqlen, device=device) * scale).to(dtype)

    return dict(
        u=seq(dim),
        delta=seq(dim, 0.5),
        A=-torch.arange(1, dstate + 1, device=device, dtype=torch.float32).repeat(dim, 1),
        B=seq(dstate),
        C=seq(dstate),
        D=torch.ones(dim, device=device),
        z=seq(dim),
        delta_bias=torch.full((dim,), -3.0, device=device),
    )


def floor_bytes(dim: int, batch: int, seqlen: int, dstate: int, esize: int, mode: str) -> int:
    """Bytes no implementation can avoid: read u, delta, z, B, C and write out (plus, for the backward, read dout
    and write du, ddelta, dz, dB, dC)."""
    per_token = 4 * dim * esize + 2 * dstate * esize  # u, delta, z, out; B, C
    if mode == "fwd+bwd":
        per_token += 4 * dim * esize + 2 * dstate * esize + 3 * dim * esize + 2 * dstate * esize
    return batch * seqlen * per_token


def tiling_overrides(opts: SelectiveScanBenchOptions) -> dict[str, int | bool | None]:
    """The Triton tiling choices the options force (None: the heuristic's), as plan_scan's keywords."""
    return {name: getattr(opts, name) for name in ("tile", "segments", "prefetch", "maxnreg", "fwd_block_d")}


def implementations(opts: SelectiveScanBenchOptions, device: torch.device) -> dict[str, object]:
    """name -> (callable with selective_scan_fn's arguments, input layout)."""
    impls: dict[str, object] = {}
    if device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1":
        from genossm.kernels.selective_scan.fused import selective_scan_fused

        def ours(**kw):
            return selective_scan_fused(**kw, delta_softplus=True, **tiling_overrides(opts))

        impls["genossm triton"] = (ours, "bdl")
        impls["genossm triton (b,l,d)"] = (ours, "bld")
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as mamba_scan

        impls["mamba_ssm"] = (lambda **kw: mamba_scan(**kw, delta_softplus=True), "bdl")
    except Exception as err:  # not installed, or its CUDA extension does not load
        print(f"mamba_ssm is not compared: {type(err).__name__}: {err}")
    impls["pytorch chunked"] = (lambda **kw: selective_scan_chunked(**kw, delta_softplus=True), "bdl")
    return impls


def plan_decays(
    opts: SelectiveScanBenchOptions, impl: str, dim: int, batch: int, seqlen: int, device: torch.device, mode: str
) -> float:
    """Decays per state update that genossm's kernels compute at this shape (a cut sequence pays a second pass);
    0 for the other implementations."""
    if not impl.startswith("genossm triton"):
        return 0.0
    from genossm.kernels.selective_scan.tiling import decays_per_update, plan_scan  # Triton: Linux only

    tiling = plan_scan(batch, dim, opts.dstate, seqlen, 1, device, **tiling_overrides(opts))
    return decays_per_update(tiling, backward=mode == "fwd+bwd")


def check_output(fn, inputs: dict[str, torch.Tensor]) -> float:
    """Relative error of ``fn`` against the sequential reference on a prefix (a causal scan's prefix is exact)."""
    with torch.no_grad():
        out = fn(**inputs)
    prefix = {k: (v[:2, ..., :CHECK_POSITIONS].float() if v.dim() == 3 else v) for k, v in inputs.items()}
    ref = selective_scan_ref(**prefix, delta_softplus=True)
    got = out[:2, ..., :CHECK_POSITIONS].float()
    return float((got - ref).norm() / ref.norm())


def run(opts: SelectiveScanBenchOptions) -> list[dict[str, object]]:
    """Time every implementation at every shape; print the table and write JSON and plots to ``opts.out``."""
    device = pick_device(opts.device)
    dtype = getattr(torch, opts.dtype)
    esize = torch.empty(0, dtype=dtype).element_size()
    modes = [m.strip() for m in opts.modes.split(",")]
    if not set(modes) <= {"fwd", "fwd+bwd"}:
        raise ValueError(f"--modes: expected fwd and/or fwd+bwd, got {opts.modes!r}")
    copy_gbps = copy_bandwidth_gbps(device)
    exp_rate = exp_rate_per_ms(device)
    impls = implementations(opts, device)
    rows: list[dict[str, object]] = []
    breakdowns: list[dict[str, object]] = []
    for dim, batch, seqlen in parse_shapes(opts.shapes):
        for name, (fn, layout) in impls.items():
            if name == "pytorch chunked" and seqlen > opts.torch_max_seqlen:
                continue
            inputs = make_inputs(dim, batch, seqlen, opts.dstate, dtype, device, layout)
            error = check_output(fn, inputs)
            for mode in modes:
                if (
                    name == "pytorch chunked"
                    and mode == "fwd+bwd"
                    and batch * seqlen * dim * opts.dstate > AUTOGRAD_MAX_ELEMENTS
                ):
                    continue
                call = forward_call(fn, inputs) if mode == "fwd" else training_call(fn, inputs)
                ms = time_ms(call, device, opts.repeats)
                if opts.profile and device.type == "cuda" and name != "pytorch chunked":
                    times = kernel_times(call)
                    breakdowns.append(dict(dim=dim, batch=batch, seqlen=seqlen, mode=mode, impl=name, kernels=times))
                floor = floor_bytes(dim, batch, seqlen, opts.dstate, esize, mode)
                updates = dim * opts.dstate * batch * seqlen
                exps = updates * (1 if mode == "fwd" else 2)
                plan_exps = updates * plan_decays(opts, name, dim, batch, seqlen, device, mode)
                rows.append(
                    {
                        "dim": dim,
                        "batch": batch,
                        "seqlen": seqlen,
                        "mode": mode,
                        "impl": name,
                        "ms": ms,
                        "Mtok/s": batch * seqlen / ms / 1e3,
                        "GB/s": floor / ms / 1e6,
                        "floor_ms": floor / copy_gbps / 1e6 if copy_gbps else None,
                        "exp_floor_ms": exps / exp_rate if exp_rate else None,
                        "plan_exp_floor_ms": plan_exps / exp_rate if exp_rate and plan_exps else None,
                        "rel_err": error,
                    }
                )
            del inputs
            if device.type == "cuda":
                torch.cuda.empty_cache()
    add_speedups(rows)
    if breakdowns:
        report_breakdowns(breakdowns, opts.out / "selective_scan_profile.json")
    report(rows, opts, device, copy_gbps)
    return rows


def add_speedups(rows: list[dict[str, object]]) -> None:
    """Each row's speedup over mamba_ssm at the same shape and mode (when mamba_ssm ran)."""
    mamba = {(r["dim"], r["batch"], r["seqlen"], r["mode"]): r["ms"] for r in rows if r["impl"] == "mamba_ssm"}
    for row in rows:
        base = mamba.get((row["dim"], row["batch"], row["seqlen"], row["mode"]))
        row["x_mamba"] = base / row["ms"] if base else None


def report(rows, opts: SelectiveScanBenchOptions, device: torch.device, copy_gbps: float | None) -> None:
    meta = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "copy_GBps": copy_gbps,
        "dtype": opts.dtype,
        "dstate": opts.dstate,
        "torch": torch.__version__,
    }
    opts.out.mkdir(parents=True, exist_ok=True)
    write_json(rows, opts.out / "selective_scan.json", **meta)
    for mode in {r["mode"] for r in rows}:
        for dim in sorted({r["dim"] for r in rows}):
            subset = [r for r in rows if r["mode"] == mode and r["dim"] == dim]
            name = f"selective_scan_{mode.replace('+', '_')}_d{dim}.png"
            title = f"selective scan {mode}, D={dim}, N={opts.dstate}, {opts.dtype}"
            plot_lines(subset, "seqlen", "ms", "impl", opts.out / name, title=title, logy=True)
    print(f"device: {meta['device']}, copy bandwidth {copy_gbps or float('nan'):.0f} GB/s; results in {opts.out}")
    print(format_table(rows))
