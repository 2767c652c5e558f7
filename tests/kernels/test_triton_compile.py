"""Every Triton kernel compiles for an H100 (sm_90) on a machine without a GPU.

The interpreter that runs the CPU tests compiles nothing, so a kernel that only fails in the compiler (a constexpr
reassigned, an op the backend lacks) would otherwise first fail on the GPU. The compiler cannot run under
TRITON_INTERPRET=1, so the test compiles in a child process without it.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

triton = pytest.importorskip("triton")
pytest.importorskip("triton.backends.nvidia.compiler")

from genossm.kernels.common.math import FMA_CONTRACTION  # noqa: E402
from genossm.kernels.common.state_passing import _state_passing_kernel  # noqa: E402
from genossm.kernels.conv1d.fused import (  # noqa: E402
    BLOCK_D,
    SPLIT,
    TILE,
    WARPS,
    _conv_bwd_kernel,
    _conv_fwd_kernel,
)
from genossm.kernels.embedding.fused import _gather_kernel  # noqa: E402
from genossm.kernels.mamba2_mixer.step import _mamba2_step_kernel  # noqa: E402
from genossm.kernels.mamba_mixer.dt_proj import _dt_proj_bwd_kernel, _dt_proj_kernel  # noqa: E402
from genossm.kernels.mamba_mixer.step import _mamba_step_kernel  # noqa: E402
from genossm.kernels.norm.fused import _add_norm_bwd_kernel, _add_norm_fwd_kernel  # noqa: E402
from genossm.kernels.selective_scan.bwd_segments import _scan_bwd_local_kernel  # noqa: E402
from genossm.kernels.selective_scan.fused_bwd import _scan_bwd_kernel  # noqa: E402
from genossm.kernels.selective_scan.fused_fwd import _scan_fwd_kernel  # noqa: E402

SCAN = dict(BLOCK_D=16, BLOCK_N=16, TILE=4, FAST=True)
SCAN_FULL = dict(SCAN, CHUNK=64, HAS_D=True, HAS_Z=True, HAS_BIAS=True, SOFTPLUS=True)  # every optional input
SCAN_FWD = dict(SCAN_FULL, HAS_START=True, STATE_ONLY=False, SAVE_CHUNKS=True, WRITE_LAST=True)
SCAN_BWD = dict(
    SCAN_FULL, HAS_CARRY=True, HAS_DLAST=True, WANT_DH0=True, WRITE_OUT=True, LOG_D=4, LEVELS=2, STATE_LEVELS=2
)
CONV = dict(HAS_BIAS=True, SILU=True, WIDTH=4, TILE=TILE, SPLIT=SPLIT, BLOCK_D=BLOCK_D)
CASES = {
    "scan_fwd": (_scan_fwd_kernel, 1, dict(SCAN_FWD, PREFETCH=True)),
    "scan_fwd_state_only": (_scan_fwd_kernel, 1, dict(SCAN_FWD, STATE_ONLY=True, PREFETCH=False)),
    "scan_bwd": (_scan_bwd_kernel, 1, dict(SCAN_BWD, PREFETCH=True)),
    "scan_bwd_no_prefetch": (_scan_bwd_kernel, 1, dict(SCAN_BWD, HAS_Z=False, PREFETCH=False)),
    "scan_bwd_local": (_scan_bwd_local_kernel, 1, dict(SCAN, HAS_Z=True, HAS_BIAS=True, SOFTPLUS=True)),
    "state_passing": (_state_passing_kernel, 4, dict(HAS_SEED=True, REVERSE=True, BLOCK_N=16, BLOCK_D=128)),
    "conv_fwd": (_conv_fwd_kernel, WARPS, dict(CONV, HAS_INIT=True)),
    "conv_bwd": (_conv_bwd_kernel, WARPS, dict(CONV, HAS_INIT=False)),
    "conv_bwd_initial_states": (_conv_bwd_kernel, WARPS, dict(CONV, HAS_INIT=True)),
    "norm_fwd": (_add_norm_fwd_kernel, 4, dict(HAS_RES=True, HAS_BIAS=True, IS_RMS=False, STORE_RES=True, ROWS=32,
                                               BLOCK_N=128)),
    "norm_bwd": (_add_norm_bwd_kernel, 4, dict(HAS_DRES_OUT=True, HAS_RES=True, HAS_BIAS=True, IS_RMS=False, ROWS=16,
                                               BLOCK_N=128)),
    "mamba_step": (_mamba_step_kernel, 4, dict(WIDTH=4, WIDTH_P2=4, CONV_BIAS=True, RANK_P2=8, STATE_P2=16, BLOCK=64,
                                               FAST=True)),
    "mamba2_step": (_mamba2_step_kernel, 4, dict(WIDTH=4, WIDTH_P2=4, CONV_BIAS=True, D_PER_CHANNEL=False, GATE=False,
                                                 DT_LIMIT=False, BLOCK_P=32, STATE_P2=128, FAST=True)),
    "embedding_gather": (_gather_kernel, 4, dict(BLOCK_D=128, ROWS=128)),
    "dt_proj": (_dt_proj_kernel, 4, dict(BLOCK_M=32, BLOCK_N=256, BLOCK_R=16, PRECISION="tf32")),
    "dt_proj_bwd": (_dt_proj_bwd_kernel, 8, dict(BLOCK_M=64, BLOCK_D=256, BLOCK_R=16, PRECISION="tf32")),
}  # fmt: skip


FLOAT32_BUFFERS = set(
    [
        "A",
        "A2",
        "D",
        "bias",
        "start",
        "chunk",
        "last",
        "local",
        "dtsum",
        "carry",
        "dlast",
        "scratch",
        "dB",
        "dC",
        "dA",
        "dD",
        "dbias",
        "dh0",
        "seed",
        "mean",
        "rstd",
        "dw",
        "db",
        "w",
        "b",
        "dt_b",
        "ssm_in",
        "ssm_out",
        "table",
    ]
)


def signature(fn, constexprs):
    """bfloat16 activations, float32 parameters and state buffers, int32 sizes and strides, float32 eps."""
    sig = {}
    for name in fn.arg_names:
        if name in constexprs:
            sig[name] = "constexpr"
        elif name == "counter_ptr":
            sig[name] = "*i32"
        elif name == "ids_ptr":
            sig[name] = "*u8"
        elif name.endswith("_ptr"):
            sig[name] = "*fp32" if name.removesuffix("_ptr") in FLOAT32_BUFFERS else "*bf16"
        else:
            sig[name] = "fp32" if name in ("eps", "dt_min", "dt_max") else "i32"
    return sig


def compile_all() -> None:
    from triton.backends.compiler import GPUTarget

    for name, (fn, num_warps, constexprs) in CASES.items():
        src = triton.compiler.ASTSource(fn=fn, signature=signature(fn, constexprs), constexprs=constexprs)
        options = {"num_warps": num_warps, **FMA_CONTRACTION}
        compiled = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=options)
        assert compiled.asm["cubin"], name
        assert name.startswith(("state", "norm", "embedding", "dt_proj")) or "fma.rn.f32" in compiled.asm["ptx"], name
        print("compiled", name)


@pytest.mark.slow
def test_kernels_compile_for_sm90():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "0"  # Triton 3.10's default: the kernels' own launch option must win
    done = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("compiled") == len(CASES)


def test_every_launch_asks_for_fma_contraction():
    for path in (Path(__file__).parents[2] / "kernels").rglob("*.py"):
        text = path.read_text()
        launches = len(re.findall(r"\b_\w*kernel\[", text))
        options = re.findall(
            r"\*\*(?:FMA_CONTRACTION|launch_options\(tiling\)|tiles\.launch\([^()]*\)),\s*$", text, flags=re.MULTILINE
        )
        assert len(options) == launches, path  # one launch option list per launch


if __name__ == "__main__":
    compile_all()
