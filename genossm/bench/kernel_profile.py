"""Where a GPU call's time goes: CUDA time per kernel (torch.profiler). Benchmarks print it beside their timings
so that a slow shape can be explained. (Registers and spills: compile for sm_90 offline, as
tests/kernels/test_triton_compile.py does, and read ``n_regs`` / the SASS.)"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from .report import write_json


def kernel_times(fn: Callable[[], object], repeats: int = 3) -> list[tuple[str, float, int]]:
    """(kernel name, milliseconds per call, launches per call) of the CUDA kernels ``fn()`` runs, slowest first."""
    fn()  # compile and warm up outside the trace
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(repeats):
            fn()
        torch.cuda.synchronize()
    rows = []
    for event in prof.key_averages():
        us = getattr(event, "device_time_total", None) or getattr(event, "cuda_time_total", 0)
        if us > 0 and event.count:
            rows.append((event.key, us / 1e3 / repeats, max(1, event.count // repeats)))
    return sorted(rows, key=lambda row: -row[1])


def format_breakdown(times: list[tuple[str, float, int]], top: int = 6) -> str:
    """A few indented lines: ms per call and launches of the slowest kernels."""
    return "\n".join(f"    {ms:8.3f} ms  x{count:<3d} {name[:90]}" for name, ms, count in times[:top])


def report_breakdowns(breakdowns: list[dict[str, object]], path: Path | None, top: int = 6) -> None:
    """Print every profiled call (its other keys as the heading, then its slowest kernels); write them as JSON to
    ``path`` when one is given."""
    if path is not None:
        write_json(breakdowns, path)
    for b in breakdowns:
        print(" ".join(f"{k}={v}" for k, v in b.items() if k != "kernels") + ":")
        print(format_breakdown(b["kernels"], top))
