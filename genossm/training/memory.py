"""How a training step holds its activations: all of them, one input per block, or one segment at a time."""

from __future__ import annotations

from dataclasses import dataclass

MODES = ("plain", "checkpoint", "segmented")
SEGMENT_ABOVE = 2**20  # without a GPU to fit, ``auto`` trains in segments (or recomputes blocks) above this length


@dataclass
class MemoryPlan:
    """``plain`` keeps every activation; ``checkpoint`` keeps each block's inputs and recomputes the block in the
    backward; ``segmented`` splits the sequence into ``segment_len`` pieces trained exactly through the carried
    state, keeping every activation of one piece at a time."""

    mode: str = "plain"
    segment_len: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"memory mode must be one of {MODES}, not {self.mode!r}")
        if self.mode == "segmented" and self.segment_len < 1:
            raise ValueError("segmented memory mode needs a positive segment length")

    @property
    def checkpoint(self) -> bool:
        """Whether blocks are recomputed in the backward."""
        return self.mode == "checkpoint"


def plan_by_length(seqlen: int, segment_len: int, segmented: bool = True) -> MemoryPlan:
    """``auto`` without a GPU to fit: plain up to 2^20, then segments of ``segment_len`` (checkpoint where segments
    are not allowed). Plain blocks of the fused mixers keep less than their checkpointed inputs (the estimator's
    docstring), so checkpoint mode comes only where nothing else helps."""
    if seqlen <= SEGMENT_ABOVE:
        return MemoryPlan("plain")
    return MemoryPlan("segmented", segment_len) if segmented else MemoryPlan("checkpoint")
