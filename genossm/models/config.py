"""Model configuration: mamba_ssm's ``MambaConfig``, field for field, so config.json files move both ways."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

MIXERS = ("Mamba1", "Mamba2")


@dataclass
class MambaConfig:
    """A Mamba language model, as in mamba_ssm's ``config.json``."""

    d_model: int = 2560
    """Width of the residual stream."""
    d_intermediate: int = 0
    """Hidden width of a gated MLP after each mixer (0: no MLP, the usual Mamba stack)."""
    n_layer: int = 64
    """Number of Mamba blocks (mixers)."""
    vocab_size: int = 50277
    """Vocabulary size before padding to ``pad_vocab_size_multiple``."""
    ssm_cfg: dict = field(default_factory=dict)
    """Mixer arguments; ``layer`` picks 'Mamba1' (default) or 'Mamba2', the rest go to the mixer."""
    attn_layer_idx: list = field(default_factory=list)
    """Blocks that use attention instead of a mixer (mamba_ssm hybrids; genossm supports none)."""
    attn_cfg: dict = field(default_factory=dict)
    """Attention arguments (unused: no attention layers)."""
    rms_norm: bool = True
    """RMSNorm (True) or LayerNorm (False) before each mixer and at the end."""
    residual_in_fp32: bool = True
    """Keep the residual stream in float32 under mixed precision."""
    fused_add_norm: bool = True
    """Fuse the residual add with the norm (same result; a kernel on CUDA)."""
    pad_vocab_size_multiple: int = 8
    """The embedding and LM head are padded to a multiple of this."""
    tie_embeddings: bool = True
    """Share the embedding matrix with the LM head."""

    def __post_init__(self) -> None:
        if self.attn_layer_idx:
            raise ValueError("attention layers (attn_layer_idx) are not supported by genossm")
        layer = self.ssm_cfg.get("layer", "Mamba1")
        if layer not in MIXERS:
            raise ValueError(f"ssm_cfg.layer must be one of {MIXERS}, not {layer!r}")
        for name in ("d_model", "n_layer", "vocab_size", "pad_vocab_size_multiple"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    @property
    def mixer(self) -> str:
        """'Mamba1' or 'Mamba2'."""
        return self.ssm_cfg.get("layer", "Mamba1")

    @property
    def padded_vocab_size(self) -> int:
        """Rows of the embedding: vocab_size rounded up to pad_vocab_size_multiple."""
        multiple = self.pad_vocab_size_multiple
        return -(-self.vocab_size // multiple) * multiple

    def to_dict(self) -> dict[str, Any]:
        """The JSON form mamba_ssm writes (``config.__dict__``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> MambaConfig:
        """Build from a dict; unknown keys are an error that names them and ``source``."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{source}: unknown model config keys {unknown}; known keys: {sorted(known)}")
        return cls(**data)

    @classmethod
    def from_file(cls, path: str | Path) -> MambaConfig:
        """Read a JSON (config.json) or YAML (configs/models/*.yaml) model config."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as err:
            raise FileNotFoundError(f"cannot read model config {path}: {err.strerror}") from None
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a model config must be a mapping of keys to values")
        return cls.from_dict(data, source=str(path))
