"""The 12-token vocabulary: encoding rules, round trips, reverse complement."""

import numpy as np
import pytest
import torch

from genossm.data import tokenizer as tk


def test_vocabulary_is_hyenadna_order():
    assert tk.TOKENS == ("[CLS]", "[SEP]", "[BOS]", "[MASK]", "[PAD]", "[RESERVED]", "[UNK]", "A", "C", "G", "T", "N")
    assert len(tk.TOKENS) == tk.VOCAB_SIZE == 12
    names = ["CLS", "SEP", "BOS", "MASK", "PAD", "UNK", "A", "C", "G", "T", "N"]
    for name in names:
        token = name if len(name) == 1 else f"[{name}]"
        assert tk.TOKENS[getattr(tk, f"{name}_ID")] == token


@pytest.mark.parametrize("seq", [b"ACGTN", "ACGTN", np.frombuffer(b"ACGTN", dtype=np.uint8)])
def test_encode_accepts_text_bytes_and_arrays(seq):
    assert tk.encode(seq).tolist() == [7, 8, 9, 10, 11] and tk.encode(seq).dtype == np.uint8


def test_encode_rules():
    assert tk.encode("acgtn").tolist() == tk.encode("ACGTN").tolist()  # soft-masked = upper case
    assert set(tk.encode("RYSWKMBDHVXryswkmbdhvx").tolist()) == {tk.N_ID}  # IUPAC ambiguity codes
    assert tk.encode("Uu").tolist() == [tk.T_ID] * 2
    assert set(tk.encode("EFIJLOPQZ-.*0 \t").tolist()) == {tk.UNK_ID}


def test_strict_encode_names_the_first_unknown_character():
    with pytest.raises(ValueError, match=r"'\*' at base 4 is not a nucleotide code .*; 1 more after it"):
        tk.encode("ACG*T-", strict=True)
    with pytest.raises(ValueError, match="non-ASCII character 'é' at base 3"):
        tk.encode("ACé")


def test_round_trip_and_specials():
    rng = np.random.default_rng(1)
    text = "".join(rng.choice(list("ACGTN"), 10_000))
    assert tk.decode(tk.encode(text)) == text
    assert tk.decode(torch.tensor([tk.CLS_ID, tk.A_ID, tk.PAD_ID])) == "[CLS]A[PAD]"
    with pytest.raises(ValueError, match="token id 12 is outside"):
        tk.decode([7, 12])


def test_reverse_complement_numpy_and_torch():
    ids = tk.encode("AACGTN")
    assert tk.decode(tk.reverse_complement(ids)) == "NACGTT"
    batch = np.stack([tk.encode("ACCG"), tk.encode("TTTN")])
    assert [tk.decode(r) for r in tk.reverse_complement(batch)] == ["CGGT", "NAAA"]
    tensor = torch.from_numpy(batch.astype(np.int64))
    assert torch.equal(tk.reverse_complement(tensor), torch.from_numpy(tk.reverse_complement(batch).astype(np.int64)))
    specials = torch.arange(7, dtype=torch.uint8)
    assert torch.equal(tk.reverse_complement(specials), specials.flip(0))  # specials map to themselves


def test_reverse_complement_twice_is_identity():
    ids = torch.randint(0, tk.VOCAB_SIZE, (3, 5, 257))
    assert torch.equal(tk.reverse_complement(tk.reverse_complement(ids)), ids)
    arr = ids.numpy().astype(np.uint8)
    assert np.array_equal(tk.reverse_complement(tk.reverse_complement(arr)), arr)
