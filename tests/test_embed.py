"""``genossm embed``: pooled hidden states per record and window, against one forward per window, and the archive."""

import json

import numpy as np
import pytest
import torch

from genossm.classification.infer import WindowReader
from genossm.cli.main import main
from genossm.data.genome import RecordChunk
from genossm.data.tokenizer import TOKENS, encode
from genossm.embeddings import load_encoder
from genossm.models import MambaConfig, MambaForSequenceClassification, MambaLMHeadModel

TINY = MambaConfig(d_model=16, n_layer=2, vocab_size=12, ssm_cfg={"d_state": 4})


def random_bases(n: int, seed: int) -> str:
    return "".join(np.random.default_rng(seed).choice(list("ACGT"), n))


def save_lm(path) -> MambaLMHeadModel:
    torch.manual_seed(0)
    model = MambaLMHeadModel(TINY)
    model.tokens = list(TOKENS)
    model.save_pretrained(path)
    return model


def hidden_of(model, tokens: np.ndarray) -> torch.Tensor:
    """Reference: final hidden states of one sequence, one forward from a zero state, float64."""
    with torch.no_grad():
        return model.backbone.double()(torch.from_numpy(tokens.astype(np.int64))[None])[0]


def write_fasta(path, records: dict[str, str]) -> None:
    path.write_text("".join(f">{name}\n{seq}\n" for name, seq in records.items()))


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_window_and_record_embeddings_equal_one_forward_per_window(tmp_path, pooling):
    model = save_lm(tmp_path / "lm")
    encoder = load_encoder(tmp_path / "lm", pooling).double()
    long, short = encode(random_bases(100, 1)), encode(random_bases(20, 2))
    reader = WindowReader(encoder, window=32, batch_tokens=64, per_window=True, device="cpu", bfloat16=False)
    chunks = [RecordChunk("long", 0, long[:50]), RecordChunk("long", 50, long[50:]), RecordChunk("short", 0, short)]
    first, second = reader.predict(iter(chunks))
    bounds = [(0, 32), (32, 64), (64, 96), (68, 100)]  # the last window ends at the record's end
    expected = []
    for a, b in bounds:
        hidden = hidden_of(model, long[a:b])
        expected.append((hidden.mean(0) if pooling == "mean" else hidden[-1]).numpy())
    assert [(w.start, w.end) for w in first.detail] == bounds
    assert np.allclose(np.stack([w.values for w in first.detail]), expected, atol=1e-10)
    assert np.allclose(first.values, np.mean(expected, 0), atol=1e-10)  # windows of 32 bases weigh the same
    hidden = hidden_of(model, short)  # a short record: one padded, masked window
    assert np.allclose(second.values, hidden.mean(0) if pooling == "mean" else hidden[-1], atol=1e-10)


def test_stateful_windows_see_the_record_before_them(tmp_path):
    model = save_lm(tmp_path / "lm")
    encoder = load_encoder(tmp_path / "lm").double()
    tokens = encode(random_bases(96, 3))
    reader = WindowReader(encoder, window=32, stateful=True, per_window=True, device="cpu", bfloat16=False)
    (record,) = reader.predict(iter([RecordChunk("r", 0, tokens)]))
    hidden = hidden_of(model, tokens)  # one forward over the whole record, cut into windows afterwards
    expected = [hidden[a : a + 32].mean(0).numpy() for a in (0, 32, 64)]
    assert np.allclose(np.stack([w.values for w in record.detail]), expected, atol=1e-10)


def test_a_classifier_directory_gives_its_backbone_and_pooling(tmp_path):
    classifier = MambaForSequenceClassification(TINY, ["a", "b"], pooling="last")
    classifier.tokens, classifier.seqlen = list(TOKENS), 48
    classifier.save_pretrained(tmp_path / "clf")
    encoder = load_encoder(tmp_path / "clf")
    assert encoder.pooling == "last" and encoder.seqlen == 48
    for name, value in encoder.backbone.state_dict().items():
        assert torch.equal(value, classifier.backbone.state_dict()[name])
    assert load_encoder(tmp_path / "clf", "mean").pooling == "mean"


def test_cli_writes_the_archive(tmp_path, capsys):
    model = save_lm(tmp_path / "lm")
    records = {"a": random_bases(70, 4), "b": random_bases(10, 5), "gap": "N" * 40}
    write_fasta(tmp_path / "in.fa", records)
    out = tmp_path / "emb.npz"
    args = ["embed", str(tmp_path / "in.fa"), "--model", str(tmp_path / "lm"), "--output", str(out)]
    assert main([*args, "--window", "32", "--per-window", "--device", "cpu", "--no-progress"]) == 0
    assert "1 record(s) had no usable window" in capsys.readouterr().err
    data = np.load(out)
    assert list(data["names"]) == ["a", "b", "gap"] and list(data["lengths"]) == [70, 10, 40]
    assert data["embeddings"].shape == (3, 16) and data["embeddings"].dtype == np.float32
    assert np.isnan(data["embeddings"][2]).all() and not np.isnan(data["embeddings"][:2]).any()
    hidden = hidden_of(model, encode(records["b"]))
    assert np.allclose(data["embeddings"][1], hidden.mean(0), atol=1e-5)
    assert list(data["window_record"]) == [0, 0, 0, 1, 2, 2]
    assert list(data["window_start"]) == [0, 32, 38, 0, 0, 8] and list(data["window_end"]) == [32, 64, 70, 10, 32, 40]
    assert json.loads(str(data["config"]))["window"] == 32
    assert main([*args, "--device", "cpu"]) == 1  # never over an existing file
    assert "already exists" in capsys.readouterr().err


def test_cli_embeds_bed_regions_with_the_default_window(tmp_path):
    save_lm(tmp_path / "lm")
    write_fasta(tmp_path / "g.fa", {"chr1": random_bases(300, 6)})
    (tmp_path / "r.bed").write_text("chr1\t0\t100\ttrain\nchr1\t150\t290\ttest\n")
    out = tmp_path / "emb.npz"
    argv = ["embed", str(tmp_path / "g.fa"), "--model", str(tmp_path / "lm"), "--output", str(out)]
    assert main([*argv, "--bed", str(tmp_path / "r.bed"), "--split", "test", "--device", "cpu"]) == 0
    data = np.load(out)
    assert list(data["names"]) == ["chr1:151-290"] and list(data["lengths"]) == [140]
    assert json.loads(str(data["config"]))["window"] == 1 << 20
    assert main([*argv[:-1], str(tmp_path / "other.npz"), "--split", "test"]) == 1  # --split needs --bed
