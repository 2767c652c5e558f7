"""The Mamba-2 mixer (in_proj, conv, SSD scan, gated RMSNorm, out_proj) as one op."""

from .interface import mamba2_mixer_fn
from .reference import mamba2_mixer_ref
from .weights import Mamba2Settings, Mamba2Weights

__all__ = ["Mamba2Settings", "Mamba2Weights", "mamba2_mixer_fn", "mamba2_mixer_ref"]
