"""Elementwise helpers for Triton kernels: decays use ``exp2`` with log2(e) folded in, so that every transcendental
is one MUFU instruction (``ex2``, ``lg2``, ``rcp``) instead of an accurate multi-instruction libm call.

``FAST`` selects CUDA's approximate log2 (``lg2.approx``, absolute error ~1e-7); Triton's interpreter has no
libdevice, so it runs the accurate ``tl.log2`` instead (launchers pass ``FAST = not interpreted``).
"""

import os

import triton
import triton.language as tl
from triton.language.extra import libdevice

# Launch option of every kernel: a * b + c contracts to one fused multiply-add (one rounding, one instruction; the
# scans are chains of them). Triton 3.9 warns that its default turns this off in 3.10; the kernels ask for it.
FMA_CONTRACTION = {"enable_fp_fusion": True}

LOG2E = tl.constexpr(1.4426950408889634)
LN2 = tl.constexpr(0.6931471805599453)


def fast_math() -> bool:
    """Whether kernels may call libdevice's approximate functions (not under TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET") != "1"


@triton.jit
def sigmoid_fast(x):
    """1 / (1 + e^-x) with an approximate (non-IEEE-rounded) division: ex2 + rcp."""
    return tl.fdiv(1.0, 1.0 + tl.exp2(-x * LOG2E), ieee_rounding=False)


@triton.jit
def softplus_sigmoid(x, FAST: tl.constexpr):
    """(softplus(x), sigmoid(x)) in float32: log(1 + e^x) = max(x, 0) + log(1 + e^-|x|), never overflowing.

    sigmoid is softplus's derivative, which the backward needs; both share one exp2.
    """
    e = tl.exp2(-tl.abs(x) * LOG2E)  # in (0, 1]
    if FAST:
        log1p_e = libdevice.fast_log2f(1.0 + e) * LN2
    else:
        log1p_e = tl.log2(1.0 + e) * LN2
    inv = tl.fdiv(1.0, 1.0 + e, ieee_rounding=False)
    return tl.maximum(x, 0.0) + log1p_e, tl.where(x >= 0, inv, e * inv)


@triton.jit
def silu_sigmoid(x):
    """(silu(x), sigmoid(x)) in float32."""
    sig = sigmoid_fast(x)
    return x * sig, sig


@triton.jit
def output_grad(dout, z, HAS_Z: tl.constexpr):
    """(dy = dout * silu(z), sigmoid(z)) of a float32 tile (dy = dout without a gate)."""
    if HAS_Z:
        gate, zsig = silu_sigmoid(z)
        return dout * gate, zsig
    return dout, dout
