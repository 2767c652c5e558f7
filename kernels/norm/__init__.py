"""Residual add + RMSNorm / LayerNorm, and Mamba-2's gated RMSNorm."""

from .interface import add_norm, gated_rms_norm, norm_of_stream
from .reference import add_norm_ref, gated_rms_norm_ref, layer_norm_ref, rms_norm_ref

__all__ = [
    "add_norm",
    "add_norm_ref",
    "gated_rms_norm",
    "gated_rms_norm_ref",
    "layer_norm_ref",
    "norm_of_stream",
    "rms_norm_ref",
]
