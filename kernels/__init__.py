"""genossm.kernels: the state-space ops, each with its PyTorch reference beside the fast path.

Every public op takes the PyTorch path on the CPU and the Triton kernels on CUDA (see :mod:`.backend`).
"""

from .backend import backend, get_backend, set_backend, use_triton
from .conv1d import causal_conv1d_fn, causal_conv1d_ref
from .embedding import embedding, embedding_ref
from .mamba2_mixer import (
    Mamba2Settings,
    Mamba2Weights,
    mamba2_mixer_fn,
    mamba2_mixer_ref,
    mamba2_mixer_step,
    mamba2_mixer_step_ref,
)
from .mamba_mixer import MixerWeights, mamba_mixer_fn, mamba_mixer_ref, mamba_mixer_step, mamba_mixer_step_ref
from .norm import (
    add_norm,
    add_norm_ref,
    gated_rms_norm,
    gated_rms_norm_ref,
    layer_norm_ref,
    norm_of_stream,
    rms_norm_ref,
)
from .selective_scan import selective_scan_chunked, selective_scan_fn, selective_scan_ref
from .ssd import ssd_chunk_scan, ssd_chunked, ssd_ref

__all__ = [
    "Mamba2Settings",
    "Mamba2Weights",
    "MixerWeights",
    "add_norm",
    "add_norm_ref",
    "backend",
    "causal_conv1d_fn",
    "causal_conv1d_ref",
    "embedding",
    "embedding_ref",
    "gated_rms_norm",
    "gated_rms_norm_ref",
    "get_backend",
    "layer_norm_ref",
    "mamba2_mixer_fn",
    "mamba2_mixer_ref",
    "mamba2_mixer_step",
    "mamba2_mixer_step_ref",
    "mamba_mixer_fn",
    "mamba_mixer_ref",
    "mamba_mixer_step",
    "mamba_mixer_step_ref",
    "norm_of_stream",
    "rms_norm_ref",
    "selective_scan_chunked",
    "selective_scan_fn",
    "selective_scan_ref",
    "set_backend",
    "ssd_chunk_scan",
    "ssd_chunked",
    "ssd_ref",
    "use_triton",
]
