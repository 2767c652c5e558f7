"""How a training step holds its activations: all of them, one input per block, or one segment at a time."""

from __future__ import annotations

from dataclasses import dataclass

MODES = ("plain", "checkpoint", "segmented")
CHECKPOINT_FROM = 2**16  # without a GPU to fit, ``auto`` recomputes blocks from this length on
SEGMENT_ABOVE = 2**20  # and trains language models in segments above this one


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
    """``auto`` without a GPU to fit: plain for short sequences, then checkpoint, then (``segmented`` allowed)
    segments of ``segment_len`` above 2^20."""
    if segmented and seqlen > SEGMENT_ABOVE:
        return MemoryPlan("segmented", segment_len)
    return MemoryPlan("checkpoint" if seqlen >= CHECKPOINT_FROM else "plain")
