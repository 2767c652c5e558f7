"""Where a GPU call's time goes: CUDA time per kernel (torch.profiler) and the registers and spills of the
Triton kernels that ran. Benchmarks print these beside their timings so that a slow shape can be explained."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.profiler import ProfilerActivity, profile


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


def triton_resources(*kernels: object) -> list[dict[str, object]]:
    """Registers per thread, spilled bytes and shared memory of every compiled variant of the given ``@triton.jit``
    functions (read from Triton's per-device cache; an empty list where this Triton version keeps it elsewhere)."""
    found = []
    for kernel in kernels:
        for entry in getattr(kernel, "device_caches", {}).values():
            cache = entry[0] if isinstance(entry, tuple) else entry
            for compiled in getattr(cache, "values", lambda: [])():
                found.append(
                    {
                        "kernel": getattr(kernel, "__name__", str(kernel)),
                        "regs": getattr(compiled, "n_regs", None),
                        "spills": getattr(compiled, "n_spills", None),
                        "shared": getattr(getattr(compiled, "metadata", None), "shared", None),
                    }
                )
    return found


def format_breakdown(times: list[tuple[str, float, int]], top: int = 6) -> str:
    """A few indented lines: ms per call and launches of the slowest kernels."""
    return "\n".join(f"    {ms:8.3f} ms  x{count:<3d} {name[:90]}" for name, ms, count in times[:top])
