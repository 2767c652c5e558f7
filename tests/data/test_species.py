"""Species classification data: class discovery, disjoint regions, items, and the errors users meet."""

import numpy as np
import pytest
import torch
from fasta_files import random_bases, write_fasta

from genossm.data import steps
from genossm.data.datamodules import SpeciesDataModule
from genossm.data.genome import Genome
from genossm.data.species import SpeciesDataConfig, discover_classes, split_regions
from genossm.data.steps import step_loader
from genossm.data.tokenizer import TOKENS, decode


@pytest.fixture
def class_dir(tmp_path, cache):
    rng = np.random.default_rng(0)
    folder = tmp_path / "classes"
    folder.mkdir()
    write_fasta(folder / "human.fa", {"c1": random_bases(rng, 3000), "c2": random_bases(rng, 2000)})
    write_fasta(folder / "chimp.fasta.gz", {"c1": random_bases(rng, 4000)})
    write_fasta(folder / "gorilla.fna.bgz.gz", {"x": random_bases(rng, 2500)}).rename(folder / "gorilla.fna.gz")
    (folder / "notes.txt").write_text("not a FASTA file")
    return folder


def make(classes, **kw):
    config = dict(classes=classes, seqlen=100, tokens_per_step=1200, max_tokens_per_micro_batch=400, max_steps=10)
    data = SpeciesDataModule(SpeciesDataConfig(**{**config, **kw}))
    data.setup()
    return data


def test_classes_from_a_folder(class_dir):
    data = make(class_dir)
    assert data.classes == ["chimp", "gorilla", "human"]
    item = data.train_dataset[0]
    assert item["input_ids"].shape == (3, 4, 100) and item["labels"].shape == (3, 4)
    assert item["input_ids"].dtype == item["labels"].dtype == torch.long
    assert sorted(item["labels"].flatten().tolist()) == [0] * 4 + [1] * 4 + [2] * 4  # balanced classes


def test_windows_come_from_their_class_and_train_and_heldout_are_disjoint(class_dir):
    data = make(class_dir, heldout_fraction=0.2, rc_aug=False)
    texts = {}
    for file in discover_classes(class_dir):
        genome = Genome(file.fasta)
        texts[file.label] = {name: decode(genome.fetch(name, 0, n)) for name, n in genome.lengths.items()}
    for step in range(5):
        item = data.train_dataset[step]
        for row, label in zip(item["input_ids"].reshape(-1, 100), item["labels"].flatten(), strict=True):
            text = decode(row)
            where = [(n, t.find(text)) for n, t in texts[data.classes[label]].items() if text in t]
            assert where and all(pos + 100 <= round(len(texts[data.classes[label]][n]) * 0.8) for n, pos in where)
    for i in range(len(data.valid_dataset)):
        item = data.valid_dataset[i]
        for row, label in zip(item["input_ids"][0], item["labels"][0], strict=True):
            seqs = texts[data.classes[label]]
            assert any(t.find(decode(row)) >= round(len(t) * 0.8) for t in seqs.values())


def test_heldout_windows_are_fixed(class_dir):
    a, b = make(class_dir), make(class_dir, seed=9)
    assert len(a.valid_dataset) == len(b.valid_dataset) > 1
    for i in range(len(a.valid_dataset)):
        assert torch.equal(a.valid_dataset[i]["input_ids"], b.valid_dataset[i]["input_ids"])
    counts = torch.cat([a.valid_dataset[i]["labels"].flatten() for i in range(len(a.valid_dataset))]).bincount()
    assert counts.tolist() == [64, 64, 64]
    assert not torch.equal(a.train_dataset[0]["input_ids"], b.train_dataset[0]["input_ids"])


def test_train_items_are_deterministic_across_workers(class_dir, monkeypatch):
    ds = make(class_dir).train_dataset
    single = [x["input_ids"] for x in step_loader(ds, 3, num_workers=0)]
    multi = [x["input_ids"] for x in step_loader(ds, 3, num_workers=2)]
    assert len(single) == 7 and all(torch.equal(x, y) for x, y in zip(single, multi, strict=True))
    assert steps.worker_start_method() is None  # one process: workers are forked
    monkeypatch.setattr(steps, "worker_start_method", lambda: "forkserver")  # as under several ranks
    served = [x["input_ids"] for x in step_loader(ds, 3, num_workers=2)]
    assert all(torch.equal(x, y) for x, y in zip(single, served, strict=True)) and len(served) == 7


def test_manifest_with_several_files_per_label_and_bed_splits(tmp_path, cache):
    rng = np.random.default_rng(1)
    write_fasta(tmp_path / "a1.fa", {"r": random_bases(rng, 1000)})
    write_fasta(tmp_path / "a2.fa", {"r": random_bases(rng, 1000)})
    b = write_fasta(tmp_path / "b.fa", {"r": random_bases(rng, 3000)})
    (tmp_path / "b.bed").write_text("r\t0\t1000\ttrain\nr\t1000\t2000\tvalid\nr\t2000\t3000\ttest\n")
    manifest = tmp_path / "classes.tsv"
    manifest.write_text("# label\tfasta\tbed\nA\ta1.fa\nA\ta2.fa\nB\tb.fa\tb.bed\n")
    assert [(f.label, f.fasta.name) for f in discover_classes(manifest)] == [
        ("A", "a1.fa"),
        ("A", "a2.fa"),
        ("B", "b.fa"),
    ]
    train, heldout = split_regions(Genome(b), tmp_path / "b.bed", 0.1, "test")
    assert [(iv.start, iv.end) for iv in train] == [(0, 1000)] and [(iv.start, iv.end) for iv in heldout] == [
        (2000, 3000)
    ]
    data = make(manifest)
    assert data.classes == ["A", "B"] and len(data.train_dataset[0]["labels"].flatten()) == 12


@pytest.mark.parametrize(
    ("setup", "error", "message"),
    [
        ("empty_dir", ValueError, "holds no FASTA file"),
        ("one_class", ValueError, r"needs at least two classes, found \['only'\]"),
        ("missing_file", FileNotFoundError, r"classes.tsv: line 2: .*gone.fa does not exist"),
        ("bad_manifest", ValueError, r"classes.tsv: line 1: expected label<TAB>fasta\[<TAB>bed\]"),
        ("all_n", ValueError, r"class 'n': .*N or padding"),
        ("short", ValueError, r"class 'short' \(.*short.fa\): no train region is at least 100 bases long"),
        ("nowhere", FileNotFoundError, "class folder or manifest .*nowhere does not exist"),
        ("twice", ValueError, r"several FASTA files for class\(es\) \['a'\]"),
    ],
)
def test_clear_errors(tmp_path, cache, setup, error, message):
    rng = np.random.default_rng(2)
    folder = tmp_path / "c"
    folder.mkdir()
    good = {"r": random_bases(rng, 2000)}
    target = folder
    if setup == "one_class":
        write_fasta(folder / "only.fa", good)
    elif setup in ("missing_file", "bad_manifest"):
        write_fasta(folder / "a.fa", good)
        target = folder / "classes.tsv"
        target.write_text("a\ta.fa\nb\tgone.fa\n" if setup == "missing_file" else "a a.fa\n")
    elif setup == "all_n":
        write_fasta(folder / "a.fa", good)
        write_fasta(folder / "n.fa", {"r": b"N" * 2000})
    elif setup == "short":
        write_fasta(folder / "a.fa", good)
        write_fasta(folder / "short.fa", {"r": random_bases(rng, 99), "s": random_bases(rng, 50)})
    elif setup == "nowhere":
        target = tmp_path / "nowhere"
    elif setup == "twice":
        write_fasta(folder / "a.fa", good)
        write_fasta(folder / "a.fasta", good)
        write_fasta(folder / "b.fa", good)
    with pytest.raises(error, match=message):
        make(target)


def test_one_window_steps_still_cycle_through_every_class(tmp_path):
    """A step of one window (long L) must not always hold the first class."""
    folder = tmp_path / "classes"
    folder.mkdir()
    for name in ("a", "b", "c"):
        (folder / f"{name}.fa").write_text(">r\n" + "ACGT" * 64 + "\n")
    config = SpeciesDataConfig(
        classes=folder,
        seqlen=32,
        tokens_per_step=32,
        max_tokens_per_micro_batch=32,
        max_steps=6,
        heldout_fraction=0.25,
        heldout_windows_per_class=1,
    )
    data = SpeciesDataModule(config)
    data.setup()
    labels = [int(data.train_dataset[step]["labels"].item()) for step in range(6)]
    assert sorted(labels) == [0, 0, 1, 1, 2, 2]


@pytest.fixture
def record_dir(tmp_path, cache):
    """Two classes of many records of 20-300 bases (one example each), around a window of 100."""
    rng = np.random.default_rng(5)
    folder = tmp_path / "records"
    folder.mkdir()
    for label, count in (("enhancer", 20), ("other", 30)):
        lengths = rng.integers(20, 300, count)
        write_fasta(folder / f"{label}.fa", {f"{label}{i}": random_bases(rng, int(n)) for i, n in enumerate(lengths)})
    return folder


def record_texts(folder) -> dict[str, dict[str, str]]:
    texts = {}
    for file in discover_classes(folder):
        genome = Genome(file.fasta)
        texts[file.label] = {name: decode(genome.fetch(name, 0, n)) for name, n in genome.lengths.items()}
    return texts


def source_record(row: str, records: dict[str, str]) -> str:
    """The one record a window comes from: its bases (padding stripped) inside the record, padded only if short."""
    bases = row.replace("[PAD]", "")
    found = [name for name, text in records.items() if bases in text and (len(text) >= 100) == (len(bases) == 100)]
    assert len(found) == 1, (row, found)
    assert row.endswith("[PAD]") == (len(bases) < 100)
    return found[0]


def test_records_are_examples_held_out_whole(record_dir):
    data = make(record_dir, examples="records", heldout_fraction=0.2, rc_aug=False)
    texts = record_texts(record_dir)
    heldout = {}
    for i in range(len(data.valid_dataset)):
        item = data.valid_dataset[i]
        for row, label in zip(item["input_ids"][0], item["labels"][0], strict=True):
            name = source_record(decode(row), texts[data.classes[label]])
            heldout[name] = decode(row).replace("[PAD]", "")
            text = texts[data.classes[label]][name]
            if len(text) > 100:  # the middle window
                assert text.index(heldout[name]) == (len(text) - 100 + 1) // 2
    # every held-out record once: 20% of each class, spread through the file
    assert set(heldout) == {f"enhancer{i}" for i in (2, 7, 12, 17)} | {f"other{i}" for i in (2, 7, 12, 17, 22, 27)}
    seen = set()
    for step in range(10):
        item = data.train_dataset[step]
        for row, label in zip(item["input_ids"].reshape(-1, 100), item["labels"].flatten(), strict=True):
            seen.add(source_record(decode(row), texts[data.classes[label]]))
    assert seen and not seen & set(heldout)


def test_records_are_drawn_equally_whatever_their_length(tmp_path, cache):
    rng = np.random.default_rng(6)
    folder = tmp_path / "c"
    folder.mkdir()
    for label in ("a", "b"):  # records of 10 and 5,000 bases to train on, the middle one held out
        records = {"tiny": random_bases(rng, 10), "held": random_bases(rng, 50), "long": random_bases(rng, 5000)}
        write_fasta(folder / f"{label}.fa", records)
    data = make(folder, examples="records", heldout_fraction=0.3, max_n_fraction=0.1, max_steps=40)
    pad = TOKENS.index("[PAD]")
    padded = [int((data.train_dataset[step]["input_ids"] == pad).any(-1).sum()) for step in range(40)]
    # only the 10-base record needs padding (90% of its window, yet not 90% N): half of the rows
    assert 0.4 < sum(padded) / (40 * 12) < 0.6


def test_records_need_two_per_class(tmp_path, cache):
    rng = np.random.default_rng(7)
    folder = tmp_path / "c"
    folder.mkdir()
    write_fasta(folder / "a.fa", {"r1": random_bases(rng, 50), "r2": random_bases(rng, 60)})
    write_fasta(folder / "b.fa", {"only": random_bases(rng, 50)})
    with pytest.raises(ValueError, match=r"class 'b' \(.*b.fa\): no held-out record; a class needs at least two"):
        make(folder, examples="records")
    with pytest.raises(ValueError, match="examples must be 'windows' or 'records'"):
        make(folder, examples="reads")


def test_records_from_a_bed_split(tmp_path, cache):
    """BED intervals are the examples; a split column says which are held out; short ones widen around their
    centre into the record (HyenaDNA)."""
    rng = np.random.default_rng(8)
    folder = tmp_path / "c"
    folder.mkdir()
    rows = []
    for label in ("a", "b"):
        write_fasta(folder / f"{label}.fa", {"chr": random_bases(rng, 2000)})
        bed = folder / f"{label}.bed"
        bed.write_text("chr\t100\t140\ttrain\nchr\t500\t900\ttrain\nchr\t1500\t1530\ttest\n")
        rows.append(f"{label}\t{label}.fa\t{label}.bed")
    (folder / "classes.tsv").write_text("\n".join(rows) + "\n")
    data = make(folder / "classes.tsv", examples="records", rc_aug=False)
    genome = Genome(folder / "a.fa")
    item = data.valid_dataset[0]
    assert item["labels"][0].tolist() == [0, 1]
    assert decode(item["input_ids"][0, 0]) == decode(genome.fetch("chr", 1465, 1565))  # 1500-1530 widened to 100
