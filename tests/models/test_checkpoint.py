"""mamba_ssm checkpoint compatibility: names, config.json, and logits of a directory written in its format."""

import json

import pytest
import torch
from conftest import rel_err
from functional_mamba import lm_logits

import genossm
from genossm.models import MambaConfig, MambaForSequenceClassification, MambaLMHeadModel

MAMBA1_NAMES = {
    "A_log",
    "D",
    "conv1d.bias",
    "conv1d.weight",
    "dt_proj.bias",
    "dt_proj.weight",
    "in_proj.weight",
    "out_proj.weight",
    "x_proj.weight",
}
MAMBA2_NAMES = {
    "A_log",
    "D",
    "conv1d.bias",
    "conv1d.weight",
    "dt_bias",
    "in_proj.weight",
    "norm.weight",
    "out_proj.weight",
}

CONFIGS = {
    "Mamba1": dict(d_model=32, n_layer=2, vocab_size=12, ssm_cfg={"layer": "Mamba1", "d_state": 8}),
    "Mamba2": dict(
        d_model=32,
        n_layer=2,
        vocab_size=12,
        ssm_cfg={"layer": "Mamba2", "d_state": 8, "headdim": 16, "ngroups": 2, "chunk_size": 8},
    ),
}


def write_mamba_ssm_dir(path, cfg: dict, seed: int) -> dict:
    """What mamba_ssm's save_pretrained writes: config.json (all MambaConfig fields) and pytorch_model.bin.

    The weights are fresh random tensors (not an initialisation), with names and shapes of mamba_ssm's model.
    """
    full = {
        "d_intermediate": 0,
        "attn_layer_idx": [],
        "attn_cfg": {},
        "rms_norm": True,
        "residual_in_fp32": True,
        "fused_add_norm": True,
        "pad_vocab_size_multiple": 8,
        "tie_embeddings": True,
        **cfg,
    }
    shapes = {k: v.shape for k, v in MambaLMHeadModel(MambaConfig(**full)).state_dict().items()}
    gen = torch.Generator().manual_seed(seed)
    sd = {k: torch.randn(s, generator=gen) * 0.3 for k, s in shapes.items()}
    for k in sd:
        if k.endswith("A_log"):
            sd[k] = torch.rand(sd[k].shape, generator=gen).log1p()
    sd["lm_head.weight"] = sd["backbone.embedding.weight"]  # tied, as torch.save writes it
    path.mkdir()
    (path / "config.json").write_text(json.dumps(full, indent=4))
    torch.save(sd, path / "pytorch_model.bin")
    return full


@pytest.mark.parametrize("mixer", ["Mamba1", "Mamba2"])
def test_parameter_names_match_mamba_ssm(mixer):
    model = MambaLMHeadModel(MambaConfig(**CONFIGS[mixer]))
    names = set(model.state_dict())
    expected = {"backbone.embedding.weight", "backbone.norm_f.weight", "lm_head.weight"}
    for i in range(2):
        expected |= {f"backbone.layers.{i}.norm.weight"}
        expected |= {f"backbone.layers.{i}.mixer.{n}" for n in (MAMBA1_NAMES if mixer == "Mamba1" else MAMBA2_NAMES)}
    assert names == expected


@pytest.mark.parametrize("mixer", ["Mamba1", "Mamba2"])
def test_mamba_ssm_directory_gives_independent_logits(tmp_path, mixer):
    cfg = write_mamba_ssm_dir(tmp_path / "ckpt", CONFIGS[mixer], seed=hash(mixer) % 1000)
    model = genossm.from_pretrained(tmp_path / "ckpt")
    ids = torch.randint(0, 12, (2, 29))
    with torch.no_grad():
        logits = model(ids).logits
        sd = torch.load(tmp_path / "ckpt" / "pytorch_model.bin", weights_only=True)
        expected = lm_logits(sd, cfg, ids)
    assert logits.shape == (2, 29, 16)
    assert rel_err(logits, expected) < 1e-5


@pytest.mark.parametrize("mixer", ["Mamba1", "Mamba2"])
def test_save_and_load_round_trip(tmp_path, mixer):
    model = MambaLMHeadModel(MambaConfig(**CONFIGS[mixer]))
    model.tokens = list("ACGTN")
    model.save_pretrained(tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert MambaConfig(**saved) == model.config  # what mamba_ssm's MambaConfig(**config) would read
    loaded = genossm.from_pretrained(tmp_path / "m")
    assert loaded.tokens == list("ACGTN")
    ids = torch.randint(0, 12, (1, 17))
    with torch.no_grad():
        assert torch.equal(model(ids).logits, loaded(ids).logits)
    assert loaded.lm_head.weight is loaded.backbone.embedding.weight


def test_classifier_round_trip(tmp_path):
    model = MambaForSequenceClassification(MambaConfig(**CONFIGS["Mamba1"]), ["Hsap", "Ptro", "Ggor"], "last")
    model.seqlen = 1024
    model.save_pretrained(tmp_path / "clf")
    loaded = genossm.from_pretrained(tmp_path / "clf")
    assert isinstance(loaded, MambaForSequenceClassification)
    assert loaded.labels == ["Hsap", "Ptro", "Ggor"] and loaded.pooling == "last" and loaded.seqlen == 1024
    ids = torch.randint(0, 12, (2, 10))
    with torch.no_grad():
        assert torch.equal(model(ids), loaded(ids))


def test_classifier_mask_pooling():
    model = MambaForSequenceClassification(MambaConfig(**CONFIGS["Mamba1"]), ["a", "b"], "mean")
    hidden = torch.randn(2, 5, 32)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    pooled = model.pool(hidden, mask)
    assert torch.allclose(pooled[0], hidden[0, :3].mean(0)) and torch.allclose(pooled[1], hidden[1].mean(0))
    model.pooling = "last"
    assert torch.equal(model.pool(hidden, mask)[0], hidden[0, 2])


def test_config_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="unknown model config keys"):
        MambaConfig.from_dict({"d_model": 8, "n_layers": 2})
    with pytest.raises(ValueError, match="ssm_cfg.layer"):
        MambaConfig(ssm_cfg={"layer": "Mamba7"})
    with pytest.raises(ValueError, match="ssm_cfg"):
        MambaLMHeadModel(MambaConfig(d_model=8, n_layer=1, vocab_size=8, ssm_cfg={"d_sate": 4}))
    with pytest.raises(FileNotFoundError, match="config.json is missing"):
        (tmp_path / "empty").mkdir()
        genossm.from_pretrained(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        genossm.from_pretrained(tmp_path / "nowhere")
