"""The model directory format: mamba_ssm's ``save_pretrained`` layout, plus genossm's own metadata.

    config.json         MambaConfig fields (exactly what mamba_ssm writes and reads)
    pytorch_model.bin   the state dict (torch.save), loaded with ``weights_only=True``
    genossm.json        genossm only: task ('lm' or 'classification'), vocabulary, labels, pooling

mamba_ssm ignores ``genossm.json``; a directory without it is read as a language model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from genossm.fileio import atomic_torch_save, atomic_write_text

from .config import MambaConfig

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "pytorch_model.bin"
META_NAME = "genossm.json"


class SavesPretrained:
    """Adds ``save_pretrained`` to a model with ``config``, ``task`` and ``metadata()``."""

    def metadata(self) -> dict[str, Any]:
        """What genossm.json records for this model."""
        return {"task": self.task, "tokens": self.tokens}

    def save_pretrained(self, path: str | Path, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        """Write the model directory, with ``state_dict`` when given (weights gathered from ranks that shard them),
        else the model's own; each file is replaced atomically."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        atomic_torch_save(self.state_dict() if state_dict is None else state_dict, path / WEIGHTS_NAME)
        atomic_write_text(path / CONFIG_NAME, json.dumps(self.config.to_dict(), indent=4))
        atomic_write_text(path / META_NAME, json.dumps(self.metadata(), indent=2))


def read_model_dir(path: str | Path) -> tuple[MambaConfig, dict[str, Any], dict[str, torch.Tensor]]:
    """Read (config, metadata, state dict) from a model directory, with errors that name the file."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"model directory {path} does not exist")
    config_file, weights_file, meta_file = path / CONFIG_NAME, path / WEIGHTS_NAME, path / META_NAME
    for needed in (config_file, weights_file):
        if not needed.is_file():
            raise FileNotFoundError(f"{path} is not a model directory: {needed.name} is missing")
    try:
        config = MambaConfig.from_dict(json.loads(config_file.read_text()), source=str(config_file))
    except json.JSONDecodeError as err:
        raise ValueError(f"{config_file}: not valid JSON ({err})") from None
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {"task": "lm"}
    try:
        state_dict = torch.load(weights_file, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or unsafe pickles
        raise ValueError(f"{weights_file}: cannot load weights ({err})") from None
    return config, meta, state_dict
