"""Cutting a streamed record into windows, holding at most one window plus one chunk of it in memory.

Windows start at 0, ``stride``, 2 ``stride``, ... while they fit; when the last one stops short of the record's end,
one more window ends exactly at the end (it overlaps the one before), so every base is read. A record shorter than
the window gives one short window (the caller pads it, ``genossm.inference.padded_length``, and masks the padding).
An empty record gives none.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


@dataclass
class Window:
    """Bases [start, end) of a record and their token ids."""

    start: int
    end: int
    tokens: np.ndarray


class WindowCutter:
    """Windows of one record, fed chunk by chunk: ``feed`` yields the windows complete so far, ``finish`` the rest."""

    def __init__(self, window: int, stride: int) -> None:
        if window < 1 or stride < 1:
            raise ValueError(f"window ({window}) and stride ({stride}) must be positive")
        self.window, self.stride = window, stride
        self.next_start = 0  # start of the next window
        self.buffer = np.empty(0, dtype=np.uint8)
        self.buffer_start = 0  # record position of buffer[0]
        self.length = 0  # bases fed so far
        self.last_end = 0  # end of the last window given out

    def feed(self, tokens: np.ndarray) -> Iterator[Window]:
        """Add the record's next bases; yield every window that now lies inside what was fed."""
        self.buffer = np.concatenate([self.buffer, tokens]) if self.buffer.size else np.asarray(tokens)
        self.length += len(tokens)
        while self.next_start + self.window <= self.length:
            begin = self.next_start - self.buffer_start
            yield Window(self.next_start, self.next_start + self.window, self.buffer[begin : begin + self.window])
            self.last_end = self.next_start + self.window
            self.next_start += self.stride
        # keep what the next window or a final window ending at the record's end may still need
        keep = max(0, min(self.next_start, self.length - self.window))
        if keep > self.buffer_start:
            self.buffer = self.buffer[keep - self.buffer_start :].copy()
            self.buffer_start = keep

    def finish(self) -> Iterator[Window]:
        """The record has ended: the short window of a short record, or a window ending at the last base."""
        if self.length == 0 or self.last_end == self.length:
            return
        start = max(0, self.length - self.window)
        yield Window(start, self.length, self.buffer[start - self.buffer_start :])
