"""Which model directories a classifier can start from or be loaded from, with one clear error per wrong kind.

- :func:`load_classifier`: a classifier written by ``genossm finetune`` (not a language model), whose vocabulary is
  genossm's tokenizer.
- :func:`init_from`: the backbone weights of any model directory — a genossm language model or classifier, or a
  directory written by mamba_ssm — copied into a new classifier; a classifier with the same labels gives its head too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genossm.inference import check_vocabulary
from genossm.models import MambaConfig, MambaForSequenceClassification, from_pretrained
from genossm.models.pretrained import META_NAME, read_model_dir


def load_classifier(path: str | Path, device: Any = None) -> MambaForSequenceClassification:
    """A classifier directory for inference; a language model or a foreign vocabulary is an error naming ``path``."""
    path = Path(path)
    model = from_pretrained(path, device=device)
    if not isinstance(model, MambaForSequenceClassification):
        raise ValueError(
            f"{path} holds a language model, not a classifier: fine-tune one with `genossm finetune --init {path}`"
        )
    check_vocabulary(model.tokens, model.config, path / META_NAME)
    return model


def init_config(path: str | Path) -> MambaConfig:
    """The architecture of a model directory (a classifier started from it must have the same)."""
    config, _, _ = read_model_dir(path)
    return config


def init_from(model: MambaForSequenceClassification, path: str | Path) -> str:
    """Copy the backbone (and a matching head) of the model directory ``path`` into ``model``; returns what it was."""
    path = Path(path)
    config, meta, state_dict = read_model_dir(path)
    check_vocabulary(meta.get("tokens"), config, path / META_NAME)
    if config != model.config:
        raise ValueError(f"{path}: its architecture differs from the classifier's ({config} vs {model.config})")
    backbone = {k.removeprefix("backbone."): v for k, v in state_dict.items() if k.startswith("backbone.")}
    try:
        model.backbone.load_state_dict(backbone)
    except RuntimeError as err:
        raise ValueError(f"{path}: its backbone weights do not fit the config ({err})") from None
    task = meta.get("task", "lm")
    if task == "classification" and meta.get("labels") == model.labels:
        model.classifier.load_state_dict(
            {k.removeprefix("classifier."): v for k, v in state_dict.items() if k.startswith("classifier.")}
        )
        return f"classifier {path} (backbone and head)"
    kind = {"lm": "language model", "classification": "classifier"}.get(task, task)
    source = "genossm" if (path / META_NAME).is_file() else "mamba_ssm"
    return f"{source} {kind} {path} (backbone)"
