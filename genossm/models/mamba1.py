"""Mamba-1 mixer (selective SSM, S6), with mamba_ssm's ``Mamba`` parameter names and initialisation.

x, z   = in_proj(h)                                   (b, l, 2 * d_inner) split in two
x      = silu(causal_conv1d(x))                       (b, d_inner, l)
dt,B,C = x_proj(x)                                    ranks dt_rank, d_state, d_state
dt     = dt_proj(dt)                                  softplus(dt + bias) inside the scan
y      = selective_scan(x, dt, A = -exp(A_log), B, C, D, gate z)
out    = out_proj(y)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from genossm.kernels import MixerWeights, mamba_mixer_fn, mamba_mixer_step

from .kept_weights import KeepsWeights
from .state import MixerState, next_conv_state, state_dtype


def init_dt_bias(size: int, dt_min: float, dt_max: float, dt_init_floor: float, device=None) -> Tensor:
    """dt log-uniform in [dt_min, dt_max], returned through the inverse softplus (so softplus(bias) = dt)."""
    dt = torch.exp(torch.rand(size, device=device) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
    dt = dt.clamp(min=dt_init_floor)
    return dt + torch.log(-torch.expm1(-dt))


def no_weight_decay(module: nn.Module, *names: str) -> None:
    """Exempt ``module``'s parameters ``names`` from weight decay: listed in ``module.no_weight_decay_params``, which
    genossm's optimiser reads (a mark on a parameter does not survive FSDP's sharding), and marked
    ``_no_weight_decay`` as mamba_ssm marks them, for optimisers written for it."""
    module.no_weight_decay_params = names
    for name in names:
        getattr(module, name)._no_weight_decay = True


class Mamba(KeepsWeights[MixerWeights], nn.Module):
    """The Mamba-1 mixer; ``forward`` over a sequence, ``step`` for one token."""

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init: str = "random",
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        use_fast_path: bool = True,
        layer_idx: int | None = None,
        device=None,
        dtype=None,
    ) -> None:
        factory = {"device": device, "dtype": dtype}
        super().__init__()
        self.d_model, self.d_state, self.d_conv, self.expand = d_model, d_state, d_conv, expand
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.use_fast_path = use_fast_path  # accepted for mamba_ssm configs; the kernels are chosen per device
        self.layer_idx = layer_idx

        self.in_proj = nn.Linear(d_model, self.d_inner * 2, bias=bias, **factory)
        self.conv1d = nn.Conv1d(
            self.d_inner,
            self.d_inner,
            d_conv,
            groups=self.d_inner,
            padding=d_conv - 1,
            bias=conv_bias,
            **factory,
        )
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False, **factory)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True, **factory)

        std = self.dt_rank**-0.5 * dt_scale
        if dt_init == "constant":
            nn.init.constant_(self.dt_proj.weight, std)
        elif dt_init == "random":
            nn.init.uniform_(self.dt_proj.weight, -std, std)
        else:
            raise ValueError(f"dt_init must be 'constant' or 'random', not {dt_init!r}")
        with torch.no_grad():
            self.dt_proj.bias.copy_(init_dt_bias(self.d_inner, dt_min, dt_max, dt_init_floor, device))
        self.dt_proj.bias._no_reinit = True

        # S4D-real initialisation: A[d, n] = -(n + 1).
        A = torch.arange(1, d_state + 1, dtype=torch.float32, device=device).repeat(self.d_inner, 1)
        self.A_log = nn.Parameter(torch.log(A))
        self.D = nn.Parameter(torch.ones(self.d_inner, device=device))
        no_weight_decay(self, "A_log", "D")
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias, **factory)

    def allocate_state(self, batch_size: int, dtype: torch.dtype | None = None) -> MixerState:
        """A zero state for ``batch_size`` sequences."""
        return MixerState.zeros(
            batch_size,
            (self.d_inner, self.d_conv),
            (self.d_inner, self.d_state),
            self.out_proj.weight,
            self.conv1d.weight,
            dtype,
        )

    def _weights(self) -> MixerWeights:
        """The parameters as the mixer ops take them (A = -exp(A_log), D and dt's bias in the state dtype)."""
        f = state_dtype(self.out_proj.weight.dtype)
        return MixerWeights(
            self.in_proj.weight,
            self.in_proj.bias,
            self.conv1d.weight[:, 0, :],
            self.conv1d.bias,
            self.x_proj.weight,
            self.dt_proj.weight,
            self.dt_proj.bias.to(f),
            -torch.exp(self.A_log.to(f)),
            self.D.to(f),
            self.out_proj.weight,
            self.out_proj.bias,
        )

    def forward(self, hidden_states: Tensor, state: MixerState | None = None) -> Tensor:
        """(batch, seqlen, d_model) -> same. With ``state``, continue from it and leave the new state in it."""
        if state is None:
            return mamba_mixer_fn(hidden_states, self.weights())
        # the conv's oldest input is dropped unread (the window shifts before it is used)
        out, tail, state.ssm = mamba_mixer_fn(hidden_states, self.weights(), state.conv[:, :, 1:], state.ssm)
        state.conv = next_conv_state(state.conv, tail.to(state.conv.dtype))  # the conv's last inputs
        return out

    def step(self, hidden_states: Tensor, state: MixerState) -> Tensor:
        """One token: (batch, 1, d_model) -> (batch, 1, d_model), updating ``state`` (the recurrent form)."""
        out, state.conv, state.ssm = mamba_mixer_step(
            hidden_states[:, 0], self.weights(), state.conv, state.ssm, state.ssm_target()
        )
        return out[:, None]
