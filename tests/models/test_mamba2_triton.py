"""The Mamba-2 mixer on the SSD Triton kernels (Triton's interpreter on the CPU) equals its PyTorch path."""

import pytest
import torch
from conftest import DEVICE, rel_err

from genossm.kernels import backend
from genossm.models import Mamba2

MIXERS = {
    "groups": lambda: Mamba2(24, d_state=6, headdim=8, ngroups=3, chunk_size=8, device=DEVICE),
    "dmlp-nonorm": lambda: Mamba2(
        24, d_state=6, headdim=8, d_ssm=32, rmsnorm=False, D_has_hdim=True, chunk_size=8, device=DEVICE
    ),
}


def forward_and_grads(mixer, x):
    x = x.detach().clone().requires_grad_()
    out = mixer(x)
    params = [p for p in mixer.parameters() if p.requires_grad]
    grads = torch.autograd.grad((out * torch.linspace(-1, 1, out.shape[-1], device=out.device)).sum(), [x, *params])
    return out.detach(), grads


@pytest.mark.parametrize("name", list(MIXERS))
def test_triton_forward_and_gradients_match_torch(name):
    mixer = MIXERS[name]()
    x = torch.randn(2, 19, 24, device=DEVICE)
    with backend("torch"):
        ref, ref_grads = forward_and_grads(mixer, x)
    with backend("triton"):
        out, grads = forward_and_grads(mixer, x)
    assert rel_err(out, ref) < 1e-5
    for grad, ref_grad in zip(grads, ref_grads, strict=True):
        assert rel_err(grad, ref_grad) < 1e-4


def test_triton_windows_continue_like_steps():
    mixer = MIXERS["groups"]()
    x = torch.randn(2, 21, 24, device=DEVICE)
    with torch.no_grad():
        state = mixer.allocate_state(2)
        steps = torch.cat([mixer.step(x[:, t : t + 1], state) for t in range(21)], dim=1)
        with backend("triton"):
            state = mixer.allocate_state(2)
            windows = torch.cat([mixer(x[:, a:b], state) for a, b in ((0, 5), (5, 6), (6, 21))], dim=1)
    assert rel_err(windows, steps) < 1e-5
