"""genossm: long-sequence DNA modeling with Mamba."""

from .models import MambaConfig, MambaForSequenceClassification, MambaLMHeadModel, from_pretrained

__version__ = "0.1.0"

__all__ = [
    "MambaConfig",
    "MambaForSequenceClassification",
    "MambaLMHeadModel",
    "__version__",
    "from_pretrained",
]
