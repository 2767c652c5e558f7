"""Reading every record of a genome in windows through a pooled encoder, batched, aggregated per record and per
file: class probabilities with a classifier (``genossm classify``), embeddings with a bare encoder (``genossm
embed``). What follows says "classified" for both.

**Windowed mode** (default): each window is read on its own, from a zero state. Windows of all records are
batched together (full windows with full windows; short records padded to the next power of two, with a mask so
pooling ignores the padding), at about ``batch_tokens`` tokens per forward (2^21 on a GPU of 40 GiB or more, 2^20 on
a smaller one, 2^15 on the CPU).

Windows longer than ``piece`` positions (2^11) are read piece by piece with the recurrent state carried over
(:meth:`~genossm.models.SequenceEncoder.encode_in_pieces`), ``batch_tokens / piece`` windows at a time: on a GPU with
2^20 tokens per forward, 512 windows of 2^20 bases run as 512 pieces of 512 x 2^11 tokens rather than each window as
a batch of one, which the scan kernels would have to cut into segments and scan twice. A batch of fewer windows (the
last one, or all of a small genome's) reads longer pieces, so that each forward still holds about ``batch_tokens``.
A stream's first batches are smaller (64 Mb, then twice as many each), so that the device starts early.
The batch stays on the device as bytes (512 MB for 512 windows of 2^20); each piece is widened to token ids as it
is read. On a GPU the forwards run on a thread of their own, so that the host reads and cuts the next batch while
the device computes.

**Stateful mode**: the windows of a record tile it (stride = window) and the recurrent state is carried from one
window to the next, so every window is classified with the whole record before it as context, while memory stays
that of one forward of ``batch_tokens`` tokens. A record is read in pieces of a whole number of windows; each
window's hidden states are pooled on their own. This equals one forward over the whole record, cut into windows
afterwards (exactly, for a recurrent model). Records no longer than a window are the same in both modes and go
through the batched path.

**Aggregation**: a record's values (class probabilities or embedding) are the mean of its windows' values, each
window weighted by its number of A/C/G/T bases (a short or mostly-N window counts less); the file's are the same
mean over all windows of all records. Windows more than ``max_n_fraction`` N are not classified (and not counted);
a record without any other window gets no label. The label is the class of highest probability.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from genossm.data.genome import RecordChunk
from genossm.data.tokenizer import N_ID, PAD_ID, TOKENS
from genossm.inference import (
    ResultsBehind,
    autocast,
    default_batch_tokens,
    padded_length,
    resolve_device,
    use_bfloat16,
)
from genossm.models import MambaForSequenceClassification, SequenceEncoder

from .windows import Window, WindowCutter

Pending = Callable[[], np.ndarray]  # waits for a forward's values (one row per window) and returns them
BASE_IDS = np.array([TOKENS.index(b) for b in "ACGT"])


@dataclass
class WindowResult:
    """One window of a record: bases [start, end), its A/C/G/T count, and its values (None: skipped)."""

    start: int
    end: int
    bases: int
    values: np.ndarray | None = None  # class probabilities, or the embedding


@dataclass
class RecordResult:
    """A record's length, its number of windows and the weighted mean of their values."""

    name: str
    length: int = 0
    windows: int = 0  # windows cut from the record
    used: int = 0  # windows classified (the rest were mostly N)
    detail: list[WindowResult] | None = None  # every window, when asked for
    pending: int = 0  # windows still waiting in a batch
    closed: bool = False  # the record has ended: no more windows will come
    weighted: np.ndarray | None = None  # sum over classified windows of bases * values
    weight: int = 0

    @property
    def values(self) -> np.ndarray | None:
        """The record's values (class probabilities or embedding), None when no window was classified."""
        return None if self.weighted is None or self.weight == 0 else self.weighted / self.weight

    def cut(self, window: WindowResult) -> None:
        """A window of this record was cut (classified or not)."""
        self.windows += 1
        if self.detail is not None:
            self.detail.append(window)

    def add(self, window: WindowResult, values: np.ndarray) -> None:
        """The values of one of its windows."""
        window.values = values
        self.used += 1
        if window.bases:
            weighted = values * window.bases
            self.weighted = weighted if self.weighted is None else self.weighted + weighted
            self.weight += window.bases


def base_counts(tokens: np.ndarray) -> tuple[int, int]:
    """(A/C/G/T tokens, N tokens) of a window, in one pass."""
    counts = np.bincount(tokens, minlength=len(TOKENS))
    return int(counts[BASE_IDS].sum()), int(counts[N_ID])


# Positions per forward of a long window. 512 windows per 2^20-token forward give the scan enough programs for the
# GPU (H100, 1.4M model, forwards of 2^20-base windows, kernel time: 16.5 Mb/s with pieces of 2^14, 18.8 with 2^12
# (eighth session); 19.5 with 2^12 and 20.0 with 2^11 (eleventh), the scan forward 1.97 -> 1.85 ms a call).
PIECE = 1 << 11
# The first batch of a stream holds RAMP_BASES bases (about half a second of reading) and each next one twice as
# many until full, so that the device starts after a few windows are read rather than a full batch (1024 windows of
# 2^20 bases: 8.8 s of reading). Fewer than 64 windows of 2^20 cut the scan into segments: a first batch of 32 ran at
# 8.4 Mb/s and compiled two more kernels (H100, 1.4M model, 400 Mb, twenty-sixth session: 25.7 -> 24.6 s, and 36.3 ->
# 31.0 s with Triton's cache empty, against a first batch of 1/16 of a full one).
RAMP_BASES = 1 << 26


class WindowReader:
    """Streams (record, offset, tokens) chunks through an encoder; yields each record's result in file order.

    A classifier gives class probabilities per window; any other :class:`SequenceEncoder` its pooled hidden states
    (float32), then ``window`` must be given (an encoder records no training length) and ``labels`` is None.
    """

    def __init__(
        self,
        model: SequenceEncoder,
        window: int | None = None,
        stride: int | None = None,
        stateful: bool = False,
        batch_tokens: int | None = None,
        max_n_fraction: float = 0.5,
        device: str | torch.device | None = None,
        bfloat16: bool | None = None,
        per_window: bool = False,
        piece: int = PIECE,
        background: bool | None = None,
    ) -> None:
        self.window = int(window or getattr(model, "seqlen", None) or 0)
        if self.window < 1:
            raise ValueError("the model records no window length (seqlen); pass --window")
        self.stride = int(stride or self.window)
        if stateful and self.stride != self.window:
            raise ValueError(
                f"--stateful reads windows that tile each record: the stride must equal the window "
                f"({self.window}), not {self.stride}"
            )
        self.stateful, self.max_n_fraction, self.per_window = stateful, max_n_fraction, per_window
        self.device = resolve_device(device)
        self.batch_tokens = batch_tokens or default_batch_tokens(self.device)
        if stateful:  # a record is read in pieces of whole windows
            self.batch_tokens = max(self.batch_tokens, self.window)
        self.piece = piece
        self.model = model.to(self.device).eval()
        self.bfloat16 = use_bfloat16(self.device, bfloat16)
        self.labels = list(model.labels) if isinstance(model, MambaForSequenceClassification) else None
        # values per window: one per class, or the embedding's width
        self.width = len(self.labels) if self.labels is not None else model.backbone.config.d_model
        # GPU: forwards run on a thread of their own (None: on a GPU only), see _submit_forward
        background = self.device.type == "cuda" if background is None else background
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="genossm-forward") if background else None
        self._queued: list[Future] = []  # forwards submitted to the thread
        self._queue: deque[RecordResult] = deque()  # records not yet given out, in file order
        self._batches: dict[int, list[tuple[RecordResult, WindowResult, np.ndarray]]] = {}
        self._results = ResultsBehind()  # forwards not yet read back
        self._batches_run = 0  # of the windowed path, for the ramp (RAMP_BASES)

    # -- the model ----------------------------------------------------------------------------------------------
    def _to_device(self, tokens: np.ndarray) -> torch.Tensor:
        """Token bytes on the device (the model widens each piece it reads: a batch of long windows stays small)."""
        return torch.from_numpy(np.ascontiguousarray(tokens)).to(self.device, non_blocking=True)

    def _submit_forward(self, forward: Callable[[], Pending]) -> Pending:
        """Run ``forward`` here, or queue it on the forward thread. A forward of long windows issues tens of thousands
        of kernels, and the host would wait inside it for room in the device's launch queue until the last ones:
        on its own thread, the host cuts the next batch meanwhile. Forwards run one after another in order."""
        if self._worker is None:
            return forward()
        future = self._worker.submit(forward)
        self._queued = [f for f in self._queued if not f.done()] + [future]
        return lambda: future.result()()

    def _cancel_queued(self) -> None:
        """Drop the forwards not yet started (an interrupted run then waits at exit for the running one only)."""
        for future in self._queued:
            future.cancel()
        self._queued.clear()

    def _forward(self, tokens: np.ndarray, lengths: list[int]) -> Pending:
        """Values (b, classes or d_model) of a (b, padded length) batch whose rows hold ``lengths`` valid tokens."""
        return self._submit_forward(lambda: self._forward_now(tokens, lengths))

    @torch.inference_mode()
    def _forward_now(self, tokens: np.ndarray, lengths: list[int]) -> Pending:
        ids = self._to_device(tokens)
        mask = None
        if min(lengths) < tokens.shape[1]:
            valid = torch.tensor(lengths, device=self.device)
            mask = torch.arange(tokens.shape[1], device=self.device)[None] < valid[:, None]
        with autocast(self.device, self.bfloat16):
            values = self._readout(self.model.encode_in_pieces(ids, mask, self._piece(len(lengths))))
        return self._fetch(values)

    def _rows(self, length: int) -> int:
        """Windows of ``length`` (padded) positions per forward of a full batch."""
        return max(1, self.batch_tokens // min(length, self.piece))

    def _rows_now(self, length: int) -> int:
        """Windows of ``length`` per batch of the stream so far: smaller than full at first (:data:`RAMP_BASES`)."""
        return min(self._rows(length), max(1, (RAMP_BASES << self._batches_run) // length))

    def _piece(self, rows: int) -> int:
        """Positions per forward of a batch of ``rows`` long windows: ``piece``, or longer when fewer rows leave room
        (a last batch; a chromosome's 21 windows of 2^20), so that a forward still reads about ``batch_tokens``."""
        return max(self.piece, 1 << ((self.batch_tokens // rows).bit_length() - 1))

    def _forward_stateful(self, tokens: np.ndarray, states: list) -> Pending:
        """Values of each window of one piece of a record, continuing from (and updating) ``states``."""
        return self._submit_forward(lambda: self._forward_stateful_now(tokens, states))

    @torch.inference_mode()
    def _forward_stateful_now(self, tokens: np.ndarray, states: list) -> Pending:
        full, tail = divmod(len(tokens), self.window)
        ids = self._to_device(tokens)[None]
        with autocast(self.device, self.bfloat16):
            hidden = self.model.backbone(ids, states)[0]  # (piece, d_model)
            pooled = [self.model.pool(hidden[: full * self.window].reshape(full, self.window, -1))] if full else []
            if tail:
                pooled.append(self.model.pool(hidden[full * self.window :][None]))
            values = self._readout(torch.cat(pooled))
        return self._fetch(values)

    def _readout(self, pooled: torch.Tensor) -> torch.Tensor:
        """A window's values from its pooled hidden states: class probabilities, or the states themselves."""
        if self.labels is None:
            return pooled.to(torch.promote_types(pooled.dtype, torch.float32))
        logits = self.model.classifier(pooled.to(self.model.classifier.weight.dtype))
        return torch.softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), -1)

    def _fetch(self, values: torch.Tensor) -> Pending:
        """Start copying the values to the host; the returned call waits for them (GPU: without blocking the host
        until then, so it cuts the next windows while the device computes)."""
        if self.device.type != "cuda":
            host = values.numpy()
            return lambda: host
        pinned = torch.empty(values.shape, dtype=values.dtype, pin_memory=True)
        pinned.copy_(values, non_blocking=True)
        done = torch.cuda.Event()
        done.record()

        def wait() -> np.ndarray:
            done.synchronize()
            return pinned.numpy()

        return wait

    def classify_windows(self, windows: np.ndarray) -> np.ndarray:
        """Values (n, classes or d_model) of equal-length token windows (n, L), in batches of ``batch_tokens``; a
        window may end in ``[PAD]`` (a short record's), which is not read."""
        windows = np.asarray(windows)
        rows = self._rows(windows.shape[1])
        lengths = (windows != PAD_ID).sum(1).tolist()
        parts = [self._forward(windows[i : i + rows], lengths[i : i + rows])() for i in range(0, len(windows), rows)]
        return np.concatenate(parts) if parts else np.empty((0, self.width))

    # -- windowed (batched) path ------------------------------------------------------------------------------
    def _cut(self, record: RecordResult, start: int, tokens: np.ndarray) -> tuple[WindowResult, bool]:
        """Record a window of ``record``; whether it is classified (not more than ``max_n_fraction`` N)."""
        bases, n = base_counts(tokens)
        prediction = WindowResult(start, start + len(tokens), bases)
        record.cut(prediction)
        return prediction, n <= self.max_n_fraction * len(tokens)

    def _submit(self, record: RecordResult, window: Window) -> None:
        """Queue a window for the batch of its padded length; run that batch when it is full."""
        prediction, usable = self._cut(record, window.start, window.tokens)
        if not usable:
            return
        size = padded_length(len(window.tokens), self.window)
        batch = self._batches.setdefault(size, [])
        batch.append((record, prediction, window.tokens))
        record.pending += 1
        if len(batch) >= self._rows_now(size):
            self._run_batch(size)

    def _run_batch(self, size: int) -> None:
        batch = self._batches.pop(size, [])
        if not batch:
            return
        self._batches_run += 1
        tokens = np.full((len(batch), size), PAD_ID, dtype=np.uint8)
        for row, (_, _, window) in enumerate(batch):
            tokens[row, : len(window)] = window

        def apply(values: np.ndarray) -> None:
            for (record, prediction, _), p in zip(batch, values, strict=True):
                record.add(prediction, p)
                record.pending -= 1

        self._results.defer(self._forward(tokens, [len(w) for _, _, w in batch]), apply)

    # -- stateful path ------------------------------------------------------------------------------------------
    def _run_piece(self, record: RecordResult, tokens: np.ndarray, start: int, states: list) -> None:
        """Classify the windows of a piece of ``record`` starting at ``start``, continuing from ``states``."""
        bounds = range(0, len(tokens), self.window)
        cuts = [self._cut(record, start + k, tokens[k : k + self.window]) for k in bounds]
        record.pending += 1

        def apply(values: np.ndarray) -> None:
            for (prediction, usable), p in zip(cuts, values, strict=True):
                if usable:
                    record.add(prediction, p)
            record.pending -= 1

        self._results.defer(self._forward_stateful(tokens, states), apply)

    # -- streaming ---------------------------------------------------------------------------------------------
    def _ready(self) -> Iterator[RecordResult]:
        while self._queue and self._queue[0].closed and self._queue[0].pending == 0:
            yield self._queue.popleft()

    def predict(self, chunks: Iterable[RecordChunk]) -> Iterator[RecordResult]:
        """Results of the records streamed as ``chunks`` (a record starts at offset 0), in file order."""
        try:
            yield from self._predict(chunks)
        except BaseException:  # an error, an interrupt, or a caller that stopped reading
            self._cancel_queued()
            raise

    def _predict(self, chunks: Iterable[RecordChunk]) -> Iterator[RecordResult]:
        piece = (self.batch_tokens // self.window) * self.window
        record: RecordResult | None = None
        cutter: WindowCutter | None = None
        pending = np.empty(0, dtype=np.uint8)  # stateful: bases not yet run
        states: list | None = None
        for chunk in chunks:
            tokens = chunk.tokens
            if record is None or chunk.offset == 0:
                if record is not None:
                    self._close(record, cutter, pending, states)
                    yield from self._ready()
                record = RecordResult(chunk.name, detail=[] if self.per_window else None)
                self._queue.append(record)
                cutter = None if self.stateful else WindowCutter(self.window, self.stride)
                pending, states = np.empty(0, dtype=np.uint8), None
            record.length += len(tokens)
            if cutter is not None:
                for window in cutter.feed(tokens):
                    self._submit(record, window)
                yield from self._ready()
                continue
            pending = np.concatenate([pending, tokens])
            if len(pending) > self.window and states is None:
                states = self.model.allocate_states(1)
            while states is not None and len(pending) > piece:  # keep the end for _close
                self._run_piece(record, pending[:piece], record.length - len(pending), states)
                pending = pending[piece:]
        if record is not None:
            self._close(record, cutter, pending, states)
        for size in sorted(self._batches):
            self._run_batch(size)
        self._results.drain()
        yield from self._ready()

    def _close(
        self, record: RecordResult, cutter: WindowCutter | None, pending: np.ndarray, states: list | None
    ) -> None:
        """The record has ended: its last windows (stateful: the rest of it)."""
        if cutter is not None:
            for window in cutter.finish():
                self._submit(record, window)
        elif states is None:
            if len(pending):
                self._submit(record, Window(0, len(pending), pending))
        else:
            self._run_piece(record, pending, record.length - len(pending), states)
        record.closed = True
