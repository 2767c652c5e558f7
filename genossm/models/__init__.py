"""Mamba models in PyTorch, with mamba_ssm's parameter names and checkpoint format."""

from .backbone import Block, MixerModel
from .config import MambaConfig
from .heads import (
    CausalLMOutput,
    MambaForSequenceClassification,
    MambaLMHeadModel,
    Model,
    SequenceEncoder,
    from_pretrained,
)
from .mamba1 import Mamba
from .mamba2 import Mamba2
from .norm import RMSNorm, RMSNormGated
from .state import MixerState

__all__ = [
    "Block",
    "CausalLMOutput",
    "Mamba",
    "Mamba2",
    "MambaConfig",
    "MambaForSequenceClassification",
    "MambaLMHeadModel",
    "MixerModel",
    "MixerState",
    "Model",
    "RMSNorm",
    "RMSNormGated",
    "SequenceEncoder",
    "from_pretrained",
]
