"""Generating DNA with a language model: prompts read by the full forward pass, then one recurrent step per new
base for all samples at once (``sampler.py``), replayed from a CUDA graph on a GPU (``loop.py``)."""

from .sampler import Sampler, Sampling, encode_prompt

__all__ = ["Sampler", "Sampling", "encode_prompt"]
