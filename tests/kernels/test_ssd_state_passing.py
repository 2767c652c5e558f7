"""The SSD state passing against the chunk recurrence, forward and backward, with several blocks of chunks per
program (at the sizes the other tests can afford, every sequence fits in one block)."""

import pytest
import torch
from conftest import DEVICE

import genossm.kernels.common.ssd_state_passing as sp


def reference(chunk_states, decay, initial):
    """(start state of every chunk, final state) of H_{c+1} = a_c H_c + S_c, H_0 = initial."""
    starts, state = [], initial
    for c in range(chunk_states.shape[1]):
        starts.append(state)
        state = decay[:, :, c, None] * state + chunk_states[:, c]
    return torch.stack(starts, 1), state


@pytest.mark.parametrize("nchunks", [1, 5, 8])
def test_state_passing_in_blocks_of_two_chunks(nchunks):
    batch, heads, state_size, chunk_size = 2, 3, 24, 4
    gen = torch.Generator().manual_seed(nchunks)
    chunk_states = torch.randn(batch, nchunks, heads, state_size, generator=gen, dtype=torch.float64).float()
    cs = -torch.rand(batch, heads, nchunks, chunk_size, generator=gen, dtype=torch.float64).float()
    initial = torch.randn(batch, heads, state_size, generator=gen)
    dstarts, dfinal = torch.randn_like(chunk_states), torch.randn_like(initial)

    leaves = [t.double().requires_grad_() for t in (chunk_states, cs[..., -1].exp(), initial)]
    starts_ref, final_ref = reference(*leaves)
    loss = (starts_ref * dstarts.double()).sum() + (final_ref * dfinal.double()).sum()
    dchunk_ref, ddecay_ref, dinitial_ref = torch.autograd.grad(loss, leaves)

    dev = [t.to(DEVICE) for t in (chunk_states, cs, initial, dstarts, dfinal)]
    # blocks of 16 state elements (two per (batch, head)) and of two chunks: the loop runs over several blocks
    starts, final = sp.state_passing_fwd(dev[0], dev[1], dev[2], torch.float32, 16, 2)
    dchunk, dinitial, ddecay = sp.state_passing_bwd(dev[3], dev[1], starts, dev[4], torch.float32, 16, 2)
    for got, want in [(starts, starts_ref), (final, final_ref), (dchunk, dchunk_ref), (dinitial, dinitial_ref),
                      (ddecay, ddecay_ref)]:  # fmt: skip
        torch.testing.assert_close(got.cpu().double(), want.detach(), rtol=1e-5, atol=1e-5)
