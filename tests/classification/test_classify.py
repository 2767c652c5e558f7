"""``genossm classify``: windows, batching, stateful reading, aggregation, and the exact TSV / JSON output."""

import json
import threading

import numpy as np
import pytest
import torch
from synthetic import TINY

from genossm.classification import infer
from genossm.classification.infer import WindowReader
from genossm.cli.main import main
from genossm.data.genome import RecordChunk
from genossm.data.tokenizer import TOKENS, encode
from genossm.models import MambaForSequenceClassification, MambaLMHeadModel

WINDOW = 32
LABELS = ["human", "chimp", "gorilla"]
# The engine tests run on the CPU in float64 (exact to 1e-12 against a per-window reference), also on a GPU machine,
# where the engine would otherwise pick CUDA; test_gpu_gives_the_cpu_probabilities compares the two devices.


def make_classifier(dtype=torch.float32) -> MambaForSequenceClassification:
    model = MambaForSequenceClassification(TINY, LABELS).to(dtype)
    model.tokens, model.seqlen = list(TOKENS), WINDOW
    return model


@pytest.fixture
def model_dir(tmp_path):
    make_classifier().save_pretrained(tmp_path / "clf")
    return tmp_path / "clf"


def random_bases(n: int, seed: int) -> str:
    return "".join(np.random.default_rng(seed).choice(list("ACGT"), n))


def write_fasta(path, records: dict[str, str], width: int = 60) -> None:
    with open(path, "w") as handle:
        for name, seq in records.items():
            handle.write(f">{name} some description\n")
            handle.writelines(seq[i : i + width] + "\n" for i in range(0, len(seq), width))


def chunked(name: str, tokens: np.ndarray, sizes: list[int]):
    offset = 0
    for size in sizes:
        yield RecordChunk(name, offset, tokens[offset : offset + size])
        offset += size


def window_probs(model, tokens: np.ndarray, bounds) -> np.ndarray:
    """Reference: each window on its own, unpadded, from a zero state."""
    with torch.no_grad():
        logits = [model(torch.from_numpy(tokens[a:b]).long()[None])[0] for a, b in bounds]
    return torch.softmax(torch.stack(logits).double(), -1).numpy()


def test_windows_batching_and_weighted_mean():
    model = make_classifier(torch.float64)
    tokens = encode(random_bases(100, 0))
    engine = WindowReader(model, stride=24, batch_tokens=64, per_window=True, device="cpu")
    (record,) = engine.predict(chunked("r", tokens, [7, 50, 43]))
    bounds = [(0, 32), (24, 56), (48, 80), (68, 100)]  # the last window ends at the record's end
    assert [(w.start, w.end) for w in record.detail] == bounds
    expected = window_probs(model, tokens, bounds)
    assert np.allclose(np.stack([w.values for w in record.detail]), expected, atol=1e-12)
    assert record.windows == record.used == 4 and np.allclose(record.values, expected.mean(0), atol=1e-12)


def test_short_records_are_padded_not_dropped():
    model = make_classifier(torch.float64)
    short, tiny = encode(random_bases(20, 1)), encode(random_bases(3, 2))
    chunks = [*chunked("short", short, [20]), *chunked("tiny", tiny, [3])]
    records = list(WindowReader(model, batch_tokens=1 << 10, device="cpu").predict(chunks))
    assert [(r.name, r.length, r.used) for r in records] == [("short", 20, 1), ("tiny", 3, 1)]
    assert np.allclose(records[0].values, window_probs(model, short, [(0, 20)])[0], atol=1e-12)
    assert np.allclose(records[1].values, window_probs(model, tiny, [(0, 3)])[0], atol=1e-12)


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_windows_ending_in_padding_are_read_without_it(pooling):
    """A short record's window (a record as one example: genossm finetune --examples records) ends in [PAD]."""
    model = make_classifier(torch.float64)
    model.pooling = pooling
    short, full = encode(random_bases(20, 3)), encode(random_bases(WINDOW, 4))
    windows = np.stack([np.concatenate([short, np.full(WINDOW - 20, TOKENS.index("[PAD]"), np.uint8)]), full])
    probs = WindowReader(model, batch_tokens=1 << 10, device="cpu").classify_windows(windows)
    assert np.allclose(probs[0], window_probs(model, short, [(0, 20)])[0], atol=1e-12)
    assert np.allclose(probs[1], window_probs(model, full, [(0, WINDOW)])[0], atol=1e-12)


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_windows_longer_than_a_piece_equal_whole_windows(pooling):
    model = make_classifier(torch.float64)
    model.pooling = pooling
    long, short = encode(random_bases(100, 5)), encode(random_bases(20, 6))
    chunks = [*chunked("long", long, [100]), *chunked("short", short, [20])]
    engine = WindowReader(
        model, stride=24, batch_tokens=64, per_window=True, piece=8, device="cpu"
    )  # 8 windows per batch
    records = list(engine.predict(chunks))
    bounds = [(0, 32), (24, 56), (48, 80), (68, 100)]
    assert np.allclose(np.stack([w.values for w in records[0].detail]), window_probs(model, long, bounds), atol=1e-12)
    # the short record is padded to 32 positions: its last valid one falls inside the third piece
    assert np.allclose(records[1].values, window_probs(model, short, [(0, 20)])[0], atol=1e-12)


def test_the_first_batches_are_smaller(monkeypatch):
    model = make_classifier(torch.float64)
    tokens = encode(random_bases(40 * WINDOW, 5))
    sizes = []
    read = type(model).encode_in_pieces
    monkeypatch.setattr(
        type(model), "encode_in_pieces", lambda self, ids, *a: sizes.append(len(ids)) or read(self, ids, *a)
    )
    monkeypatch.setattr(infer, "RAMP_BASES", 4 * WINDOW)
    engine = WindowReader(model, batch_tokens=16 * WINDOW, per_window=True, device="cpu")  # 16 windows a full batch
    (record,) = engine.predict(chunked("chr", tokens, [40 * WINDOW]))
    assert sizes == [4, 8, 16, 12]  # a quarter, a half, then full batches; the 12 windows left at the end
    bounds = [(k, k + WINDOW) for k in range(0, 40 * WINDOW, WINDOW)]
    assert np.allclose(np.stack([w.values for w in record.detail]), window_probs(model, tokens, bounds), atol=1e-12)


def test_a_batch_of_few_long_windows_reads_longer_pieces(monkeypatch):
    monkeypatch.setattr(infer, "RAMP_BASES", 1 << 40)  # a full batch from the start
    model = make_classifier(torch.float64)
    tokens = encode(random_bases(3 * WINDOW, 7))
    pieces = []
    read = type(model).encode_in_pieces
    monkeypatch.setattr(type(model), "encode_in_pieces", lambda *a: pieces.append(a[-1]) or read(*a))
    engine = WindowReader(model, batch_tokens=64, per_window=True, piece=4, device="cpu")  # 16 windows a batch
    (record,) = engine.predict(chunked("chr", tokens, [3 * WINDOW]))
    assert pieces == [16]  # 3 windows: 64 // 3 tokens each, rounded down to a power of two
    bounds = [(0, 32), (32, 64), (64, 96)]
    assert np.allclose(np.stack([w.values for w in record.detail]), window_probs(model, tokens, bounds), atol=1e-12)


@pytest.mark.parametrize("batch_tokens", [WINDOW, 2 * WINDOW, 1 << 12])
def test_stateful_equals_one_pass_over_the_record(batch_tokens):
    model = make_classifier(torch.float64)
    tokens = encode(random_bases(4 * WINDOW + 11, 3))
    engine = WindowReader(model, stateful=True, batch_tokens=batch_tokens, per_window=True, device="cpu")
    (record,) = engine.predict(chunked("chr", tokens, [5, 70, 40, 24]))
    bounds = [(0, 32), (32, 64), (64, 96), (96, 128), (128, 139)]
    assert [(w.start, w.end) for w in record.detail] == bounds
    with torch.no_grad():  # one forward over the whole record, then each window's positions pooled
        hidden = model.backbone(torch.from_numpy(tokens).long()[None])[0]
        logits = torch.stack([model.classifier(model.pool(hidden[a:b][None]))[0] for a, b in bounds])
    expected = torch.softmax(logits, -1).numpy()
    assert np.allclose(np.stack([w.values for w in record.detail]), expected, atol=1e-12)
    # the first window has no earlier context: the same as in windowed mode; later ones differ
    independent = window_probs(model, tokens, bounds)
    assert np.allclose(expected[0], independent[0], atol=1e-12) and not np.allclose(expected[1:], independent[1:])


@pytest.mark.parametrize("stateful", [False, True])
def test_forwards_on_their_own_thread_give_the_same_probabilities(stateful, monkeypatch):
    model = make_classifier(torch.float64)
    records = {"a": encode(random_bases(5 * WINDOW + 7, 21)), "b": encode(random_bases(9, 22))}
    chunks = [c for name, tokens in records.items() for c in chunked(name, tokens, [40, len(tokens) - 40])
              if len(c.tokens)]  # fmt: skip

    def run(background):
        engine = WindowReader(model, stateful=stateful, batch_tokens=2 * WINDOW, background=background)
        return np.stack([r.values for r in engine.predict(iter(chunks))])

    threads = set()
    run_backbone = model.backbone.forward

    def backbone(*args, **kwargs):
        threads.add(threading.current_thread().name)
        return run_backbone(*args, **kwargs)

    monkeypatch.setattr(model.backbone, "forward", backbone)
    here = run(False)
    assert threads == {threading.current_thread().name}
    threads.clear()
    assert np.array_equal(run(True), here)
    assert len(threads) == 1 and threads.pop().startswith("genossm-forward")


def test_an_error_on_the_forward_thread_reaches_the_caller(monkeypatch):
    model = make_classifier(torch.float64)

    def fail(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(model.backbone, "forward", fail)
    engine = WindowReader(model, batch_tokens=2 * WINDOW, background=True)
    with pytest.raises(RuntimeError, match="out of memory"):
        list(engine.predict(chunked("r", encode(random_bases(100, 23)), [100])))
    assert engine._queued == []  # the run dropped what it had queued


def test_an_interrupted_run_drops_the_forwards_not_yet_started():
    engine = WindowReader(make_classifier(torch.float64), background=True)
    started, release = threading.Event(), threading.Event()

    def blocking():
        started.set()
        release.wait(10)
        return lambda: np.zeros(1)

    engine._submit_forward(blocking)
    assert started.wait(10)
    engine._submit_forward(lambda: lambda: np.ones(1))
    running, queued = engine._queued
    engine._cancel_queued()
    release.set()
    assert queued.cancelled() and not running.cancelled() and running.result(10)() == 0


def test_windows_mostly_n_are_not_counted():
    model = make_classifier(torch.float64)
    tokens = encode(random_bases(32, 4) + "N" * 32)
    (record,) = WindowReader(model, per_window=True, device="cpu").predict(chunked("r", tokens, [64]))
    assert record.windows == 2 and record.used == 1 and record.detail[1].values is None
    assert np.allclose(record.values, record.detail[0].values)


def tsv_rows(text: str) -> list[list[str]]:
    return [line.split("\t") for line in text.splitlines()]


def test_tsv_format(tmp_path, model_dir, capsys):
    fasta = tmp_path / "genome.fa"
    write_fasta(fasta, {"chr1": random_bases(100, 5), "contig": random_bases(10, 6)})
    assert main(["classify", str(fasta), "--model", str(model_dir), "--no-progress"]) == 0
    rows = tsv_rows(capsys.readouterr().out)
    assert rows[0] == ["name", "length", "windows", "label", "p_human", "p_chimp", "p_gorilla"]
    assert [r[:3] for r in rows[1:]] == [["chr1", "100", "4"], ["contig", "10", "1"], [str(fasta), "110", "5"]]
    for row in rows[1:]:
        probs = np.array(row[4:], dtype=float)
        assert probs.sum() == pytest.approx(1, abs=1e-5) and row[3] == LABELS[int(probs.argmax())]
    # the file's probabilities: the bases-weighted mean of the records' (4 windows of 32 bases; 1 of 10)
    chr1, contig, whole = (np.array(r[4:], dtype=float) for r in rows[1:])
    assert np.allclose(whole, (128 * chr1 + 10 * contig) / 138, atol=2e-6)


def test_tsv_per_window_rows(tmp_path, model_dir, capsys):
    fasta = tmp_path / "genome.fa"
    write_fasta(fasta, {"chr1": random_bases(70, 7)})
    main(["classify", str(fasta), "--model", str(model_dir), "--per-window", "--stride", "20", "--no-progress"])
    rows = tsv_rows(capsys.readouterr().out)
    names = [r[0] for r in rows[1:]]
    assert names == ["chr1", "chr1:1-32", "chr1:21-52", "chr1:39-70", str(fasta)]
    assert [r[1:3] for r in rows[2:5]] == [["32", "1"]] * 3


def test_json_format(tmp_path, model_dir, capsys):
    fasta = tmp_path / "genome.fa.gz"
    import gzip

    with gzip.open(fasta, "wt") as handle:
        handle.write(f">a\n{random_bases(40, 8)}\n>b\n{random_bases(5, 9)}\n")
    assert main(["classify", str(fasta), "--model", str(model_dir), "--json", "--stateful", "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert list(result) == ["classes", "records", "file"] and result["classes"] == LABELS
    assert [list(r) for r in result["records"]] == [["name", "length", "windows", "label", "probs"]] * 2
    assert [(r["name"], r["length"], r["windows"]) for r in result["records"]] == [("a", 40, 2), ("b", 5, 1)]
    assert list(result["file"]) == ["label", "probs"] and list(result["file"]["probs"]) == LABELS
    for entry in [*result["records"], result["file"]]:
        assert sum(entry["probs"].values()) == pytest.approx(1) and entry["label"] in LABELS


def test_output_file_is_written_once_and_never_overwritten(tmp_path, model_dir):
    fasta, out = tmp_path / "g.fa", tmp_path / "out.tsv"
    write_fasta(fasta, {"r": random_bases(40, 10)})
    assert main(["classify", str(fasta), "--model", str(model_dir), "--output", str(out), "--no-progress"]) == 0
    before = out.read_text()
    assert before.splitlines()[1].startswith("r\t40\t2\t")
    assert main(["classify", str(fasta), "--model", str(model_dir), "--output", str(out)]) == 1
    assert out.read_text() == before


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "no FASTA record"),
        (">only_headers\n>another\n", "hold no bases"),
        ("\x7fELF\x02\x01\x01binary", "not a FASTA text file"),
        ("ACGT\n", "sequence before any '>' header"),
        (">protein\nMKVLAAGIV\n>dna\nACGT\n", "record protein: 'L' at base 4 is not a nucleotide code"),
        (">aligned\nAC--GT\n", "record aligned: '-' at base 3 is not a nucleotide code"),
    ],
)
def test_bad_fasta_is_one_line_naming_the_file(tmp_path, model_dir, capsys, content, message):
    fasta = tmp_path / "bad.fa"
    fasta.write_text(content)
    assert main(["classify", str(fasta), "--model", str(model_dir), "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and message in captured.err and str(fasta) in captured.err
    assert "Traceback" not in captured.err and len(captured.err.strip().splitlines()) == 1


def test_wrong_model_kind_and_vocabulary(tmp_path, capsys):
    fasta = tmp_path / "g.fa"
    write_fasta(fasta, {"r": random_bases(40, 11)})
    MambaLMHeadModel(TINY).save_pretrained(tmp_path / "lm")
    assert main(["classify", str(fasta), "--model", str(tmp_path / "lm")]) == 1
    assert "holds a language model, not a classifier" in capsys.readouterr().err
    model = make_classifier()
    model.tokens = list("ACGTN")
    model.save_pretrained(tmp_path / "foreign")
    assert main(["classify", str(fasta), "--model", str(tmp_path / "foreign")]) == 1
    err = capsys.readouterr().err
    assert "vocabulary mismatch" in err and str(tmp_path / "foreign" / "genossm.json") in err


@pytest.mark.gpu
@pytest.mark.parametrize("stateful", [False, True])
def test_gpu_gives_the_cpu_probabilities(stateful):
    model = make_classifier()
    tokens = encode(random_bases(5 * WINDOW + 7, 12))
    short = encode(random_bases(9, 13))

    def run(device, bfloat16):
        engine = WindowReader(model, stateful=stateful, batch_tokens=2 * WINDOW, device=device, bfloat16=bfloat16)
        chunks = [*chunked("long", tokens, [40, 100, 27]), *chunked("short", short, [9])]
        return np.stack([r.values for r in engine.predict(chunks)])

    cpu = run("cpu", False)
    assert np.allclose(run("cuda", False), cpu, atol=1e-4)
    assert np.allclose(run("cuda", True), cpu, atol=3e-2)  # bfloat16 autocast
