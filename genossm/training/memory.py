"""How a training step holds its activations: all of them, one input per block, or one segment at a time."""

from __future__ import annotations

from dataclasses import dataclass

MODES = ("plain", "checkpoint", "segmented")


@dataclass
class MemoryPlan:
    """``plain`` keeps every activation; ``checkpoint`` keeps each block's inputs and recomputes the block in the
    backward; ``segmented`` also splits the sequence into ``segment_len`` pieces trained exactly through the
    carried state (checkpointed inside each segment)."""

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
        return self.mode != "plain"
