"""Mamba-1 selective scan: sequential reference, chunked PyTorch path, public entry point."""

from .chunked import selective_scan_chunked
from .interface import selective_scan_fn
from .reference import selective_scan_ref

__all__ = ["selective_scan_chunked", "selective_scan_fn", "selective_scan_ref"]
