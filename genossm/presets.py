"""Shipped presets: model configs in ``configs/models/*.yaml``, referred to by name (``--model mamba1-1.4m``)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from genossm.models import MambaConfig


def preset_dir(kind: str) -> Path:
    """The folder of shipped presets of one kind ('models', 'runs', ...)."""
    return Path(str(resources.files("genossm.configs"))) / kind


def preset_names(kind: str) -> list[str]:
    """Names of the shipped presets of one kind."""
    return sorted(p.stem for p in preset_dir(kind).glob("*.yaml"))


def resolve_preset(name_or_path: str | Path, kind: str) -> Path:
    """A YAML path as given, or the shipped preset of that name; an error lists the available names."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml", ".json") or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        return path
    preset = preset_dir(kind) / f"{name_or_path}.yaml"
    if not preset.is_file():
        raise ValueError(f"no {kind} preset named {name_or_path!r}; available: {', '.join(preset_names(kind))}")
    return preset


def model_config(name_or_path: str | Path) -> MambaConfig:
    """A model config from a preset name or a YAML / JSON file."""
    return MambaConfig.from_file(resolve_preset(name_or_path, "models"))
