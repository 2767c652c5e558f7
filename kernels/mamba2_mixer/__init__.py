"""The Mamba-2 mixer (in_proj, conv, SSD scan, gated RMSNorm, out_proj) as one op, and its step on one token."""

from .interface import mamba2_mixer_fn, mamba2_mixer_step
from .reference import mamba2_mixer_ref, mamba2_mixer_step_ref
from .weights import Mamba2Settings, Mamba2Weights

__all__ = [
    "Mamba2Settings",
    "Mamba2Weights",
    "mamba2_mixer_fn",
    "mamba2_mixer_ref",
    "mamba2_mixer_step",
    "mamba2_mixer_step_ref",
]
