"""Mamba-2 mixer (SSD), with mamba_ssm's ``Mamba2`` parameter names and initialisation.

z, xBC, dt = in_proj(h)                         [z0, x0 when d_ssm < d_inner: a gated MLP part]
x, B, C    = silu(causal_conv1d(xBC))           x: (b, l, nheads, headdim), B and C: (b, l, ngroups, d_state)
y          = ssd(x, dt, A = -exp(A_log), B, C, D, dt_bias, softplus)
y          = norm(y, z)                          gated RMSNorm (or y * silu(z) without rmsnorm)
out        = out_proj(y)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from genossm.kernels import Mamba2Settings, Mamba2Weights, mamba2_mixer_fn, mamba2_mixer_step

from .kept_weights import KeepsWeights
from .mamba1 import init_dt_bias, no_weight_decay
from .norm import RMSNormGated
from .state import MixerState, next_conv_state, state_dtype


class Mamba2(KeepsWeights[Mamba2Weights], nn.Module):
    """The Mamba-2 mixer; ``forward`` over a sequence, ``step`` for one token."""

    def __init__(
        self,
        d_model: int,
        d_state: int = 128,
        d_conv: int = 4,
        conv_init: float | None = None,
        expand: int = 2,
        headdim: int = 64,
        d_ssm: int | None = None,
        ngroups: int = 1,
        A_init_range: tuple[float, float] = (1, 16),
        D_has_hdim: bool = False,
        rmsnorm: bool = True,
        norm_before_gate: bool = False,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        dt_limit: tuple[float, float] = (0.0, float("inf")),
        bias: bool = False,
        conv_bias: bool = True,
        chunk_size: int = 256,
        use_mem_eff_path: bool = True,
        layer_idx: int | None = None,
        device=None,
        dtype=None,
    ) -> None:
        factory = {"device": device, "dtype": dtype}
        super().__init__()
        self.d_model, self.d_state, self.d_conv, self.expand = d_model, d_state, d_conv, expand
        self.d_inner = expand * d_model
        self.headdim = headdim
        self.d_ssm = self.d_inner if d_ssm is None else d_ssm
        self.ngroups = ngroups
        if self.d_ssm % headdim:
            raise ValueError(f"d_ssm ({self.d_ssm}) must be a multiple of headdim ({headdim})")
        self.nheads = self.d_ssm // headdim
        if self.nheads % ngroups:
            raise ValueError(f"nheads ({self.nheads}) must be a multiple of ngroups ({ngroups})")
        self.D_has_hdim, self.rmsnorm, self.norm_before_gate = D_has_hdim, rmsnorm, norm_before_gate
        self.dt_limit = tuple(dt_limit)
        self.chunk_size = chunk_size
        self.use_mem_eff_path = use_mem_eff_path  # accepted for mamba_ssm configs; kernels are chosen per device
        self.layer_idx = layer_idx

        # in_proj output order: [z0, x0, z, x, B, C, dt]
        d_in_proj = 2 * self.d_inner + 2 * ngroups * d_state + self.nheads
        self.in_proj = nn.Linear(d_model, d_in_proj, bias=bias, **factory)
        self.conv_dim = self.d_ssm + 2 * ngroups * d_state
        self.conv1d = nn.Conv1d(
            self.conv_dim,
            self.conv_dim,
            d_conv,
            groups=self.conv_dim,
            padding=d_conv - 1,
            bias=conv_bias,
            **factory,
        )
        if conv_init is not None:
            nn.init.uniform_(self.conv1d.weight, -conv_init, conv_init)

        self.dt_bias = nn.Parameter(init_dt_bias(self.nheads, dt_min, dt_max, dt_init_floor, device))
        if not (A_init_range[0] > 0 and A_init_range[1] >= A_init_range[0]):
            raise ValueError(f"A_init_range must be 0 < low <= high, got {A_init_range}")
        A = torch.empty(self.nheads, dtype=torch.float32, device=device).uniform_(*A_init_range)
        self.A_log = nn.Parameter(torch.log(A).to(dtype=dtype))
        self.D = nn.Parameter(torch.ones(self.d_ssm if D_has_hdim else self.nheads, device=device))
        no_weight_decay(self, "dt_bias", "A_log", "D")
        if rmsnorm:
            self.norm = RMSNormGated(
                self.d_ssm,
                eps=1e-5,
                norm_before_gate=norm_before_gate,
                group_size=self.d_ssm // ngroups,
                **factory,
            )
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias, **factory)

    @property
    def d_mlp(self) -> int:
        """Channels of the gated-MLP part (0 unless d_ssm < d_inner)."""
        return self.d_inner - self.d_ssm

    def allocate_state(self, batch_size: int, dtype: torch.dtype | None = None) -> MixerState:
        """A zero state for ``batch_size`` sequences."""
        return MixerState.zeros(
            batch_size,
            (self.conv_dim, self.d_conv),
            (self.nheads, self.headdim, self.d_state),
            self.out_proj.weight,
            self.conv1d.weight,
            dtype,
        )

    def _weights(self) -> Mamba2Weights:
        """The parameters as the mixer ops take them (A = -exp(A_log) in the state dtype, D per head or channel)."""
        f = state_dtype(self.out_proj.weight.dtype)
        return Mamba2Weights(
            self.in_proj.weight,
            self.in_proj.bias,
            self.conv1d.weight[:, 0, :],
            self.conv1d.bias,
            self.dt_bias,
            -torch.exp(self.A_log.to(f)),
            self.D.view(self.nheads, self.headdim) if self.D_has_hdim else self.D,
            self.norm.weight if self.rmsnorm else None,
            self.out_proj.weight,
            self.out_proj.bias,
        )

    def settings(self) -> Mamba2Settings:
        """The sizes and options the mixer ops need beside the weights."""
        eps = self.norm.eps if self.rmsnorm else 1e-5
        return Mamba2Settings(
            self.headdim, self.d_state, self.ngroups, self.chunk_size, self.dt_limit, eps, self.norm_before_gate
        )

    def forward(self, hidden_states: Tensor, state: MixerState | None = None) -> Tensor:
        """(batch, seqlen, d_model) -> same. With ``state``, continue from it and leave the new state in it."""
        if state is None:
            return mamba2_mixer_fn(hidden_states, self.weights(), self.settings())
        # the conv's oldest input is dropped unread (the window shifts before it is used)
        out, tail, state.ssm = mamba2_mixer_fn(
            hidden_states, self.weights(), self.settings(), state.conv[:, :, 1:], state.ssm
        )
        state.conv = next_conv_state(state.conv, tail.to(state.conv.dtype))  # the conv's last inputs
        return out

    def step(self, hidden_states: Tensor, state: MixerState) -> Tensor:
        """One token: (batch, 1, d_model) -> (batch, 1, d_model), updating ``state`` (the recurrent form)."""
        out, state.conv, state.ssm = mamba2_mixer_step(
            hidden_states[:, 0], self.weights(), self.settings(), state.conv, state.ssm, state.ssm_target()
        )
        return out[:, None]
