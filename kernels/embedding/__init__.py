"""Embedding lookup (token ids -> rows of a table)."""

from .interface import embedding
from .reference import embedding_ref

__all__ = ["embedding", "embedding_ref"]
