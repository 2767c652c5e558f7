"""Models on top of the backbone: the language model (mamba_ssm's ``MambaLMHeadModel``) and a classifier."""

from __future__ import annotations

from collections import namedtuple
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .backbone import MixerModel, init_weights
from .config import MambaConfig
from .pretrained import SavesPretrained, read_model_dir
from .state import MixerState

CausalLMOutput = namedtuple("CausalLMOutput", ["logits"])
POOLINGS = ("mean", "last")


class MambaLMHeadModel(SavesPretrained, nn.Module):
    """Next-token model: ``backbone`` + ``lm_head`` (tied to the embedding by default)."""

    task = "lm"

    def __init__(self, config: MambaConfig, initializer_cfg: dict | None = None, device=None, dtype=None) -> None:
        super().__init__()
        self.config = config
        self.tokens: list[str] | None = None  # the vocabulary, saved beside the weights when set
        self.backbone = MixerModel(config, initializer_cfg, device=device, dtype=dtype)
        self.lm_head = nn.Linear(config.d_model, config.padded_vocab_size, bias=False, device=device, dtype=dtype)
        self.apply(partial(init_weights, n_layer=config.n_layer, **(initializer_cfg or {})))
        if config.tie_embeddings:
            self.lm_head.weight = self.backbone.embedding.weight

    def allocate_states(self, batch_size: int, dtype: torch.dtype | None = None) -> list[MixerState]:
        """Zero recurrent states for :meth:`forward` with ``states`` or :meth:`step`."""
        return self.backbone.allocate_states(batch_size, dtype)

    def forward(
        self, input_ids: Tensor, states: list[MixerState] | None = None, num_last_tokens: int = 0
    ) -> CausalLMOutput:
        """Token ids (b, l) -> logits (b, l, padded vocab); with ``states``, continue from them."""
        hidden = self.backbone(input_ids, states)
        if num_last_tokens > 0:
            hidden = hidden[:, -num_last_tokens:]
        return CausalLMOutput(logits=self.lm_head(hidden))

    def step(self, input_ids: Tensor, states: list[MixerState]) -> Tensor:
        """One token per sequence, (b,) or (b, 1) -> logits (b, padded vocab), in recurrent form."""
        hidden = self.backbone(input_ids.reshape(-1, 1), states, step=True)
        return self.lm_head(hidden[:, 0])


class SequenceEncoder(nn.Module):
    """A backbone read as one vector per sequence: its final hidden states pooled over the valid positions (their
    mean, or the last one, which a causal model computes from the whole sequence)."""

    def __init__(self, backbone: MixerModel, pooling: str = "mean") -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, not {pooling!r}")
        self.backbone = backbone
        self.pooling = pooling

    def allocate_states(self, batch_size: int, dtype: torch.dtype | None = None) -> list[MixerState]:
        """Zero recurrent states, to read a long sequence window by window."""
        return self.backbone.allocate_states(batch_size, dtype)

    def pool(self, hidden: Tensor, mask: Tensor | None = None) -> Tensor:
        """(b, l, d) -> (b, d): mean over valid positions, or the last valid one; mask (b, l) marks valid."""
        if mask is None:
            return hidden.mean(1) if self.pooling == "mean" else hidden[:, -1]
        mask = mask.to(hidden.dtype)
        if self.pooling == "mean":
            return (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        last = (mask.sum(1).long() - 1).clamp(min=0)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]

    def encode(self, input_ids: Tensor, mask: Tensor | None = None, states: list[MixerState] | None = None) -> Tensor:
        """Token ids (b, l) -> pooled hidden states (b, d_model)."""
        return self.pool(self.backbone(input_ids, states), mask)

    def encode_in_pieces(self, input_ids: Tensor, mask: Tensor | None, piece: int) -> Tensor:
        """:meth:`encode` from a zero state, reading ``piece`` positions at a time with the recurrent state carried
        from piece to piece (equal up to rounding; float32 sums when longer than a piece): memory is that of one
        piece, and many long sequences share each kernel launch instead of one sequence cut into segments."""
        batch, length = input_ids.shape
        if length <= piece:
            return self.encode(input_ids, mask)
        states = self.allocate_states(batch)
        pooled = None
        for start in range(0, length, piece):
            hidden = self.backbone(input_ids[:, start : start + piece], states)
            part_mask = None if mask is None else mask[:, start : start + piece]
            if self.pooling == "mean":  # the piece's sum over valid positions; divided by their count below
                if part_mask is not None:
                    hidden = hidden * part_mask[..., None].to(hidden.dtype)
                part = hidden.sum(1, dtype=torch.promote_types(hidden.dtype, torch.float32))  # of up to 2^20 rows
                pooled = part if pooled is None else pooled + part
            else:  # the last piece holding a valid position has the last one
                part = self.pool(hidden, part_mask)
                keep = part_mask is not None and pooled is not None
                pooled = torch.where(part_mask.any(1, keepdim=True), part, pooled) if keep else part
        if self.pooling == "mean":
            pooled = pooled / (length if mask is None else mask.sum(1, keepdim=True).clamp(min=1))
        return pooled


class MambaForSequenceClassification(SavesPretrained, SequenceEncoder):
    """Sequence classifier: a :class:`SequenceEncoder` (``backbone`` + pooling) + ``classifier`` (a linear layer)."""

    task = "classification"

    def __init__(
        self,
        config: MambaConfig,
        labels: list[str],
        pooling: str = "mean",
        initializer_cfg: dict | None = None,
        device=None,
        dtype=None,
    ) -> None:
        if len(labels) < 2:
            raise ValueError(f"a classifier needs at least two labels, got {labels}")
        super().__init__(MixerModel(config, initializer_cfg, device=device, dtype=dtype), pooling)
        self.config = config
        self.labels = list(labels)
        self.tokens: list[str] | None = None
        self.seqlen: int | None = None  # the window length it was trained on, saved beside the weights when set
        self.classifier = nn.Linear(config.d_model, len(labels), device=device, dtype=dtype)

    def forward(self, input_ids: Tensor, mask: Tensor | None = None, states: list[MixerState] | None = None) -> Tensor:
        """Token ids (b, l) -> class logits (b, labels)."""
        return self.classifier(self.encode(input_ids, mask, states))

    def metadata(self) -> dict[str, Any]:
        """genossm.json of a classifier: the labels, the pooling and the training window length as well."""
        return {**super().metadata(), "labels": self.labels, "pooling": self.pooling, "seqlen": self.seqlen}


Model = MambaLMHeadModel | MambaForSequenceClassification


def from_pretrained(
    path: str | Path, device: str | torch.device | None = None, dtype: torch.dtype | None = None
) -> Model:
    """Load a model directory written by genossm or by mamba_ssm's ``save_pretrained``."""
    config, meta, state_dict = read_model_dir(path)
    task = meta.get("task", "lm")
    if task == "lm":
        model: Model = MambaLMHeadModel(config)
    elif task == "classification":
        model = MambaForSequenceClassification(config, meta["labels"], meta.get("pooling", "mean"))
        model.seqlen = meta.get("seqlen")
    else:
        raise ValueError(f"{path}: unknown task {task!r} in genossm.json")
    model.tokens = meta.get("tokens")
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not fit the config (missing {missing}, unexpected {unexpected})")
    return model.to(device=device, dtype=dtype)
