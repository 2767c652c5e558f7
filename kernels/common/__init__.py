"""Pieces shared by several ops. All but :mod:`.tensors` are Triton code, imported only by Triton kernel modules;
:mod:`.tensors` is plain PyTorch, which the CPU references use too.

- :mod:`.math`: softplus (with its derivative), SiLU, and the log2(e) / ln(2) constants for ``exp2``-based decays.
- :mod:`.recurrence`, :mod:`.lanes`: the selective scan's in-register recurrences and its sums over channel lanes.
- :mod:`.state_passing`, :mod:`.ssd_state_passing`: the passes that chain per-segment (per-chunk) states.
- :mod:`.hardware`: the GPU's SM count.
- :mod:`.tensors`: host-side helpers (layouts, compute and accumulation dtypes, casts).
"""
