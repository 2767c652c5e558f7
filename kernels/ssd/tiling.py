"""Launch settings of the SSD Triton kernels: a small table by shape instead of an autotune sweep.

Autotuning every kernel over many configurations costs minutes of compilation on the first call; the SSD kernels
instead pick their tiles from the chunk size, head dimension and state size with the rules below, so each kernel
compiles once per shape family.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton

from ..common.math import FMA_CONTRACTION

# Largest number of positions per tile inside a chunk. Tests lower it to run several tiles per chunk on tiny inputs.
MAX_BLOCK_T = 64
# When True, fresh buffers are filled with NaN instead of left uninitialised (tests: exposes unwritten reads).
POISON_BUFFERS = False
MAX_STATE_BLOCK, MIN_STATE_BLOCK = 1024, 32  # state elements per program of the state passing
STATE_PROGRAMS = 512  # programs the state passing aims for before it cuts state blocks smaller


@dataclass(frozen=True)
class SSDTiles:
    """Tiles and launch settings of the chunk kernels (all sizes powers of two, at least 16 for tl.dot)."""

    block_t: int  # positions per tile of the forward kernels and of the start-state gradient
    block_t_bwd: int  # positions per tile of the dC and dx/dB kernels (their accumulators hold dstate columns)
    block_t_inner: int  # positions per tile of the inner loop of the dx/dB kernel (divides block_t_bwd)
    block_p: int  # head dimension (whole)
    block_n: int  # state size (whole) for the position-tiled kernels
    block_n_state: int  # state-size tile of the kernels that hold a (headdim, dstate) accumulator
    num_warps: int
    num_stages: int  # software-pipelining stages of the chunk-state and start-state-gradient kernels
    scan_stages: int  # of the forward chunk scan
    bwd_stages: int  # of the dC and dx/dB kernels
    max_registers: int | None  # register cap per thread of the forward's chunk-state and chunk-scan kernels

    def __post_init__(self) -> None:
        if self.block_t_bwd % self.block_t_inner:
            raise ValueError(f"block_t_inner ({self.block_t_inner}) must divide block_t_bwd ({self.block_t_bwd})")

    def launch(self, stages: int, capped: bool = False) -> dict[str, int | bool]:
        """Triton launch options: the warps, ``stages``, FMA contraction and, if ``capped``, the register cap."""
        options = {"num_warps": self.num_warps, "num_stages": stages, **FMA_CONTRACTION}
        if capped and self.max_registers:
            options["maxnreg"] = self.max_registers
        return options


def _pow2(n: int) -> int:
    return max(16, triton.next_power_of_2(n))


def ssd_tiles(chunk_size: int, headdim: int, dstate: int, dtype: torch.dtype = torch.bfloat16) -> SSDTiles:
    """The tile table: one rule per dimension, one warpgroup for half-precision operands.

    Half-precision operands run 64-position tiles on tensor cores; float32 operands (exact products by FMA, or
    TF32) take twice the registers and shared memory per element, so their tiles are 32 positions over 8 warps.
    The dC and dx/dB kernels keep (positions x dstate) accumulators: 32 positions once headdim + dstate > 192.
    (Chosen from register and spill counts of sm_90 builds; ``genossm bench ssd-stages`` measures variants.)
    """
    block_p, block_n = _pow2(headdim), _pow2(dstate)
    wide = dtype == torch.float32
    block_t = min(MAX_BLOCK_T, 32 if wide else 64, _pow2(chunk_size))
    block_t_bwd = min(block_t, 32 if block_p + block_n > 192 else 64)
    # 32 query positions per inner step of the dx/dB kernel at every state size measured (H100, 2^20 tokens: at
    # N = 256, 16 -> 32: 14.35 -> 10.25 ms; at N = 64 and 128, 16 and 64 are both slower than 32)
    block_t_inner = min(32, block_t_bwd)
    # (headdim x dstate) float32 accumulators stay at or under 64 x 128.
    block_n_state = min(block_n, max(16, 8192 // block_p))
    # One warpgroup: at P = 64 eight warps took twice as long in every matrix-product kernel (H100, 2^20 tokens,
    # N = 128: chunk scan 4.31 -> 2.01 ms, dx/dB 8.67 -> 4.77, dC 5.06 -> 2.92; N = 64 and 256 alike).
    num_warps = 8 if wide else 4
    # Stages and caps from an H100 sweep (2^20 tokens as 1024 x 1K, H = 4, P = 64, bfloat16; ms at N = 64 / 128):
    # the chunk scan runs faster on one stage at every N (1.10 / 1.68 with two, 1.04 / 1.33 with one) and, with the
    # chunk states, under 128 registers (0.92 / 1.29; chunk states 0.36 / 0.53 -> 0.36 / 0.48); dC and dx/dB gain
    # from one stage at N = 128 (2.11 -> 1.98, 4.30 -> 4.20) and lose 2-3% at N = 64.
    num_stages = 1 if wide or block_n > 128 else 2
    bwd_stages = 1 if wide or block_n >= 128 else 2
    max_registers = None if wide or block_n > 128 else 128
    return SSDTiles(
        block_t, block_t_bwd, block_t_inner, block_p, block_n, block_n_state, num_warps,
        num_stages=num_stages, scan_stages=1, bwd_stages=bwd_stages, max_registers=max_registers,
    )  # fmt: skip


def state_passing_tiles(batch_heads: int, state_size: int, nchunks: int) -> tuple[int, int]:
    """(state elements, chunks) per tile of the state-passing scan.

    The scan is sequential over chunks but parallel over (batch, head, state block): blocks are as large as keeps
    enough programs running, so that one long genome (batch 1) cuts its states finer, and each step scans a block of
    chunks at once so that the serial loop stays short. Its launcher gives a block 8 elements per thread
    (kernels/common/ssd_state_passing.py).
    """
    # H100, P = 64, 2^20 tokens, forward + backward (ms): at 1K (batch 1024) blocks of 1024 on 4 warps 0.39 (N = 64)
    # and 0.73 (N = 128), against 1.44 and 1.92 for blocks of 256 and 64 on 4 warps (2 elements per thread or
    # fewer); at 1M (batch 1) blocks of 64 on one warp 0.81 and 0.91, blocks of 256 2.1 and 2.2, and at N = 64
    # blocks of 32 (512 programs) 0.69. (The decay gradient sums one partial per block, kernels/ssd/dt_bwd.py:
    # larger blocks leave it fewer.)
    block_pn = min(MAX_STATE_BLOCK, triton.next_power_of_2(state_size))
    while block_pn > MIN_STATE_BLOCK and batch_heads * triton.cdiv(state_size, block_pn) < STATE_PROGRAMS:
        block_pn //= 2
    block_chunks = min(max(2, 2048 // block_pn), max(2, triton.next_power_of_2(nchunks)))
    return block_pn, block_chunks


def state_dtype(dtype: torch.dtype) -> torch.dtype:
    """Dtype of the chunk-boundary states that feed matrix products: the input dtype (float32 stays float32)."""
    return torch.float32 if dtype == torch.float32 else dtype


def new_buffer(shape: tuple[int, ...], device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """An uninitialised tensor (NaN-filled while ``POISON_BUFFERS`` is set)."""
    if POISON_BUFFERS:
        return torch.full(shape, float("nan"), device=device, dtype=dtype)
    return torch.empty(shape, device=device, dtype=dtype)
