"""The Mamba-1 mixer (in_proj, conv, x_proj, dt_proj, selective scan, out_proj) as one op."""

from .interface import mamba_mixer_fn
from .reference import mamba_mixer_ref
from .weights import MixerWeights

__all__ = ["MixerWeights", "mamba_mixer_fn", "mamba_mixer_ref"]
