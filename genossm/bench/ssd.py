"""SSD (Mamba-2 scan) speed: genossm's Triton kernels beside mamba_ssm's and the chunked PyTorch path.

Every call holds ``--tokens`` tokens (2^20 = 1024 x 1K ... 1 x 1M), forward and forward + backward, timed with CUDA
events after a correctness check against the sequential reference. Each row also carries the shape's floor: the
bytes that must move (inputs read, outputs written) and the FLOPs of the chunked algorithm, against the GPU's peaks.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from tqdm import tqdm

from genossm.cli.options import option
from genossm.kernels import backend, ssd_chunk_scan, ssd_ref

from .report import plot_lines, write_json
from .timing import cuda_median_ms, format_table, median_ms, pick_device


@dataclass
class SSDBenchOptions:
    """Options of ``genossm bench ssd``."""

    tokens: int = option(1 << 20, "tokens per call; the batch is tokens // seqlen")
    seqlen: str = option("1024,4096,16384,65536,262144,1048576", "sequence lengths, separated by commas")
    dstate: int = option(64, "state size timed at every length")
    sweep_dstate: str = option("16,128,256", "other state sizes, timed at the shortest and the longest length")
    nheads: int = option(4, "heads")
    headdim: int = option(64, "head dimension")
    ngroups: int = option(1, "groups of heads sharing B and C")
    chunk_size: int = option(256, "chunk size (mamba_ssm's default)")
    dtype: Literal["bfloat16", "float32"] = option("bfloat16", "dtype of x, B, C and dt")
    repeats: int = option(20, "timed calls per case (the median is reported)")
    peer: bool = option(True, "also time mamba_ssm's mamba_chunk_scan_combined when it is installed")
    torch_max_seqlen: int = option(16384, "time the chunked PyTorch path only up to this length (its chunk loop)")
    peak_tbps: float = option(3.35, "memory bandwidth of the GPU in TB/s (H100 SXM: 3.35)")
    peak_tflops: float | None = option(None, "matmul peak in TFLOP/s (default: H100 SXM, 989 bf16 / 67 fp32)")
    device: str = option("auto", "'auto' (CUDA when present) or 'cpu' (PyTorch path only, for a smoke run)")
    out: Path | None = option(None, "write ssd.json and ssd.png into this folder")


def floor_bytes(batch: int, seqlen: int, nheads: int, headdim: int, ngroups: int, dstate: int, elem: int, train: bool):
    """Bytes that must move: x, B, C, dt read and out written; with the backward also dout read and dx, dB, dC,
    ddt written (and x, B, C, dt read again)."""
    per_token = nheads * headdim * 2 + ngroups * dstate * 2 + nheads
    if train:
        per_token += nheads * headdim * 3 + ngroups * dstate * 4 + nheads * 2
    return batch * seqlen * per_token * elem


def floor_flops(batch: int, seqlen: int, nheads: int, headdim: int, ngroups: int, dstate: int, chunk: int, train: bool):
    """Matmul FLOPs of the chunked algorithm (causal half of each chunk counted, C B^T once per group).

    Forward per chunk: C B^T (group), its masked product with x, the chunk state and the state's output (head).
    Backward: C B^T again, dM = dy x^T and M^T dy (headdim), dC and dB from dM (dstate), four state products.
    """
    nchunks = batch * -(-seqlen // chunk)
    pairs = chunk * (chunk + 1) // 2
    qpn = chunk * headdim * dstate
    fwd = ngroups * pairs * dstate + nheads * (pairs * headdim + 2 * qpn)
    bwd = ngroups * pairs * dstate + nheads * (2 * pairs * headdim + 2 * pairs * dstate + 4 * qpn)
    return 2 * nchunks * (fwd + (bwd if train else 0))


def make_inputs(batch: int, seqlen: int, opts: SSDBenchOptions, dstate: int, device: torch.device) -> dict:
    """Model-like inputs: dt around softplus(-2), A in [-16, -1], D and dt_bias per head, no z (rmsnorm case)."""
    dtype = getattr(torch, opts.dtype)
    h, p, g = opts.nheads, opts.headdim, opts.ngroups
    return dict(
        x=torch.randn(batch, seqlen, h, p, device=device, dtype=dtype),
        dt=(torch.randn(batch, seqlen, h, device=device) * 0.5 - 2.0).to(dtype),
        A=-torch.linspace(1.0, 16.0, h, device=device),
        B=torch.randn(batch, seqlen, g, dstate, device=device, dtype=dtype),
        C=torch.randn(batch, seqlen, g, dstate, device=device, dtype=dtype),
        D=torch.randn(h, device=device),
        dt_bias=torch.randn(h, device=device) * 0.5,
    )


def implementations(opts: SSDBenchOptions, device: torch.device, seqlen: int) -> dict[str, Callable]:
    """name -> fn(**inputs) for every implementation to time at this length."""
    impls: dict[str, Callable] = {}

    def ours(**kw):
        with backend("triton"):
            return ssd_chunk_scan(**kw, chunk_size=opts.chunk_size, dt_softplus=True)

    def torch_path(**kw):
        with backend("torch"):
            return ssd_chunk_scan(**kw, chunk_size=opts.chunk_size, dt_softplus=True)

    if device.type == "cuda":
        impls["genossm"] = ours
        if opts.peer and importlib.util.find_spec("mamba_ssm") is not None:
            from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined

            impls["mamba_ssm"] = lambda **kw: mamba_chunk_scan_combined(
                **kw, chunk_size=opts.chunk_size, dt_softplus=True
            )
    if seqlen <= opts.torch_max_seqlen:
        impls["torch"] = torch_path
    return impls


class ReferenceCheck:
    """The float64 sequential reference on the first two sequences and first 1024 positions of a case: output and
    every gradient, computed once and compared with each implementation."""

    def __init__(self, inputs: dict) -> None:
        self.part = {k: v[:2, :1024] if v.dim() >= 3 else v for k, v in inputs.items()}
        wide = {k: v.detach().double().requires_grad_() for k, v in self.part.items()}
        ref = ssd_ref(**wide, dt_softplus=True)
        self.dout = torch.randn_like(ref)
        self.expected = (ref.detach(), *torch.autograd.grad(ref, list(wide.values()), self.dout))

    def error(self, fn: Callable) -> float:
        """Largest relative error of fn's output and gradients."""
        leaves = {k: v.detach().clone().requires_grad_() for k, v in self.part.items()}
        out = fn(**leaves)
        got = (out.detach(), *torch.autograd.grad(out, list(leaves.values()), self.dout.to(out.dtype)))
        return max(float((a.double() - b).norm() / b.norm()) for a, b in zip(got, self.expected, strict=True))


def time_ms(fn: Callable, inputs: dict, train: bool, device: torch.device, repeats: int) -> float:
    leaves = {k: v.detach().requires_grad_(train) for k, v in inputs.items()}
    dout = torch.randn_like(inputs["x"]) if train else None

    def call() -> None:
        with torch.set_grad_enabled(train):
            out = fn(**leaves)
            if train:
                torch.autograd.grad(out, list(leaves.values()), dout)

    if device.type == "cuda":
        return cuda_median_ms(call, repeats=repeats, warmup=2)
    return median_ms(call, device, repeats=repeats)


def cases(opts: SSDBenchOptions) -> list[tuple[int, int]]:
    """(seqlen, dstate): the main state size at every length, the others at the shortest and the longest."""
    lengths = [int(s) for s in opts.seqlen.split(",")]
    extra = [int(s) for s in opts.sweep_dstate.split(",") if s.strip()]
    ends = sorted({min(lengths), max(lengths)})
    return [(L, opts.dstate) for L in lengths] + [(L, n) for n in extra for L in ends]


def run(opts: SSDBenchOptions) -> list[dict[str, object]]:
    """Check, then time every implementation on every case; print the table and return all rows."""
    device = pick_device(opts.device)
    elem = torch.finfo(getattr(torch, opts.dtype)).bits // 8
    peak_tflops = opts.peak_tflops or (989.0 if opts.dtype == "bfloat16" else 67.0)
    rows = []
    for seqlen, dstate in tqdm(cases(opts), desc="bench ssd", unit="case"):
        batch = max(1, opts.tokens // seqlen)
        shape = (batch, seqlen, opts.nheads, opts.headdim, opts.ngroups, dstate)
        torch.manual_seed(0)
        inputs = make_inputs(batch, seqlen, opts, dstate, device)
        reference = ReferenceCheck(inputs)
        for impl, fn in implementations(opts, device, seqlen).items():
            err = reference.error(fn)
            for train in (False, True):
                nbytes = floor_bytes(*shape, elem, train)
                flops = floor_flops(*shape, opts.chunk_size, train)
                floor_ms = max(nbytes / opts.peak_tbps / 1e9, flops / peak_tflops / 1e9)
                row = dict(seqlen=seqlen, batch=batch, dstate=dstate, impl=impl, mode="fwd+bwd" if train else "fwd")
                try:
                    ms = time_ms(fn, inputs, train, device, opts.repeats if impl != "torch" else 3)
                    row.update(ms=ms, floor_ms=floor_ms, x_floor=ms / floor_ms)
                    row.update(GB_s=nbytes / ms / 1e6, TFLOP_s=flops / ms / 1e9, err=err)
                except torch.cuda.OutOfMemoryError:
                    row.update(ms=None, floor_ms=floor_ms, x_floor=None, GB_s=None, TFLOP_s=None, err=err)
                    row["note"] = "out of memory"
                rows.append(row)
        del inputs, reference
        if device.type == "cuda":
            torch.cuda.empty_cache()
    failed = [r for r in rows if not r["err"] < (5e-2 if opts.dtype == "bfloat16" else 1e-4)]  # bf16: mamba_ssm ~3e-2
    summary = summarize(rows)
    print(f"SSD scan on {device_name(device)}: {opts.tokens} tokens per call, H={opts.nheads} P={opts.headdim} "
          f"G={opts.ngroups} chunk={opts.chunk_size} {opts.dtype}; floor = max(bytes / {opts.peak_tbps} TB/s, "
          f"FLOPs / {peak_tflops} TFLOP/s)")  # fmt: skip
    if failed:
        print("CHECK FAILED (relative error vs the reference):", sorted({(r["impl"], r["err"]) for r in failed}))
    print(format_table(summary))
    if opts.out:
        write_json(rows, opts.out / "ssd.json", device=device_name(device), options=vars(opts), summary=summary)
        main = [dict(r, series=f"{r['impl']} {r['mode']}") for r in rows if r["dstate"] == opts.dstate and r["ms"]]
        if len({r["seqlen"] for r in main}) > 1:
            plot_lines(
                main, "seqlen", "ms", "series", opts.out / "ssd.png", logy=True, ylabel="ms per call",
                title=f"SSD scan, {opts.tokens} tokens per call, N={opts.dstate}, {opts.dtype}",
            )  # fmt: skip
    return rows


def summarize(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """One line per (dstate, seqlen, mode): each implementation's ms, the floor, ours against the peer."""
    table: dict[tuple, dict[str, object]] = {}
    for r in rows:
        line = table.setdefault(
            (r["dstate"], r["seqlen"], r["mode"]),
            dict(N=r["dstate"], L=r["seqlen"], B=r["batch"], mode=r["mode"], genossm=None, mamba_ssm=None, torch=None),
        )
        line[str(r["impl"])] = r["ms"]
        line["floor"] = r["floor_ms"]
    for line in table.values():
        ours, peer = line["genossm"], line["mamba_ssm"]
        line["speedup"] = peer / ours if ours and peer else None
        ours_row = next((r for r in rows if r["impl"] == "genossm" and r["dstate"] == line["N"]
                         and r["seqlen"] == line["L"] and r["mode"] == line["mode"]), {})  # fmt: skip
        line["GB_s"], line["TFLOP_s"] = ours_row.get("GB_s"), ours_row.get("TFLOP_s")
    return list(table.values())


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
