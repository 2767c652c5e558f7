"""Which implementation runs: the Triton kernels (CUDA tensors) or the PyTorch path (everywhere else).

``auto`` (the default) picks Triton for CUDA tensors when Triton imports, PyTorch otherwise; ``torch`` always takes
the PyTorch path; ``triton`` insists on Triton and fails loudly when it cannot run. Set it with
:func:`set_backend` or the environment variable ``GENOSSM_KERNELS``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import warnings
from collections.abc import Iterator
from functools import cache

from torch import Tensor

BACKENDS = ("auto", "triton", "torch")
_backend = os.environ.get("GENOSSM_KERNELS", "auto")


def set_backend(name: str) -> None:
    """Force the kernels' path: 'auto', 'triton' or 'torch'."""
    global _backend
    if name not in BACKENDS:
        raise ValueError(f"kernel backend must be one of {BACKENDS}, not {name!r}")
    _backend = name


def get_backend() -> str:
    """The backend in force ('auto', 'triton' or 'torch')."""
    if _backend not in BACKENDS:
        raise ValueError(f"GENOSSM_KERNELS must be one of {BACKENDS}, not {_backend!r}")
    return _backend


@contextlib.contextmanager
def backend(name: str) -> Iterator[None]:
    """Run a block with another backend, then restore the previous one."""
    previous = get_backend()
    set_backend(name)
    try:
        yield
    finally:
        set_backend(previous)


@cache
def triton_available() -> bool:
    """True when Triton is installed (its kernels compile on first use)."""
    return importlib.util.find_spec("triton") is not None


@cache
def _warn_no_triton() -> None:
    warnings.warn(
        "genossm: Triton is not installed, so CUDA tensors take the slower PyTorch path "
        "(pip install triton, or set GENOSSM_KERNELS=torch to silence this).",
        stacklevel=3,
    )


def use_triton(x: Tensor) -> bool:
    """Whether an op on tensor ``x`` should run the Triton kernel."""
    choice = get_backend()
    if choice == "torch":
        return False
    interpreted = os.environ.get("TRITON_INTERPRET") == "1"
    runnable = triton_available() and (x.is_cuda or interpreted)
    if choice == "triton":
        if not runnable:
            raise RuntimeError(
                "GENOSSM_KERNELS=triton, but Triton cannot run here "
                f"(installed: {triton_available()}, tensor on {x.device}; set TRITON_INTERPRET=1 to run on the CPU)"
            )
        return True
    if x.is_cuda and not triton_available():
        _warn_no_triton()
    return runnable and x.is_cuda
