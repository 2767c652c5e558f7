"""Pieces shared by the kernel benchmarks: forward / forward+backward timing, the device's copy bandwidth, and the
bytes a kernel cannot avoid moving (its floor)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .timing import cuda_median_ms, median_ms


def time_ms(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median milliseconds of ``fn()``: CUDA events on a GPU, wall clock elsewhere."""
    if device.type == "cuda":
        return cuda_median_ms(fn, repeats=repeats)
    return median_ms(fn, device, repeats=max(1, repeats // 10))


def forward_call(fn: Callable[..., Tensor | tuple], inputs: dict[str, Tensor | None]) -> Callable[[], object]:
    """Inference: ``fn(**inputs)`` under no_grad."""

    def call() -> object:
        with torch.no_grad():
            return fn(**inputs)

    return call


def training_call(fn: Callable[..., Tensor | tuple], inputs: dict[str, Tensor | None]) -> Callable[[], object]:
    """Forward, then the gradient of every floating input for a fixed random output gradient."""
    leaves = {
        k: (v.detach().requires_grad_() if v is not None and v.is_floating_point() else v) for k, v in inputs.items()
    }
    wrt = [v for v in leaves.values() if isinstance(v, Tensor) and v.requires_grad]
    with torch.no_grad():
        probe = fn(**inputs)
    outs = probe if isinstance(probe, tuple) else (probe,)
    grads = [torch.randn_like(o) for o in outs]

    def call() -> object:
        result = fn(**leaves)
        result = result if isinstance(result, tuple) else (result,)
        return torch.autograd.grad(result, wrt, grads, allow_unused=True)

    return call


def copy_bandwidth_gbps(device: torch.device, megabytes: int = 1024) -> float | None:
    """Device-to-device copy bandwidth (read + write bytes per second), the practical HBM ceiling."""
    if device.type != "cuda":
        return None
    src = torch.empty(megabytes << 20, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    ms = cuda_median_ms(lambda: dst.copy_(src), repeats=10)
    return 2 * src.numel() / ms / 1e6


def exp_rate_per_ms(device: torch.device) -> float | None:
    """Hardware exp2 throughput: 16 per clock per SM on Hopper and Ampere (NVIDIA's throughput tables)."""
    if device.type != "cuda":
        return None
    props = torch.cuda.get_device_properties(device)
    clock_khz = getattr(props, "clock_rate", None)
    if not clock_khz:
        return None
    return 16 * props.multi_processor_count * clock_khz  # per ms: kHz = clocks per ms
