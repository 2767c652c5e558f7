"""The Mamba stack: residual blocks and the backbone (``embedding``, ``layers``, ``norm_f``), named as in mamba_ssm.

Each block computes ``residual = hidden + residual; hidden = mixer(norm(residual))`` (add, then pre-norm), so the
add and the norm fuse into one kernel; the model is the usual pre-norm residual network. In training the norm
output is not kept for the backward: it is rebuilt there from the residual stream (:mod:`.rebuild`).
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from genossm.kernels import add_norm, embedding, norm_of_stream
from genossm.kernels.common.tensors import compute_dtype

from .config import MambaConfig
from .mamba1 import Mamba
from .mamba2 import Mamba2
from .norm import RMSNorm
from .rebuild import rebuilt_for_backward
from .state import MixerState

MIXER_CLASSES = {"Mamba1": Mamba, "Mamba2": Mamba2}


class GatedMLP(nn.Module):
    """mamba_ssm's optional MLP after a mixer: fc2(a * silu(gate)) with [a, gate] = fc1(x)."""

    def __init__(self, d_model: int, hidden: int, multiple_of: int = 128, device=None, dtype=None) -> None:
        super().__init__()
        hidden = (hidden + multiple_of - 1) // multiple_of * multiple_of
        self.fc1 = nn.Linear(d_model, 2 * hidden, bias=False, device=device, dtype=dtype)
        self.fc2 = nn.Linear(hidden, d_model, bias=False, device=device, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        a, gate = self.fc1(x).chunk(2, dim=-1)
        return self.fc2(a * F.silu(gate))


class Block(nn.Module):
    """Add + norm + mixer (+ add + norm + MLP); returns (hidden, residual)."""

    def __init__(self, config: MambaConfig, layer_idx: int, device=None, dtype=None) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        norm_cls = RMSNorm if config.rms_norm else nn.LayerNorm
        mixer_args = {k: v for k, v in config.ssm_cfg.items() if k != "layer"}
        try:
            self.mixer = MIXER_CLASSES[config.mixer](config.d_model, layer_idx=layer_idx, **mixer_args, **factory)
        except TypeError as err:
            raise ValueError(f"ssm_cfg: {err}") from None
        self.norm = norm_cls(config.d_model, eps=1e-5, **factory)
        if config.d_intermediate > 0:
            self.norm2 = norm_cls(config.d_model, eps=1e-5, **factory)
            self.mlp = GatedMLP(config.d_model, config.d_intermediate, **factory)
        else:
            self.mlp = None
        self.residual_in_fp32 = config.residual_in_fp32

    def _add_norm(self, hidden: Tensor, residual: Tensor | None, norm: nn.Module) -> tuple[Tensor, Tensor]:
        """(norm output, residual stream); the output in the autocast dtype, which the mixer would cast it to (the
        first block's comes from the float32 embedding), so that the mixer keeps this very tensor."""
        return add_norm(
            hidden,
            residual,
            norm.weight,
            norm.bias,
            norm.eps,
            isinstance(norm, RMSNorm),
            self.residual_in_fp32,
            out_dtype=compute_dtype(hidden) if hidden.dtype == torch.float32 else None,
        )

    def _rebuilt(self, normed: Tensor, residual: Tensor, norm: nn.Module, rebuild: bool):
        """A context in which the norm output is rebuilt from the residual stream for the backward, not kept."""
        if not (rebuild and torch.is_grad_enabled()):
            return nullcontext()
        is_rms, dtype = isinstance(norm, RMSNorm), normed.dtype
        return rebuilt_for_backward(
            normed, lambda: norm_of_stream(residual, norm.weight, norm.bias, norm.eps, is_rms, dtype)
        )

    def forward(
        self,
        hidden: Tensor,
        residual: Tensor | None = None,
        state: MixerState | None = None,
        step: bool = False,
        rebuild_inputs: bool = False,
    ) -> tuple[Tensor, Tensor]:
        """``rebuild_inputs``: the backward rebuilds the mixer's (and MLP's) input from the residual stream instead
        of keeping it (not under ``torch.utils.checkpoint``)."""
        hidden, residual = self._add_norm(hidden, residual, self.norm)
        with self._rebuilt(hidden, residual, self.norm, rebuild_inputs):
            hidden = self.mixer.step(hidden, state) if step else self.mixer(hidden, state)
        if self.mlp is not None:
            hidden, residual = self._add_norm(hidden, residual, self.norm2)
            with self._rebuilt(hidden, residual, self.norm2, rebuild_inputs):
                hidden = self.mlp(hidden)
        return hidden, residual


def init_weights(
    module: nn.Module,
    n_layer: int,
    initializer_range: float = 0.02,
    rescale_prenorm_residual: bool = True,
    n_residuals_per_layer: int = 1,
) -> None:
    """mamba_ssm's initialisation: zero biases (but dt's), N(0, 0.02) embeddings, out_proj scaled by depth."""
    if isinstance(module, nn.Linear) and module.bias is not None and not getattr(module.bias, "_no_reinit", False):
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=initializer_range)
    if rescale_prenorm_residual:
        for name, p in module.named_parameters():
            if name in ("out_proj.weight", "fc2.weight"):
                nn.init.kaiming_uniform_(p, a=math.sqrt(5))
                with torch.no_grad():
                    p /= math.sqrt(n_residuals_per_layer * n_layer)


class MixerModel(nn.Module):
    """Embedding, a stack of blocks and the final norm: token ids (b, l) -> hidden states (b, l, d_model)."""

    def __init__(self, config: MambaConfig, initializer_cfg: dict | None = None, device=None, dtype=None) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.padded_vocab_size, config.d_model, device=device, dtype=dtype)
        self.layers = nn.ModuleList(Block(config, i, device=device, dtype=dtype) for i in range(config.n_layer))
        norm_cls = RMSNorm if config.rms_norm else nn.LayerNorm
        self.norm_f = norm_cls(config.d_model, eps=1e-5, device=device, dtype=dtype)
        self.gradient_checkpointing = False  # recompute each block in the backward, keeping only its inputs
        self.apply(
            partial(
                init_weights,
                n_layer=config.n_layer,
                **(initializer_cfg or {}),
                n_residuals_per_layer=1 if config.d_intermediate == 0 else 2,
            )
        )

    def allocate_states(self, batch_size: int, dtype: torch.dtype | None = None) -> list[MixerState]:
        """Zero recurrent states, one per block."""
        return [layer.mixer.allocate_state(batch_size, dtype) for layer in self.layers]

    def forward(self, input_ids: Tensor, states: list[MixerState] | None = None, step: bool = False) -> Tensor:
        """With ``states``, continue each block from its state and update it; ``step`` reads one token. Token ids
        may be of any integer dtype (a classifier keeps its batches as bytes on the device)."""
        hidden, residual = embedding(input_ids, self.embedding.weight), None
        recompute = self.gradient_checkpointing and torch.is_grad_enabled() and not step
        for i, layer in enumerate(self.layers):
            state = None if states is None else states[i]
            if recompute:
                hidden, residual = _checkpointed_block(layer, hidden, residual, state)
            else:
                hidden, residual = layer(hidden, residual, state, step=step, rebuild_inputs=True)
        hidden, _ = add_norm(
            hidden,
            residual,
            self.norm_f.weight,
            self.norm_f.bias,
            self.norm_f.eps,
            isinstance(self.norm_f, RMSNorm),
            self.config.residual_in_fp32,
        )
        return hidden


def _checkpointed_block(
    layer: Block, hidden: Tensor, residual: Tensor | None, state: MixerState | None
) -> tuple[Tensor, Tensor]:
    """Run a block keeping only its inputs for the backward, which recomputes it.

    The recurrent state goes in and out as tensors (a MixerState is updated in place, so handing the object itself
    to the recomputation would replay the block from its end state).
    """
    if state is None:
        return checkpoint(layer, hidden, residual, use_reentrant=False)

    def run(hidden: Tensor, residual: Tensor | None, conv: Tensor, ssm: Tensor) -> tuple[Tensor, ...]:
        local = MixerState(conv, ssm)
        out = layer(hidden, residual, local)
        return (*out, local.conv, local.ssm)

    hidden, residual, state.conv, state.ssm = checkpoint(
        run, hidden, residual, state.conv, state.ssm, use_reentrant=False
    )
    return hidden, residual
