"""The embedding lookup as a Triton gather; the backward is PyTorch's (deterministic) one.

A model's table is tiny (16 rows of 128 for DNA), so the lookup only writes its output: on the H100 a forward of
2^21 tokens wrote its 1 GiB in 0.34 ms (3.1 TB/s), against 1.27 ms (0.84 TB/s) for ``F.embedding``, ``index_select``
or indexing (twenty-seventh session, results/benchmarks.md).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from ..common.math import FMA_CONTRACTION

ROWS = 128  # tokens per program


@triton.jit
def _gather_kernel(ids_ptr, table_ptr, out_ptr, n_tokens, vocab, dim, BLOCK_D: tl.constexpr, ROWS: tl.constexpr):
    """out[t] = table[ids[t]]; an id outside [0, vocab) reads a row of NaN instead of memory it does not own."""
    rows = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
    cols = tl.arange(0, BLOCK_D)
    in_seq = rows < n_tokens
    ids = tl.load(ids_ptr + rows, mask=in_seq, other=0).to(tl.int64)
    known = (ids >= 0) & (ids < vocab)
    mask = in_seq[:, None] & (cols < dim)[None, :]
    row = tl.load(table_ptr + ids[:, None] * dim + cols[None, :], mask=mask & known[:, None], other=float("nan"))
    tl.store(out_ptr + rows[:, None] * dim + cols[None, :], row, mask=mask)


def gather_rows(ids: Tensor, weight: Tensor) -> Tensor:
    """weight[ids] for contiguous ``ids`` and ``weight``."""
    vocab, dim = weight.shape
    out = torch.empty(*ids.shape, dim, device=weight.device, dtype=weight.dtype)
    n_tokens = ids.numel()
    if n_tokens:
        _gather_kernel[(triton.cdiv(n_tokens, ROWS),)](
            ids,
            weight,
            out,
            n_tokens,
            vocab,
            dim,
            BLOCK_D=triton.next_power_of_2(dim),
            ROWS=ROWS,
            num_warps=4,
            **FMA_CONTRACTION,
        )
    return out


class EmbeddingFn(torch.autograd.Function):
    """Triton lookup forward, ``aten.embedding_dense_backward`` backward (what ``F.embedding`` runs)."""

    @staticmethod
    def forward(ctx, ids: Tensor, weight: Tensor) -> Tensor:
        ctx.save_for_backward(ids)
        ctx.vocab = weight.shape[0]
        return gather_rows(ids, weight)

    @staticmethod
    def backward(ctx, dout: Tensor) -> tuple[None, Tensor]:
        (ids,) = ctx.saved_tensors
        return None, torch.ops.aten.embedding_dense_backward(dout, ids.long(), ctx.vocab, -1, False)


def embedding_fused(ids: Tensor, weight: Tensor) -> Tensor:
    """:func:`~.interface.embedding` on the Triton kernel."""
    return EmbeddingFn.apply(ids.contiguous(), weight.contiguous())
