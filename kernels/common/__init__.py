"""Triton pieces shared by several ops (imported only by Triton kernel modules, never on the CPU-only path).

- :mod:`.math`: softplus (with its derivative), SiLU, and the log2(e) / ln(2) constants for ``exp2``-based decays.
- :mod:`.state_passing`: the sequential pass that chains per-segment states of a linear recurrence.
"""
