"""Sampling DNA from a language model, one base at a time in the model's recurrent form.

Each prompt is read once by the full forward pass (the *prefill*), which leaves the recurrent states and the logits
of the first new base; the states are then copied for each of the prompt's samples, and all samples of all prompts
advance together, one :meth:`~genossm.models.MambaLMHeadModel.step` per new base, at constant memory.

Only A, C, G and T are ever drawn: the model's distribution is restricted to those four tokens (the same as giving
every other token id a logit of -inf), then shaped by the temperature, top-k and top-p (nucleus) filtering. Drawing
a base needs no host synchronisation (the exponential race: ``argmax(p / E)``, ``E ~ Exp(1)``, is a draw from
``p``), so the loop (:mod:`genossm.generation.loop`, a CUDA graph on a GPU) only queues work on the device; the new
bases are copied to the host once per block of positions.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from genossm.data.tokenizer import BASE_IDS, as_bytes, encode
from genossm.inference import autocast, default_batch_tokens, resolve_device, use_bfloat16
from genossm.models import MambaLMHeadModel
from genossm.models.kept_weights import weights_kept
from genossm.models.state import MixerState

from .loop import StepLoop

PROMPT_LETTERS = np.frombuffer(b"ACGTNacgtn", dtype=np.uint8)


@dataclass(frozen=True)
class Sampling:
    """How each base is drawn from the model's distribution over A, C, G and T."""

    temperature: float = 1.0
    """Logits are divided by it; 0 takes the most likely base (greedy)."""
    top_k: int | None = None
    """Draw only among the k most likely bases."""
    top_p: float | None = None
    """Draw only among the most likely bases whose probabilities first add up to at least top_p (nucleus)."""

    def __post_init__(self) -> None:
        if not self.temperature >= 0:
            raise ValueError(f"the temperature must be 0 (greedy) or more, not {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be at least 1, not {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], not {self.top_p}")

    def choose(self, logits: Tensor, noise: Tensor) -> Tensor:
        """Logits (b, n) -> the column (b,) drawn from each row with ``noise`` (b, n) of Exp(1) numbers, on the
        device, without waiting for it."""
        if self.temperature == 0:
            return logits.argmax(-1)
        logits = logits / self.temperature
        if self.top_k is not None and self.top_k < logits.shape[-1]:
            kth = logits.topk(self.top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, -torch.inf)
        probs = logits.softmax(-1)
        if self.top_p is not None and self.top_p < 1:
            probs = nucleus(probs, self.top_p)
        return (probs / noise.clamp(min=torch.finfo(noise.dtype).tiny)).argmax(-1)


def nucleus(probs: Tensor, top_p: float) -> Tensor:
    """``probs`` (b, n) with all but the most likely columns whose sum first reaches ``top_p`` set to zero (the most
    likely column is always kept; the rows are not renormalised)."""
    ranked, order = probs.sort(-1, descending=True)
    before = ranked.cumsum(-1) - ranked  # probability of the more likely columns
    return torch.zeros_like(probs).scatter(-1, order, ranked.masked_fill(before >= top_p, 0))


def encode_prompt(seq: str) -> np.ndarray:
    """Token ids of a prompt written as text: A, C, G, T or N in either case; any other character is an error
    naming it and its (0-based) position."""
    letters = as_bytes(seq)
    bad = np.flatnonzero(~np.isin(letters, PROMPT_LETTERS))
    if bad.size:
        pos = int(bad[0])
        raise ValueError(f"the prompt has {chr(letters[pos])!r} at position {pos}: only A, C, G, T and N are allowed")
    return encode(letters)


class Sampler:
    """Draws new bases after DNA prompts from a language model."""

    def __init__(
        self,
        model: MambaLMHeadModel,
        sampling: Sampling | None = None,
        device: str | torch.device | None = None,
        bfloat16: bool | None = None,
        batch_tokens: int | None = None,
        cuda_graph: bool = True,
    ) -> None:
        """``batch_tokens``: prompt tokens per forward of the prefill (a longer prompt is read in pieces, its state
        carried), by default :func:`~genossm.inference.default_batch_tokens`; ``cuda_graph``: on a GPU, replay each
        step from a CUDA graph (the same bases, several times faster)."""
        self.sampling = sampling or Sampling()
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.bfloat16 = use_bfloat16(self.device, bfloat16)
        self.batch_tokens = batch_tokens or default_batch_tokens(self.device)
        self.bases = torch.tensor(BASE_IDS, device=self.device)
        self.cuda_graph = cuda_graph and self.device.type == "cuda"

    @torch.no_grad()  # not inference_mode, under which autocast casts every weight again at every step
    def generate(
        self, prompts: Sequence[np.ndarray], length: int, num: int = 1, seed: int = 0, progress: bool = True
    ) -> np.ndarray:
        """``num`` samples of ``length`` new bases after each prompt (token ids; may be empty), as token ids of shape
        (len(prompts) * num, length): the samples of the first prompt, then those of the second, and so on.

        After an empty prompt the first base is drawn uniformly from A, C, G and T (whatever the sampling), and the
        model continues from it. The same ``seed`` gives the same samples on the same device; ``progress`` shows a
        bar over the new positions on standard error.
        """
        if length < 1:
            raise ValueError(f"the length must be at least one base, not {length}")
        if num < 1:
            raise ValueError(f"the number of samples per prompt must be at least 1, not {num}")
        if not prompts:
            raise ValueError("no prompt to continue (an empty prompt samples from scratch)")
        generator = torch.Generator(self.device).manual_seed(seed)
        # one autocast region: each weight is cast to bfloat16 once, and the mixers' weights are computed once
        with autocast(self.device, self.bfloat16), weights_kept(self.model):
            states, logits = self._prefill_all(prompts, num)
            column = self.sampling.choose(logits, torch.empty_like(logits).exponential_(generator=generator))
            empty = [len(prompt) == 0 for prompt in prompts]
            if any(empty):
                uniform = torch.randint(len(BASE_IDS), column.shape, generator=generator, device=self.device)
                column = torch.where(torch.tensor(empty, device=self.device).repeat_interleave(num), uniform, column)
            return self._continue(self.bases[column], states, length, generator, progress)

    def _continue(
        self, tokens: Tensor, states: list[MixerState], length: int, generator: torch.Generator, progress: bool
    ) -> np.ndarray:
        """``tokens`` (b,) as the first new bases, then ``length - 1`` steps from ``states``; all on the host."""
        loop = StepLoop(self._next_tokens, tokens, states, graph=self.cuda_graph)
        out = np.empty((len(tokens), length), dtype=np.uint8)
        with tqdm(total=length, unit="pos", desc="generate", file=sys.stderr, disable=not progress) as bar:
            for start in range(0, length, loop.block):
                stop = min(start + loop.block, length)
                loop.start_block(generator)
                for pos in range(start, stop):
                    if pos == 0:
                        loop.put(tokens)
                    else:
                        loop.advance()
                    bar.update()
                out[:, start:stop] = loop.bases[:, : stop - start].cpu().numpy()
        return out

    def _next_tokens(self, tokens: Tensor, states: list[MixerState], noise: Tensor) -> Tensor:
        """The bases (b,) drawn after ``tokens`` (b,), updating ``states``."""
        logits = self.model.step(tokens, states)
        return self.bases[self.sampling.choose(self._base_logits(logits), noise)]

    def _prefill_all(self, prompts: Sequence[np.ndarray], num: int) -> tuple[list[MixerState], Tensor]:
        """Each prompt read on its own, its states and first logits repeated for its ``num`` samples."""
        read = [self._prefill(prompt) for prompt in prompts]
        logits = torch.cat([first for _, first in read]).repeat_interleave(num, dim=0)
        layers = zip(*(states for states, _ in read), strict=True)
        return [repeat_states(layer, num) for layer in layers], logits

    def _prefill(self, prompt: np.ndarray) -> tuple[list[MixerState], Tensor]:
        """The states after reading ``prompt`` (``batch_tokens`` at a time) and the logits (1, 4) of the base after it;
        zeros (uniform) for an empty prompt."""
        states = self.model.allocate_states(1)
        head = self.model.lm_head.weight
        logits = self._base_logits(head.new_zeros(1, head.shape[0]))
        ids = torch.from_numpy(np.asarray(prompt, dtype=np.int64)).to(self.device)[None]
        for start in range(0, ids.shape[1], self.batch_tokens):
            last = self.model(ids[:, start : start + self.batch_tokens], states, num_last_tokens=1).logits[:, -1]
            logits = self._base_logits(last)
        return states, logits

    def _base_logits(self, logits: Tensor) -> Tensor:
        """Logits over the padded vocabulary (b, v) -> over A, C, G, T (b, 4), in float32 or wider."""
        return logits[:, self.bases].to(torch.promote_types(logits.dtype, torch.float32))


def repeat_states(states: Sequence[MixerState], num: int) -> MixerState:
    """One block's states of several sequences (each of batch 1) as one batch, each repeated ``num`` times
    (each copy its own memory)."""
    conv = torch.cat([s.conv for s in states]).repeat_interleave(num, dim=0)
    ssm = torch.cat([s.ssm for s in states]).repeat_interleave(num, dim=0)
    return MixerState(conv, ssm)
