"""Predicted peak GPU memory of one training step in each memory mode, from the model config alone.

The prediction is ``torch.cuda.max_memory_allocated`` over one step (forward, backward, AdamW) under bfloat16
autocast with float32 weights, as ``genossm bench model --train`` measures it. It counts bytes per token of what the
code keeps (``d`` is the model width; tests/training/data/measured_peaks.csv holds the H100 measurements it is
checked against: within 3% in every mode):

- **A block in plain mode** keeps what autograd saves: the add+norm kernel's float32 residual stream and row
  statistics (4d + 8). The norm output (the mixer's input) is rebuilt from the stream in the block's backward
  (models/rebuild.py), where it counts in the working set. The Mamba-1 mixer is one op (kernels/mamba_mixer) that
  keeps besides only x_proj's output and a float32 state every 128 positions: 856 bytes per token per block at
  width 128. The Mamba-2 mixer is one op too (kernels/mamba2_mixer) that keeps nothing else (520 bytes per token
  per block at width 128); with a gated-MLP part (d_ssm < d_inner) it is a composition that keeps what autograd
  saves: in_proj's output (z, xBC, dt), the conv output, the scan's chunk start states, its float32 dt and
  cumsum, the scan output and out_proj's input.
- **The backward** of the top block runs while everything below it is still held; its working set is the float32
  gradient of the residual stream (4d) and the mixer backward's buffers (Mamba-1: the mixer output's gradient, the
  recomputed in_proj output, conv output and delta, out_proj's input gradient, du, and float32 dB, dC; ddelta, dz
  and the recomputed scan output are written over delta, z and out_proj's input gradient; Mamba-2: the recomputed
  in_proj output, conv output and chunk start states, the scan output's and the conv output's gradients, then the
  gradients of the chunk states or dt's gradient parts, and per sequence the initial state's float32 gradient).
- **Checkpoint mode** keeps each block's inputs (the bfloat16 hidden input and the float32 residual, 6d bytes; the
  first block's input is the float32 embedding, 4d) and, during the backward, the recomputed top block's full
  activations plus the working set. For Mamba-1, whose plain blocks keep little more than their inputs, this saves
  little (width 128 x 6 blocks at 2^20: 4.4 KB of block inputs per token against plain mode's 6.7 KB).
- **Segmented mode** is plain mode over one segment: what a segment carries to the next is its recurrent state
  alone (the conv window is a d_conv-wide tensor of its own, models/state.py ``next_conv_state``, not a view that
  keeps the segment's conv input alive), and its logits are freed before its backward.
- **The loss** holds float32 logits, their log-softmax and its gradients (12 bytes x vocabulary per token) beside
  the final norm's saved tensors; with the 16-token DNA vocabulary it is never the peak.
- **Fixed**: weights, gradients and AdamW's two moments (16 bytes per parameter), token ids and labels (16 bytes per
  token of the step), in segmented mode the float32 start states of every segment, and two workspaces counted in
  the working set: cuBLAS's (32 MiB) and, for Mamba-1, the scan backward's scratch buffer (each of its persistent
  programs holds a chunk's tile start states: 66 MiB on a 132-SM H100 at d_state 16).

The peak is the largest phase: the top block's backward, the loss, the final norm's backward, and for checkpointed
modes the top block's forward. (Not modelled: the transients of Mamba-2's optional MLP part, d_ssm < d_inner, while
a block is recomputed; such configs come out up to 7% low in checkpoint mode.) The CUDA context, allocator rounding
and fragmentation are not counted, so a run is taken to fit when its prediction is within :data:`USABLE_FRACTION`
of the GPU's memory. scripts/trace_step_memory.py checks the counts on the CPU against the allocations of the
Triton path.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from genossm.kernels.mamba2_mixer.weights import padded_width
from genossm.models import MambaConfig, MambaLMHeadModel
from genossm.models.mamba2 import Mamba2

from .memory import MODES, MemoryPlan, plan_by_length

GIB = 2**30
USABLE_FRACTION = 0.9
"""Share of the GPU's memory a predicted peak may use (the rest: CUDA context, allocator rounding, fragmentation)."""
DEFAULT_GPU_GIB = 80.0
DEFAULT_SEGMENT_LEN = 2**18
AUTO_SEGMENT_LENS = (3 * 2**18, 2**19, 3 * 2**17, 2**18, 3 * 2**16, 2**17, 2**16, 2**15, 2**14)
"""Segment lengths ``auto`` tries, longest (fastest: the least recomputed) first, when none is given."""
DTYPES = {"bfloat16": 2, "float32": 4}
TASKS = ("lm", "classification")
FP32 = 4
INPUT_BYTES = {"lm": 16, "classification": 8}  # int64 token ids (and labels) per token
CUBLAS_WORKSPACE = 32 * 2**20  # PyTorch's default cuBLAS workspace (CUBLAS_WORKSPACE_CONFIG :4096:8)
H100_SMS = 132
SCAN_BWD_PROGRAMS_PER_SM = 16  # persistent programs of the scan backward (kernels/selective_scan/fused_bwd.py)
SCAN_BWD_BLOCK_D, SCAN_BWD_TILE_ELEMENTS = 16, 1024  # its channels per program; tile = 1024 // (states x channels)
SCAN_STATE_SPACING = 128  # Mamba-1's scan saves a float32 state every this many positions (kernels/selective_scan)
MAX_SEQLEN = 2**40  # the search for the longest sequence stops here
SSD_MAX_HEADDIM, SSD_MAX_DSTATE = 128, 256  # the largest sizes the SSD kernels take (kernels/ssd/triton_scan.py)


@dataclass(frozen=True)
class BlockBytes:
    """Bytes per token that one block holds in each phase of a training step (``state``: per sequence)."""

    kept: int
    """Activations autograd saves for the backward (plain mode)."""
    forward: int
    """Peak of the block's forward when nothing is saved (checkpointed): its intermediates and output."""
    backward: int
    """Buffers of the block's backward at its peak, besides ``kept``."""
    state: int
    """The float32 recurrent state (conv window and SSM state) of one sequence."""
    workspace: int = 0
    """Fixed bytes of the block's backward (not per token)."""
    sequence_backward: int = 0
    """Bytes per sequence of the block's backward (Mamba-2: the SSD's float32 initial-state gradient)."""
    rebuilt: int = 0
    """Part of ``kept`` that plain mode rebuilds in the block's backward instead (the norm outputs the mixer and
    the MLP take: models/rebuild.py)."""


def _norm_saved(d: int) -> int:
    """The add+norm kernel saves the float32 residual stream and two float32 row statistics."""
    return FP32 * d + 2 * FP32


def _mamba1_bytes(mixer: nn.Module, act: int) -> BlockBytes:
    """The mixer as one op (kernels/mamba_mixer)."""
    d, e, n, rank = mixer.d_model, mixer.d_inner, mixer.d_state, mixer.dt_rank
    scan_saved = FP32 * e * n // SCAN_STATE_SPACING
    cast = 2 * act * n if act < FP32 else 0  # dB and dC cast back from their float32 accumulators
    kept = _norm_saved(d) + act * (d + rank + 2 * n) + scan_saved  # norm output, x_proj output, scan states
    forward = kept + act * 5 * e  # at the scan: in_proj output (x, z), conv output, delta, scan output
    # the output's gradient; in_proj output (x, z), conv output, delta (then ddelta), out_proj's input grad, du
    backward = act * (d + 6 * e) + 2 * FP32 * n + cast
    state = FP32 * e * (mixer.d_conv + n)
    return BlockBytes(kept, forward, backward, state, scan_backward_scratch(n))


def scan_backward_tile(dstate: int) -> tuple[int, int]:
    """(states padded to a power of two, positions per tile) of the scan backward (kernels/selective_scan/tiling.py
    ``plan_scan``)."""
    block_n = 1 << max(1, (dstate - 1).bit_length())
    return block_n, max(2, min(16, SCAN_BWD_TILE_ELEMENTS // (block_n * SCAN_BWD_BLOCK_D)))


def scan_backward_scratch(dstate: int) -> int:
    """Bytes of the scan backward's scratch buffer: every persistent program holds one chunk's tile start states."""
    block_n, tile = scan_backward_tile(dstate)
    return H100_SMS * SCAN_BWD_PROGRAMS_PER_SM * (SCAN_STATE_SPACING // tile) * block_n * SCAN_BWD_BLOCK_D * FP32


def ssd_backward_tiles(chunk: int, headdim: int, dstate: int, act: int) -> int:
    """Position tiles per chunk of the SSD backward kernels (the rule of kernels/ssd/tiling.py ``ssd_tiles``)."""

    def pow2(x: int) -> int:
        return max(16, 1 << (x - 1).bit_length())

    tile = min(32 if act == FP32 else 64, pow2(chunk))
    tile = min(tile, 32 if pow2(headdim) + pow2(dstate) > 192 else 64)
    return -(-chunk // tile)


def gated_norm_rows(group_size: int) -> int:
    """Rows per program of the gated RMSNorm kernels (the rule of kernels/norm/gated_triton.py ``_launch_shape``);
    the backward writes one float32 weight-gradient row per program."""
    return min(16, max(1, 2048 // (1 << (group_size - 1).bit_length())))


def _mamba2_fused_bytes(mixer: Mamba2, act: int) -> BlockBytes:
    """The mixer as one op (kernels/mamba2_mixer): it keeps its input and recomputes in_proj, the conv and the
    scan's forward in its backward."""
    d, d_ssm, n, chunk = mixer.d_model, mixer.d_ssm, mixer.d_state, mixer.chunk_size
    heads, conv_dim, in_proj = mixer.nheads, mixer.conv_dim, padded_width(mixer.in_proj.out_features)
    states = d_ssm * n // chunk  # elements of the chunk states per token
    scan = act * states + 2 * FP32 * heads  # start states, float32 dt and cumsum
    kept = _norm_saved(d) + act * d
    # at the scan: in_proj and conv outputs, float32 chunk states beside the start states, the scan output
    forward = kept + act * (in_proj + conv_dim + d_ssm) + scan + FP32 * states
    tiles = ssd_backward_tiles(chunk, mixer.headdim, n, act)
    # the output's gradient, recomputed in_proj and conv outputs, start states, the scan output's gradient (the
    # scan output itself is freed once out_proj's weight gradient is taken) and the conv output's gradient (dx, dB,
    # dC); then the scan backward's state gradients (float32 beside the input dtype's) or its float32 dt-gradient
    # parts and dD partial sums
    held = act * (d + in_proj + 2 * conv_dim + d_ssm) + scan
    parts = act * states + FP32 * (heads * (4 + tiles) + tiles * d_ssm // chunk)
    backward = held + max((FP32 + act) * states, parts) + (0 if mixer.rmsnorm else act * d_ssm)  # or dz
    state = FP32 * (conv_dim * mixer.d_conv + d_ssm * n)
    return BlockBytes(kept, forward, backward, state, sequence_backward=FP32 * d_ssm * n)


def _mamba2_bytes(mixer: Mamba2, act: int) -> BlockBytes:
    """The mixer as a composition under autograd (a gated-MLP part, d_ssm < d_inner, or sizes beyond the SSD
    kernels: kernels/mamba2_mixer/interface.py)."""
    if mixer.d_mlp == 0 and mixer.headdim <= SSD_MAX_HEADDIM and mixer.d_state <= SSD_MAX_DSTATE:
        return _mamba2_fused_bytes(mixer, act)
    d, e, d_ssm, n, chunk = mixer.d_model, mixer.d_inner, mixer.d_ssm, mixer.d_state, mixer.chunk_size
    heads, groups, conv_dim = mixer.nheads, mixer.ngroups, mixer.conv_dim
    states = d_ssm * n // chunk  # elements of the chunk states per token
    scan_saved = 2 * FP32 * heads + act * states  # dt after softplus and its chunk cumsum (float32); start states
    before_scan = _norm_saved(d) + act * (d + mixer.in_proj.out_features + conv_dim)  # norm, in_proj, conv outputs
    # scan output (saved by the gated norm), out_proj input, silu(z0) of the optional MLP part
    kept = before_scan + scan_saved + act * (d_ssm + e + mixer.d_mlp)
    # the scan's forward holds float32 chunk states beside the start states; then out_proj runs
    forward = max(before_scan + 2 * FP32 * heads + (FP32 + act) * states, kept - scan_saved + act * d)
    tiles = ssd_backward_tiles(chunk, mixer.headdim, n, act)
    # chunk-state gradients, dB, dC, dx, ddt; float32 dt-gradient parts and dD partial sums
    end = act * (states + 2 * groups * n + d_ssm + heads) + FP32 * (heads * (4 + tiles) + tiles * d_ssm // chunk)
    passing = (FP32 + act) * states  # float32 start-state gradients beside the chunk-state ones
    if mixer.rmsnorm:  # before the scan's backward: the gated norm's dx, dz and per-program weight gradients
        norm = 2 * act * d_ssm + FP32 * d_ssm // gated_norm_rows(d_ssm // groups)
        backward = max(end, passing, norm)
    else:  # the scan's backward also writes dz
        backward = max(end, passing) + act * d_ssm
    return BlockBytes(kept, forward, backward, FP32 * (conv_dim * mixer.d_conv + d_ssm * n))


def block_bytes(block: nn.Module, act: int) -> BlockBytes:
    """Bytes per token of one :class:`genossm.models.backbone.Block` with ``act``-byte activations: in plain mode it
    rebuilds each norm output its mixer (and MLP) takes instead of keeping it."""
    mixer = block.mixer
    counts = _mamba2_bytes(mixer, act) if isinstance(mixer, Mamba2) else _mamba1_bytes(mixer, act)
    norm_output = act * mixer.d_model
    if block.mlp is None:
        return dataclasses.replace(counts, rebuilt=norm_output)
    hidden = block.mlp.fc2.in_features
    mlp = _norm_saved(mixer.d_model) + act * (mixer.d_model + 4 * hidden)  # fc1 input and output, gate, fc2 input
    # The MLP's backward runs first (two gradients of its width); the mixer's once the MLP's tensors are freed.
    backward = max(counts.backward - mlp, 2 * act * hidden)
    return dataclasses.replace(counts, kept=counts.kept + mlp, backward=backward, rebuilt=2 * norm_output)


@dataclass(frozen=True)
class MemoryEstimate:
    """The predicted peak of one training step, in bytes, split by what holds it."""

    mode: str
    parameters: int
    """Weights, gradients and AdamW moments."""
    inputs: int
    """Token ids and labels of the step, and segment start states."""
    activations: int
    """Tensors kept for the backward at the peak."""
    working: int
    """Transient buffers at the peak."""

    @property
    def peak(self) -> int:
        return self.parameters + self.inputs + self.activations + self.working

    @property
    def peak_gib(self) -> float:
        return self.peak / GIB


class StepShape(NamedTuple):
    """One forward/backward pass: ``batch`` sequences of ``seqlen``, ``micro_batches`` of them per step."""

    seqlen: int
    batch: int = 1
    micro_batches: int = 1


class StepMemory:
    """The memory model of training one model config: ``dtype`` activations ('bfloat16' autocast or 'float32'),
    a language model ('lm') or a sequence classifier ('classification')."""

    def __init__(self, config: MambaConfig, dtype: str = "bfloat16", task: str = "lm") -> None:
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, not {dtype!r}")
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, not {task!r}")
        self.config, self.dtype, self.task = config, dtype, task
        self.act = DTYPES[dtype]
        model = MambaLMHeadModel(config, device="meta")  # shapes only: no memory, no compute
        self.parameters = sum(p.numel() for p in model.parameters())
        self.block = block_bytes(model.backbone.layers[0], self.act)
        self.workspace = CUBLAS_WORKSPACE + self.block.workspace
        """Fixed bytes of the backward: cuBLAS's workspace and the scan backward's scratch buffer."""

    def estimate(
        self, seqlen: int, batch: int = 1, mode: str = "plain", segment_len: int = DEFAULT_SEGMENT_LEN, micro_batches=1
    ) -> MemoryEstimate:
        """Peak memory of a step of ``micro_batches`` passes over ``batch`` sequences of ``seqlen`` in ``mode``."""
        if mode not in MODES:
            raise ValueError(f"memory mode must be one of {MODES}, not {mode!r}")
        if mode == "segmented" and self.task != "lm":
            raise ValueError("segmented memory mode trains language models only")
        if min(seqlen, batch, micro_batches, segment_len) < 1:
            raise ValueError("seqlen, batch, micro_batches and segment_len must be positive")
        act, block = self.act, self.block
        d, layers = self.config.d_model, self.config.n_layer
        inputs = INPUT_BYTES[self.task] * micro_batches * batch * seqlen
        # The head: the loss (float32 logits, log-softmax and its gradient; the LM head's input is saved), then the
        # final add+norm's backward (its float32 residual gradient and two activation gradients).
        norm_saved = _norm_saved(d)
        head = [(norm_saved + act * d, 3 * FP32 * self.config.padded_vocab_size)] if self.task == "lm" else []
        head.append((norm_saved, FP32 * d + 2 * act * d))
        tokens = batch * (min(seqlen, segment_len) if mode == "segmented" else seqlen)
        # (kept, working) bytes of each phase: per token, and the working bytes per sequence of the top block's
        # backward: the residual stream's float32 gradient, the block's backward
        top_block = FP32 * d + block.backward
        if mode == "segmented" and seqlen > segment_len:  # the float32 start states of every segment
            inputs += math.ceil(seqlen / segment_len) * layers * block.state * batch
        if mode != "checkpoint":  # plain, or segmented: plain over one segment; block inputs rebuilt in the backward
            kept = block.kept - block.rebuilt
            phases = [
                ((layers - 1) * kept, (block.forward, 0)),
                (layers * kept, (top_block + block.rebuilt, block.sequence_backward)),
                *((layers * kept + k, (w, 0)) for k, w in head),
            ]
        else:
            block_inputs = FP32 * d + (layers - 1) * (act * d + FP32 * d)  # the first block's: float32 embedding
            phases = [
                (block_inputs + block.kept, (top_block, block.sequence_backward)),
                (block_inputs, (block.forward, 0)),
                *((block_inputs + k, (w, 0)) for k, w in head),
            ]
        totals = [(tokens * k, tokens * w + batch * per_sequence) for k, (w, per_sequence) in phases]
        kept, working = max(totals, key=sum)
        return MemoryEstimate(mode, 16 * self.parameters, inputs, kept, working + self.workspace)

    def peak(self, shapes: Sequence[StepShape], mode: str, segment_len: int = DEFAULT_SEGMENT_LEN) -> int:
        """The largest predicted peak over the step shapes of a run (its sequence-length stages)."""
        return max(self.estimate(s.seqlen, s.batch, mode, segment_len, s.micro_batches).peak for s in shapes)

    def largest_seqlen(self, gpu_bytes: int, mode: str, batch: int = 1, segment_len: int = DEFAULT_SEGMENT_LEN) -> int:
        """The longest sequence whose predicted peak fits a GPU of ``gpu_bytes`` (0: none; at most 2^40)."""
        budget = usable_bytes(gpu_bytes)

        def fits(seqlen: int) -> bool:
            return self.estimate(seqlen, batch, mode, segment_len).peak <= budget

        if not fits(1):
            return 0
        low, high = 1, 2
        while high <= MAX_SEQLEN and fits(high):  # the prediction grows with the length: double, then bisect
            low, high = high, 2 * high
        if high > MAX_SEQLEN:
            return MAX_SEQLEN
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if fits(middle) else (low, middle)
        return low


def usable_bytes(gpu_bytes: int) -> int:
    """The part of a GPU's memory a predicted peak may take."""
    return int(gpu_bytes * USABLE_FRACTION)


def gpu_memory() -> int | None:
    """Total memory of the current CUDA device in bytes, or None without CUDA."""
    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory


def fit_plan(
    memory: StepMemory,
    shapes: Sequence[StepShape],
    gpu_bytes: int,
    modes: Sequence[str] = MODES,
    segment_lens: Sequence[int] = AUTO_SEGMENT_LENS,
) -> MemoryPlan:
    """The fastest plan whose predicted peak fits the GPU: plain, then segmented with the longest of ``segment_lens``
    that fits, then checkpoint (segments run the forward of all but the last segment twice, checkpoint mode that of
    the whole sequence). A ValueError gives each mode's predicted peak when none fits."""
    budget = usable_bytes(gpu_bytes)
    candidates = [MemoryPlan("plain")] if "plain" in modes else []
    if "segmented" in modes:
        candidates += [MemoryPlan("segmented", s) for s in segment_lens]
    if "checkpoint" in modes:
        candidates.append(MemoryPlan("checkpoint"))
    tried = []
    for plan in candidates:
        peak = memory.peak(shapes, plan.mode, plan.segment_len or DEFAULT_SEGMENT_LEN)
        if peak <= budget:
            return plan
        if plan.mode != "segmented" or plan.segment_len == min(segment_lens):
            segments = f" (segments of {plan.segment_len:,})" if plan.segment_len else ""
            tried.append(f"{plan.mode} {peak / GIB:.1f} GiB{segments}")
    longest = max(shapes, key=lambda s: s.seqlen)
    raise ValueError(
        f"a training step at L = {longest.seqlen:,} (batch {longest.batch}) will not fit in GPU memory: predicted "
        f"peak {', '.join(tried)}, against {gpu_bytes / GIB:.1f} GiB ({USABLE_FRACTION:.0%} usable); use fewer "
        "tokens per micro-batch or a shorter length (`genossm memory` shows the estimate)"
    )


def plan_for_run(
    mode: str,
    config: MambaConfig,
    shapes: Sequence[StepShape],
    task: str = "lm",
    dtype: str = "bfloat16",
    segment_len: int | None = None,
    segmented: bool = True,
) -> MemoryPlan:
    """The memory plan of a training run whose steps take ``shapes``.

    ``auto`` picks the fastest plan predicted to fit the CUDA device (:func:`fit_plan`; ``segmented`` allows that
    mode, and without ``segment_len`` the longest segment that fits), or without CUDA goes by length
    (:func:`plan_by_length`). An explicit mode is kept, with a warning when it is predicted not to fit.
    """
    segment = segment_len or DEFAULT_SEGMENT_LEN
    gpu = gpu_memory()
    if mode != "auto":
        plan = MemoryPlan(mode, segment if mode == "segmented" else 0)
        if gpu is not None:
            peak = StepMemory(config, dtype, task).peak(shapes, mode, segment)
            if peak > usable_bytes(gpu):
                warnings.warn(
                    f"--memory {mode} is predicted to peak at {peak / GIB:.1f} GiB on a {gpu / GIB:.1f} GiB GPU and "
                    "may run out of memory (--memory auto picks a mode that fits)",
                    stacklevel=2,
                )
        return plan
    if gpu is None:
        return plan_by_length(max(s.seqlen for s in shapes), segment, segmented)
    modes = MODES if segmented else tuple(m for m in MODES if m != "segmented")
    segments = (segment_len,) if segment_len else AUTO_SEGMENT_LENS
    return fit_plan(StepMemory(config, dtype, task), shapes, gpu, modes, segments)
