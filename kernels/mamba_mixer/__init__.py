"""The Mamba-1 mixer (in_proj, conv, x_proj, dt_proj, selective scan, out_proj) as one op, and on one token."""

from .interface import mamba_mixer_fn, mamba_mixer_step
from .reference import mamba_mixer_ref, mamba_mixer_step_ref
from .weights import MixerWeights

__all__ = ["MixerWeights", "mamba_mixer_fn", "mamba_mixer_ref", "mamba_mixer_step", "mamba_mixer_step_ref"]
