"""An independent forward pass of mamba_ssm's MambaLMHeadModel, written from its equations over a state dict.

It shares nothing with genossm.models but the sequential scan references, so a checkpoint that gives the same
logits here and through genossm.from_pretrained was read the way mamba_ssm reads it.
"""

import math

import torch
import torch.nn.functional as F

from genossm.kernels import selective_scan_ref, ssd_ref


def rms(x, w, eps=1e-5):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def conv(x, sd, p, width):
    """Causal depthwise conv + SiLU over (b, l, c) with weights p.conv1d.*."""
    y = F.conv1d(
        x.transpose(1, 2),
        sd[p + "conv1d.weight"],
        sd[p + "conv1d.bias"],
        padding=width - 1,
        groups=x.shape[-1],
    )
    return F.silu(y[..., : x.shape[1]]).transpose(1, 2)


def mamba1(h, sd, p, cfg):
    d_inner = sd[p + "D"].shape[0]
    d_state = sd[p + "A_log"].shape[1]
    dt_rank = math.ceil(cfg["d_model"] / 16)
    xz = h @ sd[p + "in_proj.weight"].T
    x, z = xz[..., :d_inner], xz[..., d_inner:]
    x = conv(x, sd, p, cfg["ssm_cfg"].get("d_conv", 4))
    proj = x @ sd[p + "x_proj.weight"].T
    dt, B, C = proj[..., :dt_rank], proj[..., dt_rank : dt_rank + d_state], proj[..., dt_rank + d_state :]
    dt = dt @ sd[p + "dt_proj.weight"].T
    y = selective_scan_ref(
        x.transpose(1, 2),
        dt.transpose(1, 2),
        -torch.exp(sd[p + "A_log"]),
        B.transpose(1, 2),
        C.transpose(1, 2),
        sd[p + "D"],
        z.transpose(1, 2),
        sd[p + "dt_proj.bias"],
        True,
    )
    return y.transpose(1, 2) @ sd[p + "out_proj.weight"].T


def mamba2(h, sd, p, cfg):
    s = cfg["ssm_cfg"]
    headdim, d_state, ngroups = s.get("headdim", 64), s.get("d_state", 128), s.get("ngroups", 1)
    nheads = sd[p + "A_log"].shape[0]
    d_ssm = nheads * headdim
    zxbcdt = h @ sd[p + "in_proj.weight"].T
    z = zxbcdt[..., :d_ssm]
    xBC = conv(zxbcdt[..., d_ssm : 2 * d_ssm + 2 * ngroups * d_state], sd, p, s.get("d_conv", 4))
    dt = zxbcdt[..., 2 * d_ssm + 2 * ngroups * d_state :]
    b, l, _ = h.shape
    x = xBC[..., :d_ssm].reshape(b, l, nheads, headdim)
    B = xBC[..., d_ssm : d_ssm + ngroups * d_state].reshape(b, l, ngroups, d_state)
    C = xBC[..., d_ssm + ngroups * d_state :].reshape(b, l, ngroups, d_state)
    y = ssd_ref(
        x, dt, -torch.exp(sd[p + "A_log"]), B, C, sd[p + "D"], dt_bias=sd[p + "dt_bias"], dt_softplus=True
    ).reshape(b, l, d_ssm)
    g = (y * F.silu(z)).reshape(b, l, ngroups, d_ssm // ngroups)
    y = (g * torch.rsqrt(g.pow(2).mean(-1, keepdim=True) + 1e-5)).reshape(b, l, d_ssm) * sd[p + "norm.weight"]
    return y @ sd[p + "out_proj.weight"].T


def lm_logits(sd, cfg, ids):
    """Logits of a d_intermediate = 0, RMSNorm MambaLMHeadModel given its state dict and config.json."""
    mixer = mamba2 if cfg["ssm_cfg"].get("layer") == "Mamba2" else mamba1
    hidden, residual = sd["backbone.embedding.weight"][ids], None
    for i in range(cfg["n_layer"]):
        p = f"backbone.layers.{i}."
        residual = hidden if residual is None else hidden + residual
        hidden = mixer(rms(residual, sd[p + "norm.weight"]), sd, p + "mixer.", cfg)
    residual = hidden + residual
    return rms(residual, sd["backbone.norm_f.weight"]) @ sd["lm_head.weight"].T
