"""What the kernels' launch heuristics need to know about the GPU."""

from functools import cache

import torch


@cache
def _sm_count(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def sm_count(device: torch.device) -> int:
    """Streaming multiprocessors of a CUDA device (the current one when it has no index)."""
    return _sm_count(device.index if device.index is not None else torch.cuda.current_device())


def persistent_programs(device: torch.device, per_sm: int, interpreted: int) -> int:
    """How many programs (or other units of work) a persistent launch aims for: ``per_sm`` per streaming
    multiprocessor of a CUDA device, else ``interpreted`` (Triton's CPU interpreter runs programs one by one: a few
    are enough to exercise what passes between them)."""
    return sm_count(device) * per_sm if device.type == "cuda" else interpreted
