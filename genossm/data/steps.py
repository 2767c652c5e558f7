"""Step-indexed data: one dataset item is one optimizer step, a pure function of (seed, step, schedule).

- **Token budget.** A step holds ``tokens_per_step`` tokens whatever the window length L: ``micro_batch =
  max(1, min(tokens_per_step, max_tokens_per_micro_batch) // L)`` windows per micro-batch and ``n_micro`` micro-
  batches (2^20 tokens = 1024 x 1K = 1 x 1M). A window longer than the budget makes a step of one window.
- **Sequence-length warm-up** (HyenaDNA's staged warm-up, as the Mamba paper uses it for long contexts): the length
  starts at ``start_seqlen`` and doubles stage by stage up to the target; the batch shrinks so that tokens per step
  stay constant. The warm-up takes ``fraction`` of the steps, shared equally by its stages (the first stage takes the
  remainder); the rest of training runs at the target. Explicit ``(seqlen, steps)`` stages may be given instead.
- **Determinism.** Item ``i`` draws from ``numpy.random.default_rng([seed, 0, i])`` only, so items do not depend on
  the number of workers, and resuming at step k is starting the sampler at k.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .genome import Genome
from .intervals import IS_BASE, Window, WindowPlacer, fetch_window, fetch_windows

MAX_TRIES = 64
IGNORE_INDEX = -100


def step_rng(seed: int, step: int) -> np.random.Generator:
    """The random generator of training step ``step``: all its randomness, and nothing else's."""
    return np.random.default_rng([seed, 0, step])


def step_shape(seqlen: int, tokens_per_step: int, max_tokens_per_micro_batch: int) -> tuple[int, int]:
    """(n_micro, micro_batch) of a step of windows of ``seqlen`` tokens."""
    if min(seqlen, tokens_per_step, max_tokens_per_micro_batch) < 1:
        raise ValueError("seqlen, tokens_per_step and max_tokens_per_micro_batch must be positive")
    if seqlen >= tokens_per_step:
        return 1, 1
    micro_batch = max(1, min(tokens_per_step, max_tokens_per_micro_batch) // seqlen)
    if tokens_per_step % (micro_batch * seqlen):
        raise ValueError(
            f"{tokens_per_step:,} tokens per step do not split into micro-batches of {micro_batch} windows of "
            f"{seqlen:,} tokens; use powers of two for the lengths and token budgets"
        )
    return tokens_per_step // (micro_batch * seqlen), micro_batch


@dataclass(frozen=True)
class SeqlenStage:
    """From step ``first_step`` on, windows have ``seqlen`` tokens (until the next stage)."""

    first_step: int
    seqlen: int


def seqlen_stages(
    target: int,
    max_steps: int,
    warmup: bool = True,
    start_seqlen: int = 1024,
    fraction: float = 0.25,
    stages: Sequence[tuple[int, int]] | None = None,
) -> list[SeqlenStage]:
    """The sequence-length schedule: warm-up stages (see the module docstring), then ``target``."""
    if stages:
        schedule, step = [], 0
        for seqlen, steps in stages:
            if seqlen < 1 or steps < 1:
                raise ValueError(f"a warm-up stage needs a positive length and number of steps, not {seqlen, steps}")
            schedule.append(SeqlenStage(step, seqlen))
            step += steps
        if step >= max_steps:
            raise ValueError(f"the warm-up stages take {step:,} steps, but training has only {max_steps:,}")
        return [*schedule, SeqlenStage(step, target)]
    lengths = []
    while warmup and start_seqlen * 2 ** len(lengths) < target:
        lengths.append(start_seqlen * 2 ** len(lengths))
    warmup_steps = round(fraction * max_steps) if lengths else 0
    lengths = lengths[len(lengths) - min(len(lengths), warmup_steps) :]  # at least one step per stage
    if not lengths:
        return [SeqlenStage(0, target)]
    per_stage, extra = divmod(warmup_steps, len(lengths))
    firsts = [0] + [extra + per_stage * k for k in range(1, len(lengths))]
    return [SeqlenStage(f, s) for f, s in zip(firsts, lengths, strict=True)] + [SeqlenStage(warmup_steps, target)]


def seqlen_at(stages: list[SeqlenStage], step: int) -> int:
    """The window length of ``step``."""
    return [s for s in stages if s.first_step <= step][-1].seqlen


def draw_windows(
    genome: Genome, placer: WindowPlacer, rng: np.random.Generator, n: int, rc_aug: bool, max_non_base: float
) -> np.ndarray:
    """(n, length) tokens of random windows with at most ``max_non_base`` non-ACGT positions each (drawn again
    until they qualify), each reverse complemented with probability 1/2 under ``rc_aug``."""
    out = np.empty((n, placer.length), dtype=np.uint8)
    todo = np.arange(n)
    for _ in range(MAX_TRIES):
        windows = placer.sample(rng, todo.size)
        rc = rng.random(todo.size) < 0.5 if rc_aug else None
        out[todo] = fetch_windows(genome, windows, rc)
        todo = todo[placer.unusable_fraction(out[todo]) > max_non_base]
        if not todo.size:
            return out
    raise ValueError(
        f"{genome.path}: windows of {placer.length:,} bases keep having more than {max_non_base:.0%} N or padding "
        f"({MAX_TRIES} draws); raise max_n_fraction or choose other intervals"
    )


def filtered_windows(genome: Genome, placer: WindowPlacer, n: int, max_non_base: float) -> list[Window]:
    """``n`` fixed windows spread evenly over ``placer``'s intervals, skipping those with too many N."""
    count = n
    while True:
        candidates = placer.evenly_spaced(count)
        good = [w for w in candidates if placer.unusable_fraction(fetch_window(genome, w)) <= max_non_base]
        if len(good) >= n or count >= 16 * n or count >= placer.total_starts:
            break
        count *= 2
    if not good:
        raise ValueError(
            f"{genome.path}: no window of {placer.length:,} bases with at most {max_non_base:.0%} N or padding "
            "in the valid / held-out intervals"
        )
    return [good[i] for i in np.linspace(0, len(good) - 1, min(n, len(good))).round().astype(int)]


def lm_tensors(windows: np.ndarray, n_micro: int, micro_batch: int) -> dict[str, torch.Tensor]:
    """Input ids and next-base labels from (windows, L + 1) tokens: labels are -100 where the target is no base."""
    count, seqlen = windows.shape[0], windows.shape[1] - 1
    source = torch.from_numpy(windows)
    input_ids = torch.empty((count, seqlen), dtype=torch.long).copy_(source[:, :-1])
    labels = torch.empty((count, seqlen), dtype=torch.long).copy_(source[:, 1:])
    labels.masked_fill_(torch.from_numpy(~IS_BASE.take(windows[:, 1:])), IGNORE_INDEX)
    return {
        "input_ids": input_ids.view(n_micro, micro_batch, seqlen),
        "labels": labels.view(n_micro, micro_batch, seqlen),
    }


class StepSampler(Sampler[int]):
    """Step indices ``start, start + 1, ..., stop - 1``: the items of a run resumed at ``start``.

    Its length is the whole run's, ``stop``: Lightning counts the steps done before a resume as part of the
    epoch, and would otherwise end the epoch early and start the sampler again.
    """

    def __init__(self, start: int, stop: int) -> None:
        if not 0 <= start <= stop:
            raise ValueError(f"cannot start at step {start} of a run of {stop} steps")
        self.start, self.stop = start, stop

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return self.stop


def worker_start_method() -> str | None:
    """How loader workers start: forked (None, the default), or from a fork server in a process of a multi-rank run.

    A rank's process has the process group's threads running; a fork taken while one of them holds a lock of the
    interpreter can leave the child stuck in ``os.fork()`` (seen once in about 60 two-rank CPU runs: CPython 3.11,
    ``PyOS_AfterFork_Child``), and the rank then waits for it forever. The fork server forks from a process of its
    own, with no such threads.
    """
    several_ranks = torch.distributed.is_available() and torch.distributed.is_initialized()
    if several_ranks and torch.distributed.get_world_size() > 1 and "forkserver" in mp.get_all_start_methods():
        return "forkserver"
    return None


def step_loader(dataset: Dataset, start_step: int = 0, num_workers: int = 0) -> DataLoader:
    """A DataLoader of whole steps (no collation) starting at ``start_step``."""
    return DataLoader(
        dataset,
        batch_size=None,
        sampler=StepSampler(start_step, len(dataset)),  # type: ignore[arg-type]
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available(),
        multiprocessing_context=worker_start_method() if num_workers > 0 else None,
    )
