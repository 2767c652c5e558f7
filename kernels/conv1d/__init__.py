"""Causal depthwise conv1d with optional SiLU."""

from .interface import causal_conv1d_fn
from .reference import causal_conv1d_ref
from .shifted import causal_conv1d_shifted

__all__ = ["causal_conv1d_fn", "causal_conv1d_ref", "causal_conv1d_shifted"]
