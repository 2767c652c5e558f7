"""``genossm generate``: prefill + recurrent steps agree with the full forward pass, draws follow the model's
distribution, seeds, batches of prompts, and the FASTA output of the command."""

import json

import numpy as np
import pytest
import torch

from genossm.cli.main import main
from genossm.data.genome import iter_records
from genossm.data.tokenizer import BASE_IDS, TOKENS, encode
from genossm.generation import Sampler, Sampling, encode_prompt
from genossm.models import MambaConfig, MambaForSequenceClassification, MambaLMHeadModel

MIXERS = {
    "Mamba1": {"layer": "Mamba1", "d_state": 4},
    "Mamba2": {"layer": "Mamba2", "d_state": 4, "headdim": 8, "chunk_size": 8},
}
BASES = list(BASE_IDS)


def make_lm(mixer: str = "Mamba1", dtype=torch.float64) -> MambaLMHeadModel:
    """A tiny random language model whose next base depends on the bases before it: an untied head of unit-variance
    weights and mixer outputs five times their initial scale (a tied tiny model soon repeats one base when greedy)."""
    torch.manual_seed(0)
    config = MambaConfig(d_model=16, n_layer=2, vocab_size=12, ssm_cfg=MIXERS[mixer], tie_embeddings=False)
    model = MambaLMHeadModel(config).to(dtype)
    with torch.no_grad():
        torch.nn.init.normal_(model.lm_head.weight)
        for layer in model.backbone.layers:
            layer.mixer.out_proj.weight.mul_(5)
    model.tokens = list(TOKENS)
    return model


def sampler(model, batch_tokens: int | None = None, **sampling) -> Sampler:
    return Sampler(model, Sampling(**sampling), device="cpu", bfloat16=False, batch_tokens=batch_tokens)


def full_pass_logits(model, tokens: np.ndarray) -> torch.Tensor:
    """Logits over A, C, G, T (l, 4) at every position of ``tokens``, in one forward from a zero state."""
    with torch.no_grad():
        return model(torch.from_numpy(tokens.astype(np.int64))[None]).logits[0, :, BASES].double()


def assert_greedy(model, prompt: np.ndarray, new: np.ndarray) -> None:
    """Every new base after the first is the full pass's most likely base there; so is the first after a prompt."""
    whole = np.concatenate([prompt, new])
    best = np.array(BASES)[full_pass_logits(model, whole).argmax(-1).numpy()]
    start = max(len(prompt) - 1, 0)  # after an empty prompt the first base is drawn uniformly
    np.testing.assert_array_equal(best[start:-1], whole[start + 1 :])


@pytest.mark.parametrize("mixer", list(MIXERS))
@pytest.mark.parametrize("prompt", ["", "ACGTTGCANNAGGCATTACGA"])
def test_greedy_generation_equals_repeated_full_passes(mixer, prompt):
    model = make_lm(mixer)
    ids = encode_prompt(prompt)
    (new,) = sampler(model, batch_tokens=8, temperature=0).generate([ids], length=40, progress=False)  # 3 pieces
    assert_greedy(model, ids, new)
    assert len(np.unique(new)) >= 3  # not won by repeating one base


def test_draws_follow_the_model_distribution():
    model = make_lm(dtype=torch.float32)
    prompt = encode("GATTACA")
    logits = full_pass_logits(model, prompt)[-1]
    num = 4000

    def frequencies(prompt: np.ndarray = prompt, **sampling) -> np.ndarray:
        (tokens,) = sampler(model, **sampling).generate([prompt], length=1, num=num, seed=1, progress=False).T
        return np.array([(tokens == base).mean() for base in BASES])

    def assert_close(freq: np.ndarray, probs: torch.Tensor) -> None:
        probs = probs.numpy()
        stderr = np.sqrt(probs * (1 - probs) / num)
        assert np.all(np.abs(freq - probs) <= 4.5 * stderr + 1e-12), (freq, probs)

    probs = logits.softmax(-1)
    assert probs.max() - probs.min() > 0.3  # far from uniform: a uniform draw would fail
    assert_close(frequencies(), probs)
    for temperature in (0.5, 2.0):
        assert_close(frequencies(temperature=temperature), (logits / temperature).softmax(-1))
    top2 = top_two(probs)
    assert_close(frequencies(top_k=2), top2)
    assert_close(frequencies(top_p=float(probs.topk(2).values.sum()) - 1e-3), top2)
    greedy = np.eye(4)[int(logits.argmax())]
    for sampling in ({"temperature": 0}, {"top_k": 1}, {"top_p": 1e-6}):
        np.testing.assert_array_equal(frequencies(**sampling), greedy)
        assert_close(frequencies(encode(""), **sampling), torch.full((4,), 0.25))  # from scratch: uniform


def top_two(probs: torch.Tensor) -> torch.Tensor:
    """``probs`` kept at its two largest entries only, renormalised."""
    kept = probs.topk(2).indices
    return torch.zeros_like(probs).index_put((kept,), probs[kept] / probs[kept].sum())


def test_seeds_and_only_bases():
    model = make_lm()
    with torch.no_grad():  # make N and the special tokens by far the likeliest next tokens
        others = [i for i in range(model.config.padded_vocab_size) if i not in BASES]
        model.lm_head.weight[others] *= 30
    prompts = [encode("ACGTNNACGT"), encode("")]

    def draw(seed: int) -> np.ndarray:
        return sampler(model, temperature=1.5).generate(prompts, length=30, num=3, seed=seed, progress=False)

    first = draw(seed=7)
    assert first.shape == (6, 30) and set(np.unique(first)) <= set(BASES)
    np.testing.assert_array_equal(draw(seed=7), first)
    assert not np.array_equal(draw(seed=8), first)
    assert len({row.tobytes() for row in first}) == 6  # the samples of one prompt differ from each other


@pytest.mark.parametrize("mixer", list(MIXERS))
def test_prompts_of_different_lengths_each_continue_their_own(mixer):
    model = make_lm(mixer)
    prompts = [encode("A"), encode("TTGACCGTAGGCTAACGTTAGCAGGACTTAGCAGTACAGT"), encode(""), encode("GGGCCN")]
    engine = sampler(model, temperature=0)
    batch = engine.generate(prompts, length=25, num=2, progress=False)
    for i, prompt in enumerate(prompts):
        for new in batch[2 * i : 2 * i + 2]:
            assert_greedy(model, prompt, new)
        if len(prompt):  # (after an empty prompt the first base is random)
            np.testing.assert_array_equal(batch[2 * i], engine.generate([prompt], length=25, progress=False)[0])


def test_bad_arguments_are_clear_errors():
    model = make_lm()
    engine = sampler(model)
    for kwargs, message in [({"length": 0}, "at least one base"), ({"length": 5, "num": 0}, "at least 1")]:
        with pytest.raises(ValueError, match=message):
            engine.generate([encode("ACGT")], progress=False, **kwargs)
    for sampling, message in [
        ({"temperature": -1}, "temperature"),
        ({"top_k": 0}, "top_k"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
    ]:
        with pytest.raises(ValueError, match=message):
            Sampling(**sampling)
    with pytest.raises(ValueError, match="'X' at position 4"):
        encode_prompt("acgtXacgt")
    np.testing.assert_array_equal(encode_prompt("acgtn"), encode("ACGTN"))


@pytest.fixture
def lm_dir(tmp_path):
    make_lm(dtype=torch.float32).save_pretrained(tmp_path / "lm")
    return tmp_path / "lm"


def generate(lm_dir, *argv: str) -> int:
    return main(["generate", "--model", str(lm_dir), "--no-progress", *argv])


def test_cli_writes_fasta(tmp_path, lm_dir, capsys):
    prompts = tmp_path / "prompts.fa"
    prompts.write_text(">first\nACGTACGTAC\nGGTA\n>second\nTTAGC\n>third\nNNNNACGT\n")
    out = tmp_path / "samples.fa"
    assert main(["generate", "--model", str(lm_dir), "--prompt-fasta", str(prompts), "--length", "170",
                 "--num", "2", "--top-k", "3", "--output", str(out)]) == 0  # fmt: skip
    records = list(iter_records(out, strict=True))
    assert [name for name, _ in records] == [f"{p}_sample{i}" for p in ("first", "second", "third") for i in (1, 2)]
    assert all(len(tokens) == 170 and set(np.unique(tokens)) <= set(BASES) for _, tokens in records)
    text = out.read_text()
    assert ">first_sample1 length=170 temperature=1 top_k=3 seed=0\n" in text
    assert {len(line) for line in text.splitlines() if not line.startswith(">")} == {80, 10}
    assert "bases/s" in capsys.readouterr().err

    assert generate(lm_dir, "--length", "12", "--num", "3", "--seed", "5") == 0  # stdout, no prompt
    lines = capsys.readouterr().out.splitlines()
    assert lines[0::2] == [f">unconditional_sample{i} length=12 temperature=1 seed=5" for i in (1, 2, 3)]
    assert all(len(seq) == 12 and set(seq) <= set("ACGT") for seq in lines[1::2])

    assert generate(lm_dir, "--prompt", "ACGT", "--output", str(out)) == 1  # never overwrites
    assert "already exists" in capsys.readouterr().err


def test_cli_same_seed_same_fasta(lm_dir, capsys):
    runs = []
    for seed in ("3", "3", "4"):
        assert generate(lm_dir, "--prompt", "gattaca", "--length", "50", "--num", "2", "--seed", seed) == 0
        runs.append(capsys.readouterr().out.splitlines()[1::2])
    assert runs[0] == runs[1] != runs[2]


def test_cli_bad_inputs(tmp_path, lm_dir, capsys):
    clf = tmp_path / "clf"
    MambaForSequenceClassification(MambaConfig(d_model=16, n_layer=2, vocab_size=12), ["a", "b"]).save_pretrained(clf)
    bad_fasta = tmp_path / "bad.fa"
    bad_fasta.write_text(">ok\nACGT\n>bad\nAC#GT\n")
    empty = tmp_path / "empty.fa"
    empty.write_text("")
    cases = [
        (["--prompt", "ACGTQ"], "'Q' at position 4"),
        (["--prompt", "ACGT", "--prompt-fasta", str(bad_fasta)], "not both"),
        (
            ["--prompt-fasta", str(bad_fasta)],
            f"{bad_fasta}: record bad: '#' at base 3 is not a nucleotide code",
        ),
        (["--prompt-fasta", str(empty)], str(empty)),
        (["--length", "0"], "at least one base"),
        (["--num", "0"], "at least 1"),
        (["--temperature", "-0.5"], "temperature"),
        (["--top-p", "0"], "top_p"),
        (["--top-k", "0"], "top_k"),
    ]
    for argv, message in cases:
        assert generate(lm_dir, *argv) == 1, argv
        assert message in capsys.readouterr().err, argv
    assert main(["generate", "--model", str(clf), "--no-progress"]) == 1
    assert "holds a classifier, not a language model" in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.parametrize("mixer", list(MIXERS))
def test_gpu_cuda_graph_steps_equal_eager_steps_and_the_full_pass(mixer):
    model = make_lm(mixer, torch.float32)
    prompts = [encode_prompt("ACGTTGCAAGGCATTACGA"), encode_prompt("")]

    def run(cuda_graph: bool, **sampling) -> np.ndarray:
        engine = Sampler(model, Sampling(**sampling), device="cuda", bfloat16=False, cuda_graph=cuda_graph)
        return engine.generate(prompts, length=300, num=3, seed=5, progress=False)

    sampled = run(True)
    np.testing.assert_array_equal(sampled, run(False))  # same noise, same kernels: the same bases
    assert not np.array_equal(sampled[0], sampled[1])
    greedy = run(True, temperature=0)
    np.testing.assert_array_equal(greedy, run(False, temperature=0))
    model.cpu()
    assert_greedy(model, prompts[0], greedy[0])


def test_bench_generate_writes_its_rows(tmp_path):
    argv = ["bench", "generate", "--model", "mamba1-tiny", "--samples", "1,3", "--length", "8", "--prompt", "16"]
    assert main([*argv, "--repeats", "1", "--device", "cpu", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "generate.json").read_text())["rows"]
    assert [(r["mode"], r["samples"]) for r in rows] == [("eager", 1), ("eager", 3)]  # no graph on the CPU
    assert all(r["bases_per_s"] > 0 for r in rows)
