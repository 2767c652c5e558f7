"""Mamba-2 SSD scan: sequential reference, chunked PyTorch path, public entry point."""

from .chunked import ssd_chunked
from .interface import ssd_chunk_scan
from .reference import ssd_ref

__all__ = ["ssd_chunk_scan", "ssd_chunked", "ssd_ref"]
