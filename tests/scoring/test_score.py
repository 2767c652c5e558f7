"""``genossm score``: whole records read in pieces, windows, short rows in padded batches, and the TSV / JSON output."""

import gzip
import json
import math

import numpy as np
import pytest
import torch

from genossm.cli.main import main
from genossm.data.genome import RecordChunk
from genossm.data.tokenizer import TOKENS, encode
from genossm.models import MambaConfig, MambaForSequenceClassification, MambaLMHeadModel
from genossm.scoring import LikelihoodScorer, load_language_model

TINY = MambaConfig(d_model=16, n_layer=2, vocab_size=12, ssm_cfg={"d_state": 4})
# The scorer runs on the CPU in float64 here (also on a GPU machine), exact to 1e-9 against one forward per sequence.


def make_lm(dtype=torch.float64, seed: int = 0) -> MambaLMHeadModel:
    torch.manual_seed(seed)
    model = MambaLMHeadModel(TINY).to(dtype)
    model.tokens = list(TOKENS)
    return model


def random_bases(n: int, seed: int, alphabet: str = "ACGT") -> str:
    return "".join(np.random.default_rng(seed).choice(list(alphabet), n))


def reference(model, tokens: np.ndarray) -> tuple[float, int]:
    """(summed -ln p, scored) of one sequence in one forward from a zero state: targets 1..n-1 that are bases."""
    if len(tokens) < 2:
        return 0.0, 0
    ids = torch.from_numpy(tokens.astype(np.int64))
    with torch.no_grad():
        logp = torch.log_softmax(model(ids[None, :-1]).logits[0].double(), -1)
    targets = ids[1:]
    base = torch.isin(targets, torch.tensor([TOKENS.index(b) for b in "ACGT"]))
    return float(-logp[torch.arange(len(targets)), targets][base].sum()), int(base.sum())


def chunks_of(records: dict[str, np.ndarray], size: int):
    for name, tokens in records.items():
        for offset in range(0, len(tokens), size):
            yield RecordChunk(name, offset, tokens[offset : offset + size])


def scorer(model, **kwargs) -> LikelihoodScorer:
    return LikelihoodScorer(model, device="cpu", bfloat16=False, **kwargs)


@pytest.mark.parametrize("chunk", [7, 64, 1000])
def test_a_whole_record_read_in_pieces_equals_one_forward(chunk):
    model = make_lm()
    tokens = encode(random_bases(300, 1, "ACGTN") + random_bases(37, 2))
    (score,) = scorer(model, batch_tokens=64).score(chunks_of({"chr": tokens}, chunk))  # 6 pieces, state carried
    nll, scored = reference(model, tokens)
    assert score.length == 337 and score.scored == scored
    assert score.nll == pytest.approx(nll, rel=1e-9)
    assert score.bits_per_base == pytest.approx(nll / scored / math.log(2), rel=1e-9)


def test_windows_score_every_base_once_from_a_zero_state():
    model = make_lm()
    tokens = encode(random_bases(250, 3))
    window = 32
    (score,) = scorer(model, window=window, batch_tokens=96).score(chunks_of({"r": tokens}, 50))
    parts = [reference(model, tokens[s : s + window + 1]) for s in range(0, len(tokens) - 1, window)]
    assert score.scored == sum(p[1] for p in parts) == len(tokens) - 1  # the same positions as whole reading
    assert score.nll == pytest.approx(sum(p[0] for p in parts), rel=1e-9)
    (whole,) = scorer(model).score(chunks_of({"r": tokens}, 50))
    assert whole.scored == score.scored and whole.nll != pytest.approx(score.nll, rel=1e-6)  # only context differs


def test_short_records_share_padded_batches_and_come_out_in_file_order():
    model = make_lm()
    lengths = {"one": 1, "two": 2, "ten": 10, "seventy": 70, "long": 200, "nn": 5, "again": 70}
    records = {name: encode(random_bases(n, i)) for i, (name, n) in enumerate(lengths.items())}
    records["nn"] = encode("ANNNN")
    scores = list(scorer(model, batch_tokens=150).score(chunks_of(records, 40)))  # "long" goes in pieces
    assert [s.name for s in scores] == list(records)
    for s in scores:
        nll, scored = reference(model, records[s.name])
        assert (s.length, s.scored) == (len(records[s.name]), scored)
        assert s.nll == pytest.approx(nll, rel=1e-9, abs=1e-12)
    assert math.isnan(scores[0].bits_per_base) and scores[5].scored == 0  # nothing to predict, or only N


def write_fasta(path, records: dict[str, str]) -> None:
    text = "".join(
        f">{name}\n" + "".join(seq[i : i + 60] + "\n" for i in range(0, len(seq), 60)) for name, seq in records.items()
    )
    path.write_text(text)


@pytest.fixture
def lm_dir(tmp_path):
    make_lm(torch.float32).save_pretrained(tmp_path / "lm")
    return tmp_path / "lm"


def test_cli_tsv_json_and_bed_regions(tmp_path, lm_dir, capsys):
    seqs = {"chrA": random_bases(500, 5), "chrB": random_bases(130, 6)}
    fasta = tmp_path / "g.fa"
    write_fasta(fasta, seqs)
    tsv = tmp_path / "out.tsv"
    on_cpu = ["--device", "cpu", "--no-progress"]  # float32, as the reference below
    assert main(["score", str(fasta), "--model", str(lm_dir), "--output", str(tsv), *on_cpu]) == 0
    rows = [line.split("\t") for line in tsv.read_text().splitlines()]
    assert rows[0] == ["name", "length", "scored", "nll", "bits_per_base", "perplexity"]
    assert [r[0] for r in rows[1:]] == ["chrA", "chrB", str(fasta)]
    assert int(rows[3][2]) == int(rows[1][2]) + int(rows[2][2]) == 628
    assert "bits per base" in capsys.readouterr().err

    model = load_language_model(lm_dir)
    bed = tmp_path / "r.bed"
    bed.write_text("chrA\t10\t110\ttest\nchrA\t200\t260\ttrain\nchrB\t0\t130\ttest\n")
    out = tmp_path / "out.json"
    argv = ["score", str(fasta), "--model", str(lm_dir), "--bed", str(bed), "--split", "test", "--window", "64"]
    assert main([*argv, "--json", "--output", str(out), *on_cpu]) == 0
    doc = json.loads(out.read_text())
    assert doc["window"] == 64 and [r["name"] for r in doc["records"]] == ["chrA:11-110", "chrB:1-130"]
    region = encode(seqs["chrA"][10:110])
    with torch.no_grad():
        (alone,) = scorer(model, window=64).score(chunks_of({"x": region}, 1000))
    assert doc["records"][0]["nll"] == pytest.approx(alone.nll, rel=1e-5)
    assert doc["file"]["scored"] == 99 + 129
    assert main([*argv, "--json", "--output", str(out)]) == 1  # never overwrites
    assert "already exists" in capsys.readouterr().err


def test_bad_inputs_name_the_file(tmp_path, lm_dir, capsys):
    fasta = tmp_path / "g.fa"
    write_fasta(fasta, {"chrA": random_bases(100, 7)})
    clf = tmp_path / "clf"
    MambaForSequenceClassification(TINY, ["a", "b"]).save_pretrained(clf)
    empty = tmp_path / "empty.fa.gz"
    with gzip.open(empty, "wt") as handle:
        handle.write("")
    bed = tmp_path / "r.bed"
    bed.write_text("chrA\t0\t50\ttrain\n")
    gapped = tmp_path / "gapped.fa"
    gapped.write_text(">chrA\n" + "A" * 30 + "\n" + "C" * 10 + "-" * 20 + "\n")
    gapped_bed = tmp_path / "gapped.bed"
    gapped_bed.write_text("chrA\t20\t60\n")
    cases = [
        (["score", str(fasta), "--model", str(clf)], "holds a classifier, not a language model"),
        (["score", str(empty), "--model", str(lm_dir)], str(empty)),
        (["score", str(fasta), "--model", str(lm_dir), "--bed", str(bed), "--split", "test"], "no interval of split"),
        (["score", str(fasta), "--model", str(lm_dir), "--split", "test"], "pass --bed too"),
        (["score", str(fasta), "--model", str(lm_dir), "--window", "0"], "at least one base"),
        (["score", str(gapped), "--model", str(lm_dir)], "record chrA: '-' at base 41 is not a nucleotide code"),
        (["score", str(gapped), "--model", str(lm_dir), "--bed", str(gapped_bed)], "'-' at base 41 is not"),
        (["embed", str(gapped), "--model", str(lm_dir), "--output", str(tmp_path / "e.npz")], "'-' at base 41"),
    ]
    for argv, message in cases:
        assert main([*argv, "--no-progress"]) == 1, argv
        assert message in capsys.readouterr().err, argv


@pytest.mark.gpu
@pytest.mark.parametrize("window", [None, 48])
def test_gpu_gives_the_cpu_scores(window):
    model = make_lm(torch.float32)
    records = {"long": encode(random_bases(700, 8, "ACGTN")), "short": encode(random_bases(30, 9))}

    def run(device, bfloat16):  # the whole record in pieces of 128 through the Triton kernels, state carried
        engine = LikelihoodScorer(model, window=window, batch_tokens=128, device=device, bfloat16=bfloat16)
        return np.array([[s.nll, s.scored] for s in engine.score(chunks_of(records, 100))])

    cpu = run("cpu", False)
    assert np.allclose(run("cuda", False), cpu, rtol=1e-5)
    assert np.allclose(run("cuda", True), cpu, rtol=1e-2)  # bfloat16 autocast
