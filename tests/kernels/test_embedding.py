"""The embedding lookup (Triton gather; the interpreter on the CPU) against F.embedding: values and the table's
gradient, ids of several dtypes and shapes, and ids outside the vocabulary."""

import pytest
import torch
import torch.nn.functional as F
from conftest import DEVICE

from genossm.kernels import backend, embedding, embedding_ref


@pytest.mark.parametrize("ids_dtype", [torch.uint8, torch.int32, torch.int64])
@pytest.mark.parametrize("shape", [(3, 70), (5,), (0, 4)])
@pytest.mark.parametrize("dim", [16, 24])
def test_embedding_matches_f_embedding(ids_dtype, shape, dim):
    weight = torch.randn(11, dim, device=DEVICE, requires_grad=True)
    ids = torch.randint(0, 11, shape, device=DEVICE).to(ids_dtype)
    cotangent = torch.randn(*shape, dim, device=DEVICE)
    results = []
    for name in ("torch", "triton"):
        weight.grad = None
        with backend(name):
            out = embedding(ids, weight)
        (out * cotangent).sum().backward()
        results.append((out, weight.grad.clone()))
    (ref, ref_grad), (out, grad) = results
    assert out.shape == (*shape, dim) and torch.equal(out, ref)
    assert torch.equal(ref, F.embedding(ids.long(), weight))
    assert torch.allclose(grad, ref_grad, atol=1e-6)  # repeated ids sum their gradients


def test_ids_outside_the_vocabulary():
    """The gather reads no memory past the table for a bad id: its row is NaN. The reference raises."""
    weight = torch.randn(4, 8, device=DEVICE)
    ids = torch.tensor([[0, 3, 4, 1]], device=DEVICE)
    with backend("triton"):
        out = embedding(ids, weight)
    assert torch.isnan(out[0, 2]).all() and torch.equal(out[0, [0, 1, 3]], weight[[0, 3, 1]])
    if DEVICE == "cpu":
        with pytest.raises(IndexError):
            embedding_ref(ids, weight)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="ids integers"):
        embedding(torch.zeros(3), torch.zeros(4, 8))
