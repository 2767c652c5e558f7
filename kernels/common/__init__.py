"""Pieces shared by several ops. :mod:`.hardware` and :mod:`.tensors` are plain PyTorch (the CPU references use
:mod:`.tensors` too); the rest is Triton code, imported only by Triton kernel modules.

- :mod:`.math`: softplus (with its derivative), SiLU, and the log2(e) / ln(2) constants for ``exp2``-based decays.
- :mod:`.recurrence`, :mod:`.lanes`: the selective scan's in-register recurrences and its sums over channel lanes.
- :mod:`.state_passing`, :mod:`.ssd_state_passing`: the passes that chain per-segment (per-chunk) states.
- :mod:`.hardware`: the GPU's SM count.
- :mod:`.tensors`: host-side helpers (layouts, compute and accumulation dtypes, casts).
"""
