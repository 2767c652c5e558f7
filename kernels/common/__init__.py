"""Triton pieces shared by several ops (imported only by Triton kernel modules, never on the CPU-only path)."""
