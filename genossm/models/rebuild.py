"""Activations autograd need not keep: ops that save one keep a marker instead, and the backward rebuilds it.

A block's mixer (and MLP) saves its input, the norm output, for the backward; that output can be recomputed bit for
bit from the residual stream, which the add+norm already keeps (kernels/norm ``norm_of_stream``). Rebuilding it in
the backward instead of keeping it saves the input's bytes per token in every block but the one whose backward
runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor


class _View:
    """What a saved view of the tensor becomes: its place in the tensor, rebuilt in the backward."""

    def __init__(self, rebuild: Callable[[], Tensor], shape, stride, offset: int) -> None:
        self.rebuild, self.shape, self.stride, self.offset = rebuild, shape, stride, offset

    def __call__(self) -> Tensor:
        return self.rebuild().as_strided(self.shape, self.stride, self.offset)


def _storage(t: Tensor) -> tuple:
    return t.untyped_storage().data_ptr(), t.dtype, t.device, t._version


@contextmanager
def rebuilt_for_backward(tensor: Tensor, rebuild: Callable[[], Tensor]) -> Iterator[None]:
    """Within the context, ops that save ``tensor`` or a view of it (its memory at its current version) for the
    backward keep a recipe instead, and the backward calls ``rebuild`` (a contiguous tensor of the same values);
    other saved tensors are kept as usual. A tensor that is not contiguous is kept.

    Not for use inside ``torch.utils.checkpoint``, whose own saved-tensor hooks this would replace.
    """
    if not tensor.is_contiguous():
        yield
        return
    key, base = _storage(tensor), tensor.storage_offset()

    def pack(t: Tensor) -> Tensor | _View:
        if _storage(t) != key:
            return t
        return _View(rebuild, t.shape, t.stride(), t.storage_offset() - base)

    def unpack(saved: Tensor | _View) -> Tensor:
        return saved() if isinstance(saved, _View) else saved

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        yield
